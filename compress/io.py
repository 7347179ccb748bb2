"""Output folders that appear whole or not at all, safe checkpoint loading, and JSON.

torch and safetensors are imported inside the loaders: the CLI imports this module to print its help.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compress.errors import CompressError

if TYPE_CHECKING:
    import torch


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path` (same suffix) that replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o666 & ~_umask())  # mkstemp makes it private; give it the permissions a plain open() would
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder and rename it to `path` only if the block succeeds.

    On any exception the temporary folder is removed, so a failed run leaves nothing behind.
    """
    path = Path(path)
    check_new_folder(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    tmp.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the final folder should have the usual permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def load_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a safetensors file, turning a missing or corrupt file into a one-line CompressError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CompressError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CompressError(f"cannot read safetensors file {path}: {exc}") from None


def load_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Load a torch checkpoint with `weights_only=True` (no pickled code runs)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CompressError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompressError(f"cannot load checkpoint {path}: {first_line}") from None


def load_state_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load weights from `.safetensors` or a torch checkpoint (`.pt`, `.pth`, `.ckpt`, `.bin`)."""
    if str(path).endswith(".safetensors"):
        return load_safetensors(path)
    state = load_torch_checkpoint(path)
    if not isinstance(state, dict):
        raise CompressError(f"checkpoint {path} does not hold a dict of tensors")
    return state


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write indented JSON (a dataclass is converted first), replacing `path` only once complete."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CompressError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise CompressError(f"{path} is a folder, not a JSON file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CompressError(f"{path} is not valid JSON: {exc}") from None


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # what an image path's extension asks for


def image_format(path: str | os.PathLike) -> str:
    """The PIL format an image path's extension names; an unknown extension is an error, not silent PNG bytes."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise CompressError(f"{path}: unknown image extension {suffix or '(none)'!r}; use one of "
                            f"{', '.join(IMAGE_FORMATS)}")
    return IMAGE_FORMATS[suffix]


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, before any work, an output path that could not be written: its nearest existing ancestor must be a
    folder in which a temporary file can be created (and is, then removed at once)."""
    ancestor = Path(path).absolute().parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CompressError(f"cannot write {path}: {ancestor} is a file, not a folder")
    try:
        fd, name = tempfile.mkstemp(prefix=".compress-write-check-", dir=ancestor)
    except OSError as exc:
        raise CompressError(f"cannot write {path}: {ancestor} is not writable ({exc.strerror})") from None
    os.close(fd)
    os.unlink(name)


def check_new_files(paths: list[str | os.PathLike | None], overwrite: bool) -> None:
    """Refuse, before any work, to replace an existing file unless `overwrite`, a path that is a folder, and one
    that cannot be written."""
    for path in filter(None, paths):
        path = Path(path)
        if path.is_dir():
            raise CompressError(f"{path} is a folder; give a file path")
        if path.exists() and not overwrite:
            raise CompressError(f"{path} already exists (pass --overwrite to replace it)")
        check_writable(path)


def check_new_folder(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse, before any work, an output folder that exists (unless `overwrite`), is a file, or cannot be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise CompressError(f"output folder {path} is a file; give a folder path")
    if path.exists() and not overwrite:
        raise CompressError(f"output folder {path} already exists (pass --overwrite to replace it)")
    check_writable(path)
