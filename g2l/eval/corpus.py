"""Corpus moment retrieval (TVR convention): every query against every moment of every video of a split.

g2l's score of a moment is ``score_cells(c, u)`` (docs/method.md section 1), with ``c, u`` the
cosines of the sentence's ``s^c, s^u`` and the cell's ``m^c, m^u``. Cell features do not depend
on the sentence, so a split is encoded once (``encode_split``: ``v`` videos' ``(v C d)`` cells and
``q`` queries' ``(q d)`` sentences) and the scores of a chunk of queries against all videos are
two matrix products, ``(q v C)``.

Metrics (``corpus_metrics``), fractions in [0, 1]:

* ``corpus_R{k}@{m}``: each video's cells ranked and NMS'd as in single-video evaluation
  (g2l/ops/spans.py ``rank_moments``), the lists of all videos merged by score (ties: lower
  video index first, then the video's own order); a hit when one of the first ``k`` is from the
  query's own video with float32 IoU >= ``m`` against its ground truth.
* ``video_R{k}``: videos ranked by their best cell's score (ties: lower index first); a hit when
  the query's own video is among the first ``k``.
* ``R{k}@{m}``, ``mIoU``: single-video metrics (the query's own video only), for reference.

Only the first ``max(k)`` videos by best score can place a moment in the merged top ``max(k)``
(each of them holds a better or equal first candidate), so NMS runs on those and the own video.
Per query the leave-one-video-out scores are kept for g2l/eval/match.py: ``present`` (the best
score over all videos) and ``absent`` (over all videos but its own, and but every other video
annotated with the same sentence, case and surrounding spaces aside: a library that truly lacks
the answer as far as the annotations know; a sentence in every video has no ``absent``, -inf).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from g2l.eval.metrics import candidate_ious, grounding_metrics, metric_key
from g2l.models.grounding import score_cells
from g2l.ops.spans import F32, best_first, cells_to_spans, rank_moments

CORPUS_RECALL_AT = (1, 5, 10, 100)
CORPUS_IOU_THRESHOLDS = (0.5, 0.7)
VIDEO_RECALL_AT = (1, 10)
CHUNK_SCORES = 1 << 24  # floats of one chunk's (q v C) score tensor (64 MB)


@dataclass
class SplitEmbeddings:
    """A split encoded once: the normalised cell features of its videos and sentence features of its queries."""

    video_ids: list[str]
    durations_s: np.ndarray  # (v,) float32
    cells_contrast: torch.Tensor  # (v C d) m^c
    cells_iou: torch.Tensor  # (v C d) m^u
    cell_start_idx: np.ndarray  # (C,) row-major cells of mask2d
    cell_end_idx: np.ndarray  # (C,)
    num_clips: int
    queries: list[str]
    sentence_contrast: torch.Tensor  # (q d) s^c
    sentence_iou: torch.Tensor  # (q d) s^u
    query_video: np.ndarray  # (q,) index of each query's own video
    gt_windows: list[np.ndarray]  # q arrays (g, 2)

    def spans(self, video: int) -> np.ndarray:
        """``(C, 2)`` float32 seconds of every cell of ``video``."""
        return cells_to_spans(self.cell_start_idx, self.cell_end_idx, float(self.durations_s[video]), self.num_clips)


@dataclass
class CorpusResult:
    metrics: dict  # corpus_R*, video_R*, R*@*, mIoU, num_queries, num_videos
    present: np.ndarray  # (q,) best score over all videos
    absent: np.ndarray  # (q,) best score over the videos not annotated with the query's sentence, or -inf


@torch.inference_mode()
def encode_split(model, dataset, *, device: torch.device, batch_size: int, max_tokens: int = 64,
                 num_workers: int = 0, progress: bool = False) -> SplitEmbeddings:
    """Run ``model`` over every video and sentence of ``dataset`` once (float32, one process)."""
    from torch.utils.data import DataLoader

    from g2l.data.dataset import Collate

    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=Collate(model.tokenizer, max_tokens))
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="encode", leave=False, dynamic_ncols=True)
    video_ids, durations, cells_c, cells_u, queries, sent_c, sent_u, query_video, gts = [], [], [], [], [], [], [], [], []
    for batch in loader:
        batch = batch.to(device)
        c_c, c_u = model.encode_video(batch.features)  # (b C d)
        s_c, s_u = model.encode_text(batch.input_ids, batch.attention_mask)  # (s d)
        query_video.append(batch.sentence_video.cpu().numpy() + len(video_ids))
        video_ids += batch.video_ids
        durations.append(batch.durations_s.cpu().numpy())
        cells_c.append(c_c.float().cpu())
        cells_u.append(c_u.float().cpu())
        sent_c.append(s_c.float().cpu())
        sent_u.append(s_u.float().cpu())
        queries += batch.sentences
        gts += batch.gt_windows
    model.train(was_training)
    return SplitEmbeddings(
        video_ids=video_ids, durations_s=np.concatenate(durations).astype(F32),
        cells_contrast=torch.cat(cells_c), cells_iou=torch.cat(cells_u),
        cell_start_idx=model.cell_start_idx.cpu().numpy(), cell_end_idx=model.cell_end_idx.cpu().numpy(),
        num_clips=model.num_clips, queries=queries, sentence_contrast=torch.cat(sent_c),
        sentence_iou=torch.cat(sent_u), query_video=np.concatenate(query_video).astype(np.int64), gt_windows=gts,
    )


def corpus_scores(sentence_contrast: torch.Tensor, sentence_iou: torch.Tensor, cells_contrast: torch.Tensor,
                  cells_iou: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(q d)`` sentences against the ``(v C d)`` cells of every video -> ``(q v C)`` scores."""
    contrast_cos = torch.einsum("qd,vcd->qvc", sentence_contrast, cells_contrast)
    iou_cos = torch.einsum("qd,vcd->qvc", sentence_iou, cells_iou)
    return score_cells(contrast_cos, iou_cos, gamma).float()


