"""A chain recipe: the model and the stages to run on it, read from TOML and checked whole before any work starts.

    model = "toy"
    [prune]
    ratio = 0.3
    [prune.score]            # compress.prune.ScoreSettings
    samples = 40
    [recover]                # compress.recover.RecoverSettings, plus `data`
    steps = 1000
    [distill]                # compress.distill.DistillSettings, plus `data`
    method = "lcm"
    [quantize]
    format = "openvino"
    [export]
    format = ["onnx", "openvino"]
    [bench]
    backend = ["ov-cpu"]
    [eval]
    student_steps = [1, 2, 4, 8]

Each stage's options are the keyword arguments of the library function its subcommand calls, or the fields of
that function's settings dataclass (read from the dataclass itself, so a new setting is a recipe option at once).
Torch-free: a malformed recipe is refused in a fraction of a second, naming the file, the stage and the key.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.errors import CompressError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

STAGES = ("prune", "recover", "distill", "quantize", "export", "bench", "eval")
FAMILY_STAGES = {  # what a chain can do to each model family
    "sd": ("prune", "recover", "distill", "quantize", "export", "bench"),
    "toy": STAGES,
    "span": ("quantize", "export", "bench", "eval"),
}
TOP_LEVEL = {"model": "str", "init": "str", "description": "str"}


def _settings_options(settings_class: type) -> dict[str, tuple[str, Any]]:
    """A settings dataclass's fields as recipe options: name -> (annotation, default)."""
    return {f.name: (str(f.type), f.default) for f in dataclasses.fields(settings_class)}


def _schemas() -> dict[str, dict[str, Any]]:
    """Each stage's options: name -> (annotation, default), or name -> (settings class, its options) for a table."""
    from compress.distill.settings import DistillSettings
    from compress.evaluate.defaults import DEFAULT_SEEDS
    from compress.prune.settings import LatencySettings, ScoreSettings
    from compress.recover.settings import RecoverSettings
    from exporters.formats import DEFAULT_QUANT_SAMPLES, TASK_SAMPLES

    return {
        "prune": {  # compress.prune.prune
            "ratio": ("float | None", None), "budget": ("str", "latency"), "granularity": ("str", "diffusers"),
            "preset": ("str | None", None), "max_overshoot": ("float", 0.1), "width": ("float | None", None),
            "width_importance": ("str", "magnitude"),
            "score": (ScoreSettings, _settings_options(ScoreSettings)),
            "latency": (LatencySettings, _settings_options(LatencySettings)),
        },
        "recover": {**_settings_options(RecoverSettings), "data": ("str | None", None)},
        "distill": {**_settings_options(DistillSettings), "data": ("str | None", None)},
        "quantize": {  # exporters.quantize.quantize
            "format": ("str", "openvino"), "mode": ("str", "w8a8"), "samples": ("int", DEFAULT_QUANT_SAMPLES),
            "seed": ("int", 0), "keep_sensitive": ("int", 0), "data": ("str | None", None),
            "steps": ("int | None", None), "task_check": ("bool", True), "task_samples": ("int", TASK_SAMPLES),
            "task_seeds": ("list[int]", list(DEFAULT_SEEDS)),
        },
        "export": {  # exporters.api.export, once per format
            "format": ("list[str]", ["onnx", "openvino"]), "fp16": ("bool | None", None), "batch": ("int", 1),
        },
        "bench": {  # compress.bench.compare against the teacher, per backend
            "backend": ("list[str]", ["ov-cpu"]), "rounds": ("int", 3), "pairs": ("int", 2), "calls": ("int", 10),
            "warmup": ("int", 5), "threads": ("int | None", None),
        },
        "eval": {  # compress.evaluate.evaluate (toy) or compress.sr.evaluate (SPAN)
            "samples": ("int", 500), "seeds": ("list[int]", list(DEFAULT_SEEDS)), "steps": ("int", 25),
            "student_steps": ("list[int]", [1, 2, 4, 8]), "guidance": ("float | None", None),
            "cache_interval": ("list[int]", []), "cache_branch": ("int", 0), "cache_on": ("list[str]", ["teacher"]),
            "fd_ratio_limit": ("float", 1.25), "psnr_drop_limit": ("float", 0.1),
        },
    }


@dataclass
class Recipe:
    """A checked recipe: `stages` holds, in chain order, each present stage's options with every default filled
    in (settings tables as dicts of their dataclass's fields)."""

    path: str
    model: str
    init: str = "pretrained"
    description: str = ""
    family: str = ""
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def settings(self, stage: str) -> Any:
        """The options of `recover` or `distill` as the settings dataclass its library function takes."""
        from compress.distill.settings import DistillSettings
        from compress.recover.settings import RecoverSettings

        settings_class = {"recover": RecoverSettings, "distill": DistillSettings}[stage]
        names = {f.name for f in dataclasses.fields(settings_class)}
        return settings_class(**{k: v for k, v in self.stages[stage].items() if k in names})


