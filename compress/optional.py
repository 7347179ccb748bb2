"""Optional extras: import a runtime on use, or say in one line which extra installs it."""

from __future__ import annotations

import importlib
import importlib.util
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
        raise _not_installed(module, purpose) from None


def check_installed(module: str, purpose: str | None = None) -> None:
    """`require`'s refusal without the import: a runtime whose import pulls in torch is checked in milliseconds."""
    if importlib.util.find_spec(module) is None:
        raise _not_installed(module, purpose)


def _not_installed(module: str, purpose: str | None) -> CompressError:
    extra = EXTRAS[module.split(".")[0]]
    need = f"{purpose} needs {module}" if purpose else f"{module} is needed"
    return CompressError(f"{need}, which is not installed: pip install 'compress[{extra}]'")
