"""The README's multi-GPU commands, run for real on this CPU-only machine: two processes (accelerate's
MULTI_CPU over gloo) train on different halves of each global batch, only the main process writes, and the
result equals one process trained on the whole batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compress.models.pruned import load_unet

BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def _compress(*args, processes: int = 1, cwd: Path) -> subprocess.CompletedProcess:
    launch = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", str(processes), "-m", "compress"]
    command = (launch if processes > 1 else [sys.executable, "-m", "compress"]) + [*map(str, args), "--no-progress"]
    proc = subprocess.run(command, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _log(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / f"{name}_log.jsonl").read_text().splitlines()]


def _assert_same_run(one: Path, two: Path, name: str) -> None:
    log_one, log_two = _log(one, name), _log(two, name)
    assert [r["step"] for r in log_two] == [r["step"] for r in log_one]  # one writer: one line per step
    sums = log_two[0]["rank_batch_sums"]
    assert len(sums) == 2 and sums[0] != sums[1]  # the two ranks trained on different data ...
    assert sum(sums) == pytest.approx(log_one[0]["rank_batch_sums"][0], rel=1e-5)  # ... that make up one batch
    assert log_two[0]["loss"] == pytest.approx(log_one[0]["loss"], rel=1e-5)  # the same weights at step 1
    a, b = load_unet(one).state_dict(), load_unet(two).state_dict()
    assert a.keys() == b.keys()
    for key in a:
        # Gradients agree to fp32 rounding; Adam's first steps divide by sqrt(v), so elements whose gradient
        # is rounding noise can move by a share of the learning rate. Measured: 38 of 1.57M elements > 1e-6.
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=5e-5)
    assert not list(two.glob("*.tmp")) and not list(two.parent.glob(f".{two.name}*"))


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    # --budget params: any pruned student will do here, and a latency plan would hang on a table timed under load
    _compress("prune", "--model", "toy", "--ratio", "0.3", "--budget", "params", "--calib-samples", "4",
              "--calib-steps", "2", "--out", root / "student", cwd=root)
    return root / "student"


def test_recover_on_two_processes_equals_one_process_with_the_global_batch(student, tmp_path):
    common = ("recover", "--teacher", "toy", "--student", student, "--steps", "3", "--no-eval")
    _compress(*common, "--batch-size", "4", "--out", tmp_path / "two", processes=2, cwd=tmp_path)
    _compress(*common, "--batch-size", "8", "--out", tmp_path / "one", cwd=tmp_path)
    _assert_same_run(tmp_path / "one", tmp_path / "two", "recover")
    assert json.loads((tmp_path / "two" / "recover_result.json").read_text())["steps"] == 3


def test_distill_on_two_processes_equals_one_process_with_the_global_batch(tmp_path):
    common = ("distill", "--teacher", "toy", "--steps", "2", "--solver-steps", "5")
    _compress(*common, "--batch-size", "2", "--out", tmp_path / "two", processes=2, cwd=tmp_path)
    _compress(*common, "--batch-size", "4", "--out", tmp_path / "one", cwd=tmp_path)
    _assert_same_run(tmp_path / "one", tmp_path / "two", "distill")
