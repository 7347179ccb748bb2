"""Run a recipe's stages in order, each through the library function its subcommand calls, resumably.

Every stage writes into `OUT/NN-stage/` and records there, in `chain_stage.json`, a hash of what it was asked to do:
its options and the hash of what it consumed (the model's files, or the stage before). A stage whose record says
`done` with the same hash is skipped; one that was stopped (`running`) with the same hash continues: recovery and
distillation from their last checkpoint (bit for bit as if never stopped), evaluation from the runs it finished;
anything else starts the stage again. Changing one stage's options reruns it and every stage after it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compress.chain.measure import bench_stage, eval_stage
from compress.chain.recipe import Recipe, stage_folder
from compress.chain.state import STAGE_RECORD, ChainState, Point, Say, StageRecord
from compress.io import read_json, write_json

CHAIN_MARKER = "chain.json"  # OUT/chain.json: this folder belongs to a chain (a rerun may replace its stages)


@dataclass
class PlannedStage:
    stage: str
    folder: Path
    hash: str
    consumed: str
    action: str  # run | skip | resume | rerun


def fingerprint(ref: str) -> str:
    """A hash of a model's files (a registry name hashes its shipped folder, if any): sizes and contents of files
    up to 64 MB, sizes and modification times of larger ones."""
    from compress.models.registry import assets_dir, get_spec, is_registered

    digest = hashlib.sha256(ref.encode())
    asset = get_spec(ref).asset if is_registered(ref) else None
    root = (assets_dir(asset) if asset else None) if is_registered(ref) else Path(ref)  # a hub model: its name
    if root is None or not root.exists():
        files = []
    else:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root) if root.is_dir() else path.name}:{stat.st_size}".encode())
        digest.update(path.read_bytes() if stat.st_size <= 64 << 20 else str(stat.st_mtime_ns).encode())
    return digest.hexdigest()[:16]


def _hash(stage: str, options: dict[str, Any], consumed: str, init: str) -> str:
    text = json.dumps({"stage": stage, "options": options, "consumed": consumed, "init": init}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_record(folder: Path) -> StageRecord | None:
    path = folder / STAGE_RECORD
    if not path.is_file():
        return None
    try:
        return StageRecord.from_dict(read_json(path))
    except (ValueError, TypeError, KeyError):
        return None


def plan(recipe: Recipe, out: str | os.PathLike) -> list[PlannedStage]:
    """Each stage's folder, hash and what a run would do with it (from the records in `out`)."""
    consumed, planned = fingerprint(recipe.model), []
    for stage, options in recipe.stages.items():
        folder = stage_folder(out, stage)
        stage_hash = _hash(stage, options, consumed, recipe.init)
        record = read_record(folder)
        if record is None:
            action = "rerun" if folder.exists() else "run"
        elif record.hash != stage_hash:
            action = "rerun"
        else:
            action = "skip" if record.state == "done" else "resume"
        planned.append(PlannedStage(stage, folder, stage_hash, consumed, action))
        consumed = stage_hash
    return planned


class Chain:
    """One run of a recipe into `out`; `run()` executes the plan, `state.points` grows as models are made."""

    def __init__(self, recipe: Recipe, out: str | os.PathLike, say: Say = print, progress: bool = True):
        self.recipe, self.out = recipe, Path(out)
        self.state = ChainState(recipe, say, progress, current=recipe.model,
                                points=[Point("teacher", "model", recipe.model)])
        self.records: dict[str, StageRecord] = {}

    def run(self) -> list[StageRecord]:
        say = self.state.say
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / CHAIN_MARKER, {"recipe": self.recipe.path, "model": self.recipe.model})
        for planned in plan(self.recipe, self.out):
            if planned.action == "skip":
                say(f"{planned.folder.name}: done earlier with the same inputs and options, skipped")
                record = read_record(planned.folder)
            else:
                if planned.action == "rerun":
                    say(f"{planned.folder.name}: its inputs or options changed (or it was stopped before it "
                        "recorded them): starting it again")
                    shutil.rmtree(planned.folder, ignore_errors=True)
                elif planned.action == "resume":
                    say(f"{planned.folder.name}: stopped earlier; continuing it")
                record = self._execute(planned)
            self.records[planned.stage] = record
            self._advance(planned.stage, planned.folder, record)
        return list(self.records.values())

    def _execute(self, planned: PlannedStage) -> StageRecord:
        options, resume = self.recipe.stages[planned.stage], planned.action == "resume"
        record = StageRecord(planned.stage, planned.hash, "running", options, planned.consumed)
        planned.folder.mkdir(parents=True, exist_ok=True)
        write_json(planned.folder / STAGE_RECORD, record.to_dict())
        self.state.say(f"{planned.folder.name}: running")
        started = time.time()
        record.outputs = STAGE_FUNCTIONS[planned.stage](self.state, options, planned.folder, resume)
        record.state, record.seconds = "done", round(time.time() - started, 1)
        write_json(planned.folder / STAGE_RECORD, record.to_dict())
        return record

    def _advance(self, stage: str, folder: Path, record: StageRecord) -> None:
        """The chain's state after `stage`: its model becomes the current one, its outputs become points."""
        state, model = self.state, record.outputs.get("model")
        if model is not None:
            state.current, state.student = str(folder / model), state.student or stage == "distill"
            name = {"prune": "pruned", "recover": "recovered", "distill": "distilled"}[stage]
            state.points.append(Point(name, stage, state.current, student=state.student))
        if stage == "quantize":
            state.points.append(Point("quantized", stage, str(folder / record.outputs["artifact"]),
                                      student=state.student, export=True))


