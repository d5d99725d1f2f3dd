"""Reporting a run: stdout, ``metrics.jsonl``, and Weights & Biases.

W&B is offline by default when there are no credentials (``wandb sync`` uploads the run later),
online when there are, and off on request. The logger never stops or slows training: W&B's own
writer runs in a background process, and any W&B failure is reported once and then W&B is
switched off for the rest of the run. Only rank 0 logs.
"""

from __future__ import annotations

import io
import netrc
import os
import sys
from pathlib import Path

import numpy as np
import torch

from g2l.engine.run_dir import append_jsonl


READ_EVERY_STEPS = 50  # training reads its steps' loss terms from the device this often (and at the epoch's end)


class StepValues:
    """The loss terms and gradient norms of the steps since the last read, kept on the device, so
    that a training step never waits for the device to report them; :meth:`read` copies them all
    to the host at once (one sync per ``READ_EVERY_STEPS`` steps on CUDA)."""

    def __init__(self):
        self._steps: list[tuple[int, dict, list[str], torch.Tensor]] = []

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, step: int, terms: dict[str, torch.Tensor], grad_norm: torch.Tensor, lrs: dict[str, float]) -> None:
        names = [*terms, "grad_norm"]
        values = torch.stack([v.detach().float().reshape(()) for v in [*terms.values(), torch.as_tensor(grad_norm)]])
        self._steps.append((step, dict(lrs), names, values))

    def read(self) -> list[tuple[int, dict[str, float], dict[str, float]]]:
        """``(step, values by name, learning rates)`` of every step since the last read, in order."""
        if not self._steps:
            return []
        rows = torch.stack([values for *_, values in self._steps]).tolist()  # the one read
        out = [(step, dict(zip(names, row)), lrs) for (step, lrs, names, _), row in zip(self._steps, rows)]
        self._steps = []
        return out


def say(message: str, enabled: bool = True) -> None:
    """A progress line on stderr (``enabled``: this is rank 0), flushed at once."""
    if enabled:
        print(message, file=sys.stderr, flush=True)


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(auth)


def resolve_wandb_mode(mode: str) -> str:
    """``auto`` -> ``online`` with credentials, else ``offline``; WANDB_MODE=disabled means off."""
    if os.environ.get("WANDB_MODE") == "disabled" and mode == "auto":
        return "off"
    if mode == "auto":
        return "online" if wandb_has_credentials() else "offline"
    return mode


