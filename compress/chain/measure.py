"""The chain's measuring stages: `bench` times every point's graph against the teacher's, `eval` scores each point.

Latency: each point's UNet (or SPAN) graph, as the backend runs it (a torch point exported to the backend's format,
a quantized folder as written), timed against the teacher's graph interleaved in one run (`compress.bench.compare`,
so a speed ratio has its 95% interval). Quality: `compress.evaluate.evaluate` over the recipe's seeds (toy), or
Y-PSNR on SPAN's held-out split; a point is sampled at the teacher's steps (DDIM points, also with each feature-cache
interval) or at every `student_steps` (consistency students).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.chain.state import ChainState, Point
from compress.io import read_json, write_json

if TYPE_CHECKING:
    from compress.bench.targets import Target

BENCH_FILE = "bench.json"


def eval_settings(point: Point, o: dict[str, Any], family: str) -> list[dict[str, Any]]:
    """The sampling settings a point is scored at: {"steps", "cache_interval"}."""
    if family == "span":
        return [{"steps": 1, "cache_interval": None}]
    if point.student:
        return [{"steps": steps, "cache_interval": None} for steps in o["student_steps"]]
    cached = o["cache_interval"] if point.name in o["cache_on"] and not point.export else []
    return [{"steps": o["steps"], "cache_interval": interval} for interval in [None, *cached]]


def run_key(point: Point, setting: dict[str, Any]) -> str:
    cache = f"-cache{setting['cache_interval']}" if setting["cache_interval"] is not None else ""
    return f"{point.name}-{setting['steps']}{cache}"


def eval_stage(chain: ChainState, o: dict[str, Any], folder: Path, resume: bool) -> dict[str, Any]:
    """Score every point; a stopped stage keeps the runs it finished (one JSON per run)."""
    runs = {}
    for point in chain.points:
        for setting in eval_settings(point, o, chain.recipe.family):
            key = run_key(point, setting)
            path = folder / f"{key}.json"
            if resume and path.is_file():
                chain.say(f"  {key}: scored earlier")
            else:
                chain.say(f"  {key}: scoring {point.path}")
                write_json(path, _score(chain, point, setting, o))
            runs[key] = {"point": point.name, **setting, "file": path.name}
    return {"runs": runs}


def _score(chain: ChainState, point: Point, setting: dict[str, Any], o: dict[str, Any]) -> dict[str, Any]:
    if chain.recipe.family == "span":
        from dataclasses import asdict

        from compress.sr.evaluate import evaluate_images
        from compress.sr.files import split_images

        return asdict(evaluate_images(point.path, split_images("test")))
    from compress.evaluate import evaluate

    guidance = {} if o["guidance"] is None else {"guidance": o["guidance"]}
    return evaluate(point.path, steps=setting["steps"], samples=o["samples"], seeds=o["seeds"],
                    cache_interval=setting["cache_interval"], cache_branch=o["cache_branch"],
                    progress=chain.progress, **guidance).to_dict()


def bench_stage(chain: ChainState, o: dict[str, Any], folder: Path, resume: bool) -> dict[str, Any]:
    """Per backend: every point's graph against the teacher's, interleaved; per-call times and ratios."""
    import torch

    from compress.bench.backends import usable_backend

    threads = o["threads"] or torch.get_num_threads()
    results: dict[str, Any] = {}
    for name in o["backend"]:
        with tempfile.TemporaryDirectory(prefix="compress-chain-graphs-") as graphs:  # SD's are 3.4 GB each
            results[name] = _bench_backend(chain, o, usable_backend(name), Path(graphs), threads)
    write_json(folder / BENCH_FILE, results)
    return {"bench": BENCH_FILE}


def _bench_backend(chain: ChainState, o: dict[str, Any], backend: Any, graphs: Path, threads: int) -> dict[str, Any]:
    """Every point's graph against the teacher's on one backend, interleaved."""
    from compress.bench.compare import compare
    from compress.bench.host import host_class

    teacher_point, rows = chain.points[0], {}
    teacher = _target(chain, teacher_point, backend, graphs)
    for point in chain.points[1:]:
        target = _target(chain, point, backend, graphs, like=teacher)
        if target is None:
            rows[point.name] = {"skipped": f"{backend.name} does not run this artifact's format"}
            continue
        chain.say(f"  {point.name} vs {teacher_point.name} on {backend.name}")
        comparison = compare(target, teacher, backend, threads=threads, rounds=o["rounds"], pairs=o["pairs"],
                             calls=o["calls"], warmup=o["warmup"])
        rows[point.name] = {"per_call_ms": comparison.candidate_p50_ms,
                            "teacher_per_call_ms": comparison.baseline_p50_ms, "ratio": 1 + comparison.change,
                            "ratio_low": 1 + comparison.change_low, "ratio_high": 1 + comparison.change_high}
    teacher_ms = [row["teacher_per_call_ms"] for row in rows.values() if "teacher_per_call_ms" in row]
    if not teacher_ms:  # nothing to compare with: time the teacher alone
        from compress.bench.runner import bench_one

        teacher_ms = [bench_one(teacher, backend, warmup=o["warmup"], runs=o["calls"] * o["pairs"],
                                threads=threads).p50_ms]
    teacher_row = {"per_call_ms": statistics.median(teacher_ms), "ratio": 1.0, "ratio_low": 1.0, "ratio_high": 1.0}
    rows = {teacher_point.name: teacher_row, **rows}
    return {"host": host_class(threads, backend), "precision": backend.precision or "runtime default",
            "points": rows}


def _target(chain: ChainState, point: Point, backend: Any, graphs: Path, like: Target | None = None) -> Target | None:
    """The graph `backend` runs for `point`: a torch model exported to the backend's format (weights as trained),
    or the quantized folder itself; dynamic input sizes take the teacher graph's static ones."""
    from compress.bench.runner import runnable_backends
    from compress.bench.targets import Target, exported_target, resolve_target
    from exporters.config import load_export_config

    if not point.export:
        config = load_export_config(point.path, init=chain.init(point.path))
        return exported_target(config, backend.formats[0], graphs / point.name)
    target = resolve_target(point.path)
    if not runnable_backends(target, [backend], warn=lambda message: None):  # `compress bench`'s rule
        return None
    if like is not None and any(d < 0 for spec in target.inputs for d in spec.shape):
        static = {spec.name: spec for spec in like.inputs}
        inputs = [static.get(spec.name, spec) if any(d < 0 for d in spec.shape) else spec for spec in target.inputs]
        target = Target(point.name, target.format, target.paths, declared_inputs=inputs)
    return target


def read_bench(folder: Path) -> dict[str, Any]:
    """What a bench stage in `folder` measured ({} when there is none)."""
    path = folder / BENCH_FILE
    return read_json(path) if path.is_file() else {}
