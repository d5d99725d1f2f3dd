"""Shared pieces of the benchmarks: the three public configurations, a model with a small random
text encoder, random batches of the public feature dimensions, and a timed training step.

Each measurement can run in a fresh subprocess (``run_isolated``) so that peak memory on the CPU
(the process's max RSS) belongs to one configuration alone.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# name -> (config file, videos per step, mean sentences per video in the real train split)
PUBLIC = {
    "charades": ("configs/charades.yaml", 48, 12404 / 5336),
    "activitynet": ("configs/activitynet.yaml", 48, 37417 / 10009),
    "tacos": ("configs/tacos.yaml", 8, 9790 / 75),
}


def small_text_backbone(hidden: int = 256, layers: int = 4):
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig(vocab_size=8000, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                                intermediate_size=4 * hidden, max_position_embeddings=64))


def build_bench_model(cfg, map_compute: str = "cropped"):
    """The model of ``cfg`` with the small text encoder. ``map_compute="full"``: its map encoder runs
    every layer on the whole padded grid (the computation the cropped map replaced: the same
    results, more cells), for train_step.py's baseline columns."""
    from g2l.models.grounding import GroundingModel
    from g2l.models.moment_map import MapEncoder, SparseMaxPool
    from g2l.models.text_encoder import TextEncoder
    from g2l.models.video_encoder import VideoEncoder

    m, d = cfg.model, cfg.data
    pool = SparseMaxPool(num_clips=m.num_clips, pooling_counts=m.pooling_counts)
    encoder = MapEncoder(hidden_dim=m.hidden_dim, joint_dim=m.joint_dim, kernel_size=m.map_kernel_size,
                         num_layers=m.map_num_layers, mask2d=pool.mask2d)
    if map_compute not in ("cropped", "full"):
        raise ValueError(f"map_compute must be 'cropped' or 'full', got {map_compute!r}")
    if map_compute == "full":
        encoder.forward = lambda map2d: _whole_grid(encoder, map2d)
    return GroundingModel(
        video_encoder=VideoEncoder(feature_dim=d.feature_dim, hidden_dim=m.hidden_dim, num_pre_clips=d.num_pre_clips,
                                   num_clips=m.num_clips),
        map_pool=pool,
        map_encoder=encoder,
        text_encoder=TextEncoder(backbone=small_text_backbone(), num_layers=m.text_num_layers, joint_dim=m.joint_dim),
    )


def _whole_grid(encoder, map2d: torch.Tensor):
    """``MapEncoder``'s layers as 2D-TAN writes them: conv, norm, ReLU, mask weight, on every cell."""
    for n, conv in enumerate(encoder.convs):
        map2d = torch.relu(encoder.norms[n](conv(map2d))) * getattr(encoder, f"mask_weight_{n}")
    return encoder.contrast_head(map2d), encoder.iou_head(map2d)


def random_batch(cfg, num_videos: int, sentences_per_video: float, seed: int = 0, tokens: int = 12):
    """A Batch of random features and windows; sentence counts alternate to match the mean."""
    import numpy as np

    from g2l.data.dataset import Batch
    from g2l.ops.spans import iou_map

    rng = np.random.default_rng(seed)
    low = math.floor(sentences_per_video)
    counts = [low + (rng.random() < sentences_per_video - low) for _ in range(num_videos)]
    counts = [max(c, 1) for c in counts]
    durations = rng.uniform(20, 120, num_videos).astype(np.float32)
    windows, ious = [], []
    for b, count in enumerate(counts):
        for _ in range(count):
            s, e = np.sort(rng.uniform(0, durations[b], 2))
            windows.append([s, max(e, s + 0.5)])
            ious.append(iou_map(windows[-1], float(durations[b]), cfg.model.num_clips))
    ious = np.stack(ious).astype(np.float32)
    q = len(windows)
    return Batch(
        video_ids=[f"v{b}" for b in range(num_videos)],
        durations_s=torch.from_numpy(durations),
        features=torch.from_numpy(rng.random((num_videos, cfg.data.num_pre_clips, cfg.data.feature_dim), np.float32)),
        sentences=["x"] * q,
        sentence_video=torch.repeat_interleave(torch.arange(num_videos), torch.tensor(counts)),
        sentence_mask=torch.ones(num_videos, max(counts), dtype=torch.bool),
        windows_s=torch.tensor(windows, dtype=torch.float32),
        gt_windows=[np.asarray(w, np.float32) for w in windows],
        iou_maps=torch.from_numpy(ious),
        input_ids=torch.randint(5, 8000, (q, tokens)),
        attention_mask=torch.ones(q, tokens, dtype=torch.long),
    )


