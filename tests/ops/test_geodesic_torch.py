"""The torch kernels of the geodesic closeness (docs/method.md section 3) against scipy's Dijkstra and
the Numba kernels: the min-plus relaxation on random graphs (exact in float64), the whole path on
batches of videos of different sizes, feature dtypes, and CUDA against the CPU."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra

from g2l.ops.geodesic import geodesic_closeness_batch, knn_graph
from g2l.ops.geodesic_torch import bounded_shortest_paths, knn_graph_torch
from tests.reference.geodesic_closeness import assert_matches, map_features, reference_closeness, reference_graph
from tests.support.geodesic_kernels import closeness_on_graph


def random_graph(num_videos, p, k, rng, zero_share=0.0, dyadic=False):
    """``(b C k)`` random directed graphs with costs in [0, 0.4): some exactly 0, or all multiples
    of 1/16 (many equal path lengths, sums exact in float64)."""
    idx = np.stack([np.stack([rng.choice(np.delete(np.arange(p), u), k, replace=False) for u in range(p)])
                    for _ in range(num_videos)])
    cost = rng.integers(0, 7, size=idx.shape) / 16 if dyadic else rng.uniform(0, 0.4, size=idx.shape)
    cost[rng.random(idx.shape) < zero_share] = 0.0
    return idx.astype(np.int64), cost.astype(np.float64)


def scipy_distances(idx, cost, video_of, sources, cutoff):
    """``(q C)`` scipy Dijkstra distances on each row's video graph (inf beyond the cut-off)."""
    _, p, k = idx.shape
    rows = []
    for v, src in zip(video_of, sources):
        weights = np.where(cost[v] == 0.0, 1e-300, cost[v])  # scipy drops explicit zeros
        graph = sp.csr_matrix((weights.ravel(), (np.repeat(np.arange(p), k), idx[v].ravel())), shape=(p, p))
        rows.append(dijkstra(graph, directed=True, indices=[src], limit=cutoff)[0])
    dist = np.stack(rows)
    return np.where(dist < 1e-200, 0.0, dist)  # a path of only zero-cost edges is 0, not 1e-300


# ---------------------------------------------------------------------------------------------
# The relaxation on random graphs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check_every", [1, 3, 1000])
@pytest.mark.parametrize("zero_share,dyadic,cutoff", [(0.0, False, 0.5), (0.2, False, 0.3), (0.1, True, 0.5),
                                                      (0.0, True, 10.0)])
def test_relaxation_equals_scipy_dijkstra(check_every, zero_share, dyadic, cutoff):
    """Exact equality in float64: Bellman-Ford's fixed point and Dijkstra take the same least
    left-to-right sum per cell. Videos of the batch have their own graphs; chunks of 5 rows."""
    rng = np.random.default_rng(int(zero_share * 100) + 7 * dyadic + int(cutoff))
    idx, cost = random_graph(3, 60, 4, rng, zero_share, dyadic)
    video_of = np.array([0, 0, 1, 2, 2, 2, 1, 0, 2, 1, 1])
    sources = rng.integers(0, 60, size=video_of.size)
    dist = bounded_shortest_paths(torch.from_numpy(idx), torch.from_numpy(cost), torch.from_numpy(video_of),
                                  torch.from_numpy(sources), cutoff, check_every=check_every,
                                  max_chunk_elements=5 * 60 * 4)
    expected = scipy_distances(idx, cost, video_of, sources, cutoff)
    assert dist.dtype == torch.float64 and dist.shape == (video_of.size, 60)
    np.testing.assert_array_equal(dist.numpy(), expected)
    reached = np.isfinite(expected)
    assert reached.sum() > 2 * video_of.size and not reached.all()  # the cut-off binds somewhere


def test_long_zero_cost_chain_needs_p_minus_1_rounds():
    """A chain 0 -> 1 -> ... -> p-1 of zero-cost edges (the other edges cost 1, beyond the
    cut-off): the last cell is p - 1 rounds away, the bound on the rounds, whatever check_every."""
    p, k = 40, 2
    idx = np.stack([np.array([(u + 1) % p, (u + 2) % p]) for u in range(p)])[None]
    cost = np.tile(np.array([0.0, 1.0]), (p, 1))[None]
    cost[0, p - 1] = [1.0, 1.0]  # no way back to the source
    for check_every in (1, 7, 39, 100):
        dist = bounded_shortest_paths(torch.from_numpy(idx), torch.from_numpy(cost), torch.zeros(1, dtype=torch.int64),
                                      torch.zeros(1, dtype=torch.int64), 0.5, check_every=check_every)
        np.testing.assert_array_equal(dist.numpy(), np.zeros((1, p)))


def test_closeness_on_given_graph_matches_numba():
    rng = np.random.default_rng(4)
    idx, cost = random_graph(4, 80, 5, rng, zero_share=0.1)
    sources = [np.array([0, 79]), np.array([], dtype=np.int64), np.array([5]), np.array([1, 2, 3])]
    numba_G = closeness_on_graph(idx, cost, sources, cutoff=0.4)
    torch_G = closeness_on_graph(idx, cost, sources, cutoff=0.4, kernels="torch")
    assert isinstance(torch_G, np.ndarray) and torch_G.dtype == np.float32 and torch_G.shape == (6, 80)
    np.testing.assert_array_equal(torch_G, numba_G)
    assert 6 < (torch_G > 0).sum() < torch_G.size


# ---------------------------------------------------------------------------------------------
# The kNN graph
# ---------------------------------------------------------------------------------------------


def test_knn_graph_tie_rule_on_many_duplicates():
    """Integer features: many exactly equal similarities, decided by the lower index as in a
    stable descending argsort (numpy reference), also with invalid cells excluded."""
    rng = np.random.default_rng(9)
    features = rng.integers(-1, 2, size=(3, 70, 3)).astype(np.float32)
    features[:, 0] = 0.0  # a zero row: similarity 0 to everything
    valid = rng.random((3, 70)) > 0.2
    idx, cost = knn_graph_torch(torch.from_numpy(features), 6, torch.from_numpy(valid))
    for v in range(3):
        cells = np.nonzero(valid[v])[0]
        ref_idx, ref_cost, _ = reference_graph(features[v, cells], 6)
        np.testing.assert_array_equal(idx[v, cells].numpy(), cells[ref_idx])
        np.testing.assert_allclose(cost[v, cells].numpy(), ref_cost, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# The whole path
# ---------------------------------------------------------------------------------------------


def batch_of_videos(rng, d=16):
    """Four videos of 136 cells, some cells invalid (smaller videos), 3, 1, 0 and 2 sources."""
    features = np.stack([map_features(16, d, 0.9, 0.4, rng) for _ in range(4)])  # (b C d)
    valid = np.ones((4, 136), dtype=bool)
    valid[1, rng.choice(136, 30, replace=False)] = False
    valid[3, 60:] = False
    sources = [rng.choice(np.nonzero(valid[v])[0], size=n, replace=False) for v, n in enumerate([3, 1, 0, 2])]
    return features, valid, sources


def test_batch_matches_scipy_per_video():
    rng = np.random.default_rng(22)  # no settled row has a near-tie (checked by the reference)
    features, valid, sources = batch_of_videos(rng)
    G = geodesic_closeness_batch(torch.from_numpy(features), sources, valid=valid, kernels="torch")
    assert isinstance(G, torch.Tensor) and G.dtype == torch.float32 and G.shape == (6, 136)
    row = 0
    for v in range(4):
        cells = np.nonzero(valid[v])[0]
        if len(sources[v]):
            local = np.searchsorted(cells, sources[v])
            G_ref, dist_ref = reference_closeness(features[v, cells], local, min_margin=1e-6)
            assert_matches(G[row : row + len(local)][:, cells].numpy(), G_ref, dist_ref, 0.5)
            assert not G[row : row + len(local)][:, ~valid[v]].any()
            row += len(local)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_dtypes_match_numba_on_the_same_graph(dtype):
    """Any float features: the same graph as knn_graph and the Numba Dijkstra on it, exactly."""
    rng = np.random.default_rng(22)
    features, valid, sources = batch_of_videos(rng)
    x = torch.from_numpy(features).to(dtype)
    G = geodesic_closeness_batch(x, sources, valid=valid, kernels="torch")
    G_numba = geodesic_closeness_batch(x, sources, valid=valid, knn="dense", kernels="numba")
    torch.testing.assert_close(G, G_numba, rtol=0, atol=0)
    assert (G > 0).sum() > 20


def test_numpy_in_numpy_out_any_layout():
    rng = np.random.default_rng(26)
    features = rng.standard_normal((2, 50, 6))[:, ::-1]  # float64, negative strides
    G = geodesic_closeness_batch(features, [[0, 3], [7]], kernels="torch")
    assert isinstance(G, np.ndarray) and G.dtype == np.float32 and G.shape == (3, 50)
    np.testing.assert_array_equal(G, geodesic_closeness_batch(features, [[0, 3], [7]], knn="dense"))


def test_no_gradient_and_disconnected_clusters():
    """Two orthogonal clusters: sources reach their own cluster only (k < cluster size)."""
    rng = np.random.default_rng(23)
    a = np.array([1, 0, 0, 0]) + 0.05 * rng.standard_normal((30, 4))
    b = np.array([0, 0, 1, 0]) + 0.05 * rng.standard_normal((30, 4))
    features = torch.from_numpy(np.concatenate([a, b]).astype(np.float32)).requires_grad_()
    G = geodesic_closeness_batch(features[None], [[0, 45]], k=4, cutoff=1.0, kernels="torch")
    assert not G.requires_grad
    assert (G[0, :30] > 0).sum() > 15 and not G[0, 30:].any()
    assert (G[1, 30:] > 0).sum() > 15 and not G[1, :30].any()
    G_ref, _ = reference_closeness(features.detach().numpy(), [0, 45], k=4, cutoff=1.0)
    np.testing.assert_allclose(G.numpy(), G_ref, rtol=0, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    rng = np.random.default_rng(22)  # the fixture of test_batch_matches_scipy_per_video: no near-ties
    features, valid, sources = batch_of_videos(rng)
    x = torch.from_numpy(features)
    cpu = geodesic_closeness_batch(x, sources, valid=valid, kernels="torch")
    cuda = geodesic_closeness_batch(x.cuda(), [torch.as_tensor(s).cuda() for s in sources], valid=valid,
                                    kernels="torch")
    assert cuda.device.type == "cuda" and cuda.dtype == torch.float32
    # the Gram matrix may round differently on the GPU: kNN rows can differ only at near-ties, and
    # the rows the searches settle have none
    idx_cpu, _ = knn_graph(x, 5, valid)
    idx_cuda, _ = knn_graph(x.cuda(), 5, valid)
    assert (idx_cpu == idx_cuda).mean() > 0.99
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=0, atol=1e-5)
    rng_graph = np.random.default_rng(25)
    idx, cost = random_graph(3, 60, 4, rng_graph, zero_share=0.1)
    args = [torch.from_numpy(idx), torch.from_numpy(cost), torch.tensor([0, 1, 2, 2]), torch.tensor([0, 5, 9, 59])]
    dist_cpu = bounded_shortest_paths(*args, 0.5)
    dist_cuda = bounded_shortest_paths(*[a.cuda() for a in args], 0.5)
    torch.testing.assert_close(dist_cuda.cpu(), dist_cpu, rtol=0, atol=0)


def test_tensor_sources_equal_array_sources():
    """Index tensors (one host copy for the batch) give what arrays give; bad ones are still named."""
    rng = np.random.default_rng(27)
    features = torch.from_numpy(rng.standard_normal((3, 40, 5)).astype(np.float32))
    arrays = [np.array([0, 39]), np.array([], dtype=np.int64), np.array([7])]
    tensors = [torch.tensor([0, 39], dtype=torch.int32), torch.tensor([], dtype=torch.int64), torch.tensor(7)]
    for kernels in ("numba", "torch"):
        expected = geodesic_closeness_batch(features, arrays, kernels=kernels)
        torch.testing.assert_close(geodesic_closeness_batch(features, tensors, kernels=kernels), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="integer"):
        geodesic_closeness_batch(features, [torch.tensor([0.0]), torch.tensor([1]), torch.tensor([2])])
    with pytest.raises(ValueError, match="source index 40 of video 2"):
        geodesic_closeness_batch(features, [torch.tensor([0]), torch.tensor([1]), torch.tensor([40])], kernels="torch")


@pytest.mark.parametrize("zero_share,dyadic,cutoff", [(0.0, False, 0.5), (0.2, False, 0.3), (0.1, True, 0.5)])
def test_fixed_rounds_are_exact_once_settled_and_say_so(zero_share, dyadic, cutoff):
    """relax_rounds: walks of up to 3 edges per round with costs added left to right, no host read;
    its flag is True only when the values are the fixed point (Dijkstra's exactly), and then stays."""
    from g2l.ops.geodesic_torch import relax_rounds

    rng = np.random.default_rng(int(zero_share * 100) + 7 * dyadic)
    idx, cost = random_graph(3, 60, 4, rng, zero_share, dyadic)
    video_of = np.array([0, 0, 1, 2, 2, 2, 1, 0, 2, 1, 1])
    sources = rng.integers(0, 60, size=video_of.size)
    expected = scipy_distances(idx, cost, video_of, sources, cutoff)
    flags = []
    for rounds in range(1, 25):
        dist, settled = relax_rounds(torch.from_numpy(idx), torch.from_numpy(cost), torch.from_numpy(video_of),
                                     torch.from_numpy(sources), cutoff, rounds)
        flags.append(bool(settled))
        if flags[-1]:
            np.testing.assert_array_equal(dist.numpy(), expected)
    assert not flags[0] and flags[-1] and flags == sorted(flags)  # False, ..., False, True, ... True
