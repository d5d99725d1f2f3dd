"""Two processes with gloo: training runs under torchrun, and its distributed evaluation equals a
single-process evaluation of the same weights exactly, also after the text backbone is unfrozen
(the ranks must then still hold the same weights)."""

import json
import subprocess
import sys
from pathlib import Path

import torch

from g2l.data.dataset import build_dataset
from g2l.eval.evaluator import evaluate, evaluate_checkpoint
from g2l.eval.predictions import write_predictions
from g2l.models.checkpoint import load_checkpoint, model_from_checkpoint
from g2l.models.grounding import build_model
from tests.fixtures import tiny_overrides, write_tiny_benchmark

REPO = Path(__file__).resolve().parents[2]


def test_two_process_training_and_evaluation(tmp_path, tiny_text_encoder_dir):
    folder = write_tiny_benchmark(tmp_path / "bench", num_train=16, num_test=9)
    args = tiny_overrides(folder, tiny_text_encoder_dir, tmp_path / "runs", **{"log.run_name": "ddp", "train.epochs": 2,
                                                                               "eval.batch_size": 2})
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
         "tools/train.py", "--config", "configs/base.yaml", *args, "train.num_threads=1"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2 and records[-1]["epoch"] == 2  # epoch 2 trains the text backbone (freeze_text_epochs=1)
    record = records[-1]
    assert record["eval/num_queries"] == 18
    single = evaluate_checkpoint(str(run / "checkpoints" / "last.pt"), device="cpu",
                                 predictions_out=str(tmp_path / "single.jsonl"), overrides=["eval.batch_size=2"])
    for key, value in single.metrics.items():
        assert record[f"eval/{key}"] == value, key
    # Predictions to the last bit, against one process running the same code: training's text
    # backbone is transformers' BERT; evaluate_checkpoint's is g2l's own, equal to float32 rounding.
    payload = load_checkpoint(run / "checkpoints" / "last.pt")
    _, cfg = model_from_checkpoint(payload, "last.pt")
    model = build_model(cfg, text_spec=payload["text_backbone"])
    model.load_state_dict(payload["model"])
    write_predictions(tmp_path / "same_code.jsonl", evaluate(model, build_dataset(cfg.data, "test", cfg.model.num_clips)[0],
                                                             cfg, torch.device("cpu")).predictions)
    distributed = (run / "predictions" / "test_epoch002.jsonl").read_text().splitlines()
    assert distributed == (tmp_path / "same_code.jsonl").read_text().splitlines()
