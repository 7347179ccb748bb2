"""Latency tables: what each part of a UNet costs on one runtime, measured through `compress bench`'s harness.

A UNet's latency is modelled from its leaf calls (every resnet, transformer block and sampler at the shapes it
runs at, see `cost.LeafCosts`): latency = fixed + scale x (sum of the leaves' times). Each distinct leaf is
exported alone in the backend's format (the exporters' own code), loaded and timed by `bench_one`, the function
`compress bench` times with. Timed alone, leaves add up to more than the whole graph (on ov-cpu, SD-v1.4 at
64x64: 7.1 s of leaves, 6.4 s whole; the runtime fuses and schedules across leaf boundaries), so two whole
UNets calibrate the line: the original, and one with about half its latency removed (the units with the
largest leaf time first). The remainder `fixed` is conv_in/out, the time embedding, the skip concatenations and
the per-call overhead. One table then predicts every removal set, and `--verify-latency` checks the
prediction on the pruned model it chose. While a runtime compiles and times a whole UNet, the torch weights
wait in a file (`weights_released`), so a prune holds one copy of the model plus the runtime's, not two.

With `estimate=PROFILE` the same leaves are costed by the NPU roofline model instead (`compress bench
--estimate`): no measurement, and labelled as an estimate everywhere.

A table is keyed by what its numbers depend on. It is cached (`$COMPRESS_CACHE`, default
~/.cache/compress/latency), written next to the pruned model, saved after every leaf (a killed build
resumes) and reusable with `--latency-table FILE` on another machine, since a table measured on a phone or a
GPU machine is what should drive a prune made on a laptop.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from tqdm import tqdm

from compress.bench.backends import Backend, get_backend, usable_backend
from compress.bench.estimate import estimate as roofline
from compress.bench.estimate import estimate_label, get_profile
from compress.bench.host import cpu_name
from compress.bench.runner import bench_one
from compress.bench.targets import Target, exported_target
from compress.errors import CompressError
from compress.io import atomic_file, read_json
from compress.models.loading import public_config
from compress.models.surgery import ShortcutResnet, get_module
from compress.models.units import units_conflict
from compress.prune.cost import LeafCall, LeafCosts
from compress.prune.rewrite import pruned_module
from compress.types import Record, Unit

LOCAL_BACKENDS = ("ov-cpu", "ort-cpu", "torch-cpu")  # the default budget's backend: the first one installed
TABLE_FORMAT = 2
# a table measured for other values of these is refused
MATCHED_KEYS = ("format", "unet_config", "latent", "batch", "text_tokens", "backend")
LEAF_WARMUP, LEAF_RUNS = 2, 9
WHOLE_WARMUP, WHOLE_RUNS = 1, 5
CALIBRATION_SHARE = 0.5
ESTIMATE_PRECISION = "fp16"


@dataclass
class LatencyTable(Record):
    """Milliseconds per leaf signature on one backend, plus the whole UNet's."""

    key: dict[str, Any]
    label: str  # "measured ..." or the roofline's ESTIMATE label
    leaves: dict[str, float] = field(default_factory=dict)  # signature -> ms
    descriptions: dict[str, str] = field(default_factory=dict)  # signature -> what it is
    whole_ms: float | None = None
    fixed_ms: float | None = None
    scale: float = 1.0
    calibration: dict[str, Any] = field(default_factory=dict)  # the second whole UNet: removed units, ms
    seconds: float = 0.0

    @property
    def estimate(self) -> bool:
        return self.key["backend"].startswith("estimate:")

    @property
    def complete(self) -> bool:
        return self.fixed_ms is not None

    def predict_ms(self, calls: dict[str, LeafCall]) -> float:
        """Latency of a UNet whose leaf calls are `calls`."""
        missing = [c.description for c in calls.values() if c.signature not in self.leaves]
        if missing:
            raise CompressError(f"the latency table has no entry for {missing[0]} (it was built for another "
                                "search space; rebuild it without --latency-table)")
        return self.fixed_ms + self.scale * sum(self.leaves[c.signature] for c in calls.values())

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")


