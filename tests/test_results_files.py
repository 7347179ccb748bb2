"""Every file in benchmarks/results/ names the script command that wrote it, and two of them are rewritten by
re-running that command: sr_quality (deterministic: the same numbers) and span_fuse (a timing: the same fields)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
COMMAND = re.compile(r"python benchmarks/(\w+)\.py[^`\"\n]*")


def _named_command(path: Path) -> str:
    """The command a results file names; a picture is named by the .md or .json beside it."""
    sources = [path] if path.suffix != ".png" else [path.with_suffix(".md"), path.with_suffix(".json")]
    for source in sources:
        if source.is_file():
            match = COMMAND.search(source.read_text())
            if match:
                return match.group(0).strip()
    raise AssertionError(f"{path.name} names no `python benchmarks/....py` command")


def test_every_results_file_names_an_existing_script_that_writes_results():
    files = sorted(RESULTS.iterdir())
    assert files
    for path in files:
        command = _named_command(path)
        script = ROOT / shlex.split(command)[1]
        assert script.is_file(), f"{path.name}: {script} does not exist"
        source = script.read_text()
        assert "results" in source and "/work/" not in source, f"{path.name}: {script.name}"


def _rerun(command: str, out: Path) -> dict:
    args = shlex.split(command)[1:] + ["--out", str(out)]
    subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True, timeout=600)
    return json.loads(out.with_suffix(".json").read_text() if out.suffix != ".json" else out.read_text())


def _without_out(command: str) -> str:
    return re.sub(r"\s--out\s+\S+", "", command)


def test_sr_quality_command_rewrites_the_same_numbers(tmp_path):
    committed = json.loads((RESULTS / "sr_quality.json").read_text())
    again = _rerun(committed["command"], tmp_path / "sr_quality")
    assert _without_out(again["command"]) == committed["command"]
    assert (tmp_path / "sr_quality.md").is_file()
    for model, sets in committed["results"].items():
        for label, result in sets.items():
            for metric in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim"):
                assert again["results"][model][label][metric] == pytest.approx(result[metric], abs=1e-3), (
                    model, label, metric)


def test_span_fuse_command_rewrites_its_file(tmp_path):
    committed = json.loads((RESULTS / "span_fuse.json").read_text())
    again = _rerun(committed["command"], tmp_path / "span_fuse.json")
    assert _without_out(again["command"]) == committed["command"]
    assert set(again) == set(committed) and again["threads"] == committed["threads"]
    assert again["max_abs_diff"] < 1e-4 and again["speedup"] > 1
