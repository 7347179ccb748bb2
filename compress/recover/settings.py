"""What a recovery run is asked to do, and its checks that need no model: torch-free, so `compress recover`
refuses a bad option before torch is imported."""

from __future__ import annotations

import os
from dataclasses import dataclass

from compress.errors import CompressError
from compress.runs import check_run


@dataclass(frozen=True)
class RecoverSettings:
    steps: int = 1000
    lr: float = 2e-4
    batch_size: int = 32
    grad_accum: int = 1
    task: float = 1.0
    kd_out: float = 1.0
    kd_feat: float = 1.0
    feat_norm: bool = False
    mixed_precision: str = "no"  # no | fp16 | bf16 (accelerate)
    gradient_checkpointing: bool = False
    ema: float | None = None  # EMA decay of the student's weights; None = no EMA
    cfg_dropout: float = 0.1
    checkpoint_every: int = 250
    seed: int = 0


def check_recover(out: str | os.PathLike, s: RecoverSettings, *, resume: bool, overwrite: bool) -> None:
    """Numbers that would train wrongly or fail late, and a run folder that cannot be used, refused first."""
    if s.batch_size < 1 or s.lr <= 0:
        raise CompressError("--batch-size must be positive and --lr above 0")
    if s.ema is not None and not 0 < s.ema < 1:
        raise CompressError(f"--ema must be between 0 and 1 (leave it out for no EMA), not {s.ema}")
    weights = {"--task": s.task, "--kd-out": s.kd_out, "--kd-feat": s.kd_feat}
    if min(weights.values()) < 0 or max(weights.values()) == 0:
        raise CompressError("loss weights must be non-negative and not all 0, got "
                            + ", ".join(f"{name} {value:g}" for name, value in weights.items()))
    if not 0 <= s.cfg_dropout < 1:
        raise CompressError(f"the class-dropout rate must be in [0, 1), not {s.cfg_dropout}")
    check_run(out, steps=s.steps, checkpoint_every=s.checkpoint_every, grad_accum=s.grad_accum,
              mixed_precision=s.mixed_precision, resume=resume, overwrite=overwrite)
