"""Helpers shared by every `compress` sub-command module."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from compress.errors import CompressError


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a CompressError into one `error:` line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CompressError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper
