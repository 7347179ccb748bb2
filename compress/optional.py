"""Optional extras: import a runtime on use, or say in one line which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from compress.errors import CompressError

# module -> the extra that installs it (pyproject.toml [project.optional-dependencies])
EXTRAS = {
    "onnx": "onnx", "onnxscript": "onnx", "onnxruntime": "onnx",
    "openvino": "openvino", "nncf": "openvino",
    "coremltools": "coreml",
    "transformers": "sd",
    "sklearn": "train", "skimage": "train",
}


def require(module: str, purpose: str | None = None) -> ModuleType:
    """Import `module`, or raise a CompressError naming `pip install 'compress[EXTRA]'` (never an ImportError)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        extra = EXTRAS[module.split(".")[0]]
        need = f"{purpose} needs {module}" if purpose else f"{module} is needed"
        raise CompressError(f"{need}, which is not installed: pip install 'compress[{extra}]'") from None