def score_map_figure(score_map: np.ndarray, gt_cell: tuple[int, int] | None, title: str):
    """A PNG-ready matplotlib figure of one query's score map, start on rows and end on columns."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.6), dpi=90)
    shown = np.ma.masked_where(score_map == 0, score_map)
    image = ax.imshow(shown, cmap="viridis", origin="upper")
    if gt_cell is not None:
        ax.scatter([gt_cell[1]], [gt_cell[0]], marker="x", color="red", s=60, label="ground truth")
        ax.legend(loc="lower left", fontsize=7)
    ax.set_xlabel("end clip")
    ax.set_ylabel("start clip")
    ax.set_title(title[:60], fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


class RunLogger:
    def __init__(self, run_dir: Path | None, *, config: dict, mode: str = "auto", project: str = "g2l",
                 name: str | None = None, enabled: bool = True, resume_id: str | None = None):
        self.run_dir = run_dir
        self.enabled = enabled
        self.wandb_run = None
        self.wandb_mode = resolve_wandb_mode(mode) if enabled else "off"
        if self.wandb_mode != "off" and run_dir is not None:
            self._start_wandb(config, project, name, resume_id)

    # W&B --------------------------------------------------------------------------------------
    def _start_wandb(self, config: dict, project: str, name: str | None, resume_id: str | None) -> None:
        try:
            import wandb

            self.wandb_run = wandb.init(
                project=project, name=name, config=config, dir=str(self.run_dir), mode=self.wandb_mode,
                id=resume_id, resume="allow" if resume_id else None,
                settings=wandb.Settings(silent=True, console="off", init_timeout=60),
            )
            self.wandb_run.define_metric("epoch")
            for prefix in ("eval/*", "train_epoch/*"):
                self.wandb_run.define_metric(prefix, step_metric="epoch")
        except Exception as error:  # noqa: BLE001 - the logger must never stop training
            self._wandb_failed(error)

    def _wandb_failed(self, error: Exception) -> None:
        print(f"warning: Weights & Biases logging switched off ({type(error).__name__}: {error})", file=sys.stderr)
        self.wandb_run = None

    @property
    def wandb_id(self) -> str | None:
        return self.wandb_run.id if self.wandb_run is not None else None

    def _wandb_log(self, data: dict, step: int | None = None) -> None:
        if self.wandb_run is None:
            return
        try:
            self.wandb_run.log(data, step=step)
        except Exception as error:  # noqa: BLE001
            self._wandb_failed(error)

    # What training reports ----------------------------------------------------------------------
    def log_step(self, step: int, losses: dict[str, float], lrs: dict[str, float]) -> None:
        """One step's loss values to W&B as ``loss/<name>``: the weighted terms and ``total`` under the
        term's name, the unweighted terms as ``loss/raw_<term>`` (a curve that drops at the only-IoU
        epoch because its weight did is told from a collapse there), the diagnostics as ``loss/stat_*``."""
        if not self.enabled:
            return
        data = {f"loss/{k}": v for k, v in losses.items()}
        data.update({f"lr/{k}": v for k, v in lrs.items()})
        self._wandb_log(data, step=step)

    def log_epoch(self, epoch: int, step: int, record: dict) -> None:
        """One evaluation: printed, appended to metrics.jsonl, and sent to W&B."""
        if not self.enabled:
            return
        line = {"epoch": epoch, "step": step, **record}
        if self.run_dir is not None:
            append_jsonl(self.run_dir / "metrics.jsonl", line)
        self._wandb_log({"epoch": epoch, **{k: v for k, v in record.items() if isinstance(v, (int, float))}}, step=step)

    def log_examples(self, step: int, predictions, num_rows: int, num_maps: int, mask_cells=None) -> None:
        """A table of example predictions against their ground truth, and score-map images."""
        if not self.enabled or self.wandb_run is None:
            return
        try:
            import wandb

            from g2l.ops.spans import span_iou

            table = wandb.Table(columns=["video", "query", "duration_s", "gt_start_s", "gt_end_s",
                                         "top1_start_s", "top1_end_s", "top1_score", "top1_iou"])
            for p in predictions[:num_rows]:
                gt = np.asarray(p.gt, dtype=np.float32).reshape(-1, 2)
                top = p.candidates[0] if len(p.candidates) else np.array([0, 0, 0], np.float32)
                iou = float(span_iou(top[:2], gt).max()) if len(p.candidates) else 0.0
                table.add_data(p.video, p.query, p.duration, float(gt[0, 0]), float(gt[0, 1]),
                               float(top[0]), float(top[1]), float(top[2]), iou)
            images = []
            import matplotlib.pyplot as plt

            for p in [p for p in predictions if p.score_map is not None][:num_maps]:
                fig = score_map_figure(p.score_map, None, p.query)
                buffer = io.BytesIO()
                fig.savefig(buffer, format="png")
                plt.close(fig)
                buffer.seek(0)
                from PIL import Image

                images.append(wandb.Image(Image.open(buffer), caption=f"{p.video}: {p.query}"))
            data = {"eval/examples": table}
            if images:
                data["eval/score_maps"] = images
            self._wandb_log(data, step=step)
        except Exception as error:  # noqa: BLE001
            self._wandb_failed(error)

    def finish(self) -> None:
        if self.wandb_run is not None:
            try:
                self.wandb_run.finish()
            except Exception as error:  # noqa: BLE001
                self._wandb_failed(error)
            self.wandb_run = None
