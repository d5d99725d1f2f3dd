"""Frame encoders: MobileNetV2 loads torchvision's weights exactly and classifies known images;
features are deterministic, batch-size independent and non-degenerate; a tiny random CLIP works;
spec mismatches are errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from g2l.video.frame_encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MOBILENET_V2_SHA256_PREFIX,
    ClipImageEncoder,
    EncoderMismatchError,
    build_frame_encoder,
    check_encoder_compatible,
    find_mobilenet_v2_weights,
    sha256_of_file,
)
from g2l.video.mobilenet import MobileNetV2
from tests.fixtures import import_or_missing, missing_prerequisite

# ImageNet classes used below (0-based indices of the standard 1000-class list).
BOW_TIE, MILITARY_UNIFORM, MONASTERY, PALACE = 457, 652, 663, 698


@pytest.fixture(scope="module")
def mobilenet():
    return build_frame_encoder("mobilenet_v2", device="cpu")


@pytest.fixture(scope="module")
def tiny_clip_config():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        image_size=32, patch_size=8, projection_dim=16,
    )


def random_frames(num_frames: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth random images (low-frequency noise, upsampled), more image-like than white noise."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_frames, 3, 6, 8, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (f, h, w, 3)


# --- MobileNetV2 weights ------------------------------------------------------------------------


def test_weights_file_is_torchvisions_and_loads_strictly():
    path = find_mobilenet_v2_weights()
    assert path.name == "mobilenet_v2-b0353104.pth"
    assert sha256_of_file(path).startswith(MOBILENET_V2_SHA256_PREFIX)  # torchvision's naming rule
    state = torch.load(path, map_location="cpu", weights_only=True)
    network = MobileNetV2()
    result = network.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert {k: tuple(v.shape) for k, v in network.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}
    # torchvision documents 3,504,872 parameters for mobilenet_v2.
    assert sum(p.numel() for p in network.parameters()) == 3_504_872


def _center_crop_224(image: np.ndarray) -> np.ndarray:
    """ImageNet evaluation transform: shorter side to 256, centre crop 224 (via PIL, independent of our code)."""
    from PIL import Image

    picture = Image.fromarray(image)
    scale = 256 / min(picture.size)
    picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.BILINEAR)
    left, top = (picture.width - 224) // 2, (picture.height - 224) // 2
    return np.asarray(picture.crop((left, top, left + 224, top + 224)))


def test_classifier_recognises_known_photos(mobilenet):
    """Known answers: Grace Hopper's portrait (matplotlib's sample) shows a bow tie and a military
    uniform; scikit-learn's china.jpg shows a Chinese palace. Wrong weights or a wrong architecture
    (strict loading cannot catch a missing residual or a wrong stride) would not get these."""
    pil = import_or_missing("PIL.Image", install="pip install -e '.[dev]'")
    matplotlib = import_or_missing("matplotlib", install="pip install -e '.[dev]'")
    hopper = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not hopper.is_file():
        missing_prerequisite("matplotlib's sample data is not installed")
    image = np.asarray(pil.open(hopper).convert("RGB"))
    top5 = mobilenet.classify(_center_crop_224(image)[None])[0].topk(5).indices.tolist()
    assert BOW_TIE in top5 and MILITARY_UNIFORM in top5
    # The squashed whole frame, as videos are read, is still a uniform.
    assert MILITARY_UNIFORM in mobilenet.classify(image[None])[0].topk(2).indices.tolist()

    sklearn_images = import_or_missing("sklearn.datasets", install="pip install -e '.[dev]'").load_sample_images()
    china = sklearn_images.images[sklearn_images.filenames.index(next(f for f in sklearn_images.filenames if "china" in f))]
    assert mobilenet.classify(_center_crop_224(china)[None])[0].argmax().item() in (PALACE, MONASTERY)


# --- encode ---------------------------------------------------------------------------------------------


def test_mobilenet_features_shape_determinism_and_batch_independence(mobilenet):
    frames = random_frames(5)
    first = mobilenet.encode(frames, batch_size=2)
    assert first.shape == (5, 1280) and first.dtype == np.float32
    np.testing.assert_array_equal(first, mobilenet.encode(frames, batch_size=2))
    np.testing.assert_allclose(first, mobilenet.encode(frames, batch_size=5), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(first, mobilenet.encode(torch.from_numpy(frames), batch_size=1), rtol=1e-4, atol=1e-5)
    # Non-degenerate: finite, non-negative (pooled ReLU6), varied across channels and frames.
    assert np.isfinite(first).all() and (first >= 0).all()
    assert first.std(axis=1).min() > 0.05
    assert np.linalg.matrix_rank(first) == 5
    assert mobilenet.encode(frames[:0]).shape == (0, 1280)


def test_mobilenet_preprocessing_is_imagenet_normalisation(mobilenet):
    frames = random_frames(2, height=224, width=224)  # already at the input size: no resize
    images = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        reference = mobilenet.network.features_pooled((images - mean) / std).numpy()
    np.testing.assert_allclose(mobilenet.encode(frames), reference, rtol=1e-5, atol=1e-5)


def test_encode_rejects_frames_that_are_not_uint8_rgb(mobilenet):
    with pytest.raises(ValueError, match="uint8"):
        mobilenet.encode(np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        mobilenet.encode(np.zeros((2, 8, 8), np.uint8))


# Run in a fresh process: glibc first raises its mmap threshold to 30 MiB (freeing a 30 MiB block
# does it, as freeing a first batch's activations does in a grounding run), so that the 2-30 MiB
# activations of the batches come from the heap; then encodes 4 batches and prints the MiB of RSS
# the encode left behind.
HELD_AFTER_ENCODE = """
import sys
import numpy as np
import torch
from g2l.video.frame_encoders import build_frame_encoder, release_free_heap_memory

