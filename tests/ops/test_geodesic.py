"""Geodesic closeness against an independent reference: the full kNN graph built with numpy and
``scipy.sparse.csgraph.dijkstra(limit=cutoff)`` (docs/method.md section 3, "Geodesic closeness G")."""

import itertools

import numba
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra

from g2l.ops.geodesic import (
    closeness_from_knn_graph,
    geodesic_closeness,
    geodesic_closeness_batch,
    knn_graph,
)

# ---------------------------------------------------------------------------------------------
# Reference and fixtures
# ---------------------------------------------------------------------------------------------


def unit_rows(features):
    """The kernel's normalisation: float64 norm, rows cast to float32."""
    x = np.asarray(features, dtype=np.float64)
    norm = np.sqrt((x * x).sum(axis=1, keepdims=True))
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)


def reference_graph(features, k):
    """Full kNN graph: every row sorted by a stable descending argsort (ties -> lower index)."""
    x = unit_rows(features).astype(np.float64)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    order = np.argsort(-sims, axis=1, kind="stable")
    idx = order[:, :k]
    margin = np.take_along_axis(sims, order[:, k - 1 : k], 1) - np.take_along_axis(sims, order[:, k : k + 1], 1)
    cost = np.maximum(1.0 - np.take_along_axis(sims, idx, 1), 0.0)
    return idx, cost, margin[:, 0]


def reference_closeness(features, sources, k=5, cutoff=0.5, min_margin=None):
    """G from scipy's Dijkstra on the full graph. With ``min_margin``, also checks that no
    settled row has a k-th / (k+1)-th similarity gap that float32 round-off could flip."""
    idx, cost, margin = reference_graph(features, k)
    p = len(idx)
    # scipy drops explicit zeros from a sparse matrix: a zero-cost edge (duplicate cells) would
    # vanish, so give it a cost too small to change any float64 sum of larger terms.
    weights = np.where(cost == 0.0, 1e-300, cost)
    graph = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(p), k), idx.ravel())), shape=(p, p))
    dist = dijkstra(graph, directed=True, indices=np.asarray(sources), limit=cutoff)
    if min_margin is not None:
        settled = np.isfinite(dist).any(axis=0)
        assert margin[settled].min() > min_margin, "fixture has a near-tie; pick another seed"
    return np.where(np.isfinite(dist), 1.0 - dist, 0.0), dist


def map_features(num_clips, dim, smooth, noise, rng):
    """Cell features like a 2D moment map's: max-pool of smooth clip features over [i, j] for
    the valid cells of the TACoS sparse mask (2548 cells at 128 clips), plus noise."""
    clips = np.zeros((num_clips, dim))
    state = rng.standard_normal(dim)
    for t in range(num_clips):
        state = smooth * state + np.sqrt(1 - smooth**2) * rng.standard_normal(dim)
        clips[t] = state
    cells = []
    for i, j in itertools.combinations_with_replacement(range(num_clips), 2):
        offset = j - i
        stride = 1 if offset < 16 else 2 if offset < 32 else 4 if offset < 64 else 8
        if i % stride == 0 and (j + 1) % stride == 0:
            cells.append(clips[i : j + 1].max(axis=0))
    cells = np.asarray(cells)
    return (cells + noise * rng.standard_normal(cells.shape)).astype(np.float32)


def dyadic_features(p, rng):
    """Unit vectors whose float32 dot products are exact in any summation order (multiples of
    1/4), drawn with repetition: many exact ties, zero-cost edges and paths of length exactly
    the cut-off."""
    atoms = [np.eye(4)[i] * sign for i in range(4) for sign in (1, -1)]
    atoms += [np.array(signs) * 0.5 for signs in itertools.product((1, -1), repeat=4)]
    atoms = np.asarray(atoms, dtype=np.float32)  # (24, 4)
    return atoms[rng.integers(0, len(atoms), size=p)]


def assert_matches(G, G_ref, dist_ref, cutoff, atol=1e-5):
    """Float32 similarities carry ~1e-7 round-off per edge, summed along paths of up to a few
    dozen edges; cells within that of the cut-off may fall on either side."""
    borderline = np.abs(dist_ref - cutoff) < atol
    reach, reach_ref = G > 0, G_ref > 0
    assert np.array_equal(reach[~borderline], reach_ref[~borderline])
    both = reach & reach_ref
    np.testing.assert_allclose(G[both], G_ref[both], rtol=0, atol=atol)


# ---------------------------------------------------------------------------------------------
# Agreement with scipy
# ---------------------------------------------------------------------------------------------

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
@pytest.mark.parametrize("knn", ["lazy", "dense"])
def test_matches_scipy_dijkstra(name, knn):
    make, num_sources, seed = CASES[name]
    rng = np.random.default_rng(sum(map(ord, name)) + seed)
    features = make(rng)
    sources = rng.choice(len(features), size=num_sources, replace=False)
    G_ref, dist_ref = reference_closeness(features, sources, k=5, cutoff=0.5, min_margin=1e-6)
    G = geodesic_closeness(features, sources, k=5, cutoff=0.5, knn=knn)
    assert isinstance(G, np.ndarray) and G.dtype == np.float32 and G.shape == (num_sources, len(features))
    assert_matches(G, G_ref, dist_ref, 0.5)


