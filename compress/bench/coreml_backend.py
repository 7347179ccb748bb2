"""Core ML through coremltools (macOS only): the package, or a chunked UNet's packages in order.

The compute units restrict where Core ML may run the model (CPU_ONLY, CPU_AND_GPU, CPU_AND_NE); Core ML still
decides per op within them.
"""

from __future__ import annotations

import sys

from compress.bench.backends import Session
from compress.errors import CompressError
from compress.optional import require


def unavailable(compute_units: str) -> str | None:
    if sys.platform != "darwin":
        return f"Core ML runs on macOS only (this is {sys.platform})"
    try:
        require("coremltools", "this backend")
    except CompressError as exc:
        return str(exc)
    return None


class CoreMLSession(Session):
    def __init__(self, target, compute_units: str):
        ct = require("coremltools", "this backend")
        units = getattr(ct.ComputeUnit, compute_units)
        self.models = [ct.models.MLModel(str(path), compute_units=units) for path in target.paths]
        self.input_names = [[i.name for i in model.get_spec().description.input] for model in self.models]
        self.inputs = target.numpy_inputs()
        self.detail = {"runtime": f"coremltools {ct.__version__}", "compute_units": compute_units,
                       "packages": len(self.models)}

    def call(self) -> None:
        features = dict(self.inputs)  # a chunk reads the inputs and the earlier chunks' outputs
        for model, names in zip(self.models, self.input_names, strict=True):
            features.update(model.predict({name: features[name] for name in names}))

    def close(self) -> None:
        del self.models


def load(target, compute_units: str, threads: int) -> CoreMLSession:
    return CoreMLSession(target, compute_units)
