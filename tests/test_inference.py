"""Grounding video files: a small checkpoint trained here on rendered videos through the real path
(decord -> MobileNetV2 -> training), then Grounder and tools/ground.py on a video file."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from g2l.config import load_config
from g2l.inference import Grounder, GroundingError
from g2l.models.checkpoint import load_checkpoint, save_checkpoint
from g2l.train import train
from g2l.video.frame_encoders import EncoderMismatchError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rendered_run(tmp_path_factory, tiny_text_encoder_dir):
    from g2l.synthetic.render import render_dataset
    from g2l.video.feature_extraction import extract_features_to_hdf5, list_videos
    from g2l.video.frame_encoders import build_frame_encoder

    root = tmp_path_factory.mktemp("rendered")
    data = render_dataset(root / "data", num_train=4, num_val=0, num_test=2, seed=3, progress=False)
    extract_features_to_hdf5(list_videos([data / "videos"]), data / "features.hdf5", build_frame_encoder("mobilenet_v2"),
                             fps=1.0, progress=False)
    cfg = load_config(REPO / "configs" / "demo.yaml", [
        f"data.train_annotations={data / 'train.json'}", f"data.test_annotations={data / 'test.json'}", "data.eval_split=test",
        f"data.features={data / 'features.hdf5'}", f"log.output_dir={root / 'runs'}", "log.run_name=r",
        f"model.text_encoder={tiny_text_encoder_dir}", "model.hidden_dim=16", "model.joint_dim=8", "model.map_num_layers=2",
        "train.epochs=1", "train.batch_size=2", "log.progress=false", "log.checkpoint_text_backbone=true",
        "train.num_threads=0",
    ])
    result = train(cfg)
    return data, result.run_dir / "checkpoints" / "last.pt"


def test_grounder_on_a_video_file(rendered_run):
    data, ckpt = rendered_run
    grounder = Grounder.from_checkpoint(ckpt, device="cpu")
    assert grounder.frame_encoder_spec["name"] == "mobilenet_v2" and grounder.frame_encoder_spec["fps"] == 1.0
    video = grounder.encode_video(data / "videos" / "test_00000.mp4")
    queries = json.loads((data / "test.json").read_text())["test_00000"]["sentences"]
    results = grounder.ground(video, queries, top_k=3, keep_maps=True)
    assert [r.query for r in results] == [q.strip() for q in queries]
    for r in results:
        assert 1 <= len(r.moments) <= 3
        assert all(0 <= m.start_s < m.end_s <= video.duration_s + 1e-6 for m in r.moments)
        assert [m.score for m in r.moments] == sorted((m.score for m in r.moments), reverse=True)
        assert r.score_map.shape == (16, 16)
    # One query at a time gives the same answers as the batch (the video is encoded once).
    alone = grounder.ground(video, [queries[0]], top_k=3)[0]
    assert [(m.start_s, m.end_s) for m in alone.moments] == [(m.start_s, m.end_s) for m in results[0].moments]
    assert alone.moments[0].score == pytest.approx(results[0].moments[0].score, rel=1e-5)
    # Windows: moments stay inside the video and merging keeps NMS.
    windowed = grounder.ground(video, queries, top_k=5, window_s=video.duration_s / 2)
    for r in windowed:
        assert all(0 <= m.start_s < m.end_s <= video.duration_s + 1e-6 for m in r.moments)
    with pytest.raises(GroundingError, match="non-empty"):
        grounder.ground(video, ["  "])


def test_one_video_grounded_with_two_models_gets_each_models_answer(rendered_run):
    """The map features of an encoded video belong to the model that computed them: a second
    model grounding the same EncodedVideo must not reuse the first one's (for whole videos and
    for windows alike)."""
    _, ckpt = rendered_run
    first = Grounder.from_checkpoint(ckpt, device="cpu")
    second = Grounder.from_checkpoint(ckpt, device="cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in second.model.video_encoder.parameters():
            parameter.add_(torch.randn_like(parameter))
    features = np.random.default_rng(0).random((40, first.cfg.data.feature_dim), dtype=np.float32)
    query = ["the red circle grows."]
    for window_s in (None, 20.0):
        shared = first.encode_features(features, 40.0)
        by_first = first.ground(shared, query, window_s=window_s, keep_maps=True)[0]
        by_second = second.ground(shared, query, window_s=window_s, keep_maps=True)[0]
        alone = second.ground(second.encode_features(features, 40.0), query, window_s=window_s, keep_maps=True)[0]
        np.testing.assert_array_equal(by_second.score_map, alone.score_map)
        assert [(m.start_s, m.end_s, m.score) for m in by_second.moments] == [(m.start_s, m.end_s, m.score)
                                                                            for m in alone.moments]
        assert not np.array_equal(by_first.score_map, alone.score_map)  # the two models do differ


def test_encoder_mismatch_and_missing_encoder_are_errors(rendered_run, tmp_path):
    data, ckpt = rendered_run
    payload = load_checkpoint(ckpt)
    from g2l.models.checkpoint import model_from_checkpoint

    model, cfg = model_from_checkpoint(payload, "x")
    wrong = dict(payload["frame_encoder"], input_size=112)
    save_checkpoint(tmp_path / "wrong.pt", model=model, cfg=cfg, frame_encoder=wrong)
    with pytest.raises(EncoderMismatchError, match="input_size"):
        Grounder.from_checkpoint(tmp_path / "wrong.pt", device="cpu").encode_video(data / "videos" / "test_00000.mp4")
    save_checkpoint(tmp_path / "none.pt", model=model, cfg=cfg, frame_encoder=None)
    grounder = Grounder.from_checkpoint(tmp_path / "none.pt", device="cpu")
    with pytest.raises(GroundingError, match="precomputed features"):
        grounder.encode_video(data / "videos" / "test_00000.mp4")
    # Precomputed features still work with such a checkpoint.
    video = grounder.encode_features(np.random.rand(20, 1280).astype(np.float32), 20.0)
    assert len(grounder.ground(video, ["the red circle grows"], top_k=2)[0].moments) == 2


def run_ground(*args):
    return subprocess.run([sys.executable, "tools/ground.py", *args], cwd=REPO, capture_output=True, text=True)


def test_ground_tool_json_and_plot(rendered_run, tmp_path):
    data, ckpt = rendered_run
    video = data / "videos" / "test_00001.mp4"
    proc = run_ground(str(video), "the red circle grows.", "a blue square leaves.", "--checkpoint", str(ckpt), "--json",
                      "--top-k", "2", "--plot", str(tmp_path / "plot.png"))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"video", "duration", "results"} and out["video"] == str(video)
    assert [r["query"] for r in out["results"]] == ["the red circle grows.", "a blue square leaves."]
    for r in out["results"]:
        assert set(r) == {"query", "moments"} and len(r["moments"]) == 2
        for m in r["moments"]:
            assert set(m) == {"start", "end", "score"} and 0 <= m["start"] < m["end"] <= out["duration"] + 1e-6
    png = (tmp_path / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    table = run_ground(str(video), "the red circle grows.", "--checkpoint", str(ckpt))
    assert table.returncode == 0 and "start_s" in table.stdout and "the red circle grows." in table.stdout


@pytest.mark.parametrize("case", ["missing", "not_video", "empty_query", "bad_topk"])
def test_ground_tool_bad_input(rendered_run, tmp_path, case):
    data, ckpt = rendered_run
    video = str(data / "videos" / "test_00000.mp4")
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    args = {"missing": [str(tmp_path / "none.mp4"), "a query"], "not_video": [str(fake), "a query"],
            "empty_query": [video, " "], "bad_topk": [video, "a query", "--top-k", "0"]}[case]
    proc = run_ground(*args, "--checkpoint", str(ckpt))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_long_queries_and_narrow_windows_are_warned_about(rendered_run):
    data, ckpt = rendered_run
    grounder = Grounder.from_checkpoint(ckpt, device="cpu")
    video = grounder.encode_features(np.random.rand(40, 1280).astype(np.float32), 40.0)  # 1 frame/s
    long_query = " ".join(["the red circle grows"] * 40)
    with pytest.warns(UserWarning, match="longer than the model's 64 tokens"):
        grounder.ground(video, [long_query], top_k=1)
    with pytest.warns(UserWarning, match="windows of 8 s hold only 8 frames"):
        grounder.ground(video, ["the red circle grows"], top_k=1, window_s=8.0)
    with pytest.raises(GroundingError, match="too few to ground in"):
        grounder.ground(video, ["the red circle grows"], top_k=1, window_s=1.5)


def test_ground_tool_prints_its_results_before_the_plot_can_fail(rendered_run, monkeypatch, capsys):
    import g2l.cli
    import g2l.cli.ground

    def plot_fails(path, *args):
        raise OSError(28, "No space left on device")

    data, ckpt = rendered_run
    monkeypatch.setattr(g2l.cli.ground, "plot_grounding", plot_fails)
    code = g2l.cli.ground_main([str(data / "videos" / "test_00000.mp4"), "the red circle grows.", "--checkpoint",
                                str(ckpt), "--plot", str(data / "plot.png")])
    out, err = capsys.readouterr()
    assert code == 2 and "start_s" in out and "the red circle grows." in out
    assert err.strip().splitlines()[-1].startswith("error: --plot") and "No space left on device" in err


@pytest.mark.parametrize("query", ["\u200b\u200b", "\u200b \u2060", "...", "42 !", "\u3000"])
def test_a_query_without_letters_is_refused_with_a_sentence(query):
    from g2l.inference import check_queries

    with pytest.raises(GroundingError, match=r"query 2 .* (has no letters|non-empty)|every query must be a non-empty"):
        check_queries(["the red circle grows", query])
    assert check_queries(["  the red circle grows ", "un café"]) == ["the red circle grows", "un café"]


# Precision and batches: a query's answer does not depend on the other queries or on the CPU.
MIXED_QUERIES = ["the green square is moving down.", "a yellow circle slides up.", "circle",
                 "the small yellow triangle slowly turns green while a white square shrinks and the red circle grows "
                 "bigger and bigger until it fills the frame", "a square", "the green triangle fades in.",
                 "two shapes meet in the middle and then the blue one leaves"]


def _answer(result):
    return [(m.start_s, m.end_s, m.score) for m in result.moments]


@pytest.fixture(scope="module")
def bf16_trained(rendered_run, tmp_path_factory):
    """The rendered checkpoint, its config saying train.precision=bf16, and a video's features."""
    from g2l.models.checkpoint import model_from_checkpoint

    data, ckpt = rendered_run
    payload = load_checkpoint(ckpt)
    model, cfg = model_from_checkpoint(payload, "x")
    cfg.train.precision = "bf16"
    path = tmp_path_factory.mktemp("bf16_ckpt") / "bf16.pt"
    save_checkpoint(path, model=model, cfg=cfg, frame_encoder=payload["frame_encoder"])
    video = Grounder.from_checkpoint(ckpt, device="cpu").encode_video(data / "videos" / "test_00000.mp4")
    return path, video


