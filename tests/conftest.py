"""Shared fixtures. Tests never reach the network: the hub is forced offline."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
from diffusers import UNet2DConditionModel

from helpers import make_tiny_unet

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Latency tables are cached for the whole session (each model's table is built once), never in ~/.cache.
os.environ["COMPRESS_CACHE"] = tempfile.mkdtemp(prefix="compress-test-cache-")
# Under pytest-xdist (the README's `-n auto`) each worker takes its share of the cores: two workers on 2 cores must
# not run two torch threads each. Much of a test's time is single-threaded Python (dynamo export, onnxscript's
# rewriter, diffusers' dispatch on tiny models), which is why two workers beat one.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // WORKERS))


@pytest.fixture
def tiny_unet() -> UNet2DConditionModel:
    return make_tiny_unet()


@pytest.fixture
def tiny_unet_dir(tmp_path):
    """A diffusers UNet folder on disk, as a user would pass with --model DIR."""
    folder = tmp_path / "tiny-sd" / "unet"
    make_tiny_unet().save_pretrained(folder)
    return folder.parent


@pytest.fixture(scope="module")
def toy_pair(tmp_path_factory):
    """A random-init toy teacher folder and a student pruned from it (params budget: no latency table)."""
    from compress.models.resolve import load_diffusion_model
    from compress.prune import ScoreSettings, prune

    root = tmp_path_factory.mktemp("toy")
    teacher = load_diffusion_model("toy", init="random")
    teacher.unet.save_pretrained(root / "teacher" / "unet")
    teacher.conditioner.save(root / "teacher" / "conditioner")
    prune(root / "teacher", root / "student", ratio=0.3, budget="params", score=ScoreSettings(samples=4, steps=2),
          progress=False)
    return root / "teacher", root / "student"
