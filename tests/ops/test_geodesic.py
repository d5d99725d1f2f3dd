"""Geodesic closeness against an independent reference: the full kNN graph built with numpy and
``scipy.sparse.csgraph.dijkstra(limit=cutoff)`` (docs/method.md section 3, "Geodesic closeness G")."""

import numba
import numpy as np
import pytest
import torch

from g2l.ops.geodesic import geodesic_closeness_batch, knn_graph
from tests.reference.geodesic_closeness import (
    assert_matches,
    dyadic_features,
    map_features,
    reference_closeness,
    reference_graph,
)
from tests.support.geodesic_kernels import closeness_on_graph, one_video_closeness


# ---------------------------------------------------------------------------------------------
# Agreement with scipy
# ---------------------------------------------------------------------------------------------

# (knn, kernels): the Numba Dijkstra with lazy or dense kNN rows, and the torch kernels (dense)
KERNELS = [("lazy", "numba"), ("dense", "numba"), ("dense", "torch")]

CASES = {
    # name: (features factory, number of sources, seed); seeds chosen so that no settled row has
    # a near-tie (checked by the reference)
    "gauss-p50-d3": (lambda rng: rng.standard_normal((50, 3)).astype(np.float32), 4, 0),
    "gauss-p400-d8": (lambda rng: rng.standard_normal((400, 8)).astype(np.float32), 6, 0),
    "gauss-p2548-d256": (lambda rng: rng.standard_normal((2548, 256)).astype(np.float32), 8, 0),
    "map-p136-noisy": (lambda rng: map_features(16, 32, 0.9, 0.5, rng), 3, 0),
    "map-p1104-noisy": (lambda rng: map_features(64, 64, 0.9, 0.5, rng), 5, 0),
    # most of the map within the cut-off: exercises the pivot bounds of the lazy kernel
    "map-p2548-smooth": (lambda rng: map_features(128, 256, 0.9, 0.0, rng), 8, 3),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("knn,kernels", KERNELS)
def test_matches_scipy_dijkstra(name, knn, kernels):
    make, num_sources, seed = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)) + seed)
    features = make(rng)
    sources = rng.choice(len(features), size=num_sources, replace=False)
    G_ref, dist_ref = reference_closeness(features, sources, k=5, cutoff=0.5, min_margin=1e-6)
    G = one_video_closeness(features, sources, k=5, cutoff=0.5, knn=knn, kernels=kernels)
    assert isinstance(G, np.ndarray) and G.dtype == np.float32 and G.shape == (num_sources, len(features))
    assert_matches(G, G_ref, dist_ref, 0.5)


@pytest.mark.parametrize("k,cutoff", [(3, 0.3), (8, 1.0), (5, 0.1)])
def test_lazy_pivot_bounds_other_k_and_cutoff(k, cutoff):
    """Smooth map features (the pivot bounds prune most candidates) at other k and cut-offs."""
    rng = np.random.default_rng(100)
    features = map_features(64, 64, 0.9, 0.0, rng)
    sources = rng.choice(len(features), size=6, replace=False)
    G_ref, dist_ref = reference_closeness(features, sources, k=k, cutoff=cutoff, min_margin=1e-6)
    assert_matches(one_video_closeness(features, sources, k=k, cutoff=cutoff), G_ref, dist_ref, cutoff)


@pytest.mark.parametrize("k,cutoff", [(1, 0.5), (3, 0.25), (5, 0.5), (8, 1.0)])
@pytest.mark.parametrize("p", [40, 100])
@pytest.mark.parametrize("knn,kernels", KERNELS)
def test_exact_ties_and_boundary(k, cutoff, p, knn, kernels):
    """Exactly representable similarities: duplicates, equal candidates decided by the lower
    index, zero-cost edges, paths of length exactly the cut-off (reachable). Exact equality."""
    rng = np.random.default_rng(7 * k)
    features = np.concatenate([dyadic_features(p, rng), np.zeros((1, 4), np.float32)])  # + a zero row
    sources = np.array([0, 17, 23, p])
    G_ref, _ = reference_closeness(features, sources, k=k, cutoff=cutoff)
    G = one_video_closeness(features, sources, k=k, cutoff=cutoff, knn=knn, kernels=kernels)
    np.testing.assert_array_equal(G, G_ref.astype(np.float32))
    assert set(np.unique(G).tolist()) <= {0.0, 0.5, 1.0}  # costs are multiples of 0.5


@pytest.mark.parametrize("kernels", ["numba", "torch"])
def test_distance_equal_to_cutoff_is_reachable(kernels):
    # cos(a, b) = 0.5 exactly, so the edge a -> b costs exactly 0.5.
    features = np.array([[1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5], [0, 0, 0, 1], [0, 0, 1, 0]], np.float32)
    G = one_video_closeness(features, [0], k=1, cutoff=0.5, kernels=kernels)
    np.testing.assert_array_equal(G, [[1.0, 0.5, 0.0, 0.0]])
    G = one_video_closeness(features, [0], k=1, cutoff=0.4999, kernels=kernels)
    np.testing.assert_array_equal(G, [[1.0, 0.0, 0.0, 0.0]])


def test_tie_rule_picks_lower_index():
    # Cells 1..4 are copies of one vector at cos 0.75 from cell 0; with k = 2, cell 0's
    # neighbours are 1 and 2. Cell 5 is far from everything.
    v = np.array([0.5, 0.5, 0.5, 0.5], np.float32)
    features = np.stack([np.array([1, 0, 0, 0], np.float32) * 0.5 + v * 0.5, v, v, v, v,
                         np.array([0, 0, 0, -1], np.float32)])
    idx, _ = knn_graph(torch.from_numpy(features)[None], k=2)
    ref_idx, _, _ = reference_graph(features, 2)
    np.testing.assert_array_equal(idx[0], ref_idx)
    assert set(idx[0, 0]) == {1, 2} and list(idx[0, 1]) == [2, 3]


