"""`prune()`: load -> unit graph -> costs -> scores -> selection -> surgery -> report."""

from __future__ import annotations

import os
import time
from pathlib import Path

from compress.errors import CompressError
from compress.io import atomic_output_dir
from compress.models.conditioning import text_tokens
from compress.models.loading import DiffusionModel, public_config
from compress.models.pruned import save_like
from compress.models.resolve import load_diffusion_model
from compress.models.surgery import removed_units
from compress.models.units import enumerate_units, find_units
from compress.prune.cost import cost_without, unit_costs
from compress.prune.presets import preset_units
from compress.prune.report import plot_importance, write_markdown
from compress.prune.rewrite import build_diffusers_unet
from compress.prune.score import ScoreSettings, score_units
from compress.prune.select import select_units
from compress.types import PruneReport, RemovalPlan, Unit

BUDGETS = ("params", "macs")


def _check_arguments(ratio: float | None, preset: str | None, budget: str, granularity: str) -> None:
    if budget not in BUDGETS:
        raise CompressError(f"--budget must be one of {', '.join(BUDGETS)}, not {budget!r}")
    if preset is not None:
        preset_units(preset)
        if granularity != "diffusers":
            raise CompressError("--preset builds stock diffusers configs; it needs --granularity diffusers")
        return
    if ratio is None:
        raise CompressError("give --ratio (a share in (0, 1)) or --preset")
    if not 0.0 < ratio < 1.0:
        raise CompressError(f"--ratio must be strictly between 0 and 1, got {ratio}")


def _write_output(model: DiffusionModel, units: list[Unit], granularity: str, report: PruneReport, out: Path,
                  overwrite: bool) -> None:
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        if granularity == "diffusers":
            save_like(build_diffusers_unet(model.unet, units), tmp, model.source_dir, report=report,
                      conditioner=model.conditioner)
        else:
            with removed_units(model.unet, units):
                save_like(model.unet, tmp, model.source_dir, plan=RemovalPlan("block", [u.name for u in units]),
                          report=report, conditioner=model.conditioner)
        write_markdown(report, tmp / "prune_report.md")
        plot_importance(report, tmp / "importance.png")


def prune(
    model: str | os.PathLike,
    out: str | os.PathLike,
    ratio: float | None = None,
    budget: str = "params",
    granularity: str = "diffusers",
    preset: str | None = None,
    weights: str | None = None,
    init: str = "pretrained",
    score: ScoreSettings | None = None,
    max_overshoot: float = 0.1,
    overwrite: bool = False,
    progress: bool = True,
) -> PruneReport:
    """Prune a diffusers UNet and write `out/unet`, `prune_report.{json,md}` and `importance.png`.

    With `preset`, BK-SDM's architecture is built without scoring.
    """
    started = time.time()
    out = Path(out)
    score = score or ScoreSettings()
    _check_arguments(ratio, preset, budget, granularity)
    if out.exists() and not overwrite:
        raise CompressError(f"output folder {out} already exists (pass --overwrite to replace it)")
    loaded = load_diffusion_model(model, weights=weights, init=init, seed=score.seed)
    unet = loaded.unet
    if loaded.plan is not None:
        raise CompressError(f"{model} is a block-granularity pruned model; prune the original model instead")
    settings = score.resolved(loaded)
    resolution, tokens = unet.config.sample_size, text_tokens(loaded)
    units = unit_costs(unet, enumerate_units(unet, granularity), resolution, tokens)
    before = cost_without(unet, [], resolution, tokens)
    if preset is not None:
        chosen, scores = find_units(unet, preset_units(preset), granularity), []
        chosen = [u for u in units if u.name in {c.name for c in chosen}]
    else:
        scores = score_units(loaded, units, settings, progress=progress)
        total = before.params if budget == "params" else before.macs

        def share(subset: list[Unit]) -> float:
            if budget == "params":  # removals of disjoint modules add up exactly
                return sum(u.params for u in subset) / total
            return 1 - cost_without(unet, subset, resolution, tokens).macs / total

        chosen = select_units(units, {s.unit: s.score for s in scores}, ratio, share, max_overshoot)
    after = cost_without(unet, chosen, resolution, tokens)
    report = PruneReport(
        model=loaded.name, ratio_requested=ratio if preset is None else None, budget=budget,
        granularity=granularity, params_before=before.params, params_after=after.params,
        macs_before=before.macs, macs_after=after.macs, removed=[u.name for u in chosen],
        scores=[s.to_dict() for s in scores], seed=settings.seed, preset=preset, macs_resolution=resolution,
        attention_macs_before=before.attention_macs, attention_macs_after=after.attention_macs,
        removed_units=[u.to_dict() for u in chosen],
        score_settings={} if preset else settings.to_dict(),
        unet_config_before=public_config(unet.config),
    )
    report.seconds = round(time.time() - started, 1)
    _write_output(loaded, chosen, granularity, report, out, overwrite)
    return report