@pytest.mark.parametrize("precision", [None, "bf16"])
def test_a_query_gets_the_same_answer_alone_and_in_any_batch(bf16_trained, precision):
    """Seven queries, long and short, grounded together, in threes and one by one: each query's
    moments, scores and score map are identical (each query goes through the model on its own),
    in the default fp32 and in bf16 alike. With bf16 the former padded batch tied the moments of
    this barely trained map and ranked them by last-bit differences (issue 23)."""
    ckpt, features = bf16_trained
    grounder = Grounder.from_checkpoint(ckpt, device="cpu", precision=precision)
    video = grounder.encode_features(features.features, features.duration_s, fps=features.fps)
    together = grounder.ground(video, MIXED_QUERIES, top_k=5, keep_maps=True)
    threes = [r for start in range(0, 7, 3) for r in grounder.ground(video, MIXED_QUERIES[start:start + 3], top_k=5,
                                                                      keep_maps=True)]
    for query, in_seven, in_three in zip(MIXED_QUERIES, together, threes):
        alone = grounder.ground(video, [query], top_k=5, keep_maps=True)[0]
        assert _answer(in_seven) == _answer(alone) == _answer(in_three), query
        np.testing.assert_array_equal(in_seven.score_map, alone.score_map)
    windowed = [grounder.ground(video, [q], top_k=3, window_s=20.0)[0] for q in MIXED_QUERIES[:3]]
    assert [_answer(r) for r in windowed] == [_answer(r) for r in grounder.ground(video, MIXED_QUERIES[:3], top_k=3,
                                                                                window_s=20.0)]


