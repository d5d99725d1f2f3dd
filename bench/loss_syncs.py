"""How often one G2L loss computation (L_bce + L_v + L_GCL + L_SSI) waits for the device, per
``loss.kernels`` setting, at the Charades-STA and ActivityNet batch shapes (48 videos).

On CUDA every synchronising operation is counted with ``torch.cuda.set_sync_debug_mode("warn")``;
on a CPU (a dry run) the tensor methods and functions that would read the device's values on the
host are counted instead (``item``, ``cpu``, ``tolist``, ``numpy``, ``__bool__``, ``__float__``,
``__int__``, ``nonzero``, ``unique``...) with a ``TorchFunctionMode``: on CUDA each is a sync.

    python bench/loss_syncs.py --device cuda [--json syncs.json]
    python bench/loss_syncs.py --device cpu --videos 8          # dry run
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

from tests.support.host_reads import HostReads  # noqa: E402


def count(loss_fn, output, batch, model, device: torch.device) -> dict:
    """Syncs (CUDA) or host reads (CPU) of one loss forward, by kind."""
    loss_fn(output, batch, model.cell_start_idx, model.cell_end_idx, epoch=1)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                loss_fn(output, batch, model.cell_start_idx, model.cell_end_idx, epoch=1)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        kinds = collections.Counter(str(w.message).split("\n")[0][:60] for w in caught
                                    if "synchroniz" in str(w.message).lower())
        return {"total": sum(kinds.values()), "kinds": dict(kinds), "what": "CUDA syncs"}
    reads = HostReads()
    with reads:
        loss_fn(output, batch, model.cell_start_idx, model.cell_end_idx, epoch=1)
    return {"total": sum(reads.calls.values()), "kinds": dict(reads.calls), "what": "host reads (CPU dry run)"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--configs", default="charades,activitynet")
    parser.add_argument("--videos", type=int, default=None, help="videos per batch (default: the public 48)")
    parser.add_argument("--kernels", default="numba,torch")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from g2l.config import load_config
    from g2l.losses.combine import build_loss

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
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
            loss_fn = build_loss(load_config(REPO / PUBLIC[name][0], base + [f"loss.kernels={kernels}"]))
            result = count(loss_fn, output, batch, model, device)
            rows.append({"config": name, "videos": batch.num_videos, "kernels": kernels, **result})
            print(f"{name:<12} {batch.num_videos:>3} videos  loss.kernels={kernels:<6} {result['what']}: "
                  f"{result['total']:>4} per loss  {result['kinds']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
