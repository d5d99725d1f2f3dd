"""Time per training step (forward, loss, backward, clip, AdamW) and peak memory for the three
public configurations: Charades-STA (N=16, 48 videos), ActivityNet (N=64, 48 videos) and TACoS
(N=128, 8 videos), on random features of the public dimensions with a small random text encoder
(4-layer, 256-d BERT) and the real mean number of sentences per video.

    python bench/train_step.py                       # CPU: narrow maps (hidden 64), 1 thread
    python bench/train_step.py --hidden-dim 512      # the paper width (slow on a CPU)
    python bench/train_step.py --device cuda --bf16  # on a GPU

Each configuration runs in its own process, so its peak memory is its own.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PUBLIC, default_device, run_isolated  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--hidden-dim", type=int, default=None, help="map width H (default: 512 on CUDA, 64 on CPU)")
    parser.add_argument("--configs", default="charades,activitynet,tacos")
    parser.add_argument("--variant", default="mmn", choices=["mmn", "g2l"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    args = parser.parse_args()
    hidden = args.hidden_dim or (512 if args.device.startswith("cuda") else 64)
    print(f"device {args.device}, hidden_dim {hidden}, variant {args.variant}, bf16 {args.bf16 and args.device.startswith('cuda')}")
    print(f"{'config':<12} {'N':>4} {'videos':>6} {'sents':>6} {'s/step':>9} {'peak MiB':>9}")
    for name in args.configs.split(","):
        if name not in PUBLIC:
            parser.error(f"unknown config '{name}'; choose from {', '.join(PUBLIC)}")
        r = run_isolated(dict(name=name, variant=args.variant, hidden_dim=hidden, device=args.device,
                              steps=args.steps, warmup=args.warmup, bf16=args.bf16, threads=args.threads))
        n = {"charades": 16, "activitynet": 64, "tacos": 128}[name]
        print(f"{name:<12} {n:>4} {r['videos']:>6} {r['sentences']:>6} {r['step_s']:>9.3f} {r['peak_bytes'] / 2**20:>9.0f}  ({r['peak_kind']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
