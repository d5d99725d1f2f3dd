"""The grounding model: video encoder, sparse 2D map, map encoder, text encoder, and the score.

Only the valid cells of the map are carried past the map encoder: ``C`` cells in row-major order
of ``mask2d`` (``cell_start_idx[c], cell_end_idx[c]``). ``to_map`` scatters ``(q C)`` values
back to ``(q t t)`` with zeros on invalid cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from g2l.models.moment_map import MapEncoder, SparseMaxPool
from g2l.models.text_encoder import TextEncoder
from g2l.models.video_encoder import VideoEncoder

# The IoU branch's logit is IOU_LOGIT_SCALE * cos(s^u, m^u): the score's sigmoid(10 u) (docs/method.md
# sections 1 and 3) and L_bce's logits, as in MMN's code (its IoU score is sigmoid(10 cos)). Fixed by
# the method, not a setting: a trained model's scores mean nothing at another scale.
IOU_LOGIT_SCALE = 10


@dataclass
class GroundingOutput:
    """Named outputs; every feature is L2-normalised over its last axis."""

    cell_contrast: torch.Tensor  # (b C d) m^c on valid cells
    cell_iou: torch.Tensor  # (b C d) m^u on valid cells
    sentence_contrast: torch.Tensor  # (q d) s^c
    sentence_iou: torch.Tensor  # (q d) s^u
    contrast_cos: torch.Tensor  # (q C) c: cos(s^c_q, m^c of its own video's cells)
    iou_cos: torch.Tensor  # (q C) u: cos(s^u_q, m^u of its own video's cells)


def per_video_cosine(sentences: torch.Tensor, cells: torch.Tensor, sentence_video: torch.Tensor,
                     max_sentences: int | None = None) -> torch.Tensor:
    """``(q d)`` sentences against the ``(b C d)`` cells of their own video -> ``(q C)``.

    One batched matmul over videos with sentences padded per video, so the ``(q d t t)`` gather of
    whole maps is never formed. ``max_sentences``: the most sentences of a video when the host knows
    it (the batch's ``sentence_mask.shape[1]``), else read from the device (a sync on CUDA).
    """
    b = cells.shape[0]
    counts = torch.bincount(sentence_video, minlength=b)
    s_max = int(counts.max()) if max_sentences is None else max_sentences
    position = torch.arange(sentence_video.shape[0], device=sentences.device) - (
        torch.cumsum(counts, 0) - counts)[sentence_video]  # (q,) within its video
    padded = sentences.new_zeros(b, s_max, sentences.shape[1])
    padded[sentence_video, position] = sentences
    cos = torch.bmm(padded, rearrange(cells, "b c d -> b d c"))  # (b s_max C)
    return cos[sentence_video, position]


class GroundingModel(nn.Module):
    def __init__(
        self,
        *,
        video_encoder: VideoEncoder,
        map_pool: SparseMaxPool,
        map_encoder: MapEncoder,
        text_encoder: TextEncoder,
    ):
        super().__init__()
        self.video_encoder = video_encoder
        self.map_pool = map_pool
        self.map_encoder = map_encoder
        self.text_encoder = text_encoder
        self.tokenizer = None  # set by build_model; not part of the state dict
        mask2d = map_pool.mask2d
        start_idx, end_idx = torch.nonzero(mask2d, as_tuple=True)
        self.register_buffer("cell_start_idx", start_idx, persistent=False)
        self.register_buffer("cell_end_idx", end_idx, persistent=False)

    @property
    def mask2d(self) -> torch.Tensor:
        return self.map_pool.mask2d

    @property
    def num_clips(self) -> int:
        return self.map_pool.num_clips

    def encode_video(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(b p F)`` -> normalised valid-cell features ``m^c, m^u``, each ``(b C d)``."""
        map2d = self.map_pool(self.video_encoder(features))  # (b H t t)
        map_contrast, map_iou = self.map_encoder(map2d)  # (b d t t)
        cells_c = rearrange(map_contrast[:, :, self.cell_start_idx, self.cell_end_idx], "b d c -> b c d")
        cells_u = rearrange(map_iou[:, :, self.cell_start_idx, self.cell_end_idx], "b d c -> b c d")
        return F.normalize(cells_c.float(), dim=-1), F.normalize(cells_u.float(), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    position_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q l)`` tokens -> normalised ``s^c, s^u``, each ``(q d)``."""
        s_c, s_u = self.text_encoder(input_ids, attention_mask, position_ids)
        return F.normalize(s_c.float(), dim=-1), F.normalize(s_u.float(), dim=-1)

    def forward(
        self,
        features: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        sentence_video: torch.Tensor,
        max_sentences: int | None = None,  # the most sentences of a video, if known on the host
    ) -> GroundingOutput:
        cell_c, cell_u = self.encode_video(features)
        s_c, s_u = self.encode_text(input_ids, attention_mask)
        return GroundingOutput(
            cell_contrast=cell_c,
            cell_iou=cell_u,
            sentence_contrast=s_c,
            sentence_iou=s_u,
            contrast_cos=per_video_cosine(s_c, cell_c, sentence_video, max_sentences),
            iou_cos=per_video_cosine(s_u, cell_u, sentence_video, max_sentences),
        )

    def to_map(self, cell_values: torch.Tensor) -> torch.Tensor:
        """``(q C)`` -> ``(q t t)``, zero on invalid cells."""
        t = self.num_clips
        out = cell_values.new_zeros(cell_values.shape[0], t, t)
        out[:, self.cell_start_idx, self.cell_end_idx] = cell_values
        return out


def score_cells(contrast_cos: torch.Tensor, iou_cos: torch.Tensor, gamma: float) -> torch.Tensor:
    """The inference score ``(0.5 c + 0.5) ** gamma * sigmoid(10 u)`` of docs/method.md section 1."""
    return (0.5 * contrast_cos + 0.5).clamp(min=0) ** gamma * torch.sigmoid(IOU_LOGIT_SCALE * iou_cos)


def build_model(cfg, *, text_spec: dict | None = None, source: str = "the checkpoint",
                for_checkpoint: bool = False) -> GroundingModel:
    """Config -> model. ``text_spec`` (from a checkpoint) rebuilds the text backbone offline;
    ``for_checkpoint`` (the model will be loaded from a checkpoint, not trained) uses g2l's own BERT
    where it is exact, which loads without importing transformers."""
    from g2l.models.text_encoder import checkpoint_text_backbone, load_text_backbone, text_backbone_from_files

    m, d = cfg.model, cfg.data
    if for_checkpoint:
        backbone, tokenizer = checkpoint_text_backbone(text_spec, m.text_encoder, source)
    elif text_spec is not None:
        backbone, tokenizer = text_backbone_from_files(text_spec, source)
    else:
        backbone, tokenizer = load_text_backbone(m.text_encoder)
    map_pool = SparseMaxPool(num_clips=m.num_clips, pooling_counts=m.pooling_counts)
    model = GroundingModel(
        video_encoder=VideoEncoder(
            feature_dim=d.feature_dim, hidden_dim=m.hidden_dim, num_pre_clips=d.num_pre_clips, num_clips=m.num_clips
        ),
        map_pool=map_pool,
        map_encoder=MapEncoder(
            hidden_dim=m.hidden_dim, joint_dim=m.joint_dim, kernel_size=m.map_kernel_size,
            num_layers=m.map_num_layers, mask2d=map_pool.mask2d,
        ),
        text_encoder=TextEncoder(backbone=backbone, num_layers=m.text_num_layers, joint_dim=m.joint_dim),
    )
    model.tokenizer = tokenizer
    return model
