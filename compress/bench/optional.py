"""Runtimes are optional extras: import them on use, and name the extra when one is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from compress.errors import CompressError


def require(module: str, extra: str) -> ModuleType:
    """Import `module`, or raise a one-line CompressError naming `pip install 'compress[extra]'`."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CompressError(f"{module} is not installed: pip install 'compress[{extra}]'") from None
