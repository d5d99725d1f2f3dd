"""The CLIP features of the public releases (QVHighlights through Moment-DETR), made again: g2l's
``clip_release`` extraction equals a step-by-step port of Moment-DETR's ``run_on_video`` extractor
(tests/reference/moment_detr_clip.py) frame by frame, on a tiny random CLIP and small videos."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import torch

from tests.fixtures import import_or_missing

av = import_or_missing("av", install="pip install av")
import_or_missing("transformers", install="pip install 'g2l[train]'")

from g2l.video.feature_extraction import extract_features_to_hdf5, extract_video_features  # noqa: E402
from g2l.video.frame_encoders import (  # noqa: E402
    CLIP_MEAN,
    CLIP_STD,
    RELEASE_SPECS,
    ClipReleaseEncoder,
    FrameEncoderError,
    build_frame_encoder,
)
from g2l.video.release_frames import ReleaseVideo, clip_rate, scaled_size  # noqa: E402
from tests.reference import moment_detr_clip as reference  # noqa: E402
from tests.video.clip_utils import write_clip_folder, write_pyav_video  # noqa: E402
from tests.video_utils import read_encoder_spec  # noqa: E402


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    return write_clip_folder(tmp_path_factory.mktemp("clip") / "tiny_clip")


# (width, height, fps, seconds): landscape 30 fps with frames on the 1 s boundaries; portrait at 25 fps
# whose duration rounds up (5.2 s -> 3 clips); a video shorter than a clip + 0.1 s (2 frames per second).
VIDEOS = [(320, 240, 30, 7.0), (180, 320, 25, 5.2), (256, 200, 24, 1.5)]


@pytest.fixture(scope="module", params=VIDEOS, ids=["landscape-30fps", "portrait-25fps", "short-1.5s"])
def video(request, tmp_path_factory):
    width, height, fps, seconds = request.param
    return write_pyav_video(tmp_path_factory.mktemp("video") / f"v{width}x{height}.mp4", width=width, height=height,
                            fps=fps, seconds=seconds), request.param


def test_frames_and_features_equal_the_moment_detr_reference(clip_folder, video):
    path, (width, height, fps, seconds) = video
    loader = reference.VideoLoader(framerate=1 / 2, size=224, centercrop=True)
    expected_frames = loader.read_video_from_file(str(path))  # (T, 3, 224, 224) float
    release = ReleaseVideo(path, clip_len_s=2.0, size=224)
    frames = np.concatenate(list(release))  # (T, 224, 224, 3) uint8
    np.testing.assert_array_equal(frames, expected_frames.permute(0, 2, 3, 1).numpy().astype(np.uint8))
    assert release.duration_s == pytest.approx(seconds, abs=1e-6)

    from transformers import CLIPModel

    extractor = reference.ClipFeatureExtractor(CLIPModel.from_pretrained(str(clip_folder)).eval())
    expected = extractor.encode_video(str(path)).numpy()  # (T, 512)
    encoder = build_frame_encoder(f"clip_release:{clip_folder}")
    features, duration_s = extract_video_features(path, encoder, fps=0.5, batch_size=2)
    assert features.shape == expected.shape == (len(frames), 512)
    np.testing.assert_allclose(features, expected, atol=1e-5, rtol=0)
    normalized = reference.normalized_video_features(extractor, str(path)).numpy()
    from g2l.data.features import l2_normalize

    np.testing.assert_allclose(l2_normalize(features), normalized, atol=1e-5, rtol=0)


def test_which_frames_by_hand(tmp_path):
    """30 frames/s, 7 s: clip k takes frame 60k + 29 (the frame starting at 2k + 1 s goes to the next
    clip), and round(7 / 2) = 4 clips, the last the video's last frame."""
    path = write_pyav_video(tmp_path / "count.mp4", width=64, height=48, fps=30, seconds=7.0)
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    chosen = [60 * k + 29 for k in range(4)]
    # The reference's frame choice alone, by index.
    with av.open(str(path)) as container:
        frames = [(f.pts, f.duration, f.time_base, i) for i, f in enumerate(container.decode(video=0))]
    assert reference.fps_filter(frames, Fraction(1, 2)) == chosen
    # g2l's: 64x48 -> 298x224 (int(64 * 224 / 48)), crop at x = 37; compare with the frames scaled alone.
    assert scaled_size(48, 64, 224) == (224, 298)
    got = np.concatenate(list(ReleaseVideo(path, clip_len_s=2.0, size=224)))
    assert got.shape == (4, 224, 224, 3)
    with av.open(str(path)) as container:
        all_frames = list(container.decode(video=0))
    for clip, index in enumerate(chosen):
        expected = reference._scale_bicubic(all_frames[index], 298, 224)[:, 37:37 + 224]
        np.testing.assert_array_equal(got[clip], expected)
    assert len(decoded) == 210


def test_clip_rate_of_short_videos():
    assert clip_rate(150.0, 2.0) == 0.5
    assert clip_rate(2.05, 2.0) == 1.0  # shorter than 2.1 s: 2 / int(2.05)
    assert clip_rate(1.5, 2.0) == 2.0  # 2 / max(int(1.5), 1)
    assert clip_rate(-1.0, 2.0) == 0.5  # no duration in the header: the plain rate


