"""What a prune is asked to do, and the checks of it that need no model: torch-free, so `compress prune`
refuses a bad option in a fraction of a second, before torch and diffusers are imported.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compress.bench.backends import usable_backend
from compress.bench.estimate import get_profile
from compress.errors import CompressError
from compress.io import check_new_folder
from compress.models.guidance import DEFAULT_GUIDANCE
from compress.models.units import GRANULARITIES
from compress.prune.presets import preset_units

if TYPE_CHECKING:
    from compress.models.loading import DiffusionModel

BUDGETS = ("latency", "macs", "params")
SCORE_MODES = ("step", "trajectory")
COMBINES = ("sum", "mean", "std", "product")
WIDTH_IMPORTANCES = ("magnitude", "random")  # see compress.prune.width


@dataclass(frozen=True)
class ScoreSettings:
    mode: str = "step"
    combine: str = "sum"
    samples: int | None = None  # default: 8 for latent (SD) models, 40 for the toy
    steps: int = 4  # DDIM steps of the calibration trajectory
    resolution: int | None = None  # latent/pixel size; default min(sample_size, 32)
    guidance: float | None = None  # default per family (DEFAULT_GUIDANCE)
    batch_size: int | None = None  # default: 8 for SD latents (memory), all samples for the toy
    seed: int = 0

    def check(self) -> None:
        """Refuse values that are wrong for every model."""
        if self.mode not in SCORE_MODES:
            raise CompressError(f"--score-mode must be one of {', '.join(SCORE_MODES)}, not {self.mode!r}")
        if self.combine not in COMBINES:
            raise CompressError(f"--combine must be one of {', '.join(COMBINES)}, not {self.combine!r}")
        if self.samples is not None and self.samples < 2:
            raise CompressError("--calib-samples must be at least 2 (a std needs two samples)")
        if self.steps < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise CompressError("--calib-steps and the calibration batch size must be positive")
        if self.resolution is not None and self.resolution < 1:
            raise CompressError(f"--calib-resolution must be positive, not {self.resolution}")

    def resolved(self, model: DiffusionModel) -> ScoreSettings:
        """Fill the family-dependent defaults and check the values against the model."""
        self.check()
        samples = self.samples if self.samples is not None else (40 if model.family == "toy" else 8)
        resolution = self.resolution or min(model.unet.config.sample_size, 32)
        factor = 2 ** (len(model.unet.config.block_out_channels) - 1)
        batch_size = self.batch_size or (samples if model.family == "toy" else 8)
        if resolution % factor:
            raise CompressError(f"--calib-resolution {resolution} is not divisible by the UNet's factor {factor}")
        guidance = DEFAULT_GUIDANCE[model.family] if self.guidance is None else self.guidance
        return ScoreSettings(self.mode, self.combine, samples, self.steps, resolution, guidance, batch_size, self.seed)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LatencySettings:
    """Where latency is predicted (a backend, or an NPU roofline profile) and how it is checked."""

    backend: str | None = None  # default: the best runtime installed here (ov-cpu, else ort-cpu, else torch-cpu)
    estimate: str | None = None  # an NPU profile name (`compress bench --list-profiles`)
    table: str | None = None  # reuse this latency table (e.g. one measured on the target device)
    resolution: int | None = None  # latent size; default: the UNet's sample_size
    batch: int = 1
    threads: int | None = None  # default: torch's intra-op thread count
    verify: bool = False  # time the original and the pruned UNet interleaved after surgery
    margin: float = 0.1  # a latency plan aims at ratio x (1 + margin) predicted (see select.py)

    def check(self) -> None:
        if self.estimate is not None:
            get_profile(self.estimate)
            if self.backend is not None:
                raise CompressError("give --backend (measure) or --estimate (roofline profile), not both")
            if self.verify:
                raise CompressError("--verify-latency measures on a backend; an --estimate profile cannot be measured")
        if self.backend is not None:
            usable_backend(self.backend)  # an unknown name, or a missing extra, is named before any work
        if self.table is not None and not Path(self.table).is_file():
            raise CompressError(f"--latency-table {self.table} does not exist")
        if self.batch < 1 or (self.threads is not None and self.threads < 1):
            raise CompressError("--latency-batch and --threads must be positive")
        if self.resolution is not None and self.resolution < 1:
            raise CompressError(f"--latency-size must be positive, not {self.resolution}")
        if not 0.0 <= self.margin < 1.0:
            raise CompressError(f"--latency-margin must be in [0, 1), got {self.margin}")

    def to_dict(self) -> dict:
        return asdict(self)


def check_prune(out: str | os.PathLike, *, ratio: float | None, preset: str | None, budget: str, granularity: str,
                score: ScoreSettings, latency: LatencySettings, max_overshoot: float, overwrite: bool,
                width: float | None = None, width_importance: str = "magnitude") -> None:
    """Every check of a prune request that needs no model; `prune()` and the CLI both run it first."""
    if width is not None:
        if not 0.0 < width < 1.0:
            raise CompressError(f"--width must be strictly between 0 and 1, got {width}")
        if preset is not None:
            raise CompressError("--preset builds BK-SDM's architecture at full width; give --width or --preset")
        if budget == "latency" and (latency.estimate or latency.table):
            raise CompressError("--width is timed on a local backend; --estimate and --latency-table describe "
                                "the unnarrowed UNet (use --budget macs or params for a target you cannot run)")
    if width_importance not in WIDTH_IMPORTANCES:
        raise CompressError(f"--width-importance must be one of {', '.join(WIDTH_IMPORTANCES)}, "
                            f"not {width_importance!r}")
    if budget not in BUDGETS:
        raise CompressError(f"--budget must be one of {', '.join(BUDGETS)}, not {budget!r}")
    if granularity not in GRANULARITIES:
        raise CompressError(f"--granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}")
    score.check()
    latency.check()
    if max_overshoot < 0:
        raise CompressError(f"--max-overshoot must not be negative, got {max_overshoot}")
    if preset is not None:
        preset_units(preset)
        if granularity != "diffusers":
            raise CompressError("--preset builds stock diffusers configs; it needs --granularity diffusers")
    elif ratio is None and width is None:
        raise CompressError("give --ratio (a share in (0, 1)), --width or --preset")
    elif ratio is not None and not 0.0 < ratio < 1.0:
        raise CompressError(f"--ratio must be strictly between 0 and 1, got {ratio}")
    check_new_folder(out, overwrite)