def default_backend() -> str:
    """The best runtime installed here, in the order ov-cpu, ort-cpu, torch-cpu."""
    return next(name for name in LOCAL_BACKENDS if get_backend(name).unavailable() is None)


def _runtime(backend: Backend) -> str:
    module = {"torch": "torch", "ort": "onnxruntime", "openvino": "openvino", "coreml": "coremltools"}[backend.family]
    return f"{module} {__import__(module).__version__}"


def config_digest(unet: UNet2DConditionModel) -> str:
    text = json.dumps(public_config(unet.config), sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def matched_key(unet: UNet2DConditionModel, latent: int, batch: int, text_tokens: int, backend: str
                ) -> dict[str, Any]:
    """The part of a table's key that must match the prune it drives (MATCHED_KEYS)."""
    return {"format": TABLE_FORMAT, "unet_config": config_digest(unet), "latent": latent, "batch": batch,
            "text_tokens": text_tokens, "backend": backend}


def table_key(unet: UNet2DConditionModel, latent: int, batch: int, text_tokens: int, backend: str | None,
              estimate: str | None, threads: int) -> dict[str, Any]:
    """Everything a table's numbers depend on: also the runtime version, threads and host."""
    if estimate is not None:
        get_profile(estimate)
        base = matched_key(unet, latent, batch, text_tokens, f"estimate:{estimate}")
        return {**base, "runtime": f"roofline {ESTIMATE_PRECISION}", "threads": 0, "host": None}
    chosen = usable_backend(backend)
    return {**matched_key(unet, latent, batch, text_tokens, chosen.name), "runtime": _runtime(chosen),
            "threads": threads, "host": cpu_name() if chosen.on_host_cpu else chosen.device}


def cache_dir() -> Path:
    return Path(os.environ.get("COMPRESS_CACHE") or Path.home() / ".cache" / "compress") / "latency"


def cache_path(key: dict[str, Any]) -> Path:
    return cache_dir() / (hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20] + ".json")


def read_table(path: str | os.PathLike, key: dict[str, Any] | None = None) -> LatencyTable:
    """Load a table; with `key`, refuse one measured for another UNet, latent size, batch or backend."""
    try:
        table = LatencyTable.from_dict(read_json(path))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise CompressError(f"{path} is not a latency table ({exc})") from None
    if key is not None:
        for name in MATCHED_KEYS:
            if table.key.get(name) != key[name]:
                what = "UNet config" if name == "unet_config" else name.replace("_", " ")
                raise CompressError(f"latency table {path} was measured for another {what} "
                                    f"({table.key.get(name)!r}, this prune needs {key[name]!r})")
        if not table.complete:
            raise CompressError(f"latency table {path} is incomplete (its build was interrupted)")
    return table


class _LeafModule(torch.nn.Module):
    """One recorded leaf call replayed with positional tensors: what is exported and timed."""

    def __init__(self, module: torch.nn.Module, call: LeafCall):
        super().__init__()
        self.module, self.call = module, call

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        args, kwargs = self.call.rebuild(tensors)
        out = self.module(*args, **kwargs)
        return out[0] if isinstance(out, tuple) else out


def _leaf_config(unet: UNet2DConditionModel, call: LeafCall):
    from exporters.config import ModuleExportConfig

    module = get_module(unet, call.path)
    if call.kind == "ShortcutResnet":
        module = ShortcutResnet(module)
    module = _LeafModule(module, call).eval()
    return ModuleExportConfig(call.description, module, call.input_shapes)


def _whole_config(unet: UNet2DConditionModel, latent: int, batch: int, text_tokens: int):
    from exporters.config import UNetExportConfig

    return UNetExportConfig(unet, "unet", batch, latent, latent, text_tokens)


