"""Package attributes imported on first use, so `compress --help` does not pay for torch and diffusers.

A package lists where each public name lives; `from compress.prune import prune` still works, and the
submodule is imported only then.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any


class _LazyPackage(types.ModuleType):
    """A package whose exported names are not replaced by same-named submodules when those are imported.

    Importing a submodule sets it on its parent (`import compress.bench.gate` sets `compress.bench.gate`); where
    the package exports a function of that name (`compress.prune`, `compress.bench.gate`), the function wins,
    as it did when the package imported it eagerly.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in vars(self).get("_EXPORTS", {}):
            return
        super().__setattr__(name, value)


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose public names are `{name: module}` (PEP 562)."""
    sys.modules[package].__class__ = _LazyPackage

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        setattr(sys.modules[package], name, value)  # the next access is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(vars(sys.modules[package])))

    return __getattr__, __dir__
