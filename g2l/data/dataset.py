"""Videos as dataset items, each carrying all its sentences; the batch dataclass and its collate.

An item is one video: its ``(p, F)`` pre-clip features, its sentences, and per sentence the IoU
of every map cell with the ground truth, ``(s, t, t)``. Batching videos (not sentences) is what the
contrastive losses of MMN and G2L need: sentences of the same video are told apart by their
moments, and other videos' cells are negatives.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from g2l.data.annotations import AnnotationError, group_by_video, load_annotations
from g2l.data.features import FeatureError, VideoFeatures, check_coverage
from g2l.data.records import Annotation
from g2l.ops.spans import iou_map


@dataclass
class VideoItem:
    video_id: str
    duration_s: float
    features: np.ndarray  # (p, F) float32
    sentences: list[str]
    windows_s: np.ndarray  # (s, 2) float32, the primary window of each sentence
    gt_windows: list[np.ndarray]  # s arrays of (g, 2): every window of each sentence
    iou_maps: np.ndarray  # (s, t, t) float32 IoU of every cell with the primary window


class GroundingDataset(Dataset):
    """Videos of one split. Videos whose features are empty or of the wrong width are dropped and
    counted in ``dropped``; a video with no features at all is a FeatureError (see check_coverage).
    """

    def __init__(
        self,
        annotations: list[Annotation],
        features: VideoFeatures,
        *,
        num_clips: int,
        feature_dim: int | None = None,
        what: str = "the dataset",
    ):
        groups = group_by_video([a for a in annotations if a.windows_s])
        check_coverage(features, list(groups), what)
        self.features = features
        self.num_clips = num_clips
        self.dropped: Counter = Counter()
        self.videos: list[tuple[str, list[Annotation]]] = []
        for video_id, records in groups.items():
            shape = features.shape(video_id)
            if len(shape) != 2:
                self.dropped["features not a (T, F) array"] += len(records)
            elif shape[0] == 0:
                self.dropped["zero-length features"] += len(records)
            elif feature_dim is not None and shape[1] != feature_dim:
                self.dropped[f"feature width {shape[1]} != data.feature_dim {feature_dim}"] += len(records)
            else:
                self.videos.append((video_id, records))
        self.num_queries = sum(len(records) for _, records in self.videos)
        self.what = what

    def __len__(self) -> int:
        return len(self.videos)

    def summary(self) -> str:
        line = f"{self.what}: {len(self.videos)} videos, {self.num_queries} queries"
        if self.dropped:
            line += "; dropped " + ", ".join(f"{n} queries ({reason})" for reason, n in sorted(self.dropped.items()))
        return line

    def __getitem__(self, index: int) -> VideoItem:
        video_id, records = self.videos[index]
        duration_s = records[0].duration_s
        windows = np.asarray([r.windows_s[0] for r in records], dtype=np.float32)  # (s, 2)
        ious = np.stack([iou_map(w, duration_s, self.num_clips) for w in windows])  # (s, t, t)
        return VideoItem(
            video_id=video_id,
            duration_s=duration_s,
            features=self.features.load(video_id),
            sentences=[r.sentence for r in records],
            windows_s=windows,
            gt_windows=[np.asarray(r.windows_s, dtype=np.float32) for r in records],
            iou_maps=ious,
        )


@dataclass
class Batch:
    """A batch of ``b`` videos with ``q`` sentences in all.

    Sentences are flattened across videos; ``sentence_video[q]`` is the index of the video a
    sentence belongs to (sentences of a video are contiguous), and ``sentence_mask (b, s_max)``
    marks the real sentences of each video in the padded per-video view.
    """

    video_ids: list[str]
    durations_s: torch.Tensor  # (b,) float32
    features: torch.Tensor  # (b, p, F)
    sentences: list[str]  # q
    sentence_video: torch.Tensor  # (q,) long
    sentence_mask: torch.Tensor  # (b, s_max) bool
    windows_s: torch.Tensor  # (q, 2)
    gt_windows: list[np.ndarray]  # q arrays (g, 2), for evaluation
    iou_maps: torch.Tensor  # (q, t, t) raw IoU with the primary window (L_bce scales it into its target)
    input_ids: torch.Tensor | None = None  # (q, l)
    attention_mask: torch.Tensor | None = None  # (q, l), 1 on real tokens

    @property
    def num_videos(self) -> int:
        return len(self.video_ids)

    def pin_memory(self) -> "Batch":
        """The batch with its tensors in page-locked memory (a DataLoader with ``pin_memory=True`` calls
        this in its pinning thread), so that ``to(cuda, non_blocking=True)`` copies while the GPU computes."""
        return Batch(**{f.name: (getattr(self, f.name).pin_memory() if isinstance(getattr(self, f.name), torch.Tensor)
                                 else getattr(self, f.name)) for f in fields(self)})

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            moved[f.name] = value.to(device, non_blocking=non_blocking) if isinstance(value, torch.Tensor) else value
        return Batch(**moved)


class Collate:
    """Items -> Batch. Tokenises the sentences when given a tokenizer (so workers do it)."""

    def __init__(self, tokenizer=None, max_tokens: int = 64):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def __call__(self, items: list[VideoItem]) -> Batch:
        counts = [len(item.sentences) for item in items]
        sentence_mask = torch.zeros(len(items), max(counts), dtype=torch.bool)
        for b, count in enumerate(counts):
            sentence_mask[b, :count] = True
        ious = np.concatenate([item.iou_maps for item in items])  # (q, t, t)
        sentences = [s for item in items for s in item.sentences]
        batch = Batch(
            video_ids=[item.video_id for item in items],
            durations_s=torch.tensor([item.duration_s for item in items], dtype=torch.float32),
            features=torch.from_numpy(np.stack([item.features for item in items])),
            sentences=sentences,
            sentence_video=torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts)),
            sentence_mask=sentence_mask,
            windows_s=torch.from_numpy(np.concatenate([item.windows_s for item in items])),
            gt_windows=[w for item in items for w in item.gt_windows],
            iou_maps=torch.from_numpy(ious),
        )
        if self.tokenizer is not None:
            tokens = self.tokenizer(
                sentences, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            )
            batch.input_ids = tokens["input_ids"]
            batch.attention_mask = tokens["attention_mask"]
        return batch


def loader_workers(setting: int | str, device: torch.device, cpus: int | None = None) -> int:
    """``data.num_workers`` -> a worker count: a number as given; "auto" is min(4, CPUs - 1) for a run
    on CUDA (reading and collating overlap the GPU's step, tens of times shorter than a CPU's) and 0
    on a CPU-only run, where workers would take cores from the step itself while the loop waits for
    data less than 1% of an epoch (``bench/epoch_cost.py --preset activitynet --videos 96``: 0.7%
    for MMN and G2L at width 64 with the loader in the training process)."""
    if setting != "auto":
        return int(setting)
    if device.type != "cuda":
        return 0
    if cpus is None:
        import os

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cpus - 1))


def build_dataset(data_cfg, split: str, num_clips: int) -> tuple[GroundingDataset, str]:
    """The dataset of ``split`` ("train", "val" or "test") from the data config, and a report line
    saying what was read, dropped and clamped."""
    from g2l.config import ConfigError

    path = getattr(data_cfg, f"{split}_annotations", None)
    if path is None:
        raise ConfigError(f"unknown split '{split}'; use train, val or test")
    if not path:
        raise ConfigError(f"data.{split}_annotations is not set; point it at the {split} annotation file")
    annotations, report = load_annotations(
        Path(path), data_cfg.annotation_format or None, durations_csv=data_cfg.durations_csv or None
    )
    features = VideoFeatures(data_cfg.features, data_cfg.feature_key, data_cfg.num_pre_clips)
    dataset = GroundingDataset(
        annotations, features, num_clips=num_clips, feature_dim=data_cfg.feature_dim, what=f"{split} split"
    )
    if len(dataset) == 0:  # checked before any training or evaluation, so nothing is half-written
        if dataset.dropped:
            raise FeatureError(f"the {split} split has no video with usable features ({dataset.summary()}); "
                               "fix data.features or data.feature_dim")
        raise AnnotationError(f"the {split} split has no usable query ({report.summary()}); fix data.{split}_annotations")
    return dataset, f"{report.summary()}\n{dataset.summary()}"
