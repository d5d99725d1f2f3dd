"""An independent reference for the geodesic closeness G of g2l/ops/geodesic.py (docs/method.md
section 3), written from the definition: the full kNN graph built with numpy (a stable descending
argsort of every row), ``scipy.sparse.csgraph.dijkstra(limit=cutoff)`` on it; and feature sets
shaped like a moment map's or with exact ties. Used by tests/ops/test_geodesic*.py; nothing in g2l
or bench imports it."""

import itertools

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra


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
