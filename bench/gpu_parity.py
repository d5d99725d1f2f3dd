"""CPU against CUDA on the same inputs: the training losses of MMN and G2L (fp32, and bf16 within
bf16's round-off), the map encoder's full and cropped paths, and the geodesic kNN graph built
with torch on the GPU ("dense") against the Numba kernel on the CPU ("lazy").

    python bench/gpu_parity.py        # exits 1 when a check fails, 2 when there is no CUDA device
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, build_bench_model, random_batch  # noqa: E402


def losses_on(device: str, cfg, state: dict, batch, bf16: bool) -> dict:
    from g2l.losses.combine import build_loss

    torch.manual_seed(0)
    model = build_bench_model(cfg)
    model.load_state_dict(state)
    model.to(device).train()
    batch = batch.to(torch.device(device))
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        out = model(batch.features, batch.input_ids, batch.attention_mask, batch.sentence_video)
    terms = build_loss(cfg)(out, batch, model.cell_start_idx, model.cell_end_idx, epoch=1)
    return {k: float(v.detach()) for k, v in terms.items()}


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_parity: no CUDA device (torch.cuda.is_available() is False); nothing checked", file=sys.stderr)
        return 2
    from g2l.config import load_config
    from g2l.ops.geodesic import geodesic_closeness_batch

    failures = []
    for name, config in [("charades", "configs/charades.yaml"), ("activitynet", "configs/activitynet.yaml"),
                         ("tacos", "configs/tacos.yaml")]:
        for variant in ("mmn", "g2l"):
            for compute in ("full", "cropped"):
                extra = ["loss.sentence_contrast=gcl", "loss.ssi_weight=5e-4"] if variant == "g2l" else []
                cfg = load_config(REPO / config, ["model.hidden_dim=64", f"model.map_compute={compute}", *extra])
                torch.manual_seed(0)
                state = build_bench_model(cfg).state_dict()
                batch = random_batch(cfg, 4, 2.5)
                for bf16, tolerance in ((False, 2e-3), (True, 5e-2)):
                    cpu = losses_on("cpu", cfg, state, batch, bf16)
                    gpu = losses_on("cuda", cfg, state, batch, bf16)
                    worst = max(abs(cpu[k] - gpu[k]) / max(abs(cpu[k]), 1e-3) for k in cpu)
                    ok = worst <= tolerance
                    print(f"losses {name:<11} {variant} {compute:<7} {'bf16' if bf16 else 'fp32'}: "
                          f"worst relative difference {worst:.2e} (tolerance {tolerance:g}) {'ok' if ok else 'FAIL'}")
                    if not ok:
                        failures.append(f"{name} {variant} {compute} bf16={bf16}: {cpu} vs {gpu}")
    rng = np.random.default_rng(0)
    for p in (136, 1104, 2548):
        smooth = np.cumsum(rng.standard_normal((2, p, 64)).astype(np.float32), axis=1)  # neighbours alike
        sources = [np.array([0, p // 2]), np.array([p - 1])]
        lazy = geodesic_closeness_batch(smooth, sources, knn="lazy")
        dense = geodesic_closeness_batch(torch.from_numpy(smooth).cuda(), sources, knn="dense").cpu().numpy()
        worst = float(np.abs(lazy - dense).max())
        ok = worst <= 1e-4
        print(f"geodesic P={p}: Numba (CPU) vs torch (CUDA) closeness, max difference {worst:.1e} {'ok' if ok else 'FAIL'}")
        if not ok:
            failures.append(f"geodesic P={p}")
    if failures:
        print("gpu_parity: FAILED: " + "; ".join(failures), file=sys.stderr)
        return 1
    print("gpu_parity: every check agrees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