def _kind_matches(kind: str, value: Any) -> bool:
    """Is `value` (as TOML gives it) of the annotated kind? TOML has no null, so `None` means "leave it out"."""
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    accepted = {"float": number, "int": number and isinstance(value, int), "str": isinstance(value, str),
                "bool": isinstance(value, bool)}
    for alternative in (part.strip() for part in kind.split("|")):
        if alternative.startswith("list["):
            if isinstance(value, list) and all(_kind_matches(alternative[5:-1], item) for item in value):
                return True
        elif accepted.get(alternative, False):
            return True
    return False


def _describe(kind: str) -> str:
    words = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}
    parts = [p.strip() for p in kind.split("|") if p.strip() != "None"]
    return " or ".join(f"a list of {words[p[5:-1]].split(' ', 1)[1]}s" if p.startswith("list[") else words[p]
                       for p in parts)


def _options(path: str, where: str, given: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """`given` checked against `schema` key by key, defaults filled in."""
    unknown = [key for key in given if key not in schema]
    if unknown:
        known = ", ".join(k for k in schema if not isinstance(schema[k][0], type)) or "none"
        raise CompressError(f"{path}: [{where}] {unknown[0]}: unknown option (options: {known})")
    options = {}
    for key, spec in schema.items():
        if isinstance(spec[0], type):  # a settings table
            table = given.get(key, {})
            if not isinstance(table, dict):
                raise CompressError(f"{path}: [{where}] {key}: expected a table [{where}.{key}], got {table!r}")
            options[key] = _options(path, f"{where}.{key}", table, spec[1])
            continue
        kind, default = spec
        if key not in given:
            options[key] = default
            continue
        value = given[key]
        if not _kind_matches(kind, value):
            raise CompressError(f"{path}: [{where}] {key}: expected {_describe(kind)}, got {value!r}")
        options[key] = float(value) if kind.startswith("float") and isinstance(value, int) else value
    return options


def read_recipe(path: str | os.PathLike) -> Recipe:
    """Parse a recipe and check its syntax, model, stages, option names and types (`check_recipe` runs each
    stage's own value checks)."""
    from compress.models.registry import INITS, check_model_ref, is_registered, model_family

    path = str(path)
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CompressError(f"recipe not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CompressError(f"{path}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise CompressError(f"{path}: not valid TOML ({exc})") from None
    top = {key: value for key, value in data.items() if not isinstance(value, dict)}
    tables = {key: value for key, value in data.items() if isinstance(value, dict)}
    for key, value in top.items():
        if key not in TOP_LEVEL:
            raise CompressError(f"{path}: {key}: unknown top-level key (keys: {', '.join(TOP_LEVEL)}; stages are "
                                f"tables: {', '.join(f'[{s}]' for s in STAGES)})")
        if not _kind_matches(TOP_LEVEL[key], value):
            raise CompressError(f"{path}: {key}: expected {_describe(TOP_LEVEL[key])}, got {value!r}")
    if "model" not in top:
        raise CompressError(f"{path}: model: missing (a registry name such as toy, or a model folder)")
    for stage in tables:
        if stage not in STAGES:
            raise CompressError(f"{path}: [{stage}]: unknown stage (stages, in chain order: {', '.join(STAGES)})")
    if not tables:
        raise CompressError(f"{path}: names no stage (stages, in chain order: {', '.join(STAGES)})")
    model = top["model"]
    model_path = Path(path).parent / model
    if not is_registered(model) and not Path(model).exists() and model_path.exists():
        model = str(model_path)  # a folder named relative to the recipe
    try:
        check_model_ref(model)
    except CompressError as exc:
        raise CompressError(f"{path}: model: {exc}") from None
    family = model_family(model)
    init = top.get("init", "pretrained")
    if init not in INITS:
        raise CompressError(f"{path}: init: must be one of {', '.join(INITS)}, not {init!r}")
    schemas = _schemas()
    recipe = Recipe(path, model, init, top.get("description", ""), family)
    for stage in STAGES:  # chain order, whatever the file's order
        if stage in tables:
            if stage not in FAMILY_STAGES[family]:
                raise CompressError(f"{path}: [{stage}]: a chain cannot {stage} a {family}-family model "
                                    f"(stages for it: {', '.join(FAMILY_STAGES[family])})")
            recipe.stages[stage] = _options(path, stage, tables[stage], schemas[stage])
    return recipe


def options_set(stage: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of `stage` that differ from their defaults, tables flattened (`score.samples`)."""
    defaults = _options("", stage, {}, _schemas()[stage])

    def diff(given: dict[str, Any], default: dict[str, Any], prefix: str) -> dict[str, Any]:
        changed = {}
        for key, value in given.items():
            if isinstance(value, dict):
                changed.update(diff(value, default[key], f"{prefix}{key}."))
            elif value != default[key]:
                changed[prefix + key] = value
        return changed

    return diff(options, defaults, "")


def stage_folder(out: str | os.PathLike, stage: str) -> Path:
    """`OUT/NN-stage`, numbered by the stage's place in the chain order (the same folder whatever else is run)."""
    return Path(out) / f"{STAGES.index(stage) + 1:02d}-{stage}"


def check_recipe(recipe: Recipe, out: str | os.PathLike) -> None:
    """Each stage's own checks (those its subcommand runs before work, against the folder it will write), and how
    the stages fit together. A refusal names the recipe and the stage."""
    for stage, options in recipe.stages.items():
        try:
            if stage == "recover" and "prune" not in recipe.stages:
                raise CompressError("needs a [prune] stage before it: recovery distils a pruned student")
            _STAGE_CHECKS[stage](recipe, options, stage_folder(out, stage))
        except CompressError as exc:
            raise CompressError(f"{recipe.path}: [{stage}] {exc}") from None


def _check_prune(recipe: Recipe, o: dict[str, Any], folder: Path) -> None:
    from compress.prune.settings import LatencySettings, ScoreSettings, check_prune

    if o["ratio"] is None and o["preset"] is None and o["width"] is None:
        raise CompressError("ratio: missing (or give preset or width)")
    check_prune(folder, ratio=o["ratio"], preset=o["preset"], budget=o["budget"], granularity=o["granularity"],
                score=ScoreSettings(**o["score"]), latency=LatencySettings(**o["latency"]),
                max_overshoot=o["max_overshoot"], overwrite=True, width=o["width"],
                width_importance=o["width_importance"])


def _check_recover(recipe: Recipe, o: dict[str, Any], folder: Path) -> None:
    from compress.recover.settings import check_recover

    check_recover(folder, recipe.settings("recover"), resume=False, overwrite=True)


def _check_distill(recipe: Recipe, o: dict[str, Any], folder: Path) -> None:
    from compress.distill.settings import check_distill

    check_distill(folder, recipe.settings("distill"), resume=False, overwrite=True)


def _check_quantize(recipe: Recipe, o: dict[str, Any], folder: Path) -> None:
    from compress.evaluate.defaults import check_seeds
    from exporters.formats import check_quantize_options

    check_quantize_options(o["format"], o["mode"], o["samples"], o["keep_sensitive"], o["data"])
    check_seeds(o["task_seeds"])


def _check_export(recipe: Recipe, o: dict[str, Any], folder: Path) -> None:
    from exporters.formats import DEFAULT_FP16, FORMAT_OPTIONS, check_export_options

    if not o["format"]:
        raise CompressError("format: name at least one format")
    defaults = {name: value for options in FORMAT_OPTIONS.values() for name, value in options.items()}
    for format in o["format"]:
        check_export_options(format, {**defaults, "fp16": DEFAULT_FP16.get(format) if o["fp16"] is None
                                      else o["fp16"]})
    if o["batch"] < 1:
        raise CompressError(f"batch: must be at least 1, not {o['batch']}")


def _check_bench(recipe: Recipe, o: dict[str, Any], folder: Path) -> None:
    from compress.bench.backends import usable_backend

    if not o["backend"]:
        raise CompressError("backend: name at least one backend")
    for name in o["backend"]:
        usable_backend(name)
    if o["rounds"] < 2 or min(o["pairs"], o["calls"]) < 1 or o["warmup"] < 0:
        raise CompressError("rounds must be >= 2, pairs and calls >= 1, warmup >= 0")


def _check_eval(recipe: Recipe, o: dict[str, Any], folder: Path) -> None:
    from compress.evaluate.defaults import check_seeds

    check_seeds(o["seeds"])
    if o["samples"] < 2 or o["steps"] < 1 or any(s < 1 for s in o["student_steps"]):
        raise CompressError("samples must be at least 2, steps and student_steps at least 1")
    if any(n < 1 for n in o["cache_interval"]) or o["cache_branch"] < 0:
        raise CompressError("cache_interval values must be at least 1 and cache_branch at least 0")
    ddim_points = ("teacher", "pruned", "recovered")
    if any(name not in ddim_points for name in o["cache_on"]):
        raise CompressError(f"cache_on: names torch DDIM points, {', '.join(ddim_points)}; got {o['cache_on']}")
    if o["fd_ratio_limit"] <= 0 or o["psnr_drop_limit"] < 0:
        raise CompressError("fd_ratio_limit must be above 0 and psnr_drop_limit at least 0")


_STAGE_CHECKS = {"prune": _check_prune, "recover": _check_recover, "distill": _check_distill,
                 "quantize": _check_quantize, "export": _check_export, "bench": _check_bench, "eval": _check_eval}
