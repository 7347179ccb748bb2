"""The built wheel is self-contained: installed into a fresh virtual environment that cannot see this
checkout, `compress prune` runs from outside the repository and finds its package data (the toy
weights under `assets/`, the prompts under `calib_data/`).

The fresh environment borrows the current one's third-party packages (torch, diffusers, ...) through a
`.pth` file holding the current site-packages as a plain path line: Python appends such a directory to
`sys.path` but does not process the `.pth` files inside it, so the editable install's finder
(`__editable__.compress-*.pth`) never runs there. The test checks that before installing the wheel.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CALIB_FILES = ("prompts.txt", "README.md", "README_sr.md", "sr_split.json")
TIMEOUT_S = 600
# Not part of a build: caches, VCS, virtual environments, build leftovers (a stale build/ would leak into the wheel).
SKIP_ANYWHERE = {"__pycache__", ".pytest_cache", ".ruff_cache", ".git", "build", "dist"}
SKIP_AT_TOP = {"out", "runs", "tests", "benchmarks"}


def _ignore(folder: str, names: list[str]) -> set[str]:
    top = Path(folder) == REPO
    return {
        n for n in names
        if n in SKIP_ANYWHERE or n.endswith(".egg-info") or n.startswith(".venv") or (top and n in SKIP_AT_TOP)
    }


def _run(cmd: list[str | Path], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert result.returncode == 0, f"{cmd} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _can_build_without_isolation() -> bool:
    """setuptools is importable here (and can make wheels: built in from 70.1, else needs `wheel`)."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    version = tuple(int(x) for x in re.findall(r"\d+", metadata.version("setuptools"))[:2])
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "COMPRESS_CALIB_DIR")}
    env.update(HF_HUB_OFFLINE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def _inside(path: str | Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    env = _clean_env()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    # 1. Build the wheel from a copy of the source tree, so the build never writes into the checkout.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=_ignore)
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheels, src]
    if _can_build_without_isolation():
        build.insert(5, "--no-build-isolation")
    _run(build, elsewhere, env)
    (wheel,) = wheels.glob("compress-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in CALIB_FILES if f"compress/calib_data/{f}" not in names]
    assert not missing, f"calib_data files missing from the wheel: {missing}"
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = [line for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    # diffusers warns on every model load without accelerate: `pip install .` must bring it
    assert any(line.split()[1].startswith("accelerate") for line in requires), requires

    # 2. A fresh venv that sees the current third-party packages but not this checkout.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], elsewhere, env)
    python = venv / "bin" / "python"
    new_site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         elsewhere, env).stdout.strip())
    here_site = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (new_site / "_compress_test_borrowed_site.pth").write_text("".join(f"{p}\n" for p in here_site))
    probe = (
        "import importlib.util as u, json;"
        "c = u.find_spec('compress');"
        "print(json.dumps({'torch': u.find_spec('torch') is not None,"
        " 'diffusers': u.find_spec('diffusers') is not None,"
        " 'compress': c.origin if c else None}))"
    )
    seen = json.loads(_run([python, "-c", probe], elsewhere, env).stdout)
    assert seen["torch"] and seen["diffusers"], seen
    assert seen["compress"] is None or not _inside(seen["compress"], REPO), f"the checkout leaks in: {seen}"

    # 3. Install the wheel alone; run the CLI and the package from outside the repository.
    _run([python, "-m", "pip", "install", "--no-deps", "--no-index", wheel], elsewhere, env)
    out = tmp_path / "pruned"
    result = _run([venv / "bin" / "compress", "prune", "--model", "toy", "--ratio", "0.3",
                   "--granularity", "block", "--out", out, "--no-progress"], elsewhere, env)
    assert (out / "prune_report.json").is_file(), result.stdout + result.stderr
    assert "warn" not in result.stderr.lower(), result.stderr  # the main job prints no dependency warning

    check = (
        "import json, compress;"
        "from compress.models.conditioning import calib_dir, calibration_prompts;"
        "print(json.dumps({'file': compress.__file__, 'calib': str(calib_dir()), 'prompts': calibration_prompts()}))"
    )
    got = json.loads(_run([python, "-I", "-c", check], elsewhere, env).stdout)
    assert _inside(got["file"], venv) and not _inside(got["file"], REPO), got["file"]
    assert _inside(got["calib"], venv), got["calib"]
    assert all((Path(got["calib"]) / f).is_file() for f in CALIB_FILES)
    lines = (REPO / "compress" / "calib_data" / "prompts.txt").read_text().splitlines()
    expected = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert expected and got["prompts"] == expected
