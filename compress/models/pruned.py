"""What a pruned model folder is, in one place: load it, apply its plan, save a model "like" another.

Every stage that writes a UNet derived from another (prune, recover, distill) writes it through `save_like`
or `save_unet`, and every stage reads one through `load_unet`:

    OUT/unet/config.json + diffusion_pytorch_model.safetensors   the UNet
    OUT/unet/prune_plan.json      block granularity only: the removals applied before the weights load
    OUT/conditioner/              toy family: the class tokens, copied from the source
    OUT/scheduler/                the noise schedule (or the sampler a stage chose), copied from the source
    OUT/prune_report.json         what was removed and why: the contract between pruning and recovery
    OUT/model_index.json          pipeline sources only (a folder with model_index.json): the source's index, with
                                  the class of the scheduler saved in OUT/scheduler and, for a consistency student
                                  (a UNet with `time_cond_proj_dim`), `LatentConsistencyModelPipeline` as the class
    OUT/vae/, OUT/text_encoder/, OUT/tokenizer/, ...
                                  pipeline sources only: every other component the index names and the source
                                  holds (not unet, scheduler, conditioner: those are above), copied unchanged

so the output of a pipeline folder is itself one: `StableDiffusionPipeline.from_pretrained(OUT)` (or
`LatentConsistencyModelPipeline` for `compress distill`'s) loads it; a block-granularity one is complete too,
but stock diffusers refuses its UNet (below). Components are copied, never hard-linked: a later
`save_pretrained` into OUT rewrites files in place, which through a hard link would change the source.

A block-granularity UNet has the original architecture's config but not all of its weights, so stock
diffusers must not load it: its config names the class `BlockPrunedUNet2DConditionModel` and carries a
`time_embedding_type` that diffusers rejects with a message naming `compress.load_unet` (diffusers ignores an
unknown `_class_name`; an invalid `time_embedding_type` is the config value it refuses, quoting it). The true
value is kept under `_compress_time_embedding_type`, and `load_unet` restores it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel

from compress.errors import CompressError
from compress.io import atomic_output_dir, load_safetensors, read_json, write_json
from compress.models.registry import PIPELINE_INDEX
from compress.models.surgery import apply_block_plan
from compress.types import PruneReport, RemovalPlan

PLAN_FILE = "prune_plan.json"
REPORT_FILE = "prune_report.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
BLOCK_CLASS_NAME = "BlockPrunedUNet2DConditionModel"
STOCK_REFUSAL = f"{BLOCK_CLASS_NAME} (a block-pruned UNet: load this folder with compress.load_unet)"
_TRUE_TIME_EMBEDDING = "_compress_time_embedding_type"
CONSISTENCY_PIPELINE = "LatentConsistencyModelPipeline"
_OWN_COMPONENTS = ("unet", "scheduler", "conditioner")  # what save_like writes (or copies) itself


def unet_folder(path: str | os.PathLike) -> Path:
    """`DIR/unet` when DIR holds one, else DIR itself."""
    folder = Path(path)
    return folder / "unet" if (folder / "unet").is_dir() else folder


def read_plan(path: str | os.PathLike) -> RemovalPlan | None:
    """The block plan saved with the UNet in `path` (a model folder or its `unet/`), or None."""
    plan = unet_folder(path) / PLAN_FILE
    return RemovalPlan.from_dict(read_json(plan)) if plan.is_file() else None


def read_prune_report(model_dir: str | os.PathLike) -> PruneReport | None:
    path = Path(model_dir) / REPORT_FILE
    return PruneReport.from_dict(read_json(path)) if path.is_file() else None


def build_unet(config: dict[str, Any], plan: RemovalPlan | None = None, meta: bool = False) -> UNet2DConditionModel:
    """A UNet of `config` with `plan`'s removals applied (random weights, or on the meta device to load into)."""
    if meta:
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(config)
    else:
        unet = UNet2DConditionModel.from_config(config)
    if plan is not None:
        apply_block_plan(unet, plan)
    return unet


def _stock_config(config: dict[str, Any]) -> dict[str, Any]:
    """The diffusers config of a marked block-granularity config (unchanged for a stock one)."""
    if config.get("_class_name") != BLOCK_CLASS_NAME:
        return config
    config = dict(config, _class_name="UNet2DConditionModel")
    config["time_embedding_type"] = config.pop(_TRUE_TIME_EMBEDDING, "positional")
    return config


