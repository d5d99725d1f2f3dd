"""The road from the public QVHighlights features to a user's video: the released CLIP (and SlowFast)
features of one query, in Moment-DETR's layout (``clip_features/<vid>.npz``, key ``features``), are
declared, a tiny model trains and evaluates on them, its checkpoint records the CLIP recipe, and it
then grounds a video file through that recipe with a tiny random CLIP. A model trained on CLIP +
SlowFast refuses video files with a sentence that names SlowFast."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.fixtures import import_or_missing, tiny_overrides

av = import_or_missing("av", install="pip install av")
import_or_missing("transformers", install="pip install 'g2l[train]'")

from g2l.cli.data import extract_main  # noqa: E402
from g2l.config import load_config  # noqa: E402
from g2l.data.features import SPEC_FILE, FeatureStore, VideoFeatures  # noqa: E402
from g2l.eval.evaluator import evaluate_checkpoint  # noqa: E402
from g2l.inference import Grounder, GroundingError  # noqa: E402
from g2l.models.checkpoint import load_checkpoint  # noqa: E402
from g2l.train import train  # noqa: E402
from g2l.video.feature_extraction import extract_video_features  # noqa: E402
from g2l.video.frame_encoders import RELEASE_SPECS, build_frame_encoder  # noqa: E402
from tests.video.clip_utils import write_clip_folder, write_pyav_video  # noqa: E402

VID = "qtyBzFV9yTs_60.0_210.0"


@pytest.fixture(scope="module")
def release(shared_data, tmp_path_factory):
    """The shared files laid out as Moment-DETR's release unpacks them, each folder declared, and the
    query's annotation line from highlight_train_release.jsonl."""
    root = tmp_path_factory.mktemp("qvhighlights")
    source = shared_data / "features" / "qvhighlights_qid5263"
    for kind in ("clip", "slowfast"):
        (root / f"{kind}_features").mkdir()
        shutil.copyfile(source / f"{kind}_video_features__{VID}.npz", root / f"{kind}_features" / f"{VID}.npz")
        assert extract_main(["--declare", f"qvhighlights_{kind}", str(root / f"{kind}_features")]) == 0
    lines = (shared_data / "annotations" / "qvhighlights" / "highlight_train_release.jsonl").read_text().splitlines()
    line = next(text for text in lines if json.loads(text)["qid"] == 5263)
    (root / "train.jsonl").write_text(line + "\n")
    return root


def overrides(release, text_encoder_dir, out, features: str, feature_dim: int, name: str) -> list[str]:
    return tiny_overrides(release, text_encoder_dir, out, **{
        "data.annotation_format": "qvhighlights", "data.train_annotations": release / "train.jsonl",
        "data.test_annotations": release / "train.jsonl", "data.features": features,
        "data.feature_dim": feature_dim, "train.batch_size": 1, "train.epochs": 1, "train.milestones": "[1]",
        "eval.batch_size": 1, "log.run_name": name})