def _byte_view(tensor: torch.Tensor) -> memoryview:
    """The bytes of a tensor's whole storage, writable, without handing the storage to numpy."""
    storage = tensor.untyped_storage()
    return memoryview((ctypes.c_char * storage.nbytes()).from_address(storage.data_ptr())).cast("B")


@contextmanager
def weights_released(modules: Iterable[torch.nn.Module], directory: Path) -> Iterator[None]:
    """Free the weights of `modules` while a runtime holds its own compiled copy; put them back bit-exact.

    The process then holds one copy of a whole UNet, not two (on SD-v1.4, compiling its IR for ov-cpu beside the
    torch UNet peaked at 3.2x the fp32 weights). Every parameter and buffer is emptied and its storage parked in a
    file in `directory`; tensors that shared a storage (a pruned UNet from `pruned_module` and its original)
    share it again afterwards. Pass every module that holds the tensors, or their bytes stay referenced.
    """
    tensors = {id(t): t for module in modules for t in (*module.parameters(), *module.buffers())}.values()
    storages: dict[int, tuple[int, int]] = {}  # data_ptr -> (file offset, bytes)
    views = []
    path = directory / "parked-weights.bin"
    with open(path, "wb") as file:
        for tensor in tensors:
            key = tensor.untyped_storage().data_ptr()
            if key not in storages:
                storages[key] = (file.tell(), file.write(_byte_view(tensor)))
            views.append((tensor, key, tensor.storage_offset(), tensor.size(), tensor.stride()))
    for tensor, *_ in views:
        tensor.data = torch.empty(0, dtype=tensor.dtype)
    try:
        yield
    finally:
        restored: dict[int, torch.UntypedStorage] = {}
        with open(path, "rb") as file:
            for key, (offset, size) in storages.items():
                buffer = torch.empty(size, dtype=torch.uint8)
                file.seek(offset)
                file.readinto(_byte_view(buffer))
                restored[key] = buffer.untyped_storage()
        for tensor, key, offset, size, stride in views:
            tensor.data = torch.empty(0, dtype=tensor.dtype).set_(restored[key], offset, size, stride)
        path.unlink()


@contextmanager
def exported_for_timing(configs: list, format: str, directory: Path, release: tuple[torch.nn.Module, ...] = ()
                        ) -> Iterator[list[Target]]:
    """`configs` exported in `format` under `directory`, to be timed inside the block.

    `release`: modules whose weights are freed while the runtime compiles and times the exports (see
    `weights_released`; nothing is freed for torch, which runs the modules themselves). An OpenVINO IR then stores
    the weights in fp16, which the runtime decompresses when it compiles (the compiled graph computes at the same
    precision; SD-v1.4 on ov-cpu here: 8.0 s either way), so the file the runtime maps is half the size.
    """
    release = release if format != "torch" else ()
    fp16 = True if release and format == "openvino" else None
    targets = [exported_target(config, format, directory / str(i), fp16=fp16) for i, config in enumerate(configs)]
    with weights_released(release, directory) if release else nullcontext():
        yield targets


def time_config(config, key: dict[str, Any], warmup: int, runs: int, release: tuple[torch.nn.Module, ...] = ()
                ) -> float:
    """Median milliseconds of one call of an export config's model on the key's backend (or its estimate);
    `release` as in `exported_for_timing`."""
    with tempfile.TemporaryDirectory(prefix="compress-latency-") as tmp, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.export's notes on its own deprecations
        if key["backend"].startswith("estimate:"):
            target = exported_target(config, "torch", Path(tmp))
            return roofline(target, key["backend"].split(":", 1)[1], ESTIMATE_PRECISION).estimate_ms
        backend = get_backend(key["backend"])
        with exported_for_timing([config], backend.formats[0], Path(tmp), release) as (target,):
            return bench_one(target, backend, warmup=warmup, runs=runs, threads=key["threads"]).p50_ms


