"""Feeding the step: loader workers by default where they help, pinned batches for non-blocking
copies, and the per-epoch share of wall time the loop waited for data (train_epoch/data_wait_share)."""

import json
import time

import numpy as np
import torch

from g2l.config import load_config
from g2l.data.dataset import Batch, GroundingDataset, loader_workers
from g2l.train import train
from tests.fixtures import tiny_overrides, write_tiny_benchmark


def _run(tmp_path, tiny_text_encoder_dir, name):
    folder = write_tiny_benchmark(tmp_path / "bench")
    cfg = load_config(None, tiny_overrides(folder, tiny_text_encoder_dir, tmp_path / "runs",
                                           **{"log.run_name": name, "train.epochs": 1}))
    result = train(cfg)
    return [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]


def test_data_wait_share_is_logged_per_epoch_and_near_one_for_a_slow_loader(tmp_path, tiny_text_encoder_dir,
                                                                           monkeypatch, capsys):
    (record,) = _run(tmp_path / "fast", tiny_text_encoder_dir, "fast")
    assert 0.0 <= record["train_epoch/data_wait_share"] <= 1.0
    assert "data wait " in capsys.readouterr().err

    slow_item = GroundingDataset.__getitem__

    def sleepy(self, index):  # a loader slowed on purpose: 24 videos x 0.1 s dwarf the tiny model's steps
        time.sleep(0.1)
        return slow_item(self, index)

    monkeypatch.setattr(GroundingDataset, "__getitem__", sleepy)
    (slow,) = _run(tmp_path / "slow", tiny_text_encoder_dir, "slow")
    assert slow["train_epoch/data_wait_share"] > 0.8
    assert slow["train_epoch/data_wait_share"] > record["train_epoch/data_wait_share"]


def test_auto_workers_on_cuda_only_and_numbers_as_given():
    assert loader_workers("auto", torch.device("cpu"), cpus=16) == 0
    assert loader_workers("auto", torch.device("cuda"), cpus=16) == 4
    assert loader_workers("auto", torch.device("cuda"), cpus=3) == 2
    assert loader_workers("auto", torch.device("cuda"), cpus=1) == 0
    assert loader_workers(2, torch.device("cpu"), cpus=16) == 2


def test_batches_pin_every_tensor_through_the_loaders_pinning(monkeypatch):
    # DataLoader(pin_memory=True) pins objects by calling their pin_memory(); without it a Batch would
    # stay pageable and a non_blocking copy would block. (Real pinning needs CUDA; here it is recorded.)
    pinned = []

    def fake_pin(self, *args, **kwargs):
        pinned.append(self)
        return self.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    batch = Batch(video_ids=["a"], durations_s=torch.ones(1), features=torch.zeros(1, 4, 3), sentences=["x"],
                  sentence_video=torch.zeros(1, dtype=torch.long), sentence_mask=torch.ones(1, 1, dtype=torch.bool),
                  windows_s=torch.zeros(1, 2), gt_windows=[np.zeros((1, 2), np.float32)], iou_maps=torch.zeros(1, 2, 2),
                  input_ids=torch.ones(1, 3, dtype=torch.long),
                  attention_mask=torch.ones(1, 3, dtype=torch.long))
    from torch.utils.data._utils.pin_memory import pin_memory

    out = pin_memory(batch)
    assert isinstance(out, Batch) and len(pinned) == 8  # every tensor field
    assert out.video_ids == ["a"] and out.gt_windows is batch.gt_windows
    assert torch.equal(out.input_ids, batch.input_ids) and out.input_ids is not batch.input_ids
