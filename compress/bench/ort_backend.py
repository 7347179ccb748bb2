"""ONNX Runtime with one execution provider, full graph optimisation and `threads` intra-op threads.

`session.run` returns host arrays, so a call on a GPU provider includes its device synchronisation.
"""

from __future__ import annotations

from compress.bench.backends import Session
from compress.errors import CompressError
from compress.optional import require


def _onnxruntime():
    return require("onnxruntime", "this backend")


def unavailable(provider: str) -> str | None:
    try:
        ort = _onnxruntime()
    except CompressError as exc:
        return str(exc)
    if provider not in ort.get_available_providers():
        return (f"onnxruntime {ort.__version__} was built without {provider} "
                f"(it has {', '.join(ort.get_available_providers())})")
    return None


class OrtSession(Session):
    def __init__(self, target, provider: str, threads: int):
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(target.paths[0]), options, providers=[provider])
        except Exception as exc:  # onnxruntime raises its own exception types for bad models and providers
            raise CompressError(f"onnxruntime cannot load {target.paths[0]} on {provider}: "
                                f"{str(exc).strip().splitlines()[0]}") from None
        self.inputs = target.numpy_inputs()
        self.detail = {"runtime": f"onnxruntime {ort.__version__}", "providers": self.session.get_providers()}

    def call(self) -> None:
        self.session.run(None, self.inputs)

    def close(self) -> None:
        del self.session


def load(target, provider: str, threads: int) -> OrtSession:
    return OrtSession(target, provider, threads)