def _calibration_units(table: LatencyTable, units: list[Unit], costs: LeafCosts) -> list[Unit]:
    """Non-conflicting units, largest leaf time first, until about half the leaves' time is removed."""
    def leaf_ms(subset: list[Unit]) -> float:
        return sum(table.leaves[c.signature] for c in costs.leaves(subset).values())

    full = leaf_ms([])
    chosen: list[Unit] = []
    for unit in sorted(units, key=lambda u: leaf_ms([u])):
        if leaf_ms(chosen) <= CALIBRATION_SHARE * full:
            break
        if not any(units_conflict(unit, other) for other in chosen) and leaf_ms([*chosen, unit]) < leaf_ms(chosen):
            chosen.append(unit)
    return chosen


def build_table(unet: UNet2DConditionModel, units: list[Unit], granularity: str, costs: LeafCosts,
                key: dict[str, Any], text_tokens: int, progress: bool = True) -> LatencyTable:
    """Measure (or estimate) every leaf any removal set calls and two whole UNets; resumes a partial cache."""
    path = cache_path(key)
    table = read_table(path) if path.exists() else None
    if table is None or table.key != key:
        if key["backend"].startswith("estimate:"):
            label = estimate_label(get_profile(key["backend"].split(":", 1)[1]), ESTIMATE_PRECISION)
        else:
            label = f"measured on {key['backend']} ({key['runtime']}, {key['threads']} threads, {key['host']})"
        table = LatencyTable(key, label)
    calls = costs.all_calls()
    todo = [c for c in calls.values() if c.signature not in table.leaves]
    if table.complete and not todo:
        return table
    started = time.time() - table.seconds  # a cached table of this key gains what another search space lacks
    bar = tqdm(total=len(calls) + 2, initial=len(calls) - len(todo), desc=f"latency table ({key['backend']})",
               unit="graph", disable=not progress)
    for call in todo:
        bar.set_postfix_str(call.description)
        table.leaves[call.signature] = time_config(_leaf_config(unet, call), key, LEAF_WARMUP, LEAF_RUNS)
        table.descriptions[call.signature] = call.description
        table.seconds = round(time.time() - started, 1)
        table.save(path)
        bar.update()
    if table.complete:  # the calibration line holds for the runtime, whatever the search space
        table.save(path)
        bar.close()
        return table
    bar.set_postfix_str("whole UNet, original and calibration")
    latent, batch = key["latent"], key["batch"]
    table.whole_ms = time_config(_whole_config(unet, latent, batch, text_tokens), key, WHOLE_WARMUP, WHOLE_RUNS,
                                 release=(unet,))
    removed = _calibration_units(table, units, costs)
    pruned = pruned_module(unet, removed, granularity)
    calibration_ms = time_config(_whole_config(pruned, latent, batch, text_tokens), key, WHOLE_WARMUP, WHOLE_RUNS,
                                 release=(unet, pruned))
    del pruned
    full = sum(table.leaves[c.signature] for c in costs.base.values())
    rest = sum(table.leaves[c.signature] for c in costs.leaves(removed).values())
    if removed:
        table.scale = (table.whole_ms - calibration_ms) / (full - rest)
    table.fixed_ms = table.whole_ms - table.scale * full
    table.calibration = {"removed": [u.name for u in removed], "whole_ms": calibration_ms,
                         "leaves_ms": {"original": full, "calibration": rest}}
    table.seconds = round(time.time() - started, 1)
    table.save(path)
    bar.update(2)
    bar.close()
    return table


@dataclass
class LatencyModel:
    """A table with the leaf costs it is read through: the predicted latency of any removal set."""

    table: LatencyTable
    costs: LeafCosts

    def predict_ms(self, units: list[Unit]) -> float:
        return self.table.predict_ms(self.costs.leaves(units))

    def saving(self, units: list[Unit]) -> float:
        """The share of the original UNet's latency that removing `units` saves."""
        return 1 - self.predict_ms(units) / self.predict_ms([])
