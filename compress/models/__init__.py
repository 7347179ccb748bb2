"""Models and what they are on disk: the registry, the loaders, the pruned-artifact format, SPAN.

`compress.models.create(ref)` resolves a registry name, a folder or a checkpoint file to its model. It is
imported on first use, so `compress models` (which reads only the registry) stays light.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create"]


def __getattr__(name: str) -> Any:
    if name == "create":
        from compress.models.resolve import create

        return create
    raise AttributeError(f"module 'compress.models' has no attribute {name!r}")
