"""What a consistency distillation is asked to do, and its checks that need no model: torch-free, so
`compress distill` refuses a bad option before torch is imported."""

from __future__ import annotations

import os
from dataclasses import dataclass

from compress.errors import CompressError
from compress.runs import check_run

METHODS = ("lcm", "direct")
LOSSES = ("huber", "l2")
GUIDANCE_RANGE = {"toy": (1.0, 5.0), "sd": (5.0, 15.0)}  # w sampled per item, per family; holds the default


@dataclass(frozen=True)
class DistillSettings:
    method: str = "lcm"
    steps: int = 1000  # ~17 min on 2 CPU cores for the toy
    lr: float = 1e-4
    batch_size: int = 32
    solver_steps: int = 50  # DDIM timesteps of the teacher solver (skip = 1000 / solver_steps)
    w_min: float | None = None  # guidance range sampled per item; default per family
    w_max: float | None = None
    loss: str = "huber"  # huber | l2
    huber_c: float = 0.001
    ema: float = 0.95  # target network decay
    cfg_dropout: float = 0.0
    mixed_precision: str = "no"  # no | fp16 | bf16 (accelerate)
    checkpoint_every: int = 250
    seed: int = 0

    def guidance_range(self, family: str) -> tuple[float, float]:
        """The (w_min, w_max) sampled for a teacher of `family`: the family's range where not given."""
        return self._range(GUIDANCE_RANGE[family])

    def _range(self, defaults: tuple[float, float]) -> tuple[float, float]:
        w_min = self.w_min if self.w_min is not None else defaults[0]
        w_max = self.w_max if self.w_max is not None else defaults[1]
        if not 0 <= w_min <= w_max:
            raise CompressError(f"the guidance range needs 0 <= --w-min <= --w-max, got {w_min} and {w_max}")
        return w_min, w_max


def check_distill(out: str | os.PathLike, s: DistillSettings, *, resume: bool, overwrite: bool) -> None:
    """Every check of a distillation request that needs no model; `distill()` and the CLI both run it first."""
    if s.method not in METHODS:
        raise CompressError(f"--method must be one of {', '.join(METHODS)}, not {s.method!r}")
    if s.loss not in LOSSES:
        raise CompressError(f"--loss must be one of {', '.join(LOSSES)}, not {s.loss!r}")
    if s.batch_size < 1 or s.lr <= 0 or not 1 <= s.solver_steps <= 1000:
        raise CompressError("--batch-size must be positive, --lr above 0, --solver-steps in 1..1000")
    if not 0 <= s.ema < 1:
        raise CompressError(f"--ema must be in [0, 1), not {s.ema}")
    lows, highs = zip(*GUIDANCE_RANGE.values(), strict=True)
    s._range((min(lows), max(highs)))  # what is wrong with every family's default range is refused now
    check_run(out, steps=s.steps, checkpoint_every=s.checkpoint_every, mixed_precision=s.mixed_precision,
              resume=resume, overwrite=overwrite)