def load_unet(path: str | os.PathLike) -> UNet2DConditionModel:
    """Load a UNet folder this toolkit (or diffusers) wrote: `DIR` or `DIR/unet`, in eval mode.

    A `--granularity block` output carries `prune_plan.json`; its removals are applied before the
    weights are loaded, so the result has exactly the pruned structure.
    """
    folder = unet_folder(path)
    if not folder.is_dir():
        raise CompressError(f"model folder not found: {path}")
    if not (folder / "config.json").is_file():
        raise CompressError(f"{folder} is not a diffusers UNet folder (no config.json)")
    config = UNet2DConditionModel.load_config(folder)
    plan = read_plan(folder)
    if plan is None:
        if config.get("_class_name") == BLOCK_CLASS_NAME:
            raise CompressError(f"{folder} is a block-pruned UNet but its {PLAN_FILE} is missing")
        weights = folder / WEIGHTS_FILE
        if weights.is_file():
            load_safetensors(weights)  # a clear one-line error for a corrupt file before diffusers sees it
        try:
            return UNet2DConditionModel.from_pretrained(folder).eval()
        except (OSError, ValueError, RuntimeError) as exc:
            raise CompressError(f"cannot load UNet from {folder}: {str(exc).splitlines()[0]}") from None
    unet = build_unet(_stock_config(config), plan, meta=True)
    state = load_safetensors(folder / WEIGHTS_FILE)
    missing, unexpected = unet.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        key = (missing or unexpected)[0]
        raise CompressError(f"weights in {folder} do not match its prune plan (first bad key: {key})")
    return unet.eval()


def save_unet(unet: UNet2DConditionModel, folder: Path, plan: RemovalPlan | None) -> None:
    """`unet.save_pretrained(folder)`; with a block plan, also the plan and the config that stock diffusers refuses."""
    unet.save_pretrained(folder)
    if plan is None:
        return
    write_json(folder / PLAN_FILE, plan.to_dict())
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config[_TRUE_TIME_EMBEDDING] = config.get("time_embedding_type", "positional")
    config.update(_class_name=BLOCK_CLASS_NAME, time_embedding_type=STOCK_REFUSAL)
    write_json(config_path, config)


def save_like(unet: UNet2DConditionModel, out: Path, source_dir: Path | None, *, plan: RemovalPlan | None = None,
              report: PruneReport | None = None, scheduler: Any = None, conditioner: Any = None) -> None:
    """Write `out/unet` in the format of the model in `source_dir`, with its conditioner, scheduler and report.

    The block plan is `plan` or the source's; `scheduler` (a diffusers scheduler) and `conditioner` replace the
    source's copies; `report` replaces its `prune_report.json`. The UNet folder is replaced atomically. When the
    source is a pipeline folder, `out` becomes one too: its other components and a `model_index.json`.
    """
    plan = plan or (read_plan(source_dir) if source_dir is not None else None)
    with atomic_output_dir(out / "unet", overwrite=True) as tmp:
        save_unet(unet, tmp, plan)
    if scheduler is not None:
        with atomic_output_dir(out / "scheduler", overwrite=True) as tmp:
            scheduler.save_pretrained(tmp)
    if conditioner is not None:
        conditioner.save(out / "conditioner")
    if source_dir is not None:
        for sub in ("conditioner", "scheduler"):
            _copy_component(source_dir, out, sub)
        if (source_dir / PIPELINE_INDEX).is_file():
            _complete_pipeline(unet, out, source_dir)
    report = report or (read_prune_report(source_dir) if source_dir is not None else None)
    if report is not None:
        write_json(out / REPORT_FILE, report.to_dict())


def _copy_component(source_dir: Path, out: Path, name: str) -> None:
    """Copy `source_dir/name` to `out/name` (whole or not at all) unless `out` has one or the source has none.

    A real copy, never a hard link (see the module docstring); a symlinked file (a hub cache snapshot) is copied
    as the file it points to.
    """
    if (source_dir / name).is_dir() and not (out / name).exists():
        with atomic_output_dir(out / name) as tmp:
            shutil.copytree(source_dir / name, tmp, dirs_exist_ok=True)


def _complete_pipeline(unet: UNet2DConditionModel, out: Path, source_dir: Path) -> None:
    """Copy the source pipeline's other components into `out` and write the index that names what `out` holds."""
    index = read_json(source_dir / PIPELINE_INDEX)
    if not isinstance(index, dict):
        raise CompressError(f"{source_dir / PIPELINE_INDEX} is not a diffusers pipeline index")
    for name, entry in index.items():
        if name.startswith("_") or name in _OWN_COMPONENTS or not isinstance(entry, list) or None in entry:
            continue  # a config attribute, a component save_like writes itself, or one the pipeline lacks
        _copy_component(source_dir, out, name)
    index["unet"] = ["diffusers", "UNet2DConditionModel"]
    scheduler_config = out / "scheduler" / "scheduler_config.json"
    saved = read_json(scheduler_config).get("_class_name") if scheduler_config.is_file() else None
    if saved:
        index["scheduler"] = ["diffusers", saved]
    if unet.config.get("time_cond_proj_dim"):
        index["_class_name"] = CONSISTENCY_PIPELINE  # it feeds the guidance embedding a consistency student needs
    write_json(out / PIPELINE_INDEX, index)