def test_a_clip_model_and_its_vision_half_give_the_same_features(tmp_path, clip_folder):
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(str(clip_folder)).eval()
    vision_only = tmp_path / "vision"
    ClipReleaseEncoder(str(clip_folder)).model.save_pretrained(vision_only)  # a CLIPVisionModelWithProjection
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 224, 224, 3), dtype=np.uint8)
    whole = ClipReleaseEncoder(str(clip_folder)).encode(frames)
    half = ClipReleaseEncoder(str(vision_only)).encode(frames)
    np.testing.assert_allclose(whole, half, atol=1e-6)
    pixels = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / (
        torch.tensor(CLIP_STD).view(1, 3, 1, 1) + 1e-8)
    with torch.no_grad():
        direct = model.get_image_features(pixel_values=pixels)
    direct = direct if torch.is_tensor(direct) else direct.pooler_output
    np.testing.assert_allclose(whole, direct.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="cut to 224 x 224"):
        ClipReleaseEncoder(str(clip_folder)).encode(frames[:, :200])


def test_a_folder_without_the_image_tower_is_refused(tmp_path):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel

    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    CLIPVisionModel(CLIPVisionConfig(**small, image_size=224, patch_size=32)).save_pretrained(tmp_path / "no_projection")
    with pytest.raises(FrameEncoderError, match=r"holds no weights for 1 parameters .*visual_projection"):
        ClipReleaseEncoder(str(tmp_path / "no_projection"))  # never a random projection
    CLIPTextModel(CLIPTextConfig(**small, vocab_size=64)).save_pretrained(tmp_path / "text")
    with pytest.raises(FrameEncoderError, match="holds no weights for|Could not load"):
        ClipReleaseEncoder(str(tmp_path / "text"))
    with pytest.raises(FrameEncoderError, match="Could not load a CLIP vision model"):
        ClipReleaseEncoder(str(tmp_path / "missing"))


def test_extracted_file_records_the_release_spec(tmp_path, clip_folder):
    path = write_pyav_video(tmp_path / "a.mp4", width=96, height=64, fps=10, seconds=4.0)
    encoder = build_frame_encoder(f"clip_release:{clip_folder}")
    report = extract_features_to_hdf5([path], tmp_path / "f.hdf5", encoder, progress=False)
    assert report.extracted == ["a"]
    spec = read_encoder_spec(tmp_path / "f.hdf5")
    release = RELEASE_SPECS["qvhighlights_clip"]
    assert spec["fps"] == 0.5 and spec["clip_len_s"] == 2.0
    # The same recipe as the declared QVHighlights release; only the weights differ (a random CLIP here).
    assert {k: v for k, v in spec.items() if k != "weights"} == {k: v for k, v in json.loads(json.dumps(release)).items()
                                                                  if k != "weights"}
    from g2l.video.decoding import SamplingRateError

    with pytest.raises(SamplingRateError, match="one frame per 2 s clip"):
        extract_features_to_hdf5([path], tmp_path / "g.hdf5", encoder, fps=1.0, progress=False)


def test_unreadable_videos_are_one_sentence(tmp_path):
    from g2l.video.decoding import VideoReadError

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoReadError, match="bad.mp4"):
        list(ReleaseVideo(bad, clip_len_s=2.0, size=224))
    with pytest.raises(VideoReadError, match="does not exist"):
        ReleaseVideo(tmp_path / "missing.mp4", clip_len_s=2.0, size=224)
    torch.manual_seed(0)


def test_g2l_extract_with_the_release_recipe(tmp_path, clip_folder, capsys):
    import h5py

    from g2l.cli.data import extract_main

    path = write_pyav_video(tmp_path / "b.mp4", width=80, height=60, fps=10, seconds=6.0)
    out = tmp_path / "f.hdf5"
    assert extract_main([str(path), "--out", str(out), "--encoder", f"clip_release:{clip_folder}", "--quiet"]) == 0
    with h5py.File(out, "r") as handle:
        assert handle["b"].shape == (3, 512) and handle.attrs["fps"] == 0.5
    assert extract_main([str(path), "--out", str(tmp_path / "g.hdf5"), "--encoder", f"clip_release:{clip_folder}",
                         "--clip-len", "1", "--quiet"]) == 0
    with h5py.File(tmp_path / "g.hdf5", "r") as handle:
        assert handle["b"].shape == (6, 512) and handle.attrs["fps"] == 1.0
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        extract_main([str(path), "--out", str(tmp_path / "h.hdf5"), "--encoder", f"clip_release:{clip_folder}",
                      "--fps", "1"])
    assert stopped.value.code == 2
    assert "--fps does not apply" in capsys.readouterr().err and not (tmp_path / "h.hdf5").exists()
    # The same file cannot be resumed with another clip length.
    assert extract_main([str(path), "--out", str(out), "--encoder", f"clip_release:{clip_folder}",
                         "--clip-len", "1", "--quiet"]) == 2
    assert "clip_len_s" in capsys.readouterr().err


@pytest.mark.parametrize("spec, expected", [
    (None, "no frame encoder recorded"),
    ({"name": "joined", "parts": [json.dumps(RELEASE_SPECS["qvhighlights_clip"]), json.dumps(RELEASE_SPECS["qvhighlights_slowfast"])]},
     r"joined from several encoders \(clip_release \+ slowfast\).*ships no slowfast model"),
    ({"name": "joined", "parts": [json.dumps(RELEASE_SPECS["qvhighlights_clip"]), "undeclared: vgg.hdf5"]},
     r"\(clip_release \+ undeclared: vgg.hdf5\).*ships no undeclared: vgg.hdf5 model"),
    (RELEASE_SPECS["qvhighlights_slowfast"], r"trained on 'slowfast' features .* ships no slowfast model"),
    (RELEASE_SPECS["qvhighlights_clip"], None),
    ({"name": "mobilenet_v2_grid2"}, None),
])
def test_which_models_can_read_video_files(spec, expected):
    from g2l.video.frame_encoders import video_unreadable_reason

    reason = video_unreadable_reason(spec)
    if expected is None:
        assert reason is None
    else:
        import re

        assert re.search(expected, reason) and "Grounder.encode_features" in reason