def test_properties_of_G():
    rng = np.random.default_rng(3)
    features = map_features(64, 64, 0.9, 0.3, rng)
    sources = rng.choice(len(features), size=6, replace=False)
    cutoff = 0.4
    G = one_video_closeness(features, sources, k=5, cutoff=cutoff)
    np.testing.assert_array_equal(G[np.arange(6), sources], 1.0)
    nonzero = G[G > 0]
    assert nonzero.min() >= 1 - cutoff - 1e-6 and nonzero.max() <= 1.0
    assert (G > 0).sum() > 6  # the fixture reaches more than the sources


# ---------------------------------------------------------------------------------------------
# Batch entry point, types, threads
# ---------------------------------------------------------------------------------------------


def test_batch_equals_per_video_calls():
    rng = np.random.default_rng(11)
    p, d = 136, 16
    features = np.stack([map_features(16, d, 0.9, 0.4, rng) for _ in range(4)])  # (b C d)
    valid = np.ones((4, p), dtype=bool)
    valid[1, rng.choice(p, 30, replace=False)] = False
    valid[3, 100:] = False
    sources = []
    for v in range(4):
        cells = np.nonzero(valid[v])[0]
        sources.append(rng.choice(cells, size=[3, 1, 0, 2][v], replace=False))
    for knn, kernels in KERNELS:
        G = geodesic_closeness_batch(features, sources, valid=valid, knn=knn, kernels=kernels)
        assert G.shape == (6, p)
        row = 0
        for v in range(4):
            cells = np.nonzero(valid[v])[0]
            local = np.searchsorted(cells, sources[v])
            for s in range(len(sources[v])):
                expected = np.zeros(p, np.float32)
                if len(local):
                    expected[cells] = one_video_closeness(features[v, cells], local, knn=knn, kernels=kernels)[s]
                np.testing.assert_allclose(G[row], expected, rtol=0, atol=0 if knn == "lazy" else 1e-6)
                row += 1
        assert not G[:, ~valid.any(axis=0)].any()


def test_torch_in_torch_out_and_thread_count_independence():
    rng = np.random.default_rng(5)
    features = torch.from_numpy(np.stack([map_features(16, 8, 0.8, 0.3, rng) for _ in range(6)]))
    sources = [torch.tensor([0, 5]), torch.tensor([7]), torch.tensor([3, 9, 100])] * 2
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = geodesic_closeness_batch(features.requires_grad_(), sources)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = geodesic_closeness_batch(features, sources)
    finally:
        numba.set_num_threads(before)
    assert isinstance(one, torch.Tensor) and one.dtype == torch.float32 and not one.requires_grad
    assert one.shape == (12, 136)
    torch.testing.assert_close(one, many, rtol=0, atol=0)


def test_closeness_from_given_graph():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((200, 3)).astype(np.float32)
    idx, cost = knn_graph(torch.from_numpy(features)[None], k=4)
    G = closeness_on_graph(idx, cost, [np.array([0, 1])], cutoff=0.5)
    np.testing.assert_array_equal(G, one_video_closeness(features, [0, 1], k=4, knn="dense"))
    ref_idx, ref_cost, _ = reference_graph(features, 4)
    np.testing.assert_array_equal(idx[0], ref_idx)
    np.testing.assert_allclose(cost[0], ref_cost, rtol=0, atol=1e-6)
    G_ref = closeness_on_graph(ref_idx[None], ref_cost[None], [np.array([0, 1])], cutoff=0.5)
    np.testing.assert_allclose(G, G_ref, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Errors for people
# ---------------------------------------------------------------------------------------------


def test_invalid_input_raises_clear_errors():
    features = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="out of range"):
        one_video_closeness(features, [10])
    with pytest.raises(ValueError, match="out of range"):
        one_video_closeness(features, [-1])
    with pytest.raises(ValueError, match="more than k"):
        one_video_closeness(features, [0], k=10)
    with pytest.raises(ValueError, match="positive integer"):
        one_video_closeness(features, [0], k=0)
    with pytest.raises(ValueError, match="cutoff"):
        one_video_closeness(features, [0], cutoff=-0.1)
    with pytest.raises(ValueError, match="integer"):
        one_video_closeness(features, [0.5])
    with pytest.raises(ValueError, match="NaN|finite"):
        one_video_closeness(np.full((10, 4), np.nan, np.float32), [0])
    with pytest.raises(ValueError, match=r"\(b C d\)"):
        geodesic_closeness_batch(features, [[0]])
    with pytest.raises(ValueError, match="kernels must be"):
        one_video_closeness(features, [0], kernels="cuda")
    with pytest.raises(ValueError, match="Numba strategy"):
        one_video_closeness(features, [0], knn="lazy", kernels="torch")
    with pytest.raises(ValueError, match="out of range"):
        one_video_closeness(features, [10], kernels="torch")
    with pytest.raises(ValueError, match="source arrays"):
        geodesic_closeness_batch(features[None], [[0], [1]])
    valid = np.ones((1, 10), bool)
    valid[0, 3] = False
    with pytest.raises(ValueError, match="invalid"):
        geodesic_closeness_batch(features[None], [[3]], valid=valid)
