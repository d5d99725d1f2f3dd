import h5py
import numpy as np
import pytest

from g2l.data.features import (
    FeatureError,
    FeatureStore,
    VideoFeatures,
    check_coverage,
    l2_normalize,
    resample_boundaries,
    resample_features,
)


def reference_avgfeats(feats, num_pre_clips):
    """MMN's loop, with the boundaries written as docs/method.md section 2 states them."""
    num_rows = feats.shape[0]
    idxs = [min(round(k * num_rows / num_pre_clips), num_rows - 1) for k in range(num_pre_clips + 1)]
    rows = []
    for i in range(num_pre_clips):
        s, e = idxs[i], idxs[i + 1]
        rows.append(feats[s:e].mean(axis=0) if s < e else feats[s])
    return np.stack(rows)


def test_boundaries_round_half_to_even():
    # T=5, P=4: k*T/P = 0, 1.25, 2.5, 3.75, 5 -> 0, 1, 2 (half to even), 4, then clamped to 4.
    np.testing.assert_array_equal(resample_boundaries(5, 4), [0, 1, 2, 4, 4])
    # T=6, P=4: 0, 1.5, 3, 4.5, 6 -> 0, 2, 3, 4, 5 (clamped).
    np.testing.assert_array_equal(resample_boundaries(6, 4), [0, 2, 3, 4, 5])


def test_resample_hand_values():
    feats = np.arange(6, dtype=np.float32)[:, None]
    # Boundaries [0, 2, 3, 4, 5]: rows 0..1, 2, 3, 4 (row 5 only counts in an empty range).
    np.testing.assert_allclose(resample_features(feats, 4)[:, 0], [0.5, 2, 3, 4])
    # T < P repeats rows: T=2, P=4 -> bounds 0, 0(0.5->0), 1, 1(1.5->2 clamped to 1), 1.
    np.testing.assert_allclose(resample_features(np.array([[1.0], [3.0]], np.float32), 4)[:, 0], [1, 1, 3, 3])


@pytest.mark.parametrize("num_rows", [1, 3, 31, 32, 33, 75, 200, 257])
@pytest.mark.parametrize("num_pre_clips", [32, 256])
def test_resample_matches_loop_reference(num_rows, num_pre_clips):
    feats = np.random.default_rng(num_rows).normal(size=(num_rows, 7)).astype(np.float32)
    np.testing.assert_allclose(resample_features(feats, num_pre_clips), reference_avgfeats(feats, num_pre_clips), rtol=1e-5, atol=1e-6)


def test_l2_normalize_keeps_zero_rows():
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0, 0]])


@pytest.fixture
def stores(tmp_path):
    rng = np.random.default_rng(0)
    data = {f"v{i}": rng.random((10 + i, 8)).astype(np.float32) for i in range(3)}
    flat = tmp_path / "flat.hdf5"
    with h5py.File(flat, "w") as f:
        for vid, arr in data.items():
            f[vid] = arr
    grouped = tmp_path / "grouped.hdf5"
    with h5py.File(grouped, "w") as f:
        for vid, arr in data.items():
            f.create_group(vid)["c3d_features"] = arr
    folder = tmp_path / "npz"
    folder.mkdir()
    for vid, arr in data.items():
        np.savez(folder / f"clip_video_features__{vid}.npz", features=arr)
    npy = tmp_path / "npy"
    npy.mkdir()
    for vid, arr in data.items():
        np.save(npy / f"{vid}.npy", arr)
    return data, flat, grouped, folder, npy


def test_all_layouts_read_the_same(stores):
    data, flat, grouped, folder, npy = stores
    for path, key in [(flat, ""), (grouped, "c3d_features"), (folder, ""), (npy, "")]:
        store = FeatureStore(path, key)
        assert sorted(store.video_ids()) == sorted(data)
        for vid, arr in data.items():
            assert store.shape(vid) == arr.shape
            np.testing.assert_array_equal(store.read(vid), arr)
        features = VideoFeatures(str(path), key, num_pre_clips=4)
        expected = resample_features(l2_normalize(data["v1"]), 4)
        np.testing.assert_allclose(features.load("v1"), expected, rtol=1e-6)


def test_joined_stores_normalise_separately_and_truncate(stores, tmp_path):
    data, flat, _, folder, _ = stores
    other = tmp_path / "other.hdf5"
    with h5py.File(other, "w") as f:
        for vid, arr in data.items():
            f[vid] = np.ones((arr.shape[0] - 2, 3), np.float32) * 5
    features = VideoFeatures(f"{flat},{other}", num_pre_clips=4)
    out = features.load("v0")
    assert out.shape == (4, 11)
    np.testing.assert_allclose(out[:, 8:], np.full((4, 3), 1 / np.sqrt(3)), rtol=1e-6)
    assert features.shape("v0") == (8, 11)


