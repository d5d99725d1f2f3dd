"""How many operations one G2L loss (L_bce + L_v + L_GCL + L_SSI, ``kernels="torch"``) runs,
forward and backward, at the Charades-STA and ActivityNet batch shapes (48 videos): a proxy for
the kernel launches a GPU would see, counted on the CPU with the torch profiler.

An operation is a profiled ``aten::`` call with no ``aten::`` call inside it (what reaches a
kernel); ``launches`` are the calls, other than those that launch nothing on a GPU (views, shape
changes, allocations, conversions that wrap a copy: ``VIEWS``), with no such call inside them. The Shapley estimator's chunks are sized as on a GPU
(``DEFAULT_MAX_ELEMENTS``), so the counts are the GPU's.

    python bench/loss_ops.py                    # both shapes, 48 videos
    python bench/loss_ops.py --configs charades --videos 8

Figures (launches forward + backward of one G2L loss, 48 videos, width 64; 2026-12-07):

                   before (commit 228e8e7)       after
    Charades-STA   4,015 + 441 = 4,456           504 + 65 = 569
    ActivityNet    6,556 + 441 = 6,997           906 + 65 = 971

(before: 21 / 50 Shapley chunks of ~119 operations, per-video loops in L_SSI, a checked relaxation
of one edge per round; after: 2 / 8 chunks of ~40, no per-video loop, 47 unchecked rounds of
walks of up to 3 edges at ActivityNet's shape). To count a commit's code, run this script with
that commit's g2l first on the path.
"""

import argparse
import collections
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PUBLIC, REPO, build_bench_model, map_like_cells, random_batch  # noqa: E402

VIEWS = {"aten::scalar_tensor", "aten::resize_", "aten::view", "aten::as_strided", "aten::expand", "aten::slice", "aten::select", "aten::unsqueeze",
         "aten::squeeze", "aten::permute", "aten::transpose", "aten::t", "aten::reshape", "aten::alias",
         "aten::detach", "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::resolve_conj",
         "aten::resolve_neg", "aten::lift_fresh", "aten::unbind", "aten::split", "aten::split_with_sizes",
         "aten::chunk", "aten::narrow", "aten::flatten", "aten::unflatten", "aten::view_as", "aten::_unsafe_view",
         "aten::squeeze_", "aten::unsqueeze_", "aten::_reshape_alias", "aten::set_", "aten::result_type",
         "aten::is_nonzero", "aten::_local_scalar_dense", "aten::item", "aten::to", "aten::_to_copy",
         "aten::contiguous", "aten::expand_as", "aten::diagonal", "aten::movedim", "aten::numpy_T",
         "aten::indices", "aten::values", "aten::real", "aten::conj", "aten::_nested_tensor_from_mask",
         "aten::_has_compatible_shallow_copy_type", "aten::record_stream", "aten::pin_memory",
         "aten::is_pinned", "aten::_pin_memory", "aten::new_empty", "aten::new_empty_strided"}


def leaf_ops(prof, skip=frozenset()) -> collections.Counter:
    """The profiled aten calls, other than ``skip``, with no such call inside them, by name."""
    def counted(event):
        return event.name.startswith("aten::") and event.name not in skip

    def inner(event):
        return any(counted(c) or inner(c) for c in event.cpu_children)

    def host_scalar(event):  # a Python number wrapped as a 0-dim tensor: made on the host, no launch
        return event.name in ("aten::fill_", "aten::copy_") and event.input_shapes[:1] == [[]]

    return collections.Counter(event.name for event in prof.events()
                               if counted(event) and not inner(event) and not host_scalar(event))


def count_ops(loss_fn, output, batch, start_idx, end_idx) -> dict:
    """Leaf ops (and launches) of one loss forward and of its backward."""
    from torch.profiler import ProfilerActivity, profile

    leaves = type(output)(**{k: v.detach().requires_grad_() for k, v in vars(output).items()})
    loss_fn(leaves, batch, start_idx, end_idx, epoch=1)["total"].backward()  # warm-up: caches
    leaves = type(output)(**{k: v.detach().requires_grad_() for k, v in vars(output).items()})
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as forward:
        total = loss_fn(leaves, batch, start_idx, end_idx, epoch=1)["total"]
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as backward:
        total.backward()
    row = {}
    for name, prof in (("forward", forward), ("backward", backward)):
        row[f"{name}_ops"] = sum(leaf_ops(prof).values())
        launches = leaf_ops(prof, VIEWS)
        row[f"{name}_launches"] = sum(launches.values())
        row[f"{name}_top"] = dict(launches.most_common(8))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="charades,activitynet")
    parser.add_argument("--videos", type=int, default=None, help="videos per batch (default: the public 48)")
    parser.add_argument("--hidden-dim", type=int, default=64)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from g2l.config import load_config
    from g2l.losses.combine import build_loss
    from g2l.models.grounding import per_video_cosine
    from g2l.ops import shapley_torch

    torch.set_num_threads(1)
    shapley_torch.CPU_MAX_ELEMENTS = shapley_torch.DEFAULT_MAX_ELEMENTS  # chunks as on a GPU
    if hasattr(shapley_torch, "CHUNK_OVERHEAD"):
        shapley_torch.CHUNK_OVERHEAD["cpu"] = shapley_torch.CHUNK_OVERHEAD["other"]
    elif hasattr(shapley_torch, "_PADDING_SLACK"):  # the version before: as it chunked on a GPU
        shapley_torch.CPU_MAX_ELEMENTS = 1 << 24
    rows = []
    for name in args.configs.split(","):
        config_file, num_videos, sentences = PUBLIC[name]
        base = [f"model.hidden_dim={args.hidden_dim}", "loss.sentence_contrast=gcl", "loss.ssi_weight=5e-4"]
        cfg = load_config(REPO / config_file, base)
        torch.manual_seed(0)
        model = build_bench_model(cfg)
        batch = random_batch(cfg, args.videos or num_videos, sentences)
        with torch.no_grad():
            output = model(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video)
        output.cell_contrast = map_like_cells(batch.num_videos, model.cell_start_idx, model.cell_end_idx,
                                              output.cell_contrast.shape[-1], num_clips=cfg.model.num_clips)
        output.contrast_cos = per_video_cosine(output.sentence_contrast, output.cell_contrast, batch.sentence_video)
        row = {"config": name, "videos": batch.num_videos,
               **count_ops(build_loss(cfg, kernels="torch"), output, batch, model.cell_start_idx, model.cell_end_idx)}
        rows.append(row)
        print(f"{name:<12} {batch.num_videos:>3} videos  forward {row['forward_launches']:>5} launches "
              f"({row['forward_ops']} ops)  backward {row['backward_launches']:>5} launches ({row['backward_ops']} ops)  "
              f"total {row['forward_launches'] + row['backward_launches']:>5}", flush=True)
        print(f"    forward top: {row['forward_top']}\n    backward top: {row['backward_top']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
