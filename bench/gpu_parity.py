"""Do the device's kernels and losses agree with the CPU's? Four sections:

(A) CPU against CUDA (``--device cuda``, or ``--compare-device``): the training losses of MMN and
    G2L for each public setting, fp32 and bf16 (within bf16's
    round-off), with ``kernels="numba"`` on both sides (the same estimator draws: only the device
    differs). ``--compare-device cpu`` runs it CPU against CPU (bench/gpu_check.sh's dry run: the
    code path, not a comparison).
(B) geodesic closeness: the torch kernels on the device against the Numba kernels on the CPU, on
    map-like features (bench/common.py ``map_like_cells``): bit-equal on the same dense graph on a
    CPU, within 1e-4 on CUDA (its own matmul rounding), and the lazy Numba graph within 1e-4.
(C) Shapley interactions: the torch estimator on the device against the Numba one on the CPU, on
    the same games: for every (sentence, moment) pair z = (difference) / sqrt(se_1^2 + se_2^2)
    should be about N(0, 1): no |z| beyond 5 and a mean z^2 in [0.5, 2], over 4 seeds.
(D) the G2L loss terms with ``kernels="numba"`` and ``"torch"`` on the device: the geodesic
    terms within 1e-5 relative, L_SSI within 4 standard deviations of its draw-to-draw spread.

    python bench/gpu_parity.py                      # --device cuda: exits 2 when there is no CUDA device
    python bench/gpu_parity.py --device cpu --quick # the torch kernels against Numba on the CPU (tests run this)
    python bench/gpu_parity.py --json parity.json   # also write every check as JSON

The JSON is rewritten (atomically) after every check, with ``"complete": false`` until the last, so
a run cut short (bench/gpu_check.sh's section timeout) keeps every check it finished. The sections
run in two passes: first the smallest case of each (Charades-STA, the small maps and batch), then
the larger ones, so that a short budget still sees every section once. Each check records the
seconds since the start (``"at_s"``). Exit status 0 when every check agrees, 1 when one fails.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PUBLIC, REPO, build_bench_model, map_like_cells, random_batch  # noqa: E402

from g2l.io.atomic import write_text_atomic  # noqa: E402

CHECKS: list[dict] = []
REPORT = {"path": None, "device": None, "start": time.perf_counter()}  # where and what write_report writes


def write_report(complete: bool) -> None:
    """Every check so far to ``--json`` (atomically), ``complete`` once the last has run."""
    if REPORT["path"]:
        failures = [c["name"] for c in CHECKS if not c["ok"]]
        write_text_atomic(REPORT["path"], json.dumps({"device": REPORT["device"], "checks": CHECKS,
                                                      "complete": complete, "ok": not failures and complete}, indent=1))


def check(section: str, name: str, value: float, tolerance: float, ok: bool) -> None:
    CHECKS.append({"section": section, "name": name, "value": float(value), "tolerance": tolerance, "ok": bool(ok),
                   "at_s": round(time.perf_counter() - REPORT["start"], 2)})
    print(f"({section}) {name}: {value:.3g} (tolerance {tolerance:g}) {'ok' if ok else 'FAIL'}", flush=True)
    write_report(complete=False)


def losses_on(device: str, cfg, state: dict, batch, bf16: bool) -> dict:
    from g2l.losses.combine import build_loss

    torch.manual_seed(0)
    model = build_bench_model(cfg)
    model.load_state_dict(state)
    model.to(device).train()
    batch = batch.to(torch.device(device))
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        out = model(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video)
    terms = build_loss(cfg, kernels="numba")(out, batch, model.cell_start_idx, model.cell_end_idx, epoch=1)
    return {k: float(v.detach()) for k, v in terms.items()}


def section_a(configs: list[str], videos: int, other: str = "cuda") -> None:
    from g2l.config import load_config

    for name in configs:
        for variant in ("mmn", "g2l"):
            extra = ["loss.sentence_contrast=gcl", "loss.ssi_weight=5e-4"] if variant == "g2l" else []
            cfg = load_config(REPO / PUBLIC[name][0], ["model.hidden_dim=64", *extra])
            torch.manual_seed(0)
            state = build_bench_model(cfg).state_dict()
            batch = random_batch(cfg, videos, 2.5)
            for bf16, tolerance in ((False, 2e-3), (True, 5e-2)):
                cpu = losses_on("cpu", cfg, state, batch, bf16)
                gpu = losses_on(other, cfg, state, batch, bf16)
                worst = max(abs(cpu[k] - gpu[k]) / max(abs(cpu[k]), 1e-3) for k in cpu)
                check("A", f"losses {name} {variant} {'bf16' if bf16 else 'fp32'} cpu vs {other}, "
                      "worst relative difference", worst, tolerance, worst <= tolerance)


def section_b(device: str, sizes: list[int]) -> None:
    from g2l.ops.geodesic import geodesic_closeness_batch

    for p in sizes:
        t = int((np.sqrt(8 * p + 1) - 1) / 2)  # a t x t map with every cell valid has t (t + 1) / 2 cells
        start_idx, end_idx = torch.triu_indices(t, t)
        x = map_like_cells(2, start_idx, end_idx, 64, seed=p)
        sources = [np.array([0, x.shape[1] // 2]), np.array([x.shape[1] - 1])]
        torch_g = geodesic_closeness_batch(x.to(device), [torch.as_tensor(s, device=device) for s in sources],
                                           kernels="torch").cpu()
        dense = geodesic_closeness_batch(x, sources, knn="dense")
        lazy = geodesic_closeness_batch(x, sources, knn="lazy")
        same = float((torch_g - dense).abs().max())
        tolerance = 0.0 if device == "cpu" else 1e-4
        reach = float((dense > 0).float().sum(1).mean())
        check("B", f"geodesic P={x.shape[1]} (reach {reach:.0f}) torch on {device} vs Numba dense, max difference",
              same, tolerance, same <= tolerance)
        worst = float((torch_g - lazy).abs().max())
        check("B", f"geodesic P={x.shape[1]} torch on {device} vs Numba lazy, max difference", worst, 1e-4, worst <= 1e-4)


def section_c(device: str, num_videos: int) -> None:
    from g2l.losses.kernels import interaction_estimator
    from g2l.losses.ssi import moment_games
    from g2l.models.grounding import per_video_cosine

    g = torch.Generator().manual_seed(0)
    start_idx, end_idx = torch.triu_indices(16, 16)
    cells = map_like_cells(num_videos, start_idx, end_idx, 32, seed=1)
    sentence_video = torch.repeat_interleave(torch.arange(num_videos), torch.tensor([1 + v % 4 for v in range(num_videos)]))
    sentences = torch.nn.functional.normalize(torch.randn(sentence_video.numel(), 32, generator=g), dim=-1)
    closeness = torch.rand(sentence_video.numel(), cells.shape[1], generator=g)
    games = [s.detach() for s in moment_games(per_video_cosine(sentences, cells, sentence_video), sentence_video,
                                              closeness, 5, num_videos)]
    z = []
    for seed in range(4):
        got_n, se_n = interaction_estimator("numba")([s.numpy() for s in games], 512, seed=seed, tau=0.1,
                                                     return_stderr=True)
        got_t, se_t = interaction_estimator("torch")([s.to(device) for s in games], 512, seed=seed + 10, tau=0.1,
                                                     return_stderr=True)
        for a, sa, b, sb in zip(got_n, se_n, got_t, se_t):
            b, sb = b.double().cpu().numpy(), sb.double().cpu().numpy()
            scale = np.sqrt(np.asarray(sa, np.float64) ** 2 + sb**2)
            diff = np.asarray(a, np.float64) - b
            exact = scale == 0
            z.append(np.where(exact, np.where(np.abs(diff) < 1e-6, 0.0, np.inf), diff / np.where(exact, 1.0, scale)))
    z = np.concatenate([v.ravel() for v in z])
    check("C", f"Shapley torch on {device} vs Numba, max |z| over {z.size} pairs", np.abs(z).max(), 5.0,
          np.abs(z).max() < 5)
    mean_z2 = float(np.mean(z**2))
    check("C", "Shapley torch vs Numba, mean z^2 (1 when the standard errors are right)", mean_z2, 2.0,
          0.5 < mean_z2 < 2.0)


def section_d(device: str, configs: list[str], videos: int) -> None:
    from g2l.config import load_config
    from g2l.losses.combine import build_loss
    from g2l.models.grounding import per_video_cosine

    dev = torch.device(device)
    for name in configs:
        base = ["model.hidden_dim=64", "loss.sentence_contrast=gcl", "loss.ssi_weight=5e-4"]
        cfg = load_config(REPO / PUBLIC[name][0], base)
        torch.manual_seed(0)
        model = build_bench_model(cfg).to(dev)
        batch = random_batch(cfg, videos, PUBLIC[name][2]).to(dev)
        with torch.no_grad():
            output = model(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video)
            output.cell_contrast = map_like_cells(batch.num_videos, model.cell_start_idx, model.cell_end_idx,
                                                  output.cell_contrast.shape[-1], num_clips=cfg.model.num_clips).to(dev)
            output.contrast_cos = per_video_cosine(output.sentence_contrast, output.cell_contrast, batch.sentence_video)
            terms = {}
            for kernels in ("numba", "torch"):
                loss_fn = build_loss(cfg, kernels=kernels)
                terms[kernels] = [{k: float(v) for k, v in loss_fn(output, batch, model.cell_start_idx,
                                                                     model.cell_end_idx, epoch=1, step=s).items()}
                                  for s in range(3)]
        numba, torch_terms = terms["numba"][0], terms["torch"][0]
        worst = max(abs(numba[k] - torch_terms[k]) / max(abs(numba[k]), 1e-6)
                    for k in ("bce", "video_contrast", "sentence_contrast"))
        check("D", f"G2L loss {name} on {device}: geodesic terms, kernels numba vs torch, worst relative difference",
              worst, 1e-5, worst <= 1e-5)
        ssi = {k: [t["ssi"] for t in v] for k, v in terms.items()}
        spread = statistics.pstdev(ssi["numba"] + ssi["torch"])
        gap = abs(statistics.mean(ssi["numba"]) - statistics.mean(ssi["torch"]))
        check("D", f"G2L loss {name} on {device}: L_SSI numba vs torch, mean gap over 3 steps / draw spread",
              gap / max(spread, 1e-12), 4.0, gap <= 4 * spread + 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (torch kernels against Numba only)")
    parser.add_argument("--quick", action="store_true", help="Charades-STA only, small batches and maps")
    parser.add_argument("--json", default=None, help="write every check here as JSON")
    parser.add_argument("--compare-device", default=None,
                        help="the device section (A) compares the CPU's losses with (default: cuda with --device cuda, "
                             "else section A is skipped)")
    args = parser.parse_args()
    other = args.compare_device or ("cuda" if args.device.startswith("cuda") else None)
    if any(d and d.startswith("cuda") for d in (args.device, other)) and not torch.cuda.is_available():
        print("gpu_parity: no CUDA device (torch.cuda.is_available() is False); nothing checked", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    REPORT.update(path=args.json, device=args.device, start=time.perf_counter())
    write_report(complete=False)  # an empty report: the run started
    # First pass: the smallest case of every section; second pass (not --quick): the larger ones.
    if other:
        section_a(["charades"], 4, other)
    section_b(args.device, [136, 1104])
    section_c(args.device, 6)
    section_d(args.device, ["charades"], 4)
    if not args.quick:
        if other:
            section_a(["activitynet", "tacos"], 4, other)
        section_b(args.device, [2556])
        section_c(args.device, 24)
        section_d(args.device, ["charades", "activitynet"], 16)
    write_report(complete=True)
    failures = [c["name"] for c in CHECKS if not c["ok"]]
    if failures:
        print("gpu_parity: FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print(f"gpu_parity: every check agrees ({len(CHECKS)} checks on {args.device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
