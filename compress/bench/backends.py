"""The backend table: every name `compress bench --backend` accepts, which runtime runs it, and on what.

Each runtime family lives in its own module (`torch_backend`, `ort_backend`, `openvino_backend`,
`coreml_backend`), imported only when a backend of that family is asked about, and provides:

    unavailable(device) -> str | None          why the backend cannot run here (None: it can)
    load(target, device, threads) -> Session   a loaded model with its inputs bound
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from compress.errors import CompressError


@dataclass(frozen=True)
class Backend:
    name: str
    family: str  # torch | ort | openvino | coreml
    device: str  # in the runtime's own terms: a torch device, an ORT provider, an OpenVINO device, compute units
    formats: tuple[str, ...]  # target formats it runs natively
    reads: tuple[str, ...] = ()  # formats it also loads, used when no listed backend runs a target natively
    # OpenVINO: the inference precision pinned instead of the device's default (the CPU plugin computes bf16
    # where the CPU has it), so fp32 and int8 graphs can be timed against true fp32 compute
    precision: str | None = None

    @property
    def on_host_cpu(self) -> bool:
        """Whether it computes on this machine's CPU, so the host's GEMM peak bounds it."""
        return self.device in ("cpu", "CPUExecutionProvider", "CPU", "CPU_ONLY")

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(f"compress.bench.{self.family}_backend")

    def unavailable(self) -> str | None:
        return self.module.unavailable(self.device)

    def load(self, target: Any, threads: int) -> Session:
        if self.precision is None:
            return self.module.load(target, self.device, threads)
        return self.module.load(target, self.device, threads, precision=self.precision)


_ORT = ("onnx",)
_OV = ("openvino",)
_BACKENDS = [
    Backend("torch-cpu", "torch", "cpu", ("torch",)),
    Backend("torch-cuda", "torch", "cuda", ("torch",)),
    Backend("ort-cpu", "ort", "CPUExecutionProvider", _ORT),
    Backend("ort-cuda", "ort", "CUDAExecutionProvider", _ORT),
    Backend("ort-tensorrt", "ort", "TensorrtExecutionProvider", _ORT),
    Backend("ort-coreml", "ort", "CoreMLExecutionProvider", _ORT),
    Backend("ort-qnn", "ort", "QNNExecutionProvider", _ORT),
    Backend("ort-nnapi", "ort", "NnapiExecutionProvider", _ORT),
    Backend("ov-cpu", "openvino", "CPU", _OV, reads=("onnx",)),
    Backend("ov-cpu-f32", "openvino", "CPU", _OV, reads=("onnx",), precision="f32"),
    Backend("ov-gpu", "openvino", "GPU", _OV, reads=("onnx",)),
    Backend("ov-npu", "openvino", "NPU", _OV, reads=("onnx",)),
    Backend("coreml-cpu", "coreml", "CPU_ONLY", ("coreml",)),
    Backend("coreml-gpu", "coreml", "CPU_AND_GPU", ("coreml",)),
    Backend("coreml-ane", "coreml", "CPU_AND_NE", ("coreml",)),
]
BACKENDS = {backend.name: backend for backend in _BACKENDS}
DEFAULT_BACKEND = {"torch": "torch-cpu", "onnx": "ort-cpu", "openvino": "ov-cpu", "coreml": "coreml-cpu"}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise CompressError(f"unknown backend {name!r}; known backends: {', '.join(BACKENDS)}") from None


def usable_backend(name: str) -> Backend:
    """The backend `name`, refused with the reason (a missing extra, no device) when it cannot run here."""
    backend = get_backend(name)
    reason = backend.unavailable()
    if reason is not None:
        raise CompressError(f"backend {name} is not available: {reason}")
    return backend


def list_backends() -> list[tuple[str, str | None]]:
    """(name, None if available else the reason it is not) for every backend."""
    return [(backend.name, backend.unavailable()) for backend in _BACKENDS]


class Session:
    """A loaded model with its inputs bound. `call()` returns once the results exist (device work finished)."""

    detail: dict[str, Any]

    def call(self) -> None:
        raise NotImplementedError

    def timed_call(self) -> float:
        """Seconds one call takes; device backends override this with device-side timing."""
        began = time.perf_counter()
        self.call()
        return time.perf_counter() - began

    def device_peak_mb(self) -> float | None:
        """Peak device memory, for backends whose memory is not the host process's."""
        return None

    def close(self) -> None:
        """Release the model before the next one loads."""
