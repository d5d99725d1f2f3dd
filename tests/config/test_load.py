from pathlib import Path

import pytest
import yaml

from g2l.config import (
    BOUNDS,
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    load_config,
    metric_names,
    save_config,
    validate_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_and_overrides():
    cfg = load_config(overrides=["model.num_clips=64", "data.num_pre_clips=256", "train.milestones=[3,5]", "train.lr=2e-4"])
    assert cfg.model.num_clips == 64 and cfg.train.milestones == [3, 5] and cfg.train.lr == pytest.approx(2e-4)
    assert Config().model.num_clips == 16  # defaults untouched


@pytest.mark.parametrize(
    "override,needle",
    [
        ("model.nonsense=1", "unknown config key 'model.nonsense'"),
        ("nosection.key=1", "unknown config key 'nosection'"),
        ("model.num_clips=abc", "'model.num_clips' must be an integer"),
        ("model.num_clips=1.5", "'model.num_clips' must be an integer"),
        ("train.lr=[1]", "'train.lr' must be a number"),
        ("train.milestones=3", "'train.milestones' must be a list"),
        ("train.milestones=[1,x]", "'train.milestones[1]' must be an integer"),
        ("log.progress=maybe", "'log.progress' must be true or false"),
        ("model=3", "'model' is a section"),
        ("model.num_clips", "must look like section.key=value"),
        ("data.num_pre_clips=30", "multiple of model.num_clips"),
        ("loss.sentence_contrast=foo", "loss.sentence_contrast"),
    ],
)
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_config(overrides=[override])


def test_yaml_bases_and_unknown_key_in_file(tmp_path):
    (tmp_path / "a.yaml").write_text("model: {num_clips: 32}\ntrain: {lr: 0.5}\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\ntrain: {lr: 0.25}\ndata: {num_pre_clips: 64}\n")
    cfg = load_config(tmp_path / "b.yaml", ["train.epochs=3"])
    assert (cfg.model.num_clips, cfg.train.lr, cfg.train.epochs) == (32, 0.25, 3)
    (tmp_path / "bad.yaml").write_text("_base_: b.yaml\nmodel: {num_clip: 4}\n")
    with pytest.raises(ConfigError, match="unknown config key 'model.num_clip'"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_save_and_restore_round_trip(tmp_path):
    cfg = load_config(CONFIGS / "activitynet.yaml", ["train.seed=3"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert config_to_dict(again) == config_to_dict(cfg)
    assert config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text())) == cfg


@pytest.mark.parametrize(
    "name,expected",
    [
        ("charades.yaml", dict(num_clips=16, num_pre_clips=32, counts=[15], k=5, layers=8, iou=(0.5, 1.0), lr=1e-4, batch=48, nms=0.5, gamma=0.5, margin=0.4, lam=0.05, dim=4096)),
        ("activitynet.yaml", dict(num_clips=64, num_pre_clips=256, counts=[15, 8, 8], k=9, layers=4, iou=(0.5, 1.0), lr=8e-4, batch=48, nms=0.5, gamma=0.5, margin=0.3, lam=0.1, dim=500)),
        ("tacos.yaml", dict(num_clips=128, num_pre_clips=256, counts=[15, 8, 8, 8], k=5, layers=8, iou=(0.3, 0.7), lr=8e-4, batch=8, nms=0.4, gamma=0.3, margin=0.1, lam=0.1, dim=4096)),
    ],
)
def test_dataset_configs_carry_method_numbers(name, expected):
    cfg = load_config(CONFIGS / name)
    got = dict(
        num_clips=cfg.model.num_clips, num_pre_clips=cfg.data.num_pre_clips, counts=cfg.model.pooling_counts,
        k=cfg.model.map_kernel_size, layers=cfg.model.map_num_layers, iou=(cfg.loss.iou_min, cfg.loss.iou_max),
        lr=cfg.train.lr, batch=cfg.train.batch_size, nms=cfg.eval.nms_thresh, gamma=cfg.eval.score_gamma,
        margin=cfg.loss.margin, lam=cfg.loss.contrast_weight, dim=cfg.data.feature_dim,
    )
    assert got == expected


def test_every_shipped_config_loads():
    names = sorted(CONFIGS.rglob("*.yaml"))
    assert len(names) >= 4
    for path in names:
        load_config(path)


def test_every_range_names_a_key_and_the_defaults_are_in_range():
    cfg = Config()
    for key in BOUNDS:
        section, name = key.split(".")
        assert hasattr(getattr(cfg, section), name), key
    validate_config(cfg)


@pytest.mark.parametrize("override", ["model.map_num_layers=0", "eval.nms_thresh=1", "train.device=cuda:1",
                                      "loss.ssi_weight=0", "eval.best_metric=R5@0.7"])
def test_values_at_the_edge_of_their_range_are_accepted(override):
    load_config(overrides=[override])


def test_metric_names_are_the_keys_evaluation_reports():
    from g2l.eval.metrics import grounding_metrics

    cfg = load_config(overrides=["eval.recall_at=[1,10]", "eval.iou_thresholds=[0.1,0.25,0.7]", "eval.best_metric=mIoU"])
    reported = grounding_metrics([], [], cfg.eval.recall_at, cfg.eval.iou_thresholds)
    assert set(metric_names(cfg.eval)) == set(reported) - {"num_queries"}