@pytest.mark.parametrize("k,cutoff", [(3, 0.3), (8, 1.0), (5, 0.1)])
def test_lazy_pivot_bounds_other_k_and_cutoff(k, cutoff):
    """Smooth map features (the pivot bounds prune most candidates) at other k and cut-offs."""
    rng = np.random.default_rng(100)
    features = map_features(64, 64, 0.9, 0.0, rng)
    sources = rng.choice(len(features), size=6, replace=False)
    G_ref, dist_ref = reference_closeness(features, sources, k=k, cutoff=cutoff, min_margin=1e-6)
    assert_matches(geodesic_closeness(features, sources, k=k, cutoff=cutoff), G_ref, dist_ref, cutoff)


@pytest.mark.parametrize("k,cutoff", [(1, 0.5), (3, 0.25), (5, 0.5), (8, 1.0)])
@pytest.mark.parametrize("p", [40, 100])
@pytest.mark.parametrize("knn", ["lazy", "dense"])
def test_exact_ties_and_boundary(k, cutoff, p, knn):
    """Exactly representable similarities: duplicates, equal candidates decided by the lower
    index, zero-cost edges, paths of length exactly the cut-off (reachable). Exact equality."""
    rng = np.random.default_rng(7 * k)
    features = np.concatenate([dyadic_features(p, rng), np.zeros((1, 4), np.float32)])  # + a zero row
    sources = np.array([0, 17, 23, p])
    G_ref, _ = reference_closeness(features, sources, k=k, cutoff=cutoff)
    G = geodesic_closeness(features, sources, k=k, cutoff=cutoff, knn=knn)
    np.testing.assert_array_equal(G, G_ref.astype(np.float32))
    assert set(np.unique(G).tolist()) <= {0.0, 0.5, 1.0}  # costs are multiples of 0.5


def test_distance_equal_to_cutoff_is_reachable():
    # cos(a, b) = 0.5 exactly, so the edge a -> b costs exactly 0.5.
    features = np.array([[1, 0, 0, 0], [0.5, 0.5, 0.5, 0.5], [0, 0, 0, 1], [0, 0, 1, 0]], np.float32)
    G = geodesic_closeness(features, [0], k=1, cutoff=0.5)
    np.testing.assert_array_equal(G, [[1.0, 0.5, 0.0, 0.0]])
    G = geodesic_closeness(features, [0], k=1, cutoff=0.4999)
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
    G = geodesic_closeness(features, sources, k=5, cutoff=cutoff)
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
    features = np.stack([map_features(16, d, 0.9, 0.4, rng) for _ in range(4)])  # (b p d)
    valid = np.ones((4, p), dtype=bool)
    valid[1, rng.choice(p, 30, replace=False)] = False
    valid[3, 100:] = False
    sources = []
    for v in range(4):
        cells = np.nonzero(valid[v])[0]
        sources.append(rng.choice(cells, size=[3, 1, 0, 2][v], replace=False))
    for knn in ["lazy", "dense"]:
        G = geodesic_closeness_batch(features, sources, valid=valid, knn=knn)
        assert G.shape == (6, p)
        row = 0
        for v in range(4):
            cells = np.nonzero(valid[v])[0]
            local = np.searchsorted(cells, sources[v])
            for s in range(len(sources[v])):
                expected = np.zeros(p, np.float32)
                if len(local):
                    expected[cells] = geodesic_closeness(features[v, cells], local, knn=knn)[s]
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
    G = closeness_from_knn_graph(idx, cost, [np.array([0, 1])], cutoff=0.5)
    np.testing.assert_array_equal(G, geodesic_closeness(features, [0, 1], k=4, knn="dense"))
    ref_idx, ref_cost, _ = reference_graph(features, 4)
    np.testing.assert_array_equal(idx[0], ref_idx)
    np.testing.assert_allclose(cost[0], ref_cost, rtol=0, atol=1e-6)
    G_ref = closeness_from_knn_graph(ref_idx[None], ref_cost[None], [np.array([0, 1])], cutoff=0.5)
    np.testing.assert_allclose(G, G_ref, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Errors for people
# ---------------------------------------------------------------------------------------------


def test_invalid_input_raises_clear_errors():
    features = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="out of range"):
        geodesic_closeness(features, [10])
    with pytest.raises(ValueError, match="out of range"):
        geodesic_closeness(features, [-1])
    with pytest.raises(ValueError, match="more than k"):
        geodesic_closeness(features, [0], k=10)
    with pytest.raises(ValueError, match="positive integer"):
        geodesic_closeness(features, [0], k=0)
    with pytest.raises(ValueError, match="cutoff"):
        geodesic_closeness(features, [0], cutoff=-0.1)
    with pytest.raises(ValueError, match="integer"):
        geodesic_closeness(features, [0.5])
    with pytest.raises(ValueError, match="NaN|finite"):
        geodesic_closeness(np.full((10, 4), np.nan, np.float32), [0])
    with pytest.raises(ValueError, match=r"\(p d\)"):
        geodesic_closeness(features[None], [0])
    with pytest.raises(ValueError, match="source arrays"):
        geodesic_closeness_batch(features[None], [[0], [1]])
    valid = np.ones((1, 10), bool)
    valid[0, 3] = False
    with pytest.raises(ValueError, match="invalid"):
        geodesic_closeness_batch(features[None], [[3]], valid=valid)
