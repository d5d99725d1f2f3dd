"""The out-of-domain warning (g2l/data/domain.py): the summary of the training videos' features is the
probabilistic-PCA Mahalanobis distance (checked against scikit-learn's PCA), training stores it in
best.pt, it travels through a checkpoint and an export, a malformed one is refused in one sentence,
and grounding reports it (Grounder.domain_check, --json, batch lines, the app) and warns on a video
of real photographs."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from g2l.cli import eval_main, export_main, ground_main
from g2l.config import load_config
from g2l.data.domain import (
    MARGIN,
    QUANTILE,
    domain_verdict,
    fit_domain_summary,
    row_distances,
    summary_from_json,
    summary_problem,
    summary_to_json,
    video_distance,
)
from g2l.inference import Grounder
from g2l.io.checkpoint import CheckpointError, save_payload
from g2l.models.checkpoint import load_checkpoint, save_checkpoint
from g2l.models.checkpoint import load_pretrained
from g2l.models.grounding import build_model
from tests.fixtures import tiny_overrides, write_tiny_benchmark

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
from domain_rates import write_photo_video  # noqa: E402

WIDTH, ROWS = 32, 16


def unit_rows(rng, count, shift=None):
    """``count`` videos of ``(ROWS, WIDTH)`` L2-normalised rows: a low-rank Gaussian around a fixed
    direction (``shift`` moves that direction)."""
    base = np.random.default_rng(123).normal(size=(3, WIDTH))
    centre = np.abs(np.random.default_rng(7).normal(size=WIDTH)) + (0 if shift is None else shift)
    videos = []
    for _ in range(count):
        x = centre + rng.normal(size=(ROWS, 3)) @ base * 0.3 + rng.normal(scale=0.1, size=(ROWS, WIDTH))
        videos.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return videos


@pytest.fixture(scope="module")
def fitted():
    videos = unit_rows(np.random.default_rng(0), 60)
    return videos, fit_domain_summary(lambda: iter(videos))


def test_distance_is_the_ppca_mahalanobis_distance_per_dimension(fitted):
    from sklearn.decomposition import PCA

    videos, summary = fitted
    rows = np.concatenate(videos).astype(np.float64)
    pca = PCA(n_components=4).fit(rows)  # its precision: of B^T diag(lambda) B + s2 (I - B^T B)
    centred = rows - pca.mean_
    reference = np.einsum("nf,fg,ng->n", centred, pca.get_precision(), centred) / WIDTH
    n = len(rows)  # sklearn's variances divide by n - 1, the summary's by n
    assert np.allclose(row_distances(summary, rows), reference * (n - 1) / n, rtol=5e-3)
    assert abs(row_distances(summary, rows).mean() - 1.0) < 5e-3  # the training rows average 1, by construction
    distances = [video_distance(summary, v) for v in videos]
    assert summary["threshold"] == pytest.approx(np.quantile(distances, QUANTILE) * MARGIN)
    assert summary["num_videos"] == 60 and summary["num_rows"] == 60 * ROWS
    assert summary["mean"].dtype == torch.float16 and summary["basis"].shape == (4, WIDTH)
    assert summary_problem(summary, WIDTH) == ""


@pytest.mark.parametrize("how, outside", [("alike", False), ("mirrored", True), ("shifted", True)])
def test_a_training_like_video_is_not_flagged_and_a_shifted_one_is(fitted, how, outside):
    _, summary = fitted
    videos = unit_rows(np.random.default_rng(99), 20, shift=np.linspace(-1.5, 1.5, WIDTH) if how == "shifted" else None)
    if how == "mirrored":  # the features' channels reversed: the same norms, other directions
        videos = [v[:, ::-1].copy() for v in videos]
    verdicts = [domain_verdict(summary, v) for v in videos]
    assert all(v["outside"] == outside for v in verdicts), [round(v["distance"], 3) for v in verdicts]
    assert all(v["threshold"] == summary["threshold"] for v in verdicts)


def test_the_json_form_gives_the_same_summary_back(fitted):
    _, summary = fitted
    back = summary_from_json(json.loads(json.dumps(summary_to_json(summary))))
    for key in ("mean", "basis", "variances"):
        assert torch.equal(back[key], summary[key]) and back[key].dtype == summary[key].dtype
    assert {k: v for k, v in back.items() if not isinstance(v, torch.Tensor)} == \
        {k: v for k, v in summary.items() if not isinstance(v, torch.Tensor)}


# Training, checkpoint, export --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_text_encoder_dir):
    """A tiny model trained one epoch on the tiny benchmark: best.pt carries its domain summary."""
    from g2l.train import train

    folder = write_tiny_benchmark(tmp_path_factory.mktemp("bench"))
    overrides = tiny_overrides(folder, tiny_text_encoder_dir, folder / "runs", **{"train.epochs": 1})
    result = train(load_config(None, overrides))
    return folder, overrides, result.run_dir / "checkpoints" / "best.pt"


def test_training_stores_the_summary_of_the_training_split(trained, tmp_path):
    from g2l.data.dataset import build_dataset
    from g2l.data.domain import fit_dataset_summary

    folder, overrides, best = trained
    stored = load_checkpoint(best)["domain"]
    cfg = load_config(None, overrides)
    dataset, _ = build_dataset(cfg.data, "train", cfg.model.num_clips)
    refit = fit_dataset_summary(dataset)
    assert stored["num_videos"] == 24 and stored["threshold"] == refit["threshold"]
    assert torch.equal(stored["basis"], refit["basis"])
    # g2l-eval --fit-domain writes the same summary into a copy of a checkpoint that had none.
    bare = tmp_path / "bare.pt"
    save_payload(bare, {k: v for k, v in load_checkpoint(best).items() if k != "domain"})
    assert "domain" not in load_checkpoint(bare)
    assert eval_main(["--checkpoint", str(bare), "--fit-domain", str(tmp_path / "fitted.pt"), *overrides[:4]]) == 0
    assert load_checkpoint(tmp_path / "fitted.pt")["domain"]["threshold"] == refit["threshold"]
    assert eval_main(["--checkpoint", str(bare), "--fit-domain", str(tmp_path / "fitted.pt")]) == 2  # not over a file


def test_the_summary_round_trips_through_a_checkpoint_and_an_export(trained, tmp_path):
    folder, _, best = trained
    stored = load_checkpoint(best)["domain"]
    assert export_main([str(best), str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "domain.json").stat().st_size < 20_000
    exported = load_pretrained(tmp_path / "hf")["domain"]
    for key, value in stored.items():
        assert torch.equal(exported[key], value) if isinstance(value, torch.Tensor) else exported[key] == value
    import h5py

    with h5py.File(folder / "features.hdf5") as h5:
        rows = h5["test000"][()]
    checks = [Grounder.from_checkpoint(source, device="cpu").domain_check(
        Grounder.from_checkpoint(source, device="cpu").encode_features(rows, 30.0)) for source in (best, tmp_path / "hf")]
    assert checks[0] == checks[1] and checks[0]["threshold"] == stored["threshold"]
    assert checks[0]["outside"] is False  # a held-out video of the same benchmark


def test_a_model_without_a_summary_reports_nothing(tiny_text_encoder_dir, tmp_path):
    from g2l.batch import PairsLine, answer
    from g2l.cli.ground import grounding_json

    cfg = load_config(None, tiny_overrides(tmp_path, tiny_text_encoder_dir, tmp_path))
    path = save_checkpoint(tmp_path / "plain.pt", model=build_model(cfg), cfg=cfg)
    grounder = Grounder.from_checkpoint(path, device="cpu")
    video = grounder.encode_features(np.ones((20, 16), np.float32), 20.0)
    assert grounder.domain is None and grounder.domain_check(video) is None
    results = grounder.ground(video, ["a person opens the door."])
    assert "domain" not in grounding_json("v.mp4", 20.0, results, domain=grounder.domain_check(video))
    line = PairsLine(line_no=1, fields={"video": "v.mp4", "query": "q"}, video="/v.mp4", queries=["q"], sha256="0" * 64)
    assert "domain" not in answer(line, results, None, None)
    assert answer(line, results, None, {"distance": 9.0, "threshold": 2.0, "outside": True})["domain"]["outside"]


def _corrupt(summary, how):
    bad = dict(summary)
    if how == "not a mapping":
        return [1, 2]
    if how == "missing key":
        del bad["threshold"]
    elif how == "unknown key":
        bad["code"] = "import os"
    elif how == "basis of another width":
        bad["basis"] = bad["basis"][:, :-1]
    elif how == "nan variance":
        bad["variances"] = bad["variances"].clone()
        bad["variances"][0] = float("nan")
    elif how == "negative threshold":
        bad["threshold"] = -1.0
    elif how == "mean a list":
        bad["mean"] = bad["mean"].tolist()
    elif how == "other feature width":
        bad["mean"], bad["basis"] = bad["mean"][:8], bad["basis"][:, :8]
    return bad


CORRUPTIONS = ["not a mapping", "missing key", "unknown key", "basis of another width", "nan variance",
               "negative threshold", "mean a list", "other feature width"]


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_malformed_summary_is_refused_in_one_sentence(trained, tmp_path, how):
    _, _, best = trained
    payload = load_checkpoint(best)
    bad = tmp_path / "bad.pt"
    save_payload(bad, {**payload, "domain": _corrupt(payload["domain"], how)})
    with pytest.raises(CheckpointError, match=r"malformed domain summary \(.+\); it is corrupt") as error:
        load_checkpoint(bad)
    assert "\n" not in str(error.value)


def test_a_malformed_domain_json_in_an_export_is_refused(trained, tmp_path):
    _, _, best = trained
    assert export_main([str(best), str(tmp_path / "hf")]) == 0
    data = json.loads((tmp_path / "hf" / "domain.json").read_text())
    data["basis"] = "zeros"
    (tmp_path / "hf" / "domain.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="malformed domain summary"):
        load_pretrained(tmp_path / "hf")


# The demo model on real photographs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_grounder():
    from g2l.assets import demo_checkpoint

    grounder = Grounder.from_checkpoint(demo_checkpoint(), device="cpu")
    assert grounder.domain is not None, "checkpoints/demo.pt carries a domain summary"
    return grounder


@pytest.fixture(scope="module")
def photo_video(tmp_path_factory):
    return write_photo_video(tmp_path_factory.mktemp("photos") / "photos.mp4", seconds=20.0, seed=0)


def test_the_demo_model_warns_on_real_photographs_and_not_on_its_example(photo_video, capsys):
    example = REPO / "examples" / "demo.mp4"
    assert ground_main([str(example), "a circle appears.", "--json", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["domain"]["outside"] is False and "warning" not in err
    assert ground_main([str(photo_video), "a dog jumps over a car.", "--json", "--quiet"]) == 0
    out, err = capsys.readouterr()
    domain = json.loads(out)["domain"]
    assert domain["outside"] is True and domain["distance"] > domain["threshold"]
    assert err.count("warning:") == 1 and "looks unlike the videos this model was trained on" in err
    assert ground_main([str(photo_video), "a dog jumps over a car.", "--quiet"]) == 0
    assert capsys.readouterr().err.count("warning:") == 1  # the table too


def test_batch_lines_and_the_app_status_carry_the_verdict(demo_grounder, photo_video, tmp_path):
    from g2l.app import AppHandlers
    from g2l.batch import ground_batch

    example = REPO / "examples" / "demo.mp4"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"video": str(example), "query": "a circle appears."}) + "\n"
                     + json.dumps({"video": str(photo_video), "queries": ["a dog jumps.", "a car."]}) + "\n")
    ground_batch(demo_grounder, pairs, tmp_path / "out.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["domain"]["outside"] for line in sorted(lines, key=lambda x: x["input_line"])] == [False, True]
    handlers = AppHandlers(demo_grounder, tmp_path / "figures")
    (tmp_path / "figures").mkdir()
    _, status, _ = handlers.encode(str(photo_video))
    assert 'class="g2l-warning"' in status and "looks unlike" in status
    status, _, _ = handlers.ground(str(photo_video), "a dog jumps over a car.", "", False)
    assert 'class="g2l-warning"' in status
    _, status, _ = handlers.encode(str(example))
    assert "g2l-warning" not in status