torch.set_num_threads(1)
def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
big = np.ones(30 << 20, np.uint8)
del big
encoder = build_frame_encoder("mobilenet_v2", device="cpu")
frames = np.random.default_rng(0).integers(0, 256, (32, 224, 224, 3), dtype=np.uint8)
encoder.encode(frames[:1])
before = rss_mib()
encoder.encode(frames, batch_size=8)
print(rss_mib() - before, release_free_heap_memory())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's heap and /proc/self/status")
def test_encode_gives_the_batches_freed_activations_back_to_the_system():
    """Without the trim after each batch glibc kept the freed activations: 55-60 MiB held here
    (180 at batch 16), and every later batch of a grounding run peaked that much higher."""
    run = subprocess.run([sys.executable, "-c", HELD_AFTER_ENCODE], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    held, trimmed = run.stdout.split()
    if trimmed != "True":
        pytest.skip("not glibc: no malloc_trim")
    assert float(held) < 20, f"encode left {float(held):.0f} MiB of RSS behind"


def test_mobilenet_spec(mobilenet):
    spec = mobilenet.spec
    assert spec["name"] == "mobilenet_v2" and spec["output_dim"] == 1280 and spec["input_size"] == 224
    assert MOBILENET_V2_SHA256_PREFIX in spec["weights"]
    assert spec["mean"] == list(IMAGENET_MEAN) and spec["std"] == list(IMAGENET_STD)


def test_grid_pooling_adds_where_things_are(mobilenet):
    from g2l.video.frame_encoders import build_frame_encoder, check_encoder_compatible, EncoderMismatchError

    grid = build_frame_encoder("mobilenet_v2_grid2")
    assert grid.spec["name"] == "mobilenet_v2_grid2" and grid.spec["output_dim"] == 1280 * 5
    frames = random_frames(3)
    out = grid.encode(frames)
    assert out.shape == (3, 6400)
    # The first 1280 columns are the global pool; each cell is the mean of its part of the 7 x 7 map
    # (adaptive pooling: rows/columns 0-3 and 3-6, so the middle row and column count twice).
    np.testing.assert_allclose(out[:, :1280], mobilenet.encode(frames), rtol=1e-4, atol=1e-5)
    images = grid.preprocess(torch.from_numpy(frames))
    with torch.inference_mode():
        maps = grid.network.features(images).numpy()  # (3, 1280, 7, 7)
    top_left = maps[:, :, 0:4, 0:4].mean(axis=(2, 3))
    np.testing.assert_allclose(out[:, 1280:].reshape(3, 1280, 4)[:, :, 0], top_left, rtol=1e-4, atol=1e-5)
    # A bright square on the left and on the right: same global content, different cells.
    left, right = np.zeros((1, 224, 224, 3), np.uint8), np.zeros((1, 224, 224, 3), np.uint8)
    left[0, 80:140, 10:70] = 255
    right[0, 80:140, 154:214] = 255
    a, b = grid.encode(left)[0], grid.encode(right)[0]
    assert np.abs(a[1280:] - b[1280:]).sum() > 5 * np.abs(a[:1280] - b[:1280]).sum()
    with pytest.raises(EncoderMismatchError, match="name"):
        check_encoder_compatible(mobilenet.spec, grid.spec, what="test")


# --- CLIP --------------------------------------------------------------------------------------------------


def test_tiny_random_clip_encodes_and_reloads_from_a_folder(tiny_clip_config, tmp_path):
    torch.manual_seed(0)
    encoder = ClipImageEncoder(config=tiny_clip_config)
    frames = random_frames(3)
    features = encoder.encode(frames, batch_size=2)
    assert features.shape == (3, 16) and features.dtype == np.float32
    np.testing.assert_allclose(features, encoder.encode(frames, batch_size=3), rtol=1e-4, atol=1e-5)
    assert encoder.spec["name"] == "clip" and encoder.spec["input_size"] == 32 and encoder.spec["output_dim"] == 16

    encoder.model.save_pretrained(tmp_path / "tiny_clip")
    reloaded = build_frame_encoder(f"clip:{tmp_path / 'tiny_clip'}")
    np.testing.assert_allclose(reloaded.encode(frames), features, rtol=1e-5, atol=1e-6)
    assert "sha256:" in reloaded.spec["weights"]
    # Moving the folder keeps the weights' identity.
    (tmp_path / "tiny_clip").rename(tmp_path / "moved")
    assert build_frame_encoder(f"clip:{tmp_path / 'moved'}").spec == reloaded.spec
    # Two random initialisations are two different encoders.
    torch.manual_seed(1)
    assert ClipImageEncoder(config=tiny_clip_config).spec["weights"] != encoder.spec["weights"]


def test_unknown_encoder_names_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="Unknown frame encoder"):
        build_frame_encoder("resnet50")
    with pytest.raises(ValueError, match="Unknown frame encoder"):
        build_frame_encoder("clip:")
    with pytest.raises(ValueError, match="Could not load a CLIP"):
        build_frame_encoder(f"clip:{tmp_path / 'no_such_model'}")


# --- spec checks -----------------------------------------------------------------------------------------


def test_check_encoder_compatible_lists_the_differing_keys(mobilenet, tiny_clip_config):
    spec = mobilenet.spec
    check_encoder_compatible(spec, dict(spec), what="itself")
    check_encoder_compatible({**spec, "mean": tuple(spec["mean"])}, spec, what="a JSON copy")  # tuple == list

    clip_spec = ClipImageEncoder(config=tiny_clip_config).spec
    with pytest.raises(EncoderMismatchError) as caught:
        check_encoder_compatible(spec, clip_spec, what="feature file 'x.hdf5'")
    message = str(caught.value)
    assert "feature file 'x.hdf5'" in message
    for key in ("name", "weights", "input_size", "output_dim", "mean", "std"):
        assert f"{key}:" in message
    assert "resize:" not in message  # equal keys are not listed
    assert isinstance(caught.value, ValueError)

    with pytest.raises(EncoderMismatchError, match="fps: expected 1.0, found None"):
        check_encoder_compatible({**spec, "fps": 1.0}, spec, what="checkpoint")
