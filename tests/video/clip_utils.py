"""A tiny random CLIP saved as a local folder (built from a config, nothing downloaded) and a small
test video written with PyAV, for the CLIP release tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_clip_folder(folder: Path, *, projection_dim: int = 512, whole_model: bool = True, seed: int = 0) -> Path:
    """A random ``CLIPModel`` (or only its ``CLIPVisionModelWithProjection``) with a 224-pixel, 32-patch
    vision tower of width 16 and one layer, saved with ``save_pretrained``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=224,
                  patch_size=32, projection_dim=projection_dim)
    torch.manual_seed(seed)
    if whole_model:
        text = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64,
                    bos_token_id=0, eos_token_id=1, pad_token_id=1)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim))
    else:
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision))
    model.save_pretrained(folder)
    return folder


def write_pyav_video(path: Path, *, width: int, height: int, fps: int, seconds: float, seed: int = 0) -> Path:
    """An H.264 video whose frames change every frame (a moving gradient plus noise), so that a
    frame chosen one too early or late, a shifted crop or another scaler changes the features."""
    import av

    rng = np.random.default_rng(seed)
    columns = np.linspace(0, 255, width)[None, :]
    rows = np.linspace(0, 255, height)[:, None]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(int(round(seconds * fps))):
            image = np.empty((height, width, 3), np.float64)
            image[..., 0] = (columns + 9 * index) % 256
            image[..., 1] = (rows + 5 * index) % 256
            image[..., 2] = (columns + rows + 13 * index) % 256
            image += rng.integers(0, 24, size=image.shape)
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
