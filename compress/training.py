"""Pieces every training loop here shares: EMA, resumable checkpoints, a JSONL log and its plot.

Checkpoints hold only tensors, numbers and dicts of them, so they load with
`torch.load(weights_only=True)`; a run resumed from one continues bit-for-bit like the
uninterrupted run (same data order, noise and optimizer state).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compress.errors import CompressError
from compress.io import load_torch_checkpoint

CHECKPOINT = "checkpoint.pt"


def require_accelerate() -> Any:
    try:
        import accelerate
    except ImportError:
        raise CompressError("training needs accelerate: pip install 'compress[train]'") from None
    return accelerate


class EMA:
    """Exponential moving average of a module's parameters (kept on the module's device).

    With `share=True` the average lives in `module` itself (its state tensors are updated in
    place), which is what a consistency-distillation target network needs without a copy per step.
    """

    def __init__(self, module: nn.Module, decay: float, share: bool = False):
        self.decay = decay
        self.shadow = {k: v if share else v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for key, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                self.shadow[key].lerp_(value, 1 - self.decay)
            else:
                self.shadow[key].copy_(value)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow)


def prepare_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber a run unless asked: --resume continues it, --overwrite starts over."""
    if out.exists() and not (resume or overwrite):
        raise CompressError(f"output folder {out} already exists (pass --resume to continue it or --overwrite)")
    if overwrite and not resume and out.exists():
        shutil.rmtree(out)


def save_checkpoint(folder: Path, state: dict[str, Any]) -> None:
    """Write `folder/checkpoint.pt` atomically (a crash mid-write leaves the previous one)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, folder / CHECKPOINT)


def load_checkpoint(folder: Path) -> dict[str, Any] | None:
    path = folder / CHECKPOINT
    if not path.exists():
        return None
    state = load_torch_checkpoint(path)
    if not isinstance(state, dict) or "step" not in state:
        raise CompressError(f"checkpoint {path} is not a training checkpoint of this toolkit")
    return state


class JsonlLog:
    """Append-only training log; on resume, lines past the checkpoint's step are dropped."""

    def __init__(self, path: Path, resume_step: int = 0):
        self.path = path
        kept = []
        if resume_step and path.exists():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= resume_step]
        path.write_text("".join(line + "\n" for line in kept))
        self.started = time.time()
        self.offset = json.loads(kept[-1])["seconds"] if kept else 0.0

    def write(self, step: int, **values: float) -> None:
        record = {"step": step, **values, "seconds": round(self.offset + time.time() - self.started, 2)}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def plot_log(log_path: Path, png_path: Path, title: str) -> None:
    """One line per loss term against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    keys = [k for k in records[0] if k.startswith("loss")] if records else []
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        ax.plot([r["step"] for r in records], [r[key] for r in records], label=key, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if keys:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