def _video_rank(video_best: np.ndarray, own: int) -> int:
    """0-based rank of video ``own`` among ``video_best (v,)``, best first, ties to the lower index."""
    own_score = video_best[own]
    return int((video_best > own_score).sum() + (video_best[:own] == own_score).sum())


def corpus_metrics(
    embeddings: SplitEmbeddings,
    *,
    gamma: float,
    nms_thresh: float,
    recall_at: Sequence[int] = CORPUS_RECALL_AT,
    iou_thresholds: Sequence[float] = CORPUS_IOU_THRESHOLDS,
    video_recall_at: Sequence[int] = VIDEO_RECALL_AT,
    single_recall_at: Sequence[int] = (1, 5),
    single_iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
    chunk_scores: int = CHUNK_SCORES,
) -> CorpusResult:
    """Corpus, video-retrieval and single-video metrics of a split (module docstring)."""
    e = embeddings
    num_videos, num_cells = e.cells_contrast.shape[:2]
    num_queries = len(e.queries)
    max_k = max(recall_at)
    single_keep = max(single_recall_at)
    thresholds = np.asarray(iou_thresholds, dtype=F32)
    spans = [e.spans(v) for v in range(num_videos)]
    hits = np.zeros((len(recall_at), len(thresholds)), dtype=np.int64)
    video_hits = np.zeros(len(video_recall_at), dtype=np.int64)
    own_candidates: list[np.ndarray] = []
    present = np.zeros(num_queries, dtype=np.float64)
    absent = np.full(num_queries, -np.inf, dtype=np.float64)
    annotated_in: dict[str, set[int]] = {}
    for q, sentence in enumerate(e.queries):
        annotated_in.setdefault(sentence.strip().lower(), set()).add(int(e.query_video[q]))
    chunk = max(1, chunk_scores // max(num_videos * num_cells, 1))
    for first in range(0, num_queries, chunk):
        rows = slice(first, min(first + chunk, num_queries))
        scores = corpus_scores(e.sentence_contrast[rows], e.sentence_iou[rows], e.cells_contrast, e.cells_iou,
                               gamma).numpy()  # (q v C)
        video_best = scores.max(axis=2)  # (q v)
        for offset in range(scores.shape[0]):
            q = first + offset
            own = int(e.query_video[q])
            best = video_best[offset]
            present[q] = best.max()
            elsewhere = np.delete(best, sorted(annotated_in[e.queries[q].strip().lower()]))
            if elsewhere.size:
                absent[q] = elsewhere.max()
            rank = _video_rank(best, own)
            video_hits += np.asarray([rank < k for k in video_recall_at])
            # Merged list: (score, video, rank in video) of the candidates of the top videos and the own one.
            videos = best_first(best)[:max_k]
            floor = best[videos[-1]] if len(videos) == max_k else -np.inf  # nothing below it reaches the top max_k
            if own not in videos:
                videos = np.append(videos, own)
            merged = []
            for v in videos:
                ranked = rank_moments(scores[offset, v], spans[v], nms_thresh, max(max_k, single_keep if v == own else 0))
                if v == own:
                    own_candidates.append(ranked.spans[:single_keep])
                    ious = candidate_ious(ranked.spans[:max_k], e.gt_windows[q], max_k)
                else:
                    ious = np.full(min(len(ranked.index), max_k), -1.0, dtype=F32)  # another video never hits
                merged += [(-float(score), int(v), r, float(iou))
                           for r, (score, iou) in enumerate(zip(ranked.scores, ious)) if score >= floor]
            merged.sort(key=lambda item: item[:3])
            top_iou = np.asarray([item[3] for item in merged[:max_k]], dtype=F32)
            for r, k in enumerate(recall_at):
                hits[r] += (top_iou[:k, None] >= thresholds[None, :]).any(axis=0)
    n = max(num_queries, 1)
    metrics = {f"corpus_{metric_key(k, float(m))}": float(hits[r, c]) / n
               for r, k in enumerate(recall_at) for c, m in enumerate(iou_thresholds)}
    metrics.update({f"video_R{k}": float(video_hits[r]) / n for r, k in enumerate(video_recall_at)})
    metrics.update(grounding_metrics(own_candidates, e.gt_windows, single_recall_at, single_iou_thresholds))
    metrics["num_videos"] = num_videos
    return CorpusResult(metrics, present, absent)


def format_corpus_table(metrics: dict, recall_at: Sequence[int] = CORPUS_RECALL_AT,
                        iou_thresholds: Sequence[float] = CORPUS_IOU_THRESHOLDS,
                        video_recall_at: Sequence[int] = VIDEO_RECALL_AT) -> str:
    """Corpus R@k (and the single-video R@k beside it where it was computed), video retrieval, in percent."""
    header = "        " + "".join(f"  corpus IoU={m:<5g}  single IoU={m:<5g}" for m in iou_thresholds)
    rows = [header]
    for k in recall_at:
        cells = ""
        for m in iou_thresholds:
            single = metrics.get(metric_key(k, m))
            cells += f"  {100 * metrics[f'corpus_{metric_key(k, m)}']:16.2f}" + (
                f"  {100 * single:16.2f}" if single is not None else f"  {'-':>16}")
        rows.append(f"R@{k:<5d}{cells}")
    rows.append("video retrieval  " + "  ".join(f"R@{k} {100 * metrics[f'video_R{k}']:.2f}" for k in video_recall_at)
                + f"    ({metrics.get('num_queries', 0)} queries, {metrics.get('num_videos', 0)} videos)")
    return "\n".join(rows)


def evaluate_corpus(model, dataset, cfg, device, *, progress: bool = False) -> CorpusResult:
    """Corpus metrics of ``model`` on ``dataset`` with ``cfg.eval``'s score and NMS; the single-video
    metrics at the corpus ranks and thresholds and at ``cfg.eval``'s."""
    e = cfg.eval
    embeddings = encode_split(model, dataset, device=torch.device(device), batch_size=e.batch_size,
                              max_tokens=cfg.model.text_max_tokens, progress=progress)
    return corpus_metrics(embeddings, gamma=e.score_gamma, nms_thresh=e.nms_thresh,
                          single_recall_at=sorted(set(e.recall_at) | set(CORPUS_RECALL_AT)),
                          single_iou_thresholds=sorted(set(e.iou_thresholds) | set(CORPUS_IOU_THRESHOLDS)))


def corpus_checkpoint(checkpoint: str, *, split: str | None = None, overrides: list[str] | None = None,
                      device: str = "auto", nms_thresh: float | None = None):
    """``g2l-eval --corpus``: ``(CorpusResult, split, payload)`` of a checkpoint (a file, an exported
    folder or a hub repo id) on a split (default: the config's eval split)."""
    import sys

    from g2l.data.dataset import build_dataset
    from g2l.engine.distributed import resolve_device
    from g2l.models.checkpoint import model_from_checkpoint
    from g2l.models.checkpoint import load_model_source

    torch_device = resolve_device(device, setting="device")
    payload, _ = load_model_source(checkpoint)
    extra = list(overrides or []) + ([f"eval.nms_thresh={nms_thresh}"] if nms_thresh is not None else [])
    model, cfg = model_from_checkpoint(payload, str(checkpoint), extra)
    split = split or cfg.data.eval_split
    dataset, report = build_dataset(cfg.data, split, cfg.model.num_clips)
    print(report, file=sys.stderr)
    return evaluate_corpus(model.to(torch_device), dataset, cfg, torch_device, progress=True), split, payload
