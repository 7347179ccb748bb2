"""`compress sr train`: a tiny run end to end, and an interrupted-then-resumed run equals an uninterrupted one."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

import compress.sr.train as sr_train
from compress.cli import main
from compress.errors import CompressError
from compress.sr import SPAN, TrainConfig, load_span, train_span
from compress.sr.train import init_bilinear_

TINY = dict(scale=2, channels=4, steps=4, batch_size=2, patch_size=8, val_every=2, checkpoint_every=2)


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):
        small = Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
        small.resize((48, 40), Image.BICUBIC).save(folder / f"{index}.png")
    return folder


def test_train_writes_loadable_model(tmp_path, images):
    report = train_span(images, tmp_path / "run", TrainConfig(**TINY))
    assert [point.step for point in report.history] == [2, 4]
    assert all(np.isfinite(point.psnr) and point.train_l1 > 0 for point in report.history)
    training = json.loads((tmp_path / "run" / "training.json").read_text())
    assert training["config"]["channels"] == 4 and training["train_images"] == ["0.png", "1.png", "2.png"]
    model = load_span(tmp_path / "run")
    assert (model.channels, model.scale, model.training) == (4, 2, False)
    assert (tmp_path / "run" / "checkpoint.pt").is_file()  # the harness's run folder is OUT
    log = [json.loads(line) for line in (tmp_path / "run" / "sr_train_log.jsonl").read_text().splitlines()]
    assert [record["step"] for record in log] == [1, 2, 3, 4]


def test_resumed_run_equals_uninterrupted(tmp_path, images, monkeypatch):
    config = TrainConfig(**TINY)
    uninterrupted = train_span(images, tmp_path / "a", config)

    real_step, calls = sr_train._train_step, []

    def interrupted_step(*args):
        calls.append(None)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_step(*args)

    monkeypatch.setattr(sr_train, "_train_step", interrupted_step)
    with pytest.raises(KeyboardInterrupt):
        train_span(images, tmp_path / "b", config)
    assert not (tmp_path / "b" / "model.safetensors").exists()  # only the step-2 checkpoint survives
    assert (tmp_path / "b" / "checkpoint.pt").is_file()
    with pytest.raises(CompressError, match="pass --resume"):
        train_span(images, tmp_path / "b", config)
    with pytest.raises(CompressError, match="lr=0.0005, not 0.001"):
        train_span(images, tmp_path / "b", TrainConfig(**TINY, lr=1e-3), resume=True)
    calls.clear()
    monkeypatch.setattr(sr_train, "_train_step", lambda *args: calls.append(None) or real_step(*args))
    resumed = train_span(images, tmp_path / "b", config, resume=True)
    assert len(calls) == 2  # steps 3 and 4 only

    weights_a = load_file(tmp_path / "a" / "model.safetensors")
    weights_b = load_file(tmp_path / "b" / "model.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[key], weights_b[key]) for key in weights_a)
    assert resumed.history == uninterrupted.history


def test_cli_train_records_command(tmp_path, images):
    args = ["sr", "train", "--scale", "3", "--channels", "3", "--data", str(images), "--steps", "2",
            "--batch-size", "1", "--patch-size", "6", "--val-every", "1", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "val Y-PSNR" in result.output
    assert json.loads((tmp_path / "run" / "training.json").read_text())["command"].startswith("compress ")
    assert load_span(tmp_path / "run").scale == 3


def test_crop_larger_than_image_is_a_user_error(tmp_path, images):
    with pytest.raises(CompressError, match="smaller than the 96-pixel training crop"):
        train_span(images, tmp_path / "run", TrainConfig(**dict(TINY, patch_size=48)))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bilinear_init_starts_as_bilinear_upscaling(scale):
    model = init_bilinear_(SPAN(channels=6, scale=scale)).eval()
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        out = model(x)
    reference = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    interior = (slice(None), slice(None), slice(scale, -scale), slice(scale, -scale))  # borders: zero vs edge padding
    assert (out - reference)[interior].abs().max() < 1e-5


def test_old_flag_names_still_work_with_a_warning(tmp_path, images):
    args = ["sr", "train", "--scale", "2", "--channels", "3", "--data", str(images), "--iters", "2", "--ckpt-every",
            "1", "--batch-size", "1", "--patch-size", "6", "--val-every", "2", "--out", str(tmp_path / "run")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "warning: --iters is deprecated; use --steps" in result.output
    training = json.loads((tmp_path / "run" / "training.json").read_text())
    assert training["config"]["steps"] == 2 and training["config"]["checkpoint_every"] == 1


def test_separate_checkpoint_folder_leaves_only_the_model_in_out(tmp_path, images):
    train_span(images, tmp_path / "model", TrainConfig(**TINY), ckpt_dir=tmp_path / "state")
    assert (tmp_path / "state" / "checkpoint.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors",
                                                                      "training.json"]
