"""The Numba kernels leave torch's thread setting as the caller set it (they share one OpenMP
runtime), and run on no more threads than torch may use."""

import numpy as np
import torch

from g2l.ops.geodesic import geodesic_closeness_batch
from g2l.ops.shapley import pairwise_interaction_batch


def test_kernels_keep_torch_threads():
    previous = torch.get_num_threads()
    rng = np.random.default_rng(0)
    try:
        torch.set_num_threads(1)
        feats = torch.nn.functional.normalize(torch.randn(3, 40, 8), dim=-1)
        geodesic_closeness_batch(feats, [[0, 3], [5], [7, 9]], knn="lazy")
        assert torch.get_num_threads() == 1
        geodesic_closeness_batch(feats, [[0, 3], [5], [7, 9]], knn="dense")
        assert torch.get_num_threads() == 1
        pairwise_interaction_batch([rng.normal(size=(3, 8)), rng.normal(size=(2, 6))], num_samples=16, seed=0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
