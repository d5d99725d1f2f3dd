"""train.precision: the bf16 forward pass on a CPU stays close to fp32 and keeps the map's
convolutions on oneDNN (never the reference kernel aten::_slow_conv2d_*), and the former
train.bf16 flag still reads. Op names come from torch.profiler; nothing here is timed."""

import sys
from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from g2l.config import ConfigError, config_from_dict, config_to_dict, load_config
from g2l.engine.precision import autocast, autocast_dtype, cpu_runs_bf16_fast
from g2l.losses.combine import build_loss
from tests.reference.moment_map_full import FullMapEncoder

REPO = Path(__file__).resolve().parents[2]


def _bench():
    sys.path.insert(0, str(REPO / "bench"))
    import common

    return common


def _step(cfg, model, batch, dtype):
    loss_fn = build_loss(cfg)
    model.zero_grad()
    with autocast(dtype, "cpu"):
        out = model(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video)
    terms = loss_fn(out, batch, model.cell_start_idx, model.cell_end_idx, epoch=1)
    terms["total"].backward()
    return out, {k: float(v.detach()) for k, v in terms.items()}


@pytest.mark.parametrize("config,compute", [("charades", "cropped"), ("charades", "full"), ("activitynet", "cropped")])
def test_bf16_losses_are_close_to_fp32_and_convolutions_use_onednn(config, compute):
    common = _bench()
    cfg = load_config(REPO / f"configs/{config}.yaml", ["model.hidden_dim=16"])
    torch.manual_seed(0)
    model = common.build_bench_model(cfg).train()
    if compute == "full":  # the whole padded grid (the reference the cropped map equals)
        model.map_encoder = FullMapEncoder(model.map_encoder)
    batch = common.random_batch(cfg, 3, 2.0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out32, fp32 = _step(cfg, model, batch, None)
    model.load_state_dict(state)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out16, bf16 = _step(cfg, model, batch, torch.bfloat16)
    # The map's features agree to bf16's precision; the losses less tightly, because a random text
    # encoder gives nearly equal sentence features whose differences bf16 round-off shifts.
    torch.testing.assert_close(out16.cell_contrast, out32.cell_contrast, rtol=0, atol=5e-3)
    torch.testing.assert_close(out16.cell_iou, out32.cell_iou, rtol=0, atol=5e-3)
    for name, value in fp32.items():
        assert bf16[name] == pytest.approx(value, rel=0.15, abs=0.02), name
    ops = {event.key for event in prof.key_averages()}
    assert "aten::mkldnn_convolution" in ops
    assert not {op for op in ops if op.startswith("aten::_slow_conv2d") or op.startswith("aten::thnn_conv")}, ops


def test_autocast_dtype_resolves_precision():
    assert autocast_dtype("fp32", "cpu") is None and autocast_dtype("fp32", "cuda") is None
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    assert autocast_dtype("auto", "cuda") is torch.bfloat16
    # auto: bf16 on a CPU only where it has bf16 dot products
    assert autocast_dtype("auto", "cpu") is (torch.bfloat16 if cpu_runs_bf16_fast() else None)
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype("fp16", "cpu")


def test_former_bf16_flag_reads_as_precision():
    assert load_config(overrides=["train.bf16=false"]).train.precision == "fp32"
    assert load_config(overrides=["train.bf16=true"]).train.precision == "auto"
    old = config_to_dict(load_config())
    del old["train"]["precision"]
    old["train"]["bf16"] = False  # a checkpoint written before train.precision existed
    assert config_from_dict(old).train.precision == "fp32"
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(overrides=["train.precision=fp16"])
    with pytest.raises(ConfigError, match="train.bf16"):
        load_config(overrides=["train.bf16=3"])


def test_cpu_bf16_detection_reads_the_flags(monkeypatch, tmp_path):
    import builtins

    from g2l.engine import precision

    monkeypatch.delenv("G2L_CPU_BF16", raising=False)  # the flags decide, even in a run forced either way
    real_open = builtins.open
    for flags, expected in [("fpu avx512f avx512_bf16 sse", True), ("fpu amx_tile amx_bf16", True),
                            ("fpu avx512f avx512bw avx2", False), ("", False)]:
        info = tmp_path / "cpuinfo"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(info if path == "/proc/cpuinfo" else path, *a, **k))
        precision.cpu_has_bf16_flags.cache_clear()
        assert precision.cpu_runs_bf16_fast() is expected
        assert (autocast_dtype("auto", "cpu") is torch.bfloat16) is expected
        assert autocast_dtype("fp32", "cpu") is None
        for forced in (False, True):  # G2L_CPU_BF16 overrides the flags either way
            monkeypatch.setenv("G2L_CPU_BF16", str(int(forced)))
            assert precision.cpu_runs_bf16_fast() is forced
            assert autocast_dtype("auto", "cpu") is (torch.bfloat16 if forced else None)
            assert autocast_dtype("bf16", "cpu") is torch.bfloat16 and autocast_dtype("fp32", "cpu") is None
            assert autocast_dtype("auto", "cuda") is torch.bfloat16  # the variable speaks for the CPU only
        monkeypatch.setenv("G2L_CPU_BF16", "")  # empty: as unset
        assert precision.cpu_runs_bf16_fast() is expected
        monkeypatch.delenv("G2L_CPU_BF16")
    monkeypatch.setattr(builtins, "open", real_open)
    precision.cpu_has_bf16_flags.cache_clear()


@pytest.mark.parametrize("value", ["yes", "2", "true", "bf16"])
def test_a_cpu_bf16_variable_that_is_not_0_or_1_is_refused_with_a_sentence(monkeypatch, value):
    from g2l.engine.precision import PrecisionError

    monkeypatch.setenv("G2L_CPU_BF16", value)
    with pytest.raises(PrecisionError, match=f"G2L_CPU_BF16 is '{value}'; set it to 1 .* 0 .* unset"):
        autocast_dtype("auto", "cpu")
    assert autocast_dtype("fp32", "cpu") is None  # only auto asks


@pytest.mark.parametrize("forced", ["0", "1"])
def test_training_follows_auto_and_grounding_stays_fp32(monkeypatch, forced):
    """Where bf16 is allowed: training's default ``auto`` resolves by the CPU (here forced either
    way); grounding and evaluation default to fp32 (tests/test_inference.py, tests/eval)."""
    from g2l.engine.precision import GROUNDING_PRECISION

    monkeypatch.setenv("G2L_CPU_BF16", forced)
    assert load_config().train.precision == "auto"
    assert autocast_dtype(load_config().train.precision, "cpu") is (torch.bfloat16 if forced == "1" else None)
    assert autocast_dtype(GROUNDING_PRECISION, "cpu") is None


def test_exact_float32_turns_tf32_off_inside_and_restores_it(monkeypatch):
    # On CUDA, float32 grounding and evaluation must not run in TF32 (scores would move ~1e-3 from a
    # CPU's); the switch is global state, so it must come back as it was. Checked through the flags,
    # which exist on a CPU-only torch too.
    from g2l.engine.precision import autocast, no_tf32

    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        with no_tf32():
            assert torch.backends.cuda.matmul.allow_tf32 is False
            assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is True
        with autocast(None, "cpu", exact=True):  # nothing to switch on a CPU
            assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
