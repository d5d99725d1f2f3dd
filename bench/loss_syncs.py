"""How often one G2L loss computation (L_bce + L_v + L_GCL + L_SSI), and one whole training step
(forward, loss, backward, clip, AdamW, the step's logging), waits for the device, per kernel
choice (``--kernels``: the loss's ``kernels=``), at the Charades-STA and ActivityNet batch shapes
(48 videos). Its lines say ``kernels=...`` (bench/gpu_check_summary.py reads them; older logs say ``loss.kernels=...``).

On CUDA every synchronising operation is counted with ``torch.cuda.set_sync_debug_mode("warn")``;
on a CPU (a dry run) ``bench/host_reads.py`` counts what would be one on a GPU: reads of
device values on the host (``item``, ``tolist``, ``bool(t)``, ``nonzero``...) and blocking copies
of host data to the device (``torch.as_tensor(numpy, device=...)``, ``.to(device)`` of a host
tensor); non-blocking copies from pinned memory are listed (``h2d_async``) but are not syncs.
Steps are counted after warm-up steps (the geodesic relaxation learns its rounds in the first
steps); training reads its logged values once every ``READ_EVERY_STEPS`` steps, shown apart.

    python bench/loss_syncs.py --device cuda --steps [--json syncs.json]
    python bench/loss_syncs.py --device cpu --kernels torch --steps   # dry run: what CUDA would see
"""

import argparse
import collections
import json
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PUBLIC, REPO, build_bench_model, random_batch  # noqa: E402
from host_reads import HostReads  # noqa: E402


def count(loss_fn, output, batch, model, device: torch.device) -> dict:
    """Syncs (CUDA) or host reads and blocking copies (CPU) of one loss forward, by kind."""
    loss_fn(output, batch, model.cell_start_idx, model.cell_end_idx, epoch=1)  # warm-up
    return counted(lambda: loss_fn(output, batch, model.cell_start_idx, model.cell_end_idx, epoch=1), device)


def counted(fn, device: torch.device, host_tensors=()) -> dict:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        kinds = collections.Counter(str(w.message).split("\n")[0][:60] for w in caught
                                    if "synchroniz" in str(w.message).lower())
        return {"total": sum(kinds.values()), "kinds": dict(kinds), "what": "CUDA syncs"}
    reads = HostReads(host_tensors)
    with reads:
        fn()
    return {"total": reads.syncs(), "kinds": dict(reads.calls), "where": dict(reads.where),
            "what": "syncs (CPU dry run)"}


def count_step(cfg, model, loss_fn, batch, device: torch.device, warmup: int = 2) -> dict:
    """Syncs of one training step as train.train_epoch runs it (the periodic read of the logged
    values apart), after ``warmup`` steps."""
    from g2l.engine.logging import READ_EVERY_STEPS, StepValues
    from g2l.engine.optim import build_optimizer

    optimizer = build_optimizer(model, lr=1e-4, text_lr_scale=0.1, weight_decay=1e-5, betas=(0.9, 0.99))
    pending = StepValues()
    model.train()

    def step(index: int) -> None:
        output = model(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video,
                       batch.sentence_mask.shape[1])
        terms = loss_fn(output, batch, model.cell_start_idx, model.cell_end_idx, 1, index)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                                   cfg.train.clip_grad_norm)
        optimizer.step()
        pending.add(index, terms, grad_norm, {})

    for index in range(warmup):
        step(index)
    pending.read()
    steps = [state["step"] for state in optimizer.state.values() if torch.is_tensor(state.get("step"))]
    row = counted(lambda: step(warmup), device, steps)  # AdamW's step counters: CPU tensors on CUDA too
    row["log_read"] = counted(pending.read, device)["total"]
    row["read_every"] = READ_EVERY_STEPS
    return row


def device_name_is_cpu(name: str) -> bool:
    return torch.device(name).type == "cpu"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", default="charades,activitynet")
    parser.add_argument("--videos", type=int, default=None, help="videos per batch (default: the public 48)")
    parser.add_argument("--kernels", default="numba,torch")
    parser.add_argument("--json", default=None)
    parser.add_argument("--steps", action="store_true", help="also count one whole training step (after 2 warm-up steps)")
    args = parser.parse_args()
    from g2l.config import load_config
    from g2l.losses.combine import build_loss

    torch.set_num_threads(1 if device_name_is_cpu(args.device) else max(1, min(torch.get_num_threads(), 4)))
    device = torch.device(args.device)
    rows = []
    for name in args.configs.split(","):
        base = ["model.hidden_dim=64", "loss.sentence_contrast=gcl", "loss.ssi_weight=5e-4"]
        cfg = load_config(REPO / PUBLIC[name][0], base)
        torch.manual_seed(0)
        model = build_bench_model(cfg).to(device)
        batch = random_batch(cfg, args.videos or PUBLIC[name][1], PUBLIC[name][2]).to(device)
        with torch.no_grad():
            output = model(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video)
        for kernels in args.kernels.split(","):
            loss_fn = build_loss(cfg, kernels=kernels)
            result = count(loss_fn, output, batch, model, device)
            rows.append({"config": name, "videos": batch.num_videos, "kernels": kernels, **result})
            print(f"{name:<12} {batch.num_videos:>3} videos  kernels={kernels:<6} {result['what']}: "
                  f"{result['total']:>4} per loss  {result['kinds']}", flush=True)
            if args.steps:
                step = count_step(cfg, model, loss_fn, batch, device)
                rows[-1]["step"] = step
                print(f"{'':<12} {'':>3}         {'':<20} {step['total']:>4} per training step  {step['kinds']}  "
                      f"(+ {step['log_read']} every {step['read_every']} steps: the logged values)", flush=True)
                print(f"{'':<12} where: {step.get('where', {})}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
