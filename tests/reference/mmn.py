"""MMN's published evaluation (the 2D-TAN recall protocol), ported as an independent, slow reference
that g2l/ops/spans.py and g2l/eval/metrics.py must equal (tests/ops/test_spans.py,
tests/eval/test_metrics.py).

Source: https://github.com/MCG-NJU/MMN, ``mmn/data/datasets/utils.py`` (``iou``,
``score2d_to_moments_scores``) and ``mmn/data/datasets/evaluation.py`` (``nms``, the recall loop of
``evaluate``). It follows the published functions line by line, with one change: the descending sort
is stable, so that equal scores have a defined order (the published ``torch.sort`` leaves it
unspecified). Test code only: nothing in g2l or bench imports it.
"""

import numpy as np
import torch


def iou(candidates, gt):
    start, end = candidates[:, 0], candidates[:, 1]
    s, e = gt[0].float(), gt[1].float()
    inter = end.min(e) - start.max(s)
    union = end.max(e) - start.min(s)
    return inter.clamp(min=0) / union


def score2d_to_moments_scores(score2d, num_clips, duration):
    grids = score2d.nonzero()
    scores = score2d[grids[:, 0], grids[:, 1]]
    grids[:, 1] += 1
    moments = grids * duration / num_clips
    return moments, scores


def nms(moments, scores, thresh):
    scores, ranks = scores.sort(descending=True, stable=True)
    moments = moments[ranks]
    suppressed = torch.zeros_like(ranks).bool()
    numel = suppressed.numel()
    for i in range(numel - 1):
        if suppressed[i]:
            continue
        mask = iou(moments[i + 1:], moments[i]) > thresh
        suppressed[i + 1:][mask] = True
    return moments[~suppressed]


def evaluate(score_maps, durations, gts, nms_thresh, recall_metrics=(1, 5), iou_metrics=(0.3, 0.5, 0.7)):
    iou_metrics_t = torch.tensor(iou_metrics)
    recall_x_iou = torch.zeros(len(recall_metrics), len(iou_metrics))
    miou = 0.0
    for score2d, duration, gt in zip(score_maps, durations, gts):
        score2d = torch.as_tensor(score2d)
        num_clips = score2d.shape[-1]
        candidates, scores = score2d_to_moments_scores(score2d, num_clips, duration)
        moments = nms(candidates, scores, nms_thresh)
        gt = torch.tensor(gt, dtype=torch.float32)
        for i, r in enumerate(recall_metrics):
            mious = iou(moments[:r], gt)
            bools = mious[:, None].expand(min(r, len(mious)), len(iou_metrics)) >= iou_metrics_t
            recall_x_iou[i] += bools.any(dim=0)
        miou += float(iou(moments[:1], gt)[0])
    recall_x_iou /= len(score_maps)
    out = {f"R{r}@{m:g}": float(recall_x_iou[i, j]) for i, r in enumerate(recall_metrics) for j, m in enumerate(iou_metrics)}
    out["mIoU"] = miou / len(score_maps)
    return out


def scale_iou(iou: np.ndarray, iou_min: float, iou_max: float) -> np.ndarray:
    """The training target ``clamp((IoU - t_min) / (t_max - t_min), 0, 1)`` as MMN's dataset builds it in numpy
    (the BCE term builds it on the device, g2l/losses/bce.py, and must equal this bit for bit)."""
    return np.clip((iou - np.float32(iou_min)) / np.float32(iou_max - iou_min), 0.0, 1.0).astype(np.float32)