def test_grounding_is_fp32_whatever_the_checkpoint_or_the_cpu_says(bf16_trained, monkeypatch):
    """A checkpoint trained with train.precision=bf16 grounds in fp32 on a CPU with and without
    bf16 (G2L_CPU_BF16 forced either way), with the same answers to the last bit; the scores agree
    within 1e-5 with an independent fp32 computation through other kernels (all queries in one
    padded batch, two threads), the tolerance the README states across CPUs; bf16 only on request."""
    from g2l.models.grounding import score_cells

    ckpt, features = bf16_trained
    answers = {}
    for forced in ("0", "1"):
        monkeypatch.setenv("G2L_CPU_BF16", forced)
        grounder = Grounder.from_checkpoint(ckpt, device="cpu")
        assert grounder.cfg.train.precision == "bf16" and grounder.precision == "fp32" and grounder._forward_dtype is None
        assert Grounder.from_checkpoint(ckpt, device="cpu", precision="auto")._forward_dtype is (
            torch.bfloat16 if forced == "1" else None)
        video = grounder.encode_features(features.features, features.duration_s, fps=features.fps)
        answers[forced] = grounder.ground(video, MIXED_QUERIES, top_k=5, keep_maps=True)
    assert [_answer(r) for r in answers["0"]] == [_answer(r) for r in answers["1"]]
    # The independent computation: the whole batch padded, on two threads.
    cells = grounder.video_cells(video)
    cells_c, cells_u = cells.cells_c, cells.cells_u  # (w C d)
    tokens = grounder.model.tokenizer(MIXED_QUERIES, padding=True, return_tensors="pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.inference_mode():
            s_c, s_u = grounder.model.encode_text(tokens["input_ids"], tokens["attention_mask"])
    finally:
        torch.set_num_threads(threads)
    reference = score_cells(s_c @ cells_c[0].T, s_u @ cells_u[0].T, grounder.cfg.eval.score_gamma).numpy()  # (q C)
    start_idx, end_idx = grounder.model.cell_start_idx.numpy(), grounder.model.cell_end_idx.numpy()
    ours = np.stack([r.score_map[start_idx, end_idx] for r in answers["0"]])
    assert np.abs(ours - reference).max() <= 1e-5


def test_the_ground_and_eval_tools_default_to_fp32(monkeypatch, tmp_path):
    """g2l-ground and g2l-eval ask for fp32 unless --precision says otherwise (caught before any
    model loads)."""
    import g2l.cli
    import g2l.eval.evaluator
    from g2l.errors import G2LError

    asked = []

    def record(*args, precision=None, **kwargs):
        asked.append(precision)
        raise G2LError("stop here")

    monkeypatch.setattr(Grounder, "from_pretrained", record)
    monkeypatch.setattr(g2l.eval.evaluator, "evaluate_checkpoint", record)
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0" * 16)
    for extra in ([], ["--precision", "bf16"]):
        assert g2l.cli.ground_main([str(video), "a query", *extra]) == 2
        assert g2l.cli.eval_main(["--checkpoint", "x.pt", "--device", "cpu", *extra]) == 2
    assert asked == ["fp32", "fp32", "bf16", "bf16"]
