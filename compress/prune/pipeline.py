"""`prune()`: load -> unit graph -> costs (and latency table) -> scores -> selection -> surgery -> report."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from compress.bench.backends import Backend
from compress.bench.host import cpu_name
from compress.bench.runner import bench
from compress.errors import CompressError
from compress.io import atomic_output_dir
from compress.models.conditioning import text_tokens
from compress.models.loading import DiffusionModel, public_config
from compress.models.pruned import save_like
from compress.models.resolve import load_diffusion_model
from compress.models.surgery import removed_units
from compress.models.units import enumerate_units, find_units
from compress.prune.cost import LeafCosts, UNetCost
from compress.prune.latency import (
    LatencyModel,
    LatencyTable,
    build_table,
    default_backend,
    exported_for_timing,
    matched_key,
    read_table,
    table_key,
    usable_backend,
)
from compress.prune.presets import preset_units
from compress.prune.report import plot_importance, write_markdown
from compress.prune.rewrite import pruned_module
from compress.prune.score import score_units
from compress.prune.select import select_units
from compress.prune.settings import LatencySettings, ScoreSettings, check_prune
from compress.prune.width import narrow
from compress.types import PruneReport, RemovalPlan, Unit

TABLE_FILE = "latency_table.json"
VERIFY_ROUNDS, VERIFY_RUNS = 3, 3
# a narrowing's saving sets the block budget left: timed paired, 4 rounds x 2 ABBA pairs of 3-call blocks
WIDTH_TIMING = {"rounds": 4, "pairs": 2, "calls": 3, "warmup": 2}


def _wants_latency(budget: str, latency: LatencySettings) -> bool:
    return budget == "latency" or latency.verify or any((latency.backend, latency.estimate, latency.table))


def _latency_model(unet: UNet2DConditionModel, units: list[Unit], granularity: str, latency: LatencySettings,
                   tokens: int, counted: LeafCosts, progress: bool) -> tuple[LatencyModel, str | None]:
    """The latency table to prune by (given, cached or built now) and where it came from."""
    resolution = latency.resolution or unet.config.sample_size
    factor = 2 ** (len(unet.config.block_out_channels) - 1)
    if resolution % factor:
        raise CompressError(f"--latency-size {resolution} is not divisible by the UNet's factor {factor}")
    same = (resolution, latency.batch) == (counted.resolution, counted.batch)  # the traces of `counted` serve
    costs = counted if same else LeafCosts(unet, units, resolution, tokens, latency.batch)
    threads = latency.threads or torch.get_num_threads()
    if latency.table is not None:
        given = read_table(latency.table)
        backend = given.key.get("backend", "")
        if latency.backend is not None and latency.backend != backend:
            raise CompressError(f"latency table {latency.table} was measured on {backend}, not {latency.backend}")
        wanted = matched_key(unet, resolution, latency.batch, tokens, backend)
        return LatencyModel(read_table(latency.table, wanted), costs), str(latency.table)
    backend = None if latency.estimate else (latency.backend or default_backend())
    key = table_key(unet, resolution, latency.batch, tokens, backend, latency.estimate, threads)
    return LatencyModel(build_table(unet, units, granularity, costs, key, tokens, progress), costs), None


@contextlib.contextmanager
def _exported_pair(unet: UNet2DConditionModel, pruned: UNet2DConditionModel, backend: Backend, size: int,
                   batch: int, tokens: int) -> Iterator[list]:
    """The original and the pruned UNet exported in the backend's format, as timing targets (weights released)."""
    from exporters.config import UNetExportConfig

    configs = [UNetExportConfig(module, name, batch, size, size, tokens)
               for module, name in ((unet, "original"), (pruned, "pruned"))]
    with (tempfile.TemporaryDirectory(prefix="compress-verify-") as tmp, torch.no_grad(),
          exported_for_timing(configs, backend.formats[0], Path(tmp), release=(unet, pruned)) as targets):
        yield targets


def _time_pair(unet: UNet2DConditionModel, pruned: UNet2DConditionModel, backend_name: str, size: int, batch: int,
               tokens: int, threads: int) -> tuple[float, float]:
    """Median ms of the original and the pruned UNet, timed interleaved (rounds alternate) on a backend."""
    backend = usable_backend(backend_name)
    with _exported_pair(unet, pruned, backend, size, batch, tokens) as targets:
        results = bench(targets, [backend.name], warmup=1, runs=VERIFY_RUNS, threads=threads, repeat=VERIFY_ROUNDS,
                        strict=True)
    return results[0].p50_ms, results[1].p50_ms


