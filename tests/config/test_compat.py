"""Choices are typing.Literal fields checked in one place (g2l/config/load.py's _check_value), and the
keys older configs and checkpoints carry (g2l/config/compat.py): the loss keys the ablation retired
(git tag ablation-2026-12) still read when their value is today's behaviour and are refused in one
sentence otherwise; model.map_compute and loss.kernels, which left the config, read and are ignored."""

import dataclasses
import typing

import pytest

from g2l.config import (RETIRED_LOSS_KEYS, Config, ConfigError, LossConfig, config_from_dict, config_to_dict, load_config,
                        parse_override)


def test_the_loss_section_is_at_most_seventeen_keys_and_none_is_retired():
    names = [f.name for f in dataclasses.fields(LossConfig)]
    assert len(names) <= 16
    assert not set(names) & set(RETIRED_LOSS_KEYS)


@pytest.mark.parametrize("key,good,bad", [("loss.sentence_contrast", "gcl_authors", "gcl_form"),
                                          ("loss.sentence_contrast", "off", "gcl_milnce"),
                                          ("train.precision", "bf16", "fp16"),
                                          ("log.wandb", "off", "maybe")])
def test_literal_choices_accept_their_values_and_name_the_key_and_the_choices(key, good, bad):
    section, name = key.split(".")
    assert getattr(getattr(load_config(overrides=[f"{key}={good}"]), section), name) == good
    allowed = typing.get_args(typing.get_type_hints(type(getattr(Config(), section)))[name])
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[f"{key}={bad}"])
    message = str(error.value)
    assert f"'{key}'" in message and all(option in message for option in allowed) and bad in message


def test_a_checkpoint_config_with_every_retired_key_at_its_kept_value_loads():
    old = config_to_dict(Config())
    old["loss"].update(RETIRED_LOSS_KEYS)  # what a checkpoint written before the retirement carries
    old["loss"]["gcl_positive_iou"] = 0  # an integer where the float was kept reads too
    cfg = config_from_dict(old)
    assert config_to_dict(cfg) == config_to_dict(Config())


@pytest.mark.parametrize("order", ["sentence_contrast first", "gcl_form first"])
def test_the_former_authors_form_reads_as_gcl_authors(tmp_path, order):
    lines = ["  sentence_contrast: gcl", "  gcl_form: authors"]
    if order == "gcl_form first":
        lines.reverse()
    (tmp_path / "old.yaml").write_text("loss:\n" + "\n".join(lines) + "\n  gcl_num_positives: 5\n")
    assert load_config(tmp_path / "old.yaml").loss.sentence_contrast == "gcl_authors"
    # Where L_GCL was off, the old code ignored gcl_form; so does the reading of it.
    assert load_config(overrides=["loss.sentence_contrast=mmn", "loss.gcl_form=authors"]).loss.sentence_contrast == "mmn"


@pytest.mark.parametrize("override", ["loss.gcl_aggregation=milnce", "loss.gcl_positive_iou=0.5",
                                      "loss.gcl_negative_closeness=softer", "loss.gcl_moment_push=1.0",
                                      "loss.gcl_positive_weights=raw", "loss.gcl_positive_margin=false",
                                      "loss.ssi_target=fixed", "loss.use_bce=false", "loss.video_contrast=false",
                                      "loss.gcl_form=other"])
def test_other_values_of_a_retired_key_are_refused_naming_the_key_and_the_tag(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[override])
    message = str(error.value)
    assert f"'{key}'" in message and "ablation-2026-12" in message and "\n" not in message
    old = config_to_dict(Config())
    old["loss"][key.split(".")[1]] = parse_override(override)[1]
    with pytest.raises(ConfigError, match="ablation-2026-12"):
        config_from_dict(old)


@pytest.mark.parametrize("key,values,bad", [("model.map_compute", ["cropped", "full"], "sparse"),
                                            ("loss.kernels", ["auto", "numba", "torch"], "cuda")])
def test_keys_that_left_the_config_read_from_old_checkpoints_and_are_ignored(key, values, bad, recwarn):
    section, name = key.split(".")
    for value in values:  # what checkpoints written before carry: the same config as today's
        old = config_to_dict(Config())
        old[section][name] = value
        assert config_to_dict(config_from_dict(old)) == config_to_dict(Config())
    moved = [str(w.message) for w in recwarn if "G2L_KERNELS" in str(w.message)]
    assert len(moved) == (2 if name == "kernels" else 0)  # numba and torch name the variable that replaced it
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[f"{key}={bad}"])
    assert f"'{key}'" in str(error.value) and bad in str(error.value) and "\n" not in str(error.value)