def _prune(chain: ChainState, o: dict[str, Any], folder: Path, resume: bool) -> dict[str, Any]:
    from compress.prune import LatencySettings, ScoreSettings, prune

    report = prune(chain.current, folder / "model", ratio=o["ratio"], budget=o["budget"],
                   granularity=o["granularity"], preset=o["preset"], init=chain.init(chain.current),
                   score=ScoreSettings(**o["score"]), latency=LatencySettings(**o["latency"]),
                   max_overshoot=o["max_overshoot"], width=o["width"], width_importance=o["width_importance"],
                   overwrite=True, progress=chain.progress)
    return {"model": "model", "summary": report.summary, "removed": report.removed,
            "params_before": report.params_before, "params_after": report.params_after}


def _recover(chain: ChainState, o: dict[str, Any], folder: Path, resume: bool) -> dict[str, Any]:
    from compress.recover import recover
    from compress.runs import CHECKPOINT

    out = folder / "model"
    resume = resume and (out / CHECKPOINT).is_file()
    result = recover(chain.recipe.model, chain.current, out, data=o["data"], settings=chain.recipe.settings("recover"),
                     resume=resume, overwrite=not resume, evaluate_after=False, progress=chain.progress)
    return {"model": "model", "resumed": resume, "final_loss": result.final_loss}


def _distill(chain: ChainState, o: dict[str, Any], folder: Path, resume: bool) -> dict[str, Any]:
    from compress.distill import distill
    from compress.runs import CHECKPOINT

    out = folder / "model"
    resume = resume and (out / CHECKPOINT).is_file()
    student = chain.current if chain.current != chain.recipe.model else None
    distill(chain.recipe.model, out, student=student, data=o["data"], settings=chain.recipe.settings("distill"),
            resume=resume, overwrite=not resume, progress=chain.progress)
    return {"model": "model", "resumed": resume}


def _quantize(chain: ChainState, o: dict[str, Any], folder: Path, resume: bool) -> dict[str, Any]:
    from exporters.quantize import quantize

    name = f"{o['format']}-{o['mode']}"
    artifact = quantize(chain.current, o["format"], folder / name, mode=o["mode"], samples=o["samples"],
                        seed=o["seed"], keep_sensitive=o["keep_sensitive"], data=o["data"], steps=o["steps"],
                        init=chain.init(chain.current), task_check=o["task_check"], task_samples=o["task_samples"],
                        task_seeds=o["task_seeds"], overwrite=True)
    return {"artifact": name, "validated": artifact.validated}


def _export(chain: ChainState, o: dict[str, Any], folder: Path, resume: bool) -> dict[str, Any]:
    from exporters.api import export

    artifacts = {}
    for format in o["format"]:
        artifact = export(chain.current, format, folder / format, batch=o["batch"], fp16=o["fp16"],
                          init=chain.init(chain.current), overwrite=True)
        artifacts[format] = {"path": format, "validated": artifact.validated, "weights": artifact.weights}
    return {"artifacts": artifacts}


STAGE_FUNCTIONS: dict[str, Callable[[ChainState, dict[str, Any], Path, bool], dict[str, Any]]] = {
    "prune": _prune, "recover": _recover, "distill": _distill, "quantize": _quantize, "export": _export,
    "bench": bench_stage, "eval": eval_stage,
}
