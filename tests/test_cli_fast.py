"""`compress --help` answers at once: the CLI imports no torch, diffusers or numpy until a command runs."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

HELP_COMMANDS = ["", "prune", "recover", "distill", "sample", "eval", "export", "bench", "compare", "npu-check",
                 "models", "sr", "sr train", "sr upscale", "sr eval", "sr info"]
HEAVY = ("torch", "diffusers", "numpy", "onnxruntime", "openvino", "coremltools")


@pytest.mark.parametrize("command", HELP_COMMANDS)
def test_help_imports_no_heavy_module(command):
    code = ("import sys\nfrom compress.cli import run\n"
            f"sys.argv = ['compress', *{command.split()!r}, '--help']\n"
            "try:\n    run()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "HEAVY []", out
    assert "Usage:" in out


@pytest.mark.parametrize("command", ["", "prune", "eval", "export", "bench", "sr train"])
def test_help_prints_in_under_3_seconds(command):
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "compress", *command.split(), "--help"], capture_output=True,
                            text=True)
    seconds = time.perf_counter() - started
    assert result.returncode == 0 and "Usage:" in result.stdout
    assert seconds < 3.0, f"compress {command} --help took {seconds:.1f} s"


def test_package_attributes_still_resolve_after_their_submodules_are_imported():
    """`compress.prune` (a package and a function) and `compress.bench.gate` (a module and a function): the
    exported function wins, as it did when the packages imported them eagerly."""
    import compress
    import compress.bench
    import compress.bench.gate  # noqa: F401 - the import itself is the point
    import compress.prune.pipeline  # noqa: F401

    assert callable(compress.prune) and compress.prune.__module__ == "compress.prune.pipeline"
    assert callable(compress.bench.gate) and callable(compress.bench.estimate)
    assert set(compress.__all__) <= set(dir(compress))
    with pytest.raises(AttributeError):
        compress.no_such_name  # noqa: B018
