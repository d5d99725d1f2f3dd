import json

import h5py
import numpy as np
import pytest
import torch

from g2l.config import load_config
from g2l.data.annotations import load_annotations
from g2l.data.dataset import Collate, GroundingDataset, build_dataset
from g2l.data.features import FeatureError, VideoFeatures
from g2l.losses.bce import scaled_iou
from g2l.ops.spans import iou_map


@pytest.fixture
def tiny_split(tmp_path):
    rng = np.random.default_rng(0)
    annotations = {
        "a": {"duration": 16.0, "timestamps": [[0, 8], [4, 12]], "sentences": ["one", " two"]},
        "b": {"duration": 30.5, "timestamps": [[1.5, 40.0]], "sentences": ["three"]},  # end clamped
        "empty": {"duration": 10.0, "timestamps": [[0, 5]], "sentences": ["four"]},
        "wide": {"duration": 10.0, "timestamps": [[0, 5]], "sentences": ["five"]},
    }
    ann = tmp_path / "train.json"
    ann.write_text(json.dumps(annotations))
    feats = tmp_path / "features.hdf5"
    with h5py.File(feats, "w") as f:
        f["a"] = rng.random((20, 6)).astype(np.float32)
        f["b"] = rng.random((9, 6)).astype(np.float32)
        f["empty"] = np.zeros((0, 6), np.float32)
        f["wide"] = rng.random((9, 7)).astype(np.float32)
    return ann, feats


def test_dataset_items_and_drops(tiny_split):
    ann, feats = tiny_split
    annotations, report = load_annotations(ann)
    assert report.clamped  # b's end beyond its duration
    dataset = GroundingDataset(annotations, VideoFeatures(str(feats), num_pre_clips=8), num_clips=4, feature_dim=6)
    assert len(dataset) == 2 and dataset.num_queries == 3
    assert dataset.dropped == {"zero-length features": 1, "feature width 7 != data.feature_dim 6": 1}
    assert "dropped 1 queries (feature width 7" in dataset.summary()
    item = dataset[0]
    assert item.video_id == "a" and item.sentences == ["one", "two"]
    assert item.features.shape == (8, 6)
    np.testing.assert_array_equal(item.iou_maps[1], iou_map((4.0, 12.0), 16.0, 4))
    assert item.iou_maps[0][0, 1] == 1.0  # [0, 8] is exactly cell (0, 1) of a 4-clip, 16 s map
    assert dataset[1].windows_s.tolist() == [[1.5, 30.5]]


def test_collate_flattens_sentences(tiny_split):
    ann, feats = tiny_split
    annotations, _ = load_annotations(ann)
    dataset = GroundingDataset(annotations, VideoFeatures(str(feats), num_pre_clips=8), num_clips=4, feature_dim=6)
    batch = Collate()([dataset[0], dataset[1]])
    assert batch.features.shape == (2, 8, 6)
    assert batch.sentence_video.tolist() == [0, 0, 1]
    assert batch.sentence_mask.tolist() == [[True, True], [True, False]]
    assert batch.iou_maps.shape == (3, 4, 4)
    expected = torch.clamp((batch.iou_maps - 0.5) / 0.5, 0, 1)
    torch.testing.assert_close(scaled_iou(batch.iou_maps, 0.5, 1.0), expected)  # L_bce builds its target
    assert not hasattr(batch, "targets")  # the batch carries the plain IoU only
    assert batch.input_ids is None
    moved = batch.to("cpu")
    assert moved.features.data_ptr() == batch.features.data_ptr() and moved.sentences == batch.sentences


def test_dataloader_with_workers_and_tokenizer(tiny_split, tiny_tokenizer):
    ann, feats = tiny_split
    annotations, _ = load_annotations(ann)
    dataset = GroundingDataset(annotations, VideoFeatures(str(feats), num_pre_clips=8), num_clips=4, feature_dim=6)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=Collate(tiny_tokenizer))
    (batch,) = list(loader)
    assert batch.input_ids.shape[0] == 3 and batch.attention_mask.shape == batch.input_ids.shape


def test_build_dataset_from_config_and_missing_features(tiny_split, tmp_path):
    ann, feats = tiny_split
    cfg = load_config(overrides=[f"data.train_annotations={ann}", f"data.features={feats}", "data.feature_dim=6",
                                 "data.num_pre_clips=8", "model.num_clips=4"])
    dataset, report = build_dataset(cfg.data, "train", cfg.model.num_clips)
    assert len(dataset) == 2 and "kept 5 queries" in report and "2 videos" in report
    with h5py.File(tmp_path / "partial.hdf5", "w") as f:
        f["a"] = np.ones((4, 6), np.float32)
    cfg.data.features = str(tmp_path / "partial.hdf5")
    with pytest.raises(FeatureError, match="3 of 4 videos of train split have no features"):
        build_dataset(cfg.data, "train", cfg.model.num_clips)
