"""What `compress bench` can time: an exported artifact (files a runtime loads) or a torch model.

An export folder is read through its `export_report.json` (main file, Core ML chunks, input names and shapes); a
bare `.onnx`, `.xml` or `.mlpackage` through its own graph. Anything else is a model for the torch backends,
loaded through the exporters' config so it has exactly the exported signature (and SPAN is fused, as deployed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from compress.bench.graphs import Graph, TensorInfo, artifact_graph, torch_graph
from compress.errors import CompressError
from compress.io import read_json
from compress.models.sd import NUM_TRAIN_TIMESTEPS

ARTIFACT_SUFFIXES = {".onnx": "onnx", ".xml": "openvino", ".mlpackage": "coreml"}
EXPORT_REPORT = "export_report.json"


@dataclass
class Target:
    """One thing to benchmark. `paths` are the artifact's files (two for a chunked Core ML UNet)."""

    name: str
    format: str  # onnx | openvino | coreml | torch
    paths: list[Path] = field(default_factory=list)
    module: torch.nn.Module | None = None  # torch targets only
    example: dict[str, torch.Tensor] | None = None  # torch targets: the call's inputs
    declared_inputs: list[TensorInfo] | None = None  # from an export report, before reading the graph
    _graph: Graph | None = field(default=None, repr=False)

    @classmethod
    def from_module(cls, name: str, module: torch.nn.Module, example: dict[str, torch.Tensor]) -> Target:
        """A torch module called as `module(*example.values())`, e.g. an unfused SPAN next to its fused form."""
        return cls(name, "torch", module=module.eval(), example=example)

    @property
    def location(self) -> str:
        return ", ".join(map(str, self.paths)) if self.paths else self.name

    def graph(self) -> Graph:
        """Inputs and per-op costs, read once (a meta-device trace for torch, a graph walk for artifacts)."""
        if self._graph is None:
            if self.module is not None:
                self._graph = torch_graph(self.module, self.example)
            else:
                self._graph = artifact_graph(self.format, self.paths)
        return self._graph

    @property
    def inputs(self) -> list[TensorInfo]:
        return self.declared_inputs if self.declared_inputs is not None else self.graph().inputs

    def numpy_inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Seeded inputs for an artifact, in each input's distribution; a dynamic dimension is given size 1."""
        rng = np.random.default_rng(seed)
        arrays = {}
        for spec in self.inputs:
            shape = tuple(1 if d < 0 else d for d in spec.shape)
            if spec.name == "timestep":
                value = rng.integers(0, NUM_TRAIN_TIMESTEPS, shape)
            elif spec.name == "image":
                value = rng.random(shape)
            elif np.issubdtype(np.dtype(spec.dtype), np.floating):
                value = rng.standard_normal(shape)
            else:
                value = np.zeros(shape)
            arrays[spec.name] = value.astype(spec.dtype)
        return arrays


def _report_target(name: str, folder: Path) -> Target:
    report = read_json(folder / EXPORT_REPORT)
    try:
        format, main = report["format"], report["path"]
        packages = report.get("options", {}).get("packages") or [main]
        inputs = [TensorInfo(n, tuple(s), d) for n, s, d in
                  zip(report["input_names"], report["input_shapes"], report["input_dtypes"], strict=True)]
    except (KeyError, TypeError):
        raise CompressError(f"{folder / EXPORT_REPORT} is not an export report") from None
    paths = [folder / p for p in (packages if format == "coreml" else [main])]
    for path in paths:
        if not path.exists():
            raise CompressError(f"{folder / EXPORT_REPORT} names {path}, which does not exist")
    return Target(name, format, paths, declared_inputs=inputs)


def _folder_artifact(name: str, folder: Path) -> Target | None:
    """A folder holding exactly one artifact (optimum's `unet/model.onnx` layout included), else None."""
    found = [p for pattern in ("*", "unet/*") for p in sorted(folder.glob(pattern)) if p.suffix in ARTIFACT_SUFFIXES]
    if not found:
        return None
    if len(found) > 1:
        listed = ", ".join(str(p.relative_to(folder)) for p in found)
        raise CompressError(f"{folder} holds several artifacts ({listed}); pass one file")
    return Target(name, ARTIFACT_SUFFIXES[found[0].suffix], found)


def _torch_target(ref: str, size: int | None, init: str, seed: int) -> Target:
    from exporters import load_export_config

    config = load_export_config(ref, height=size, width=size, init=init, seed=seed)
    return Target.from_module(ref, config.module, config.random_inputs(seed))


def resolve_target(ref: str | os.PathLike, *, size: int | None = None, init: str = "pretrained",
                   seed: int = 0) -> Target:
    """Turn a command-line argument into a Target; `size`, `init` and `seed` apply to torch models only.

    An artifact's graph is read here, so a corrupt file is refused before anything is timed."""
    target = _find_target(str(ref), size, init, seed)
    if target.module is None:
        target.graph()
    return target


def _find_target(ref: str, size: int | None, init: str, seed: int) -> Target:
    path = Path(ref)
    name = path.name or ref
    if path.suffix in ARTIFACT_SUFFIXES:
        if not path.exists():
            raise CompressError(f"artifact not found: {ref}")
        return Target(name, ARTIFACT_SUFFIXES[path.suffix], [path])
    if path.is_dir():
        if (path / EXPORT_REPORT).is_file():
            return _report_target(name, path)
        artifact = _folder_artifact(name, path)
        if artifact is not None:
            return artifact
        return _torch_target(ref, size, init, seed)
    from compress.models.registry import is_registered

    if is_registered(ref):
        return _torch_target(ref, size, init, seed)
    if path.exists():
        return _torch_target(ref, size, init, seed)  # a SPAN checkpoint file
    raise CompressError(f"not found: {ref} (expected an export folder, a .onnx/.xml/.mlpackage file, a registry "
                        "name such as toy or span-x2, or a model folder)")


def exported_target(config, format: str, directory: Path, fp16: bool | None = None) -> Target:
    """`config`'s model (an `exporters` ExportConfig) as `format` deploys it: written under `directory` for a
    runtime, or the module itself for torch. `fp16` overrides the format's default weight storage."""
    if format == "torch":
        return Target.from_module(config.name, config.module, config.random_inputs(0))
    from exporters.api import write_model_files

    files = write_model_files(config, format, directory, fp16=fp16)
    paths = [directory / f for f in files if Path(f).suffix in ARTIFACT_SUFFIXES]
    return Target(config.name, format, paths[:1] if format != "coreml" else paths)
