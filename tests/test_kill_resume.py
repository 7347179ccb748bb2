"""SIGKILL mid-run, as a crash or an impatient user would: what is left, and what `--resume` makes of it.

Training commands (`sr train`, `recover`, `distill`) keep their resumable state in OUT, the run folder: a killed run
leaves exactly `checkpoint.pt` and the log there, nothing beside OUT, and `--resume` ends with the weights of an
uninterrupted run. `prune` has no resumable state: killed, it leaves nothing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from compress.io import load_safetensors


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "compress", *args], stdout=log.open("w"), stderr=subprocess.STDOUT)


def _run(args: list[str], log: Path) -> None:
    process = _start(args, log)
    assert process.wait(timeout=600) == 0, log.read_text()[-2000:]


def _kill_when(process: subprocess.Popen, ready, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the run never reached the point to kill it"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(p for p in folder.rglob("*.safetensors"))
    assert files, f"no weights in {folder}"
    return {f"{p.relative_to(folder)}:{k}": v for p in files for k, v in load_safetensors(p).items()}


def _everything(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _check_kill_and_resume(args: list[str], tmp_path: Path) -> None:
    """Run uninterrupted into `whole`; kill a run into `work/run` after its first checkpoint; resume it."""
    _run([*args, "--out", str(tmp_path / "whole")], tmp_path / "whole.log")
    work = tmp_path / "work"
    work.mkdir()
    run = work / "run"
    log = tmp_path / "killed.log"
    process = _start([*args, "--out", str(run)], log)
    _kill_when(process, lambda: (run / "checkpoint.pt").is_file(), log)
    left = _everything(work)
    assert "run/checkpoint.pt" in left
    assert all(name == "run" or name == "run/checkpoint.pt" or name.endswith("_log.jsonl") for name in left), left
    _run([*args, "--out", str(run), "--resume"], tmp_path / "resumed.log")
    whole, resumed = _weights(tmp_path / "whole"), _weights(run)
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not [name for name in _everything(work) if ".tmp-" in name]


def test_killed_sr_train_resumes_to_the_uninterrupted_weights(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    generator = torch.Generator().manual_seed(0)
    for i in range(2):
        pixels = (torch.rand(64, 64, 3, generator=generator) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(images / f"{i}.png")
    _check_kill_and_resume(["sr", "train", "--scale", "2", "--channels", "8", "--data", str(images), "--steps", "120",
                            "--batch-size", "2", "--patch-size", "16", "--val-every", "120",
                            "--checkpoint-every", "10", "--no-progress"], tmp_path)


def test_killed_recover_resumes_to_the_uninterrupted_weights(toy_pair, tmp_path):
    teacher, student = toy_pair
    _check_kill_and_resume(["recover", "--teacher", str(teacher), "--student", str(student), "--steps", "40",
                            "--batch-size", "4", "--checkpoint-every", "4", "--no-eval", "--no-progress"], tmp_path)


def test_killed_distill_resumes_to_the_uninterrupted_weights(toy_pair, tmp_path):
    teacher, _ = toy_pair
    _check_kill_and_resume(["distill", "--teacher", str(teacher), "--steps", "40", "--batch-size", "4",
                            "--checkpoint-every", "4", "--no-progress"], tmp_path)


def test_killed_prune_leaves_nothing(toy_pair, tmp_path):
    teacher, _ = toy_pair
    log = tmp_path / "prune.log"
    work = tmp_path / "work"
    work.mkdir()
    process = _start(["prune", "--model", str(teacher), "--ratio", "0.3", "--budget", "params", "--out",
                       str(work / "pruned")], log)
    _kill_when(process, lambda: "scoring" in log.read_text(), log)  # killed while it scores the units
    assert _everything(work) == set()
