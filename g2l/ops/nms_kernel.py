"""Greedy NMS as a numba loop over spans ranked best-first (the float32 conventions of
g2l/ops/spans.py, which calls it for long keep lists; short ones run there in numpy)."""

import numba
import numpy as np


@numba.njit(cache=True)
def greedy_nms(spans: np.ndarray, thresh: np.float32, max_keep: int) -> np.ndarray:  # pragma: no cover - jit
    num = spans.shape[0]
    keep = np.empty(num, dtype=np.int64)
    num_kept = 0
    for a in range(num):
        s_a = spans[a, 0]
        e_a = spans[a, 1]
        suppressed = False
        for n in range(num_kept):
            b = keep[n]
            inter = min(e_a, spans[b, 1]) - max(s_a, spans[b, 0])
            hull = max(e_a, spans[b, 1]) - min(s_a, spans[b, 0])
            if inter < 0:
                inter = np.float32(0.0)
            iou = inter / hull if hull > 0 else np.float32(0.0)
            if iou > thresh:
                suppressed = True
                break
        if not suppressed:
            keep[num_kept] = a
            num_kept += 1
            if num_kept == max_keep:
                break
    return keep[:num_kept]
