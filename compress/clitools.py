"""Helpers shared by every `compress` sub-command module."""

from __future__ import annotations

import functools
import shlex
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


def command_line(ctx: click.Context) -> str:
    """The command as given, rebuilt from click's parsed values (sys.argv is not ours when called in-process)."""
    args = ["compress", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value is False or value == ():
            continue
        if isinstance(param, click.Argument):
            args += [str(v) for v in value] if isinstance(value, tuple) else [str(value)]
            continue
        flag = max(param.opts, key=len)
        for item in value if isinstance(value, tuple) else (value,):
            args += [flag] if item is True else [flag, str(item)]
    return shlex.join(args)


def deprecated_alias(value: Any, old_value: Any, name: str, old_name: str) -> Any:
    """The value of option `name`, or of its deprecated spelling `old_name` (with a warning); not both."""
    if old_value is None:
        return value
    if value is not None:
        raise click.UsageError(f"{old_name} is a deprecated name of {name}; give only {name}")
    click.echo(f"warning: {old_name} is deprecated; use {name}", err=True)
    return old_value


class IntList(click.ParamType):
    """A comma-separated list of integers, e.g. `--seeds 0,1,2` (what the values must be is the API's check)."""

    name = "INTS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            items = tuple(int(item) for item in str(value).split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers (e.g. 0,1,2)", param, ctx)
        return items


def feature_cache_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--cache-interval` and `--cache-branch`, the same on every command that samples."""
    fn = click.option("--cache-branch", type=click.IntRange(min=0), default=0, show_default=True,
                      help="With --cache-interval: the skip branch whose deep input is reused (0 = the shallowest, "
                           "the most work skipped).")(fn)
    return click.option("--cache-interval", type=click.IntRange(min=1), default=None,
                        help="DeepCache-style feature reuse (torch UNets): a full UNet call every N steps, the "
                             "calls between run only the outer blocks. 1 = every call full (same samples as "
                             "without).")(fn)
