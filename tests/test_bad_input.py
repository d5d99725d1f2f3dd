"""Bad input, as a careless or hostile user gives it. Every case must end with one line on stderr,
``error: ...`` naming the input and what to do, exit status 2, no traceback, and nothing written.

To add a case, add a row to CASES: ``(name, tool, argv, fragment)``, with a pytest mark after
``fragment`` for a case that only some machines can run. ``tool`` is ``train``,
``eval`` or ``ground`` (the entry points of g2l.cli, run in this process), ``fragment`` must appear
in the error line, and ``argv`` may use these placeholders:

    {tiny}       (a whole argument) the overrides of a tiny training run (tests/fixtures.py) into {out}
    {out}        a fresh folder for run folders; it must stay empty
    {bench}      the tiny benchmark's folder (train.json, test.json, features.hdf5)
    {ckpt}       a checkpoint of a tiny run (1 epoch); {run} a fresh copy of that run's folder
    {bad}/NAME   a file that BAD_FILES writes (add a writer there for a new kind of file)
    {video}      the shipped example video; {tmp} a fresh empty folder
"""

import gzip
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from g2l.cli import app_main, eval_main, export_main, extract_main, ground_main, train_main
from g2l.config import load_config
from g2l.train import train
from tests.fixtures import tiny_overrides, write_tiny_benchmark

REPO = Path(__file__).resolve().parents[1]
TOOLS = {"train": train_main, "eval": eval_main, "ground": ground_main, "export": export_main, "app": app_main,
         "extract": extract_main}
TRAIN = ["--config", "configs/base.yaml", "{tiny}"]


def _hdf5_like_bench(path: Path, ctx: dict, transform) -> None:
    """The tiny benchmark's features with every array passed through ``transform``."""
    with h5py.File(ctx["bench"] / "features.hdf5") as source, h5py.File(path, "w") as out:
        for video in source:
            out[video] = transform(source[video][()])


def _npy_folder_with_a_truncated_file(path: Path, ctx: dict) -> None:
    path.mkdir()
    with h5py.File(ctx["bench"] / "features.hdf5") as source:
        for video in source:
            np.save(path / f"{video}.npy", source[video][()])
    data = (path / "train003.npy").read_bytes()
    (path / "train003.npy").write_bytes(data[: len(data) // 3])


def _hdf5_with_a_corrupt_chunk(path: Path, ctx: dict) -> None:
    """Video train005 is stored compressed in chunks, and its second chunk is overwritten: the file
    opens and every shape reads, but reading that video fails (mid-epoch)."""
    with h5py.File(ctx["bench"] / "features.hdf5") as source, h5py.File(path, "w") as out:
        for video in source:
            if video == "train005":
                out.create_dataset(video, data=source[video][()], chunks=(8, 16), compression="gzip")
            else:
                out[video] = source[video][()]
        chunk = out["train005"].id.get_chunk_info(1)
    with path.open("r+b") as handle:
        handle.seek(chunk.byte_offset)
        handle.write(b"\xff" * chunk.size)


def _annotations_with_empty_sentences(path: Path, ctx: dict) -> None:
    data = json.loads((ctx["bench"] / "train.json").read_text())
    for entry in data.values():
        entry["sentences"] = ["  " for _ in entry["sentences"]]
    path.write_text(json.dumps(data))


class _RunsCode:
    """Pickled, this object asks the loader to call os.system (harmlessly, if it ever did)."""

    def __reduce__(self):
        import os

        return (os.system, ("true",))


def _checkpoint_changed(path: Path, ctx: dict, change) -> None:
    payload = torch.load(ctx["ckpt"], weights_only=True)
    change(payload)
    torch.save(payload, path)


def _run_with_crafted(path: Path, ctx: dict, change) -> None:
    shutil.copytree(ctx["run"], path)
    payload = torch.load(path / "checkpoints" / "last.pt", weights_only=True)
    change(payload)
    torch.save(payload, path / "checkpoints" / "last.pt")


def _predictions(path: Path, ctx: dict, **changes) -> None:
    record = {"video": "v", "query": "a person opens the door.", "duration": 30.0, "gt": [2.0, 7.5],
              "candidates": [[2.0, 8.0, 0.9], [10.0, 20.0, 0.5]], **changes}
    path.write_text(json.dumps(record) + "\n")


BAD_FILES = {
    "predictions.jsonl": _predictions,
    "binary.jsonl": lambda path, ctx: path.write_bytes(gzip.compress((ctx["bad"] / "predictions.jsonl").read_bytes())),
    "gt_abc.jsonl": lambda path, ctx: _predictions(path, ctx, gt="abc"),
    "duration_true.jsonl": lambda path, ctx: _predictions(path, ctx, duration=True),
    "gt_inverted.jsonl": lambda path, ctx: _predictions(path, ctx, gt=[[1.0, 4.0], [9.0, 3.0]]),
    "queries.csv": lambda path, ctx: path.write_text("video,sentence\nv,a person opens the door.\n"),
    "no_model.pt": lambda path, ctx: _checkpoint_changed(path, ctx, lambda p: p.pop("model")),
    "pickled_code.pt": lambda path, ctx: torch.save({"format": "g2l-checkpoint", "x": _RunsCode()}, path),
    "truncated.pt": lambda path, ctx: path.write_bytes(ctx["ckpt"].read_bytes()[:5000]),
    "a_file": lambda path, ctx: path.write_text("not a folder\n"),
    "features_1d.hdf5": lambda path, ctx: _hdf5_like_bench(path, ctx, lambda a: a.reshape(-1)),
    "features_3d.hdf5": lambda path, ctx: _hdf5_like_bench(path, ctx, lambda a: a[None]),
    "npy_truncated": _npy_folder_with_a_truncated_file,
    "chunk_corrupt.hdf5": _hdf5_with_a_corrupt_chunk,
    "empty_sentences.json": _annotations_with_empty_sentences,
    "run_without_optimizer": lambda path, ctx: _run_with_crafted(path, ctx, lambda p: p.update(optimizer=None)),
    "run_with_a_path_as_wandb_id": lambda path, ctx: _run_with_crafted(
        path, ctx, lambda p: p.update(extra={"wandb_id": "../../outside"})),
    "model_not_tensors.pt": lambda path, ctx: _checkpoint_changed(path, ctx, lambda p: p["model"].update(
        {next(iter(p["model"])): "not a tensor"})),
    "broken.yaml": lambda path, ctx: path.write_text("model:\n  num_clips: 16\n  pooling_counts: [15\ntrain:\n  lr: 1\n"),
    "link_to_dev_zero": lambda path, ctx: path.symlink_to("/dev/zero"),
    "deep.json": lambda path, ctx: path.write_text('{"v": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    "huge_int.json": lambda path, ctx: path.write_text(
        '{"v": {"duration": 1' + "0" * 5000 + ', "timestamps": [[0, 1]], "sentences": ["a person opens the door."]}}'),
    "deep.jsonl": lambda path, ctx: path.write_text('{"video": "v", "gt": ' + "[" * 100_000 + "]" * 100_000 + "}\n"),
    "huge_int.jsonl": lambda path, ctx: _predictions(path, ctx, duration=10 ** 400),
    **{f"frame_fps_{name}.pt": (lambda fps: lambda path, ctx: _checkpoint_changed(
        path, ctx, lambda p: p.update(frame_encoder={"name": "mobilenet_v2", "fps": fps})))(fps)
       for name, fps in [("zero", 0.0), ("negative", -2.0), ("nan", float("nan")), ("huge", 1e6), ("text", "1")]},
}

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")

CASES = [
    # --- training: values checked when the config is loaded, before any data is read
    ("hidden-dim-zero", "train", [*TRAIN, "model.hidden_dim=0"], "config key 'model.hidden_dim' must be at least 1"),
    ("num-pre-clips-zero", "train", [*TRAIN, "data.num_pre_clips=0"], "'data.num_pre_clips' must be at least 1"),
    ("lr-negative", "train", [*TRAIN, "train.lr=-1"], "'train.lr' must be greater than 0, got -1.0"),
    ("lr-nan", "train", [*TRAIN, "train.lr=nan"], "'train.lr' must be a finite number"),
    ("iou-threshold-above-1", "train", [*TRAIN, "eval.iou_thresholds=[0.5,1.5]"],
     "'eval.iou_thresholds[1]' must be in (0, 1]"),
    ("device-banana", "train", [*TRAIN, "train.device=banana"], "train.device must be auto, cpu, cuda"),
    ("best-metric-not-reported", "train", [*TRAIN, "eval.best_metric=R9@0.9"],
     "eval.best_metric 'R9@0.9' is not a metric this config reports"),
    ("config-yaml-syntax-error", "train", ["--config", "{bad}/broken.yaml", "{tiny}"],
     "config file {bad}/broken.yaml is not valid YAML at line 4, column 6: expected ',' or ']', but got ':' "
     "(while parsing a flow sequence that begins at line 3, column 19); fix the file"),
    ("config-a-link-to-dev-zero", "train", ["--config", "{bad}/link_to_dev_zero", "{tiny}"],
     "config file {bad}/link_to_dev_zero is a link to /dev/zero, which is not a regular file (a character device)"),
    ("config-a-directory", "train", ["--config", "{tmp}", "{tiny}"], "is a directory; pass a YAML config file"),
    # --- training: the data, checked before anything is written
    ("train-every-sentence-empty", "train", [*TRAIN, "data.train_annotations={bad}/empty_sentences.json"],
     "the train split has no usable query"),
    ("eval-split-empty", "train", [*TRAIN, "data.test_annotations={bad}/empty_sentences.json"],
     "the test split has no usable query"),
    ("every-video-of-the-wrong-width", "train", [*TRAIN, "data.feature_dim=17"],
     "feature width 16 != data.feature_dim 17"),
    ("annotations-nested-too-deep", "train", [*TRAIN, "data.train_annotations={bad}/deep.json"],
     "{bad}/deep.json is not valid JSON (arrays or objects nested too deep to read)"),
    ("annotations-huge-integer", "train", [*TRAIN, "data.train_annotations={bad}/huge_int.json"],
     "{bad}/huge_int.json is not valid JSON (an integer of 5001 digits)"),
    ("features-1d", "train", [*TRAIN, "data.features={bad}/features_1d.hdf5"], "features not a (T, F) array"),
    ("features-3d", "train", [*TRAIN, "data.features={bad}/features_3d.hdf5"], "features not a (T, F) array"),
    ("npy-truncated", "train", [*TRAIN, "data.features={bad}/npy_truncated"], "video train003 in "),
    ("hdf5-chunk-corrupt-mid-epoch", "train", [*TRAIN, "data.features={bad}/chunk_corrupt.hdf5"],
     "the features of video train005 in "),
    ("output-dir-is-a-file", "train", [*TRAIN, "log.output_dir={bad}/a_file"], "log.output_dir"),
    ("annotation-format-unknown", "train", [*TRAIN, "data.annotation_format=", "data.train_annotations={bad}/queries.csv"],
     "set data.annotation_format to one of"),
    # --- resuming
    ("resume-a-file", "train", ["--resume", "{ckpt}"], "is a file, not a run folder"),
    ("resume-a-folder-that-is-no-run", "train", ["--resume", "{tmp}"], "holds neither checkpoints/last.pt nor config.yaml"),
    ("resume-without-optimizer-state", "train", ["--resume", "{bad}/run_without_optimizer"], "holds no optimizer state"),
    ("resume-with-a-path-as-wandb-id", "train", ["--resume", "{bad}/run_with_a_path_as_wandb_id"],
     "malformed training state"),
    # --- grounding: all but the last are found before the checkpoint is loaded
    ("ground-device-banana", "ground", ["{video}", "a query", "--device", "banana"], "--device must be auto, cpu, cuda"),
    ("ground-device-cuda-without-cuda", "ground", ["{video}", "a query", "--device", "cuda"],
     "--device is 'cuda' but no CUDA device", NO_CUDA),
    ("ground-video-is-a-directory", "ground", ["{tmp}", "a query"], "is a directory; pass a video file"),
    ("ground-video-link-to-dev-zero", "ground", ["{bad}/link_to_dev_zero", "a query"],
     "is a link to /dev/zero, which is not a regular file (a character device); pass a video file"),
    ("ground-query-without-letters", "ground", ["{video}", "\u200b\u200b ..."], "has no letters"),
    ("ground-query-not-utf8", "ground", ["{video}", "the red \udcff\udcfe circle"], "is not valid text"),
    ("ground-batch-without-out", "ground", ["--batch", "{bad}/link_to_dev_zero"], "--batch needs --out"),
    ("ground-batch-pairs-dev-zero", "ground", ["--batch", "{bad}/link_to_dev_zero", "--out", "{tmp}/o.jsonl"],
     "is a link to /dev/zero, which is not a regular file"),
    ("ground-checkpoint-is-a-directory", "ground", ["{video}", "a query", "--checkpoint", "{tmp}"],
     "is a directory without model.safetensors and config.json; pass a checkpoint file"),
    ("ground-window-nan", "ground", ["{video}", "a query", "--window", "nan"], "--window must be a positive number"),
    ("ground-window-zero", "ground", ["{video}", "a query", "--window", "0"], "--window must be a positive number"),
    ("ground-window-negative", "ground", ["{video}", "a query", "--window", "-5"], "--window must be a positive number"),
    ("ground-plot-in-a-file", "ground", ["{video}", "a query", "--plot", "{bad}/a_file/out.png"],
     "--plot {bad}/a_file/out.png cannot be created"),
    ("ground-plot-is-a-directory", "ground", ["{video}", "a query", "--plot", "{tmp}"], "is a folder, not a file"),
    ("ground-checkpoint-fps-zero", "ground", ["{video}", "a query", "--checkpoint", "{bad}/frame_fps_zero.pt"],
     "(frame_encoder.fps) must be a positive frame rate of at most 60 frames per second, got 0.0"),
    ("ground-checkpoint-fps-negative", "ground", ["{video}", "a query", "--checkpoint", "{bad}/frame_fps_negative.pt"],
     "got -2.0; the checkpoint is damaged"),
    ("ground-checkpoint-fps-nan", "ground", ["{video}", "a query", "--checkpoint", "{bad}/frame_fps_nan.pt"],
     "frames per second, got nan"),
    ("ground-checkpoint-fps-huge", "ground", ["{video}", "a query", "--checkpoint", "{bad}/frame_fps_huge.pt"],
     "frames per second, got 1000000.0"),
    ("ground-checkpoint-fps-text", "ground", ["{video}", "a query", "--checkpoint", "{bad}/frame_fps_text.pt"],
     "frames per second, got '1'"),
    ("ground-window-shorter-than-a-frame", "ground", ["{video}", "a query", "--window", "0.01"],
     "--window 0.01 s holds 0.01 frames"),
    # --- evaluation of a checkpoint
    ("eval-device-banana", "eval", ["--checkpoint", "{ckpt}", "--device", "banana"], "--device must be auto"),
    ("eval-checkpoint-is-a-directory", "eval", ["--checkpoint", "{tmp}"], "is a directory without model.safetensors"),
    ("checkpoint-without-model", "eval", ["--checkpoint", "{bad}/no_model.pt"], "has no config or model weights"),
    ("checkpoint-weights-not-tensors", "eval", ["--checkpoint", "{bad}/model_not_tensors.pt"], "not all named tensors"),
    ("checkpoint-with-pickled-code", "eval", ["--checkpoint", "{bad}/pickled_code.pt"],
     "holds pickled Python objects"),
    ("checkpoint-truncated", "eval", ["--checkpoint", "{bad}/truncated.pt"], "truncated or corrupt"),
    ("eval-json-in-a-file", "eval", ["--checkpoint", "{ckpt}", "--json", "{bad}/a_file/m.json"], "--json"),
    ("eval-out-in-a-file", "eval", ["--checkpoint", "{ckpt}", "--out", "{bad}/a_file/p.jsonl"], "--out"),
    # --- re-scoring a predictions file
    ("predictions-binary", "eval", ["--predictions", "{bad}/binary.jsonl"], "not UTF-8 text"),
    ("predictions-a-directory", "eval", ["--predictions", "{tmp}"], "is a directory"),
    ("predictions-a-link-to-dev-zero", "eval", ["--predictions", "{bad}/link_to_dev_zero"],
     "predictions path {bad}/link_to_dev_zero is a link to /dev/zero, which is not a regular file (a character device)"),
    ("annotations-a-link-to-dev-zero", "train", [*TRAIN, "data.train_annotations={bad}/link_to_dev_zero"],
     "Annotation file {bad}/link_to_dev_zero is a link to /dev/zero, which is not a regular file (a character device)"),
    ("predictions-gt-a-string", "eval", ["--predictions", "{bad}/gt_abc.jsonl"], "'gt' must be [start, end]"),
    ("predictions-duration-true", "eval", ["--predictions", "{bad}/duration_true.jsonl"],
     "'duration' must be a positive number"),
    ("predictions-nested-too-deep", "eval", ["--predictions", "{bad}/deep.jsonl"],
     "{bad}/deep.jsonl, line 1: not valid JSON (arrays or objects nested too deep to read)"),
    ("predictions-huge-integer", "eval", ["--predictions", "{bad}/huge_int.jsonl"],
     "{bad}/huge_int.jsonl, line 1: not valid JSON (an integer of 401 digits)"),
    ("predictions-gt-inverted", "eval", ["--predictions", "{bad}/gt_inverted.jsonl"], "does not end after it starts"),
    ("recall-at-negative", "eval", ["--predictions", "{bad}/predictions.jsonl", "--recall-at", "-1"], "--recall-at"),
    ("recall-at-zero", "eval", ["--predictions", "{bad}/predictions.jsonl", "--recall-at", "0"], "--recall-at"),
    ("iou-threshold-negative", "eval", ["--predictions", "{bad}/predictions.jsonl", "--iou-thresholds", "-1"],
     "--iou-thresholds"),
    ("iou-threshold-above-one", "eval", ["--predictions", "{bad}/predictions.jsonl", "--iou-thresholds", "0.5,1.5"],
     "--iou-thresholds"),
    # --- feature extraction
    ("extract-fps-huge", "extract", ["{video}", "--out", "{out}/features.hdf5", "--fps", "1e6", "--no-progress"],
     "fps must be a positive frame rate of at most 60 frames per second, got 1000000.0"),
    # --- the Hugging Face layout and the web app
    ("ground-repo-id-not-cached", "ground", ["{video}", "a query", "--checkpoint", "no-such-org/no-such-model"],
     "as a Hugging Face repo id it could not be fetched"),
    ("export-missing-checkpoint", "export", ["{tmp}/missing.pt", "{tmp}/out"], "does not exist; check the path"),
    ("export-out-is-a-file", "export", ["{ckpt}", "{video}"], "exists and is not a folder"),
    ("export-push-bad-repo-id", "export", ["{ckpt}", "{tmp}/out", "--push-to-hub", "a b"], "is not a repo id"),
    ("export-missing-floors", "export", ["{ckpt}", "{tmp}/out", "--floors", "{tmp}/none.json"], "--floors file"),
    ("app-port-out-of-range", "app", ["--port", "70000"], "--port must be in 1..65535"),
]


@pytest.fixture(scope="module")
def context(tmp_path_factory, tiny_text_encoder_dir):
    root = tmp_path_factory.mktemp("bad_input")
    bench = write_tiny_benchmark(root / "bench")
    cfg = load_config(None, tiny_overrides(bench, tiny_text_encoder_dir, root / "runs",
                                           **{"train.epochs": 1, "log.run_name": "run"}))
    run = train(cfg).run_dir
    ctx = {"bench": bench, "encoder": tiny_text_encoder_dir, "run": run, "ckpt": run / "checkpoints" / "last.pt",
           "bad": root / "bad"}
    ctx["bad"].mkdir()
    for name, write in BAD_FILES.items():
        write(ctx["bad"] / name, ctx)
    return ctx


def expand(argv: list[str], ctx: dict, tmp_path: Path) -> tuple[list[str], Path]:
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    values = {"bench": ctx["bench"], "ckpt": ctx["ckpt"], "bad": ctx["bad"], "out": out, "tmp": tmp,
              "video": REPO / "examples" / "demo.mp4", "run": tmp_path / "run"}
    if any("{run}" in arg for arg in argv):
        shutil.copytree(ctx["run"], values["run"])
    expanded = []
    for arg in argv:
        if arg == "{tiny}":
            expanded += tiny_overrides(ctx["bench"], ctx["encoder"], out, **{"log.run_name": "run"})
        else:
            expanded.append(arg.format(**values))
    return expanded, out


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.mark.parametrize("tool, argv, fragment",
                         [pytest.param(*row[1:4], id=row[0], marks=row[4:]) for row in CASES])
def test_bad_input_is_one_line_and_exit_status_2(context, tmp_path, capsys, tool, argv, fragment):
    argv, out = expand(argv, context, tmp_path)
    try:
        code = TOOLS[tool](argv)
    except SystemExit as stop:  # argument errors: argparse exits
        code = stop.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert "Traceback" not in err and len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    assert fragment.format(**{"bad": context["bad"]}) in errors[0]
    assert "weights_only" not in err  # never suggest loading a checkpoint unsafely
    assert files_under(out) == [], f"left behind: {files_under(out)}"