def _write_output(model: DiffusionModel, pruned: UNet2DConditionModel, units: list[Unit], granularity: str,
                  report: PruneReport, table: LatencyTable | None, out: Path, overwrite: bool) -> None:
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        plan = None if granularity == "diffusers" else RemovalPlan("block", [u.name for u in units])
        if plan is None:
            save_like(pruned, tmp, model.source_dir, report=report, conditioner=model.conditioner)
        else:
            with removed_units(model.unet, units):
                save_like(model.unet, tmp, model.source_dir, plan=plan, report=report, conditioner=model.conditioner)
        if table is not None:
            table.save(tmp / TABLE_FILE)
        write_markdown(report, tmp / "prune_report.md")
        if report.scores:
            plot_importance(report, tmp / "importance.png")


def _summary(budget: str, preset: str | None, table: LatencyTable | None, width: dict) -> str:
    what = f"preset {preset}" if preset else f"budget: {budget}"
    if width:
        what += f"; width {width['widths_before']} -> {width['widths_after']} ({width['importance']} importance)"
    if table is None:
        return what if width else f"{what} (no latency model)"
    return f"{what}; latency {table.label}"


def _width_step(original_cost: UNetCost, narrowed: UNet2DConditionModel, original: UNet2DConditionModel,
                budget: str, latency: LatencySettings, resolution: int, tokens: int) -> tuple[dict, float]:
    """What narrowing saved of the budget. With a latency budget (or --verify-latency) both UNets are timed
    against each other by `compress.bench.compare` (interleaved ABBA blocks, 95% interval over rounds), so a
    width choice has a measured latency like a removed block."""
    from compress.bench.compare import compare

    narrowed_cost = LeafCosts(narrowed, [], resolution, tokens).cost([])
    record = {"params_saving": round(1 - narrowed_cost.params / original_cost.params, 4),
              "macs_saving": round(1 - narrowed_cost.total_macs / original_cost.total_macs, 4)}
    if budget == "latency" or latency.verify:
        backend = usable_backend(latency.backend or default_backend())
        size, threads = latency.resolution or resolution, latency.threads or torch.get_num_threads()
        with _exported_pair(original, narrowed, backend, size, latency.batch, tokens) as targets:
            timed = compare(targets[1], targets[0], backend, threads=threads, **WIDTH_TIMING)
        record.update(backend=backend.name, threads=threads, host=cpu_name(), latency_resolution=size,
                      latency_batch=latency.batch, latency_before_ms=round(timed.baseline_p50_ms, 3),
                      latency_after_ms=round(timed.candidate_p50_ms, 3),
                      latency_saving_measured=round(-timed.change, 4),
                      latency_saving_interval=[round(-timed.change_high, 4), round(-timed.change_low, 4)])
    saving = {"params": record["params_saving"], "macs": record["macs_saving"]}.get(
        budget, record.get("latency_saving_measured"))
    return record, saving


