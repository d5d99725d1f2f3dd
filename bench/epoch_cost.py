"""Real training epochs of MMN and G2L on synthetic data (the loader, the model, the loss, AdamW):
seconds per training epoch, the G2L / MMN ratio, and the share of each epoch the loop waited for
data (``train_epoch/data_wait_share``; ``1 -`` it is the share the device was fed, a proxy for the
GPU's busy share that does not see the host's own work inside the step).

    python bench/epoch_cost.py --preset activitynet --videos 96 --epochs 1        # a CPU: minutes
    python bench/epoch_cost.py --preset charades --device cuda --epochs 3 --json out.json

The data is the built-in synthetic benchmark (``tools/make_synthetic.py``), written once to
``--data`` (default ``/tmp/g2l-epoch-cost-<preset>-<videos>``); the text encoder is a tiny random
BERT whose vocabulary is the data's words (no download; MMN and G2L share it). MMN is the preset's
config (configs/synthetic_<preset>.yaml); G2L adds L_GCL and L_SSI as configs/g2l_<dataset>.yaml
do. Each variant trains in its own process; the first epoch includes Numba's and the allocator's
warm-up, so with several epochs the later ones are the figure (``median of epochs 2..``).

With ``--json`` the record is rewritten (atomically) after every epoch of either variant, read from
the run's metrics.jsonl while it trains, with ``"complete": false`` until both have finished: a run
cut short (bench/gpu_check.sh's section timeout) keeps the epochs it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from g2l.io.atomic import write_text_atomic  # noqa: E402

G2L = {"charades": ["loss.sentence_contrast=gcl", "loss.gcl_num_positives=1", "loss.ssi_weight=5e-4",
                    "loss.ssi_num_players=5"],
       "activitynet": ["loss.sentence_contrast=gcl", "loss.gcl_num_positives=1", "loss.ssi_weight=5e-4",
                       "loss.ssi_num_players=7"]}


def prepare(preset: str, videos: int, data: Path) -> tuple[Path, Path]:
    """The synthetic data (train: ``videos``, test: 16) and a tiny text encoder over its words."""
    from g2l.synthetic.benchmark import generate_synthetic

    if not (data / "meta.json").is_file():
        generate_synthetic(data, preset, 0, num_train=videos, num_val=8, num_test=16, progress=False)
    encoder = data / "tiny_text_encoder"
    if not (encoder / "config.json").is_file():
        import torch
        from transformers import BertConfig, BertModel, BertTokenizerFast

        words = set()
        for split in ("train", "val", "test"):
            for record in json.loads((data / f"{split}.json").read_text()).values():
                for sentence in record["sentences"]:
                    words.update(re.findall(r"[a-z0-9]+", sentence.lower()))
        encoder.mkdir(parents=True, exist_ok=True)
        (encoder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","]
                                                     + sorted(words)) + "\n")
        tokenizer = BertTokenizerFast(vocab_file=str(encoder / "vocab.txt"), do_lower_case=True)
        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=len(tokenizer.vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=128, max_position_embeddings=64)).save_pretrained(encoder)
        tokenizer.save_pretrained(encoder)
    return data, encoder


def train_variant(variant: str, preset: str, data: Path, encoder: Path, out: Path, args) -> dict:
    """Train one variant in this process; -> per-epoch seconds and data-wait shares."""
    import torch

    from g2l.config import load_config
    from g2l.train import train

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ["G2L_KERNELS"] = args.kernels  # the loss's kernels (g2l/losses/kernels.py)
    overrides = [
        f"data.train_annotations={data / 'train.json'}", f"data.val_annotations={data / 'val.json'}",
        f"data.test_annotations={data / 'test.json'}", f"data.features={data / 'features.hdf5'}",
        f"model.text_encoder={encoder}", f"model.hidden_dim={args.hidden_dim}", f"train.epochs={args.epochs}",
        f"train.device={args.device}", f"train.precision={args.precision}", f"train.batch_size={args.batch_size}",
        f"train.num_threads={args.threads}", f"log.output_dir={out}", f"log.run_name={variant}", "log.wandb=off",
        "log.progress=false", "train.freeze_text_epochs=0",
        *(G2L[preset] if variant == "g2l" else []), *args.overrides,
    ]
    result = train(load_config(REPO / "configs" / f"synthetic_{preset}.yaml", overrides))
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"epoch_s": [r["train_epoch/seconds"] for r in records],
            "data_wait_share": [r["train_epoch/data_wait_share"] for r in records],
            "loss": records[-1]["train_epoch/total"]}


def summary(epochs: list[float]) -> float | None:
    """The figure of a run: the median of epochs 2.. (epoch 1 carries the warm-up), or epoch 1 alone
    (None before its first epoch)."""
    return statistics.median(epochs[1:]) if len(epochs) > 1 else (epochs[0] if epochs else None)


def epochs_so_far(metrics: Path) -> dict:
    """The figures of the epochs a run has finished, from its metrics.jsonl (a line being written is
    left for the next read)."""
    records = []
    try:
        lines = metrics.read_text().splitlines(keepends=True)
    except OSError:
        lines = []
    for line in lines:
        if not line.endswith("\n"):
            break
        try:
            records.append(json.loads(line))
        except ValueError:
            break
    records = [r for r in records if "train_epoch/seconds" in r]
    return {"epoch_s": [r["train_epoch/seconds"] for r in records],
            "data_wait_share": [r["train_epoch/data_wait_share"] for r in records],
            "loss": records[-1]["train_epoch/total"] if records else None}


def record(args, results: dict, complete: bool) -> dict:
    """The JSON record of the variants so far."""
    mmn_s = summary(results["mmn"]["epoch_s"]) if "mmn" in results else None
    g2l_s = summary(results["g2l"]["epoch_s"]) if "g2l" in results else None
    return {"preset": args.preset, "videos": args.videos, "device": args.device, "precision": args.precision,
            "kernels": args.kernels, "hidden_dim": args.hidden_dim, "batch_size": args.batch_size,
            "epochs": args.epochs, **results, "mmn_epoch_s": mmn_s, "g2l_epoch_s": g2l_s,
            "ratio": g2l_s / mmn_s if mmn_s and g2l_s else None, "busy_share_proxy": "1 - data_wait_share",
            "complete": complete}


def run_variant(command: list[str], env: dict, metrics: Path, on_epoch, poll_s: float = 0.5):
    """Run one variant's child process; call ``on_epoch(figures so far)`` whenever its metrics.jsonl
    gains an epoch. -> (exit status, stdout, stderr)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=env)
        seen = 0
        try:
            while True:
                finished = proc.poll() is not None
                figures = epochs_so_far(metrics)
                if len(figures["epoch_s"]) > seen:
                    seen = len(figures["epoch_s"])
                    on_epoch(figures)
                if finished:
                    break
                time.sleep(poll_s)
        finally:
            if proc.poll() is None:  # this process is being stopped: so is its child
                proc.kill()
                proc.wait()
        out.seek(0)
        err.seek(0)
        return proc.returncode, out.read(), err.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="activitynet", choices=sorted(G2L))
    parser.add_argument("--videos", type=int, default=96, help="training videos")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--kernels", default="auto", choices=["auto", "numba", "torch"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--data", default=None)
    parser.add_argument("--out", default=None, help="run folders (default: a new folder under /tmp)")
    parser.add_argument("--json", default=None, help="write the figures here as JSON")
    parser.add_argument("--variant", default=None, help=argparse.SUPPRESS)  # the child process's variant
    parser.add_argument("overrides", nargs="*", help="config overrides for both variants")
    args = parser.parse_args()
    data = Path(args.data or f"/tmp/g2l-epoch-cost-{args.preset}-{args.videos}")
    out = Path(args.out or f"/tmp/g2l-epoch-cost-runs-{os.getpid()}-{time.strftime('%H%M%S')}")
    if args.variant:  # child: one variant, its figures on the last line
        data, encoder = prepare(args.preset, args.videos, data)
        print("RESULT" + json.dumps(train_variant(args.variant, args.preset, data, encoder, out, args)))
        return 0
    prepare(args.preset, args.videos, data)
    results = {}

    def save(complete: bool = False) -> None:
        if args.json:
            write_text_atomic(args.json, json.dumps(record(args, results, complete), indent=1))

    save()
    for variant in ("mmn", "g2l"):
        command = [sys.executable, __file__, *sys.argv[1:], "--variant", variant, "--data", str(data), "--out", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads or os.cpu_count())}

        def on_epoch(figures, variant=variant):
            results[variant] = figures
            print(f"epoch_cost: {variant} epoch {len(figures['epoch_s'])}: {figures['epoch_s'][-1]:.2f} s", flush=True)
            save()

        returncode, stdout, stderr = run_variant(command, env, out / variant / "metrics.jsonl", on_epoch)
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT")]
        if returncode != 0 or not lines:
            print(f"epoch_cost: the {variant} run failed:\n{stderr[-3000:]}", file=sys.stderr)
            return 1
        results[variant] = json.loads(lines[-1][6:])
        save()
    save(complete=True)
    mmn_s, g2l_s = summary(results["mmn"]["epoch_s"]), summary(results["g2l"]["epoch_s"])
    print(f"synthetic {args.preset}: {args.videos} training videos, batch {args.batch_size}, width {args.hidden_dim}, "
          f"{args.device} {args.precision}, kernels {args.kernels}, {args.threads or 'default'} thread(s)")
    print(f"{'variant':<8} {'s/epoch':>9} {'epochs (s)':<28} {'data wait':>10} {'fed (1 - wait)':>15}")
    for variant, r in results.items():
        wait = statistics.mean(r["data_wait_share"])
        epochs = " ".join(f"{s:.2f}" for s in r["epoch_s"])
        print(f"{variant:<8} {summary(r['epoch_s']):>9.2f} {epochs:<28} {100 * wait:>9.1f}% {100 * (1 - wait):>14.1f}%")
    print(f"G2L / MMN per training epoch: {g2l_s / mmn_s:.2f}x (target <= 1.3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