@pytest.fixture(scope="module")
def clip_run(release, tiny_text_encoder_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = load_config(None, overrides(release, tiny_text_encoder_dir, out, str(release / "clip_features"), 512, "clip"))
    return train(cfg)


def test_the_moment_detr_layout_reads_and_declares(release):
    store = FeatureStore(release / "clip_features")
    assert store.video_ids() == [VID] and store.shape(VID) == (75, 512)  # the declaration is not a video
    assert store.encoder_spec() == json.loads(json.dumps(RELEASE_SPECS["qvhighlights_clip"]))
    raw = np.load(release / "clip_features" / f"{VID}.npz")["features"]
    np.testing.assert_array_equal(store.read(VID), raw.astype(np.float32))
    # Declaring again is a no-op; declaring something else over it is refused, and the file is untouched.
    before = (release / "clip_features" / SPEC_FILE).read_bytes()
    assert extract_main(["--declare", "qvhighlights_clip", str(release / "clip_features")]) == 0
    assert extract_main(["--declare", "qvhighlights_slowfast", str(release / "clip_features")]) == 2
    assert (release / "clip_features" / SPEC_FILE).read_bytes() == before
    joined = VideoFeatures(f"{release / 'clip_features'},{release / 'slowfast_features'}", num_pre_clips=16)
    assert joined.shape(VID) == (75, 512 + 2304)
    spec = joined.encoder_spec()
    assert spec["name"] == "joined" and [json.loads(p)["name"] for p in spec["parts"]] == ["clip_release", "slowfast"]


def test_a_model_trains_and_evaluates_on_the_release_and_records_its_recipe(clip_run, tmp_path):
    best = clip_run.run_dir / "checkpoints" / "best.pt"
    payload = load_checkpoint(best)
    assert payload["frame_encoder"] == json.loads(json.dumps(RELEASE_SPECS["qvhighlights_clip"]))
    result = evaluate_checkpoint(str(best), predictions_out=str(tmp_path / "p.jsonl"), device="cpu")
    assert all(np.isfinite(v) for v in result.metrics.values() if isinstance(v, float))
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 1  # the one query, scored


def test_the_trained_model_grounds_a_video_file_through_the_declared_clip(clip_run, tmp_path, capsys):
    from g2l.cli.ground import ground_main

    clip = write_clip_folder(tmp_path / "clip", projection_dim=512)  # a random CLIP as wide as ViT-B/32's projection
    video = write_pyav_video(tmp_path / "mine.mp4", width=160, height=120, fps=10, seconds=21.0)
    best = clip_run.run_dir / "checkpoints" / "best.pt"
    grounder = Grounder.from_checkpoint(best, device="cpu", frame_encoder=f"clip_release:{clip}")
    assert grounder.fps == 0.5
    encoded = grounder.encode_video(video)
    expected, _ = extract_video_features(video, build_frame_encoder(f"clip_release:{clip}"), fps=0.5)
    assert encoded.features.shape == (11, 512)  # round(21 / 2) clips of 2 s
    np.testing.assert_allclose(encoded.features, expected, atol=1e-6)
    [result] = grounder.ground(encoded, ["Animation of the planet earth"], top_k=3)
    assert result.moments and all(0 <= m.start_s < m.end_s <= 21.0 + 1e-6 for m in result.moments)
    code = ground_main([str(video), "Animation of the planet earth", "--checkpoint", str(best),
                        "--frame-encoder", f"clip_release:{clip}", "--device", "cpu", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads(out)


def test_another_recipe_than_the_recorded_one_is_refused(clip_run, tmp_path):
    from g2l.video.frame_encoders import EncoderMismatchError

    clip = write_clip_folder(tmp_path / "clip", projection_dim=512)
    best = clip_run.run_dir / "checkpoints" / "best.pt"
    with pytest.raises(EncoderMismatchError, match="name: expected 'clip_release', found 'clip'"):
        Grounder.from_checkpoint(best, device="cpu", frame_encoder=f"clip:{clip}").frame_encoder  # noqa: B018
    narrow = write_clip_folder(tmp_path / "narrow", projection_dim=256)
    with pytest.raises(EncoderMismatchError, match="output_dim: expected 512, found 256"):
        Grounder.from_checkpoint(best, device="cpu", frame_encoder=f"clip_release:{narrow}").frame_encoder  # noqa: B018


def test_without_the_named_clip_the_checkpoint_asks_for_openai_weights(clip_run, monkeypatch, tmp_path):
    # Offline with no cache, the hub name the checkpoint records cannot load: one sentence naming it.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    grounder = Grounder.from_checkpoint(clip_run.run_dir / "checkpoints" / "best.pt", device="cpu")
    from g2l.video.frame_encoders import FrameEncoderError

    with pytest.raises(FrameEncoderError, match="openai/clip-vit-base-patch32"):
        grounder.frame_encoder  # noqa: B018


def test_a_clip_plus_slowfast_model_refuses_video_files_naming_slowfast(release, tiny_text_encoder_dir, tmp_path,
                                                                         capsys):
    from g2l.cli.ground import ground_main

    features = f"{release / 'clip_features'},{release / 'slowfast_features'}"
    run = train(load_config(None, overrides(release, tiny_text_encoder_dir, tmp_path, features, 512 + 2304, "both")))
    best = run.run_dir / "checkpoints" / "best.pt"
    grounder = Grounder.from_checkpoint(best, device="cpu")
    video = write_pyav_video(tmp_path / "mine.mp4", width=64, height=48, fps=10, seconds=4.0)
    with pytest.raises(GroundingError, match=r"clip_release \+ slowfast.*ships no slowfast model.*CLIP features alone"):
        grounder.encode_video(video)
    # Precomputed features of the same kind still ground (never zero-filled in place of SlowFast).
    joined = VideoFeatures(features, num_pre_clips=16)
    parts = [store.read(VID) for store in joined.stores]
    encoded = grounder.encode_features(np.concatenate(parts, axis=1), duration_s=150.0)
    assert grounder.ground(encoded, ["Animation of the planet earth"], top_k=1)[0].moments
    code = ground_main([str(video), "a query", "--checkpoint", str(best), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "slowfast" in err and "Traceback" not in err
    # Its model card does not offer video files.
    from tests.fixtures import export_folder

    card = (export_folder(best, tmp_path / "export") / "README.md").read_text()
    assert "g2l-ground my_video.mp4" not in card and "encode_features" in card and "slowfast" in card


def test_the_model_card_of_a_model_without_frame_encoder_offers_features_not_videos(tmp_path, tiny_text_encoder_dir):
    from tests.fixtures import export_folder, tiny_checkpoint_with_text, write_tiny_benchmark

    checkpoint = tiny_checkpoint_with_text(write_tiny_benchmark(tmp_path / "bench", num_train=2, num_test=1),
                                           tiny_text_encoder_dir)
    card = (export_folder(checkpoint, tmp_path / "export") / "README.md").read_text()
    usage = card.split("## How to use it")[1].split("## Files")[0]
    assert "my_video.mp4" not in usage and "encode_video" not in usage
    assert "encode_features" in usage and "(T, 16)" in usage and "no frame encoder recorded" in usage


def test_the_shipped_qvhighlights_configs_fit_the_release(release):
    from pathlib import Path

    from g2l.models.moment_map import SparseMaxPool

    configs = Path(__file__).resolve().parents[2] / "configs"
    clip = load_config(str(configs / "qvhighlights_clip.yaml"))
    spec = RELEASE_SPECS["qvhighlights_clip"]
    assert clip.data.feature_dim == spec["output_dim"] == FeatureStore(release / "clip_features").shape(VID)[1]
    assert clip.data.num_pre_clips * spec["clip_len_s"] == 150  # one pre-clip per released row
    mask = SparseMaxPool(num_clips=clip.model.num_clips, pooling_counts=clip.model.pooling_counts).mask2d.numpy()
    lengths = {int(e - s + 1) for s, e in zip(*np.nonzero(mask))}
    assert {1, 16, 64} <= lengths and max(lengths) * 150 / clip.model.num_clips == 128  # 2 s to 128 s
    both = load_config(str(configs / "qvhighlights_clip_slowfast.yaml"))
    assert both.data.feature_dim == 512 + 2304 and both.data.features.split(",")[0] == clip.data.features
