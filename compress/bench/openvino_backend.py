"""OpenVINO: compiled with the LATENCY performance hint (one stream) and, on the CPU, `threads` inference threads.

This is what `benchmark_app -hint latency -nthreads T` compiles, so the two report comparable medians.
"""

from __future__ import annotations

import functools
from typing import Any

from compress.bench.backends import Session
from compress.errors import CompressError
from compress.optional import require


def _openvino():
    return require("openvino", "this backend")


@functools.lru_cache(maxsize=1)
def _core() -> Any:
    return _openvino().Core()


def compile_config(device: str, threads: int, precision: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if device == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    return config


def unavailable(device: str) -> str | None:
    try:
        ov = _openvino()
    except CompressError as exc:
        return str(exc)
    devices = _core().available_devices
    if not any(d == device or d.startswith(f"{device}.") for d in devices):
        return f"OpenVINO {ov.__version__} lists no {device} device here (it lists {', '.join(devices) or 'none'})"
    return None


class OpenVinoSession(Session):
    def __init__(self, target, device: str, threads: int, precision: str | None = None):
        ov = _openvino()
        core = _core()
        try:
            compiled = core.compile_model(core.read_model(str(target.paths[0])), device,
                                          compile_config(device, threads, precision))
        except RuntimeError as exc:
            raise CompressError(f"OpenVINO cannot compile {target.paths[0]} for {device}: "
                                f"{str(exc).strip().splitlines()[0]}") from None
        self.request = compiled.create_infer_request()
        self.inputs = target.numpy_inputs()  # the tensors below share this memory
        for name, array in self.inputs.items():
            self.request.set_tensor(name, ov.Tensor(array))
        self.detail = {
            "runtime": f"openvino {ov.__version__}",
            "device": core.get_property(device, "FULL_DEVICE_NAME"),
            "compiled": {key: str(compiled.get_property(key)) for key in
                         ("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT")
                         if key in compiled.get_property("SUPPORTED_PROPERTIES")},
        }

    def call(self) -> None:
        self.request.infer()

    def close(self) -> None:
        del self.request


def load(target, device: str, threads: int, precision: str | None = None) -> OpenVinoSession:
    return OpenVinoSession(target, device, threads, precision)