def prune(
    model: str | os.PathLike,
    out: str | os.PathLike,
    ratio: float | None = None,
    budget: str = "latency",
    granularity: str = "diffusers",
    preset: str | None = None,
    weights: str | None = None,
    init: str = "pretrained",
    score: ScoreSettings | None = None,
    latency: LatencySettings | None = None,
    max_overshoot: float = 0.1,
    width: float | None = None,
    width_importance: str = "magnitude",
    overwrite: bool = False,
    progress: bool = True,
) -> PruneReport:
    """Prune a diffusers UNet and write `out/unet`, `prune_report.{json,md}`, `importance.png` and, when a
    latency model was used, `latency_table.json`.

    `budget="latency"` (the default) removes `ratio` of the UNet's latency on `latency.backend` (default: the
    best runtime installed here) or on an NPU roofline profile (`latency.estimate`). With `preset`, BK-SDM's
    architecture is built without scoring. With `width`, every stage is first narrowed by that share
    (`compress.prune.width`); a `ratio` given too is the budget of both, and blocks are removed from the
    narrowed UNet until the share narrowing left is gone (the `latency_*` fields then describe that step,
    `width` the narrowing, each measured against the UNet it started from).
    """
    started, requested = time.time(), ratio
    out = Path(out)
    score = score or ScoreSettings()
    latency = latency or LatencySettings()
    check_prune(out, ratio=ratio, preset=preset, budget=budget, granularity=granularity, score=score,
                latency=latency, max_overshoot=max_overshoot, overwrite=overwrite, width=width,
                width_importance=width_importance)
    loaded = load_diffusion_model(model, weights=weights, init=init, seed=score.seed)
    if loaded.plan is not None:
        raise CompressError(f"{model} is a block-granularity pruned model; prune the original model instead")
    settings = score.resolved(loaded)
    resolution, tokens = loaded.unet.config.sample_size, text_tokens(loaded)
    original, width_record = loaded.unet, {}
    before = LeafCosts(original, [], resolution, tokens).cost([])
    if width is not None:
        narrowed, width_plan = narrow(original, width, width_importance, seed=score.seed,
                                      timesteps=loaded.scheduler_config.get("num_train_timesteps", 1000))
        width_record, width_saving = _width_step(before, narrowed, original, budget, latency, resolution, tokens)
        width_record = {**width_plan.to_dict(), **width_record}
        loaded.unet = narrowed
        if ratio is not None:  # the share of the narrowed UNet that blocks must remove for `ratio` in all
            ratio = 1 - (1 - ratio) / (1 - width_saving) if width_saving < ratio else None
            width_record["block_ratio"] = ratio and round(ratio, 4)
    unet = loaded.unet
    blocks = ratio is not None or preset is not None
    units = enumerate_units(unet, granularity) if blocks else []
    counted = LeafCosts(unet, units, resolution, tokens)
    units = counted.costed(units)
    speed, table_source = None, None
    if blocks and _wants_latency(budget, latency):
        speed, table_source = _latency_model(unet, units, granularity, latency, tokens, counted, progress)
    # a latency share is predicted, so a latency plan aims above the ratio; params and MACs are counted
    margin = latency.margin if budget == "latency" and preset is None else None
    if preset is not None:
        chosen, scores = find_units(unet, preset_units(preset), granularity), []
        chosen = [u for u in units if u.name in {c.name for c in chosen}]
    elif ratio is None:  # width alone (or narrowing already reached the ratio)
        chosen, scores = [], []
    else:
        scores = score_units(loaded, units, settings, progress=progress)

        start = counted.cost([])

        def share(subset: list[Unit]) -> float:
            if budget == "params":  # removals of disjoint modules add up exactly
                return sum(u.params for u in subset) / start.params
            if budget == "macs":
                return 1 - counted.total_macs(subset) / start.total_macs
            return speed.saving(subset)

        chosen = select_units(units, {s.unit: s.score for s in scores}, ratio, share, max_overshoot, margin or 0.0)
    after = counted.cost(chosen)
    table = speed.table if speed else None
    report = PruneReport(
        model=loaded.name, ratio_requested=requested if preset is None else None, budget=budget,
        granularity=granularity, params_before=before.params, params_after=after.params,
        macs_before=before.macs, macs_after=after.macs, removed=[u.name for u in chosen],
        scores=[s.to_dict() for s in scores], seed=settings.seed, preset=preset, macs_resolution=resolution,
        attention_macs_before=before.attention_macs, attention_macs_after=after.attention_macs,
        removed_units=[u.to_dict() for u in chosen],
        score_settings={} if preset else settings.to_dict(),
        unet_config_before=public_config(original.config), summary=_summary(budget, preset, table, width_record),
        width=width_record,
    )
    if speed is not None:
        report.backend, report.threads, report.host = table.key["backend"], table.key["threads"], table.key["host"]
        report.latency_label, report.latency_table = table.label, table_source
        report.latency_resolution, report.latency_batch = table.key["latent"], table.key["batch"]
        report.latency_table_before_ms = round(speed.predict_ms([]), 3)
        report.latency_predicted_after_ms = round(speed.predict_ms(chosen), 3)
        report.latency_saving_predicted = round(speed.saving(chosen), 4)
        report.latency_margin = margin
        report.unit_latency_ms = {u.name: round(report.latency_table_before_ms - speed.predict_ms([u]), 3)
                                  for u in units}
    pruned = pruned_module(unet, chosen, granularity)
    if latency.verify:
        report.threads = latency.threads or torch.get_num_threads()
        report.latency_before_ms, report.latency_after_ms = (round(v, 3) for v in _time_pair(
            unet, pruned, table.key["backend"], table.key["latent"], table.key["batch"], tokens, report.threads))
        report.latency_saving_measured = round(1 - report.latency_after_ms / report.latency_before_ms, 4)
        if report.latency_saving_measured != 0:
            report.latency_prediction_error = round(
                (report.latency_saving_predicted - report.latency_saving_measured) / report.latency_saving_measured, 4)
    report.seconds = round(time.time() - started, 1)
    _write_output(loaded, pruned, chosen, granularity, report, table, out, overwrite)
    return report