def map_like_cells(num_videos: int, start_idx: torch.Tensor, end_idx: torch.Tensor, dim: int, seed: int = 0,
                   num_clips: int | None = None) -> torch.Tensor:
    """``(b C d)`` unit cell features shaped like a trained map's: the mean over [start, end] of a
    random walk of clip features, so that much of a map lies within the geodesic cut-off and, unlike
    an untrained model's max-pooled features, no two cells have tied similarities."""
    g = torch.Generator().manual_seed(seed)
    t = num_clips or int(end_idx.max()) + 1
    clips = torch.randn(1, 1, dim, generator=g) + 0.15 * torch.randn(num_videos, t, dim, generator=g).cumsum(dim=1)
    prefix = torch.cat([torch.zeros(num_videos, 1, dim), clips.cumsum(dim=1)], dim=1)  # (b t+1 d)
    start_idx, end_idx = start_idx.cpu(), end_idx.cpu()
    cells = (prefix[:, end_idx + 1] - prefix[:, start_idx]) / (end_idx - start_idx + 1)[None, :, None]
    return torch.nn.functional.normalize(cells, dim=-1)  # (b C d)


def measure_step(name: str, *, variant: str, hidden_dim: int, device: str, steps: int, warmup: int,
                 bf16: bool, videos: int | None = None, threads: int = 1, map_compute: str = "cropped",
                 kernels: str = "auto") -> dict:
    """Median seconds per training step (forward, loss, backward, clip, AdamW), peak memory, and the
    first step's losses. ``bf16``: the forward pass under bf16 autocast (CPU or CUDA); ``map_compute``:
    as in :func:`build_bench_model`."""
    from g2l.config import load_config
    from g2l.engine.optim import build_optimizer
    from g2l.losses.combine import build_loss

    if threads:
        torch.set_num_threads(threads)
    config_file, num_videos, sentences = PUBLIC[name]
    overrides = [f"model.hidden_dim={hidden_dim}"]
    if variant == "g2l":
        overrides += ["loss.sentence_contrast=gcl", f"loss.ssi_weight={0.0 if name == 'tacos' else 5e-4}"]
    cfg = load_config(REPO / config_file, overrides)
    dev = torch.device(device)
    torch.manual_seed(0)
    model = build_bench_model(cfg, map_compute).to(dev).train()
    loss_fn = build_loss(cfg, kernels=kernels)
    optimizer = build_optimizer(model, lr=cfg.train.lr, text_lr_scale=0.1, weight_decay=1e-5, betas=(0.9, 0.99))
    batch = random_batch(cfg, videos or num_videos, sentences).to(dev)
    times, first_losses = [], None
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for step in range(warmup + steps):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video)
        terms = loss_fn(out, batch, model.cell_start_idx, model.cell_end_idx, epoch=1)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if step >= warmup:
            times.append(time.perf_counter() - start)
        if first_losses is None:
            first_losses = {k: float(v.detach()) for k, v in terms.items()}
    times.sort()
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"config": name, "variant": variant, "device": device, "hidden_dim": hidden_dim,
            "videos": videos or num_videos, "sentences": int(batch.sentence_video.numel()),
            "step_s": times[len(times) // 2], "losses": first_losses, "map_compute": map_compute, "bf16": bf16, "kernels": kernels, "peak_bytes": int(peak), "peak_kind": "cuda allocated" if dev.type == "cuda" else "process max RSS"}


def run_isolated(kwargs: dict) -> dict:
    """``measure_step(**kwargs)`` in a fresh Python process; returns its result dict."""
    code = (f"import json, sys; sys.path.insert(0, {str(REPO / 'bench')!r}); from common import measure_step; "
            f"print('RESULT' + json.dumps(measure_step(**json.loads(sys.argv[1]))))")
    env = {**os.environ, "OMP_NUM_THREADS": str(kwargs.get("threads") or os.cpu_count())}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[6:])
    raise RuntimeError(f"benchmark subprocess failed:\n{proc.stderr[-2000:]}")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"
