"""`compress chain RECIPE --out DIR`: check the recipe whole, print the plan, run it, write the trade-off report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from compress.chain.recipe import STAGES, check_recipe, options_set, read_recipe
from compress.chain.run import CHAIN_MARKER, Chain, plan
from compress.chain.state import Say
from compress.errors import CompressError

ACTIONS = {"run": "will run", "skip": "done earlier, same inputs and options: skipped",
           "resume": "stopped earlier: continues from where it stopped",
           "rerun": "inputs or options changed since it ran: runs again"}


def check_out(out: str | os.PathLike) -> None:
    """`out` is new, empty, or a folder an earlier chain wrote (its stages are then reused or replaced)."""
    from compress.io import check_writable

    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CHAIN_MARKER).is_file())):
        raise CompressError(f"{out} exists and is not a chain folder (no {CHAIN_MARKER}); give a new or empty "
                            "folder, or the --out of an earlier chain to resume it")
    check_writable(out / CHAIN_MARKER)


def describe_plan(recipe_path: str | os.PathLike, out: str | os.PathLike) -> list[str]:
    """The plan as lines: each stage's folder, what it calls and what a run would do with it."""
    recipe = read_recipe(recipe_path)
    check_recipe(recipe, out)
    lines = [f"recipe {recipe.path}: model {recipe.model} ({recipe.family} family, init {recipe.init})"]
    for planned in plan(recipe, out):
        options = recipe.stages[planned.stage]
        given = ", ".join(f"{k}={v!r}" for k, v in options_set(planned.stage, options).items()) or "defaults"
        lines.append(f"  {planned.folder}: {planned.stage} ({ACTIONS[planned.action]}); {given}")
    skipped = [stage for stage in STAGES if stage not in recipe.stages]
    if skipped:
        lines.append(f"  not in the recipe: {', '.join(skipped)}")
    return lines


def run_chain(recipe_path: str | os.PathLike, out: str | os.PathLike, say: Say = print,
              progress: bool = True) -> dict[str, Any]:
    """Run the recipe into `out` and write `out/chain_report.{json,md}` (and the trade-off plot); return the
    report. Every check of the recipe runs before the first stage starts."""
    from compress.chain.report import write_report

    recipe = read_recipe(recipe_path)
    check_recipe(recipe, out)
    check_out(out)
    chain = Chain(recipe, out, say, progress)
    chain.run()
    report = write_report(recipe, chain.records, Path(out))
    say(f"wrote {Path(out) / 'chain_report.md'}")
    return report