def test_real_qvhighlights_npz_features(shared_data):
    folder = shared_data / "features" / "qvhighlights_qid5263"
    store = FeatureStore(folder)
    assert "qtyBzFV9yTs_60.0_210.0" in store
    assert store.shape("qtyBzFV9yTs_60.0_210.0") in {(75, 512), (75, 2304)}
    features = VideoFeatures(str(folder), num_pre_clips=32)
    # Two files carry this video id (CLIP and SlowFast); a single folder store takes one; a user
    # joins both by listing them, which the layout test above covers.
    assert features.load("qtyBzFV9yTs_60.0_210.0").shape[0] == 32


def test_missing_videos_message_counts_and_shows_a_few(stores):
    _, flat, *_ = stores
    features = VideoFeatures(str(flat), num_pre_clips=4)
    with pytest.raises(FeatureError, match=r"7 of 10 videos of the train split have no features .*\(m0, m1, m2, m3, m4, \.\.\.\)"):
        check_coverage(features, ["v0", "v1", "v2"] + [f"m{i}" for i in range(7)], "the train split")


def test_bad_feature_paths(tmp_path):
    with pytest.raises(FeatureError, match="does not exist"):
        FeatureStore(tmp_path / "nope.hdf5")
    bad = tmp_path / "bad.hdf5"
    bad.write_text("not hdf5")
    with pytest.raises(FeatureError, match="not a readable HDF5"):
        FeatureStore(bad)
    with pytest.raises(FeatureError, match="no feature file"):
        VideoFeatures("")


def test_nan_and_zero_length_features(tmp_path):
    path = tmp_path / "f.hdf5"
    with h5py.File(path, "w") as f:
        arr = np.ones((6, 4), np.float32)
        arr[2, 1] = np.nan
        f["nan"] = arr
        f["empty"] = np.zeros((0, 4), np.float32)
    features = VideoFeatures(str(path), num_pre_clips=3)
    with pytest.warns(UserWarning, match="video nan: 1 row"):
        out = features.load("nan")
    assert np.isfinite(out).all() and features.nonfinite_videos == {"nan"}
    assert features.shape("empty") == (0, 4)
    with pytest.raises(FeatureError, match="zero-length"):
        features.load("empty")


def test_store_opens_file_once(stores, monkeypatch):
    _, flat, *_ = stores
    import g2l.data.features as module

    opened = []
    real = module.h5py.File

    def counting(*args, **kwargs):
        opened.append(args[0])
        return real(*args, **kwargs)

    store = FeatureStore(flat)
    monkeypatch.setattr(module.h5py, "File", counting)
    for _ in range(5):
        store.read("v0")
    assert len(opened) == 1
    import pickle

    clone = pickle.loads(pickle.dumps(store))  # as a DataLoader worker receives it
    clone.read("v1")
    assert len(opened) == 2


@pytest.mark.parametrize("stored, why", [
    ('{"name": "mobilenet_v2", "fps": NaN}', r"cannot be read as JSON \(ValueError\)"),  # not standard JSON
    ('{"name": "a", "name": "b"}', r"cannot be read as JSON \(ValueError\)"),  # a key twice
    ('{"name": "mobilenet_v2"', r"cannot be read as JSON \(JSONDecodeError\)"),  # cut short
    (b"\xff\xfe not utf-8", r"cannot be read as JSON \(ValueError\)"),
    ('["mobilenet_v2"]', r"is not a frame-encoder declaration \(.*\)"),  # not a mapping
    ('{"name": {"nested": 1}}', r"is not a frame-encoder declaration \(.*\)"),  # not a plain value
])
def test_a_features_file_s_encoder_spec_is_checked_before_it_is_believed(tmp_path, stored, why):
    path = tmp_path / "f.hdf5"
    with h5py.File(path, "w") as f:
        f["v"] = np.zeros((4, 8), np.float32)
        f.attrs["g2l_encoder_spec"] = np.void(stored) if isinstance(stored, bytes) else stored
    with pytest.raises(FeatureError, match=rf"^the frame-encoder spec stored in .*f\.hdf5 {why}; extract the features "
                                           r"again with g2l-extract$"):
        VideoFeatures(str(path), "", 32).encoder_spec()


def test_a_good_encoder_spec_attribute_reads_back(tmp_path):
    path = tmp_path / "f.hdf5"
    with h5py.File(path, "w") as f:
        f["v"] = np.zeros((4, 8), np.float32)
        f.attrs["g2l_encoder_spec"] = '{"name": "mobilenet_v2", "fps": 1.0, "mean": [0.5, 0.5]}'
    assert VideoFeatures(str(path), "", 32).encoder_spec() == {"name": "mobilenet_v2", "fps": 1.0, "mean": [0.5, 0.5]}
