"""Small helpers shared by the format modules: status lines, sizes, memory."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def describe_exception(exc: BaseException) -> str:
    """`Type: first line of the message`, for errors from converters and runtimes."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def path_size(path: Path) -> int:
    """Bytes of a file, or of everything in a folder (a Core ML package)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024**2 if sys.platform == "darwin" else 1024), 1)
