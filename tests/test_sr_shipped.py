"""Shipped `span-x2` and `span-x4`: registered, small, loadable, and better than bicubic on held-out images."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from compress.models.registry import assets_dir, get_spec
from compress.sr import evaluate_sr, load_span

REPO = Path(__file__).resolve().parent.parent
SHIPPED = [("span-x2", 2, 1.0), ("span-x4", 4, 0.5)]  # name, scale, required Y-PSNR gain over bicubic (dB)


@pytest.mark.parametrize("name,scale,_", SHIPPED)
def test_shipped_weights_load(name, scale, _):
    assert get_spec(name).family == "span"
    folder = assets_dir(name)
    assert (folder / "model.safetensors").stat().st_size < 5_000_000
    assert json.loads((folder / "training.json").read_text())["command"].startswith("compress sr train")
    model = load_span(name)
    assert model.scale == scale and not model.training


@pytest.fixture(scope="module")
def test_images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sr") / "test"
    script = REPO / "scripts" / "export_skimage_images.py"
    subprocess.run([sys.executable, str(script), "test", str(folder)], check=True)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name,scale,gain", SHIPPED)
def test_shipped_quality_on_held_out_split(test_images, name, scale, gain):
    result = evaluate_sr(name, test_images, scale=scale)
    assert len(result.images) == 4
    assert result.psnr >= result.bicubic_psnr + gain


@pytest.mark.slow
def test_upscale_1024_image_within_2gb(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    command = [str(Path(sys.executable).parent / "compress"), "sr", "upscale", "--model", "span-x4",
               str(tmp_path / "big.png"), str(tmp_path / "big_x4.png")]
    # A fresh parent whose only child is the command, so its peak RSS is not mixed with other tests' children.
    measure = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); " \
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    peak_kib = subprocess.run([sys.executable, "-c", measure, *command], check=True, capture_output=True, text=True)
    assert int(peak_kib.stdout.split()[-1]) * 1024 < 2 * 1024**3
    assert Image.open(tmp_path / "big_x4.png").size == (4096, 4096)
