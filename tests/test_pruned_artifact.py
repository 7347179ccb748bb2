"""The pruned-artifact format: block-granularity folders load in compress and are refused by stock diffusers;
every stage that derives a model keeps the format of its source."""

import json

import pytest
import torch
from diffusers import UNet2DConditionModel

from compress.errors import CompressError
from compress.models.pruned import BLOCK_CLASS_NAME, PLAN_FILE, load_unet, read_plan, save_like
from compress.prune import ScoreSettings, prune
from helpers import make_tiny_unet, tiny_inputs

FAST = ScoreSettings(samples=4, steps=2)


@pytest.fixture(scope="module")
def block_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "block"
    prune("toy", out, ratio=0.2, granularity="block", budget="params", init="random", score=FAST, progress=False)
    return out


def test_stock_diffusers_refuses_a_block_folder_naming_compress_load_unet(block_folder):
    with pytest.raises(ValueError, match=r"compress\.load_unet"):
        UNet2DConditionModel.from_pretrained(block_folder / "unet")
    config = json.loads((block_folder / "unet" / "config.json").read_text())
    assert config["_class_name"] == BLOCK_CLASS_NAME


def test_compress_load_unet_loads_the_block_folder_with_its_plan(block_folder):
    import compress

    unet = compress.load_unet(block_folder)
    plan = read_plan(block_folder)
    assert plan is not None and plan.removed
    assert unet.config.time_embedding_type == "positional"
    sample = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        out = unet(sample, torch.tensor([10]), torch.randn(1, 4, 32)).sample
    assert out.shape == sample.shape


def test_a_marked_config_without_its_plan_is_refused(block_folder, tmp_path):
    import shutil

    shutil.copytree(block_folder / "unet", tmp_path / "unet")
    (tmp_path / "unet" / PLAN_FILE).unlink()
    with pytest.raises(CompressError, match="prune_plan.json is missing"):
        load_unet(tmp_path)


def test_save_like_keeps_the_source_format_and_its_companions(block_folder, tmp_path):
    unet = load_unet(block_folder)
    save_like(unet, tmp_path / "derived", block_folder)
    for name in ("unet/prune_plan.json", "conditioner/config.json", "prune_report.json"):
        assert (tmp_path / "derived" / name).is_file(), name
    with pytest.raises(ValueError, match=r"compress\.load_unet"):
        UNet2DConditionModel.from_pretrained(tmp_path / "derived" / "unet")
    again = load_unet(tmp_path / "derived")
    for key, value in unet.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)


def test_a_stock_unet_saved_like_a_stock_source_stays_stock(tmp_path):
    unet = make_tiny_unet()
    save_like(unet, tmp_path / "out", None)
    reloaded = UNet2DConditionModel.from_pretrained(tmp_path / "out" / "unet")
    inputs = tiny_inputs()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(*inputs).sample, unet(*inputs).sample)
