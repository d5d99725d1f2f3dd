import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from g2l.config import load_config
from g2l.eval.evaluator import evaluate_checkpoint
from g2l.io.checkpoint import CheckpointError
from g2l.models.checkpoint import load_checkpoint, model_from_checkpoint
from g2l.train import train
from tests.fixtures import tiny_overrides, write_tiny_benchmark

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench(tmp_path_factory, tiny_text_encoder_dir):
    folder = write_tiny_benchmark(tmp_path_factory.mktemp("tiny_bench"))
    return folder, tiny_text_encoder_dir


def overrides(bench, out_dir, **extra):
    folder, encoder = bench
    return tiny_overrides(folder, encoder, out_dir, **extra)


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_epoch_run(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train(load_config(None, overrides(bench, out, **{"log.run_name": "straight"})))


def test_training_steps_give_finite_losses_and_a_run_folder(two_epoch_run):
    run = two_epoch_run.run_dir
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        for key in ("train_epoch/total", "train_epoch/bce", "train_epoch/video_contrast", "train_epoch/sentence_contrast"):
            assert torch.isfinite(torch.tensor(r[key]))
        assert 0 <= r["eval/R1@0.5"] <= 1 and r["eval/num_queries"] == 16
    # only_iou_epoch = 1: epoch 2 scales the contrastive terms by 0.01.
    assert records[1]["train_epoch/video_contrast"] < records[0]["train_epoch/video_contrast"]
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.pt").is_file()
    assert (run / "checkpoints" / "best.pt").is_file()
    assert len((run / "predictions" / "test_epoch002.jsonl").read_text().splitlines()) == 16


def test_training_logs_each_raw_term_beside_its_weighted_one(two_epoch_run):
    # metrics.jsonl (and W&B) carry train_epoch/<term>, weighted as it enters the total, and
    # train_epoch/raw_<term>, unweighted: after the only-IoU epoch (1 here) only the weighted one
    # is scaled by only_iou_scale.
    run = two_epoch_run.run_dir
    lo = load_config(run / "config.yaml").loss
    records = read_metrics(run)
    for record, late in zip(records, (1.0, lo.only_iou_scale)):
        assert record["train_epoch/raw_bce"] == record["train_epoch/bce"]
        for term in ("video_contrast", "sentence_contrast"):
            raw, weighted = record[f"train_epoch/raw_{term}"], record[f"train_epoch/{term}"]
            assert raw > 0 and weighted == pytest.approx(lo.contrast_weight * late * raw, rel=1e-5), (record["epoch"], term)


def test_training_ends_by_fitting_best_pt_s_match_threshold(two_epoch_run, bench):
    from g2l.data.dataset import build_dataset
    from g2l.eval.match import fit_match
    from g2l.inference import Grounder

    best = two_epoch_run.run_dir / "checkpoints" / "best.pt"
    stored = load_checkpoint(best)["match"]
    model, cfg = model_from_checkpoint(load_checkpoint(best), str(best))
    dataset, _ = build_dataset(cfg.data, "test", cfg.model.num_clips)
    refit, _ = fit_match(model, dataset, cfg, torch.device("cpu"), fitted_on="test split (leave-one-video-out)")
    assert stored == refit.as_dict() and stored["num_queries"] == 16 and 0 <= stored["auroc"] <= 1
    from g2l.eval.match import MIN_AUROC

    deciding = stored["auroc"] >= MIN_AUROC  # a fit below it is kept for the record and decides nothing
    assert Grounder.from_checkpoint(best, device="cpu").match_threshold == (stored["threshold"] if deciding else None)


def test_resume_equals_uninterrupted_training(bench, two_epoch_run, tmp_path):
    first = train(load_config(None, overrides(bench, tmp_path, **{"log.run_name": "split", "train.epochs": 1})))
    assert first.epochs_run == 1
    resumed = train(resume_dir=first.run_dir, overrides=["train.epochs=2"])
    assert resumed.epochs_run == 1
    straight = read_metrics(two_epoch_run.run_dir)
    split = read_metrics(resumed.run_dir)
    assert [r["epoch"] for r in split] == [1, 2]
    for a, b in zip(straight, split):
        timing = ("seconds", "data_wait_share")  # wall-clock figures, not results
        assert ({k: v for k, v in a.items() if not k.endswith(timing)}
                == {k: v for k, v in b.items() if not k.endswith(timing)})
    wa = load_checkpoint(two_epoch_run.run_dir / "checkpoints" / "last.pt")["model"]
    wb = load_checkpoint(resumed.run_dir / "checkpoints" / "last.pt")["model"]
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_checkpoint_round_trip_and_evaluation(two_epoch_run, tmp_path):
    ckpt = two_epoch_run.run_dir / "checkpoints" / "last.pt"
    result = evaluate_checkpoint(str(ckpt), predictions_out=str(tmp_path / "p.jsonl"), device="cpu")
    logged = read_metrics(two_epoch_run.run_dir)[-1]
    for key, value in result.metrics.items():
        assert logged[f"eval/{key}"] == value
    # The predictions file re-scores to the same numbers with no model code.
    out = tmp_path / "m.json"
    proc = subprocess.run([sys.executable, "tools/eval.py", "--predictions", str(tmp_path / "p.jsonl"), "--json", str(out)],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["R1@0.5"] == result.metrics["R1@0.5"]
    # Loading executes no code: the file is read with weights_only=True, and the text encoder is
    # rebuilt from the files inside even when its folder is gone.
    payload = load_checkpoint(ckpt)
    payload["config"]["model"]["text_encoder"] = "/nonexistent/encoder"
    model, cfg = model_from_checkpoint(payload, "test")
    assert cfg.model.text_encoder == "/nonexistent/encoder"
    assert model.tokenizer("a person opens the door")["input_ids"]


def test_checkpoint_is_refused_when_it_executes_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"format": "g2l-checkpoint", "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="could not be loaded safely"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def run_tool(*args, env=None):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, env=env)


def one_line_error(proc, needle):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_bad_inputs_are_one_sentence(bench, two_epoch_run, tmp_path):
    base = overrides(bench, two_epoch_run.run_dir.parent, **{"log.run_name": two_epoch_run.run_dir.name})
    one_line_error(run_tool("tools/train.py", "--config", "configs/base.yaml", *base), "already exists")
    one_line_error(run_tool("tools/train.py", "--config", "configs/base.yaml", *base, "model.num_clip=3"),
                   "unknown config key 'model.num_clip'")
    missing = overrides(bench, tmp_path / "runs", **{"data.features": tmp_path / "nope.hdf5"})
    one_line_error(run_tool("tools/train.py", "--config", "configs/base.yaml", *missing), "does not exist")
    assert not (tmp_path / "runs").exists()  # nothing half-written
    ckpt = two_epoch_run.run_dir / "checkpoints" / "last.pt"
    one_line_error(run_tool("tools/eval.py", "--checkpoint", str(ckpt), "model.hidden_dim=24"), "do not belong together")
    one_line_error(run_tool("tools/eval.py", "--checkpoint", str(tmp_path / "none.pt")), "does not exist")
    one_line_error(run_tool("tools/train.py", "--resume", str(tmp_path / "nothing")), "cannot resume")


def test_wandb_offline_run_holds_logged_keys(bench, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
    env["WANDB_SILENT"] = "true"
    args = overrides(bench, tmp_path, **{"log.run_name": "wb", "train.epochs": 1, "log.wandb": "auto"})
    env["HOME"] = str(tmp_path)  # no ~/.netrc: auto means offline
    proc = run_tool("tools/train.py", "--config", "configs/base.yaml", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    (log,) = runs[0].glob("run-*.wandb")
    data = log.read_bytes()
    for key in (b"loss/bce", b"loss/total", b"lr/main", b"lr/text", b"eval/R1@0.5", b"eval/mIoU", b"train_epoch/total",
                b"eval/examples", b"eval/score_maps", b"model"):
        assert key in data, key
    assert list(runs[0].glob("files/media/table/eval/examples*.table.json"))
    assert list(runs[0].glob("files/media/images/eval/score_maps*.png"))


def test_zero_epochs_is_refused_before_anything_is_made(bench, tmp_path, capsys):
    from g2l.cli import train_main
    from g2l.config import ConfigError

    with pytest.raises(ConfigError, match="'train.epochs' must be at least 1, got 0"):
        load_config(None, overrides(bench, tmp_path, **{"train.epochs": 0}))
    assert train_main(["--config", "configs/base.yaml", *overrides(bench, tmp_path / "runs", **{"train.epochs": 0})]) == 2
    assert capsys.readouterr().err.strip().startswith("error: config key 'train.epochs' must be at least 1")
    assert not (tmp_path / "runs").exists()


def test_a_huge_learning_rate_stops_in_one_sentence_and_leaves_nothing(bench, tmp_path, capsys):
    from g2l.cli import train_main

    args = overrides(bench, tmp_path / "runs", **{"log.run_name": "huge", "train.lr": 1e30})
    assert train_main(["--config", "configs/base.yaml", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: training diverged at epoch 1, step ") and "lower train.lr (now 1e+30)" in err[-1]
    assert "no epoch had finished" in err[-1] and not any("Traceback" in line for line in err)
    assert not (tmp_path / "runs" / "huge").exists()  # nothing half-written: no checkpoint, no folder


def test_divergence_keeps_the_last_good_checkpoint(bench, tmp_path, monkeypatch):
    import g2l.train as training

    real_build_loss = training.build_loss

    def loss_that_diverges_in_epoch_2(cfg):
        loss = real_build_loss(cfg)

        def terms(output, batch, start_idx, end_idx, epoch, step):
            values = loss(output, batch, start_idx, end_idx, epoch, step)
            return {**values, "total": values["total"] * float("nan")} if epoch == 2 else values

        return terms

    monkeypatch.setattr(training, "build_loss", loss_that_diverges_in_epoch_2)
    cfg = load_config(None, overrides(bench, tmp_path, **{"log.run_name": "nan", "train.epochs": 3}))
    # 24 training videos in batches of 8: epoch 1 is steps 1-3, so the first step of epoch 2 is step 4.
    with pytest.raises(training.TrainingDivergedError, match=r"epoch 2, step 4 \(total = nan\)") as caught:
        training.train(cfg)
    run = tmp_path / "nan"
    assert "of epoch 1, is kept as the last good checkpoint" in str(caught.value)
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert last["epoch"] == 1 and last["global_step"] == 3
    assert all(torch.isfinite(tensor).all() for tensor in last["model"].values() if tensor.is_floating_point())
    assert [r["epoch"] for r in read_metrics(run)] == [1]
