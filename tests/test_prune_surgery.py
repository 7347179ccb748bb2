"""Surgery is exact: in-place bypass, the block plan reload and the stock diffusers rebuild agree."""

import pytest
import torch
from diffusers import UNet2DConditionModel

from compress.models.surgery import PassThroughAttention
from compress.models.units import units_conflict
from compress.prune import build_diffusers_unet, enumerate_units, find_units, removed_units
from helpers import make_tiny_unet, tiny_inputs


def forward(unet, inputs):
    with torch.no_grad():
        return unet(*inputs).sample


def test_removed_units_restores_the_model_exactly(tiny_unet):
    inputs = tiny_inputs()
    reference = forward(tiny_unet, inputs)
    units = find_units(tiny_unet, ["down.1.pair.0", "up.2.resnet.1", "mid"], "block")
    with removed_units(tiny_unet, units):
        changed = forward(tiny_unet, inputs)
        assert isinstance(tiny_unet.down_blocks[1].attentions[0], PassThroughAttention)
    assert not torch.allclose(changed, reference)
    assert torch.equal(forward(tiny_unet, inputs), reference)


def test_every_block_unit_runs_and_keeps_the_output_shape(tiny_unet):
    inputs = tiny_inputs(batch=1)
    for unit in enumerate_units(tiny_unet, "block"):
        with removed_units(tiny_unet, [unit]):
            assert forward(tiny_unet, inputs).shape == (1, 4, 16, 16), unit.name


def test_stock_diffusers_rebuild_equals_in_place_removal():
    """Weights are mapped by name correctly: the rebuilt stock UNet computes what the bypassed one does."""
    inputs = tiny_inputs()
    for names in (["layer.0", "layer.2"], ["mid"], ["stage.3", "layer.1"], ["layer.0", "layer.1", "layer.2", "mid",
                                                                            "stage.3"]):
        original = make_tiny_unet()
        units = find_units(original, names, "diffusers")
        with removed_units(original, units):
            expected = forward(original, inputs)
        pruned = build_diffusers_unet(original, units)
        assert type(pruned).__name__ == "UNet2DConditionModel"
        torch.testing.assert_close(forward(pruned, inputs), expected, rtol=0, atol=0)


ATTENTION_SETS = (["attn.down.0"], ["attn.up.3"], ["attn.mid"], ["attn.down.1", "attn.up.2", "layer.0", "stage.3"],
                  ["attn.down.0", "attn.down.1", "attn.down.2", "attn.up.1", "attn.up.2", "attn.up.3", "attn.mid"])


@pytest.mark.parametrize("names", ATTENTION_SETS, ids="+".join)
def test_attention_units_are_stock_block_types_bit_exact_with_the_bypass(names, tmp_path):
    """A stage without attention is diffusers' own attention-free block: it saves, reloads in stock diffusers
    and computes exactly what the in-place bypass of the same attentions computes."""
    inputs = tiny_inputs()
    original = make_tiny_unet()
    units = find_units(original, names, "diffusers")
    with removed_units(original, units):
        expected = forward(original, inputs)
    pruned = build_diffusers_unet(original, units)
    pruned.save_pretrained(tmp_path)
    reloaded = UNet2DConditionModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(forward(reloaded, inputs), expected, rtol=0, atol=0)
    reference = forward(make_tiny_unet(), inputs)
    assert not torch.allclose(expected, reference)
    config = reloaded.config
    for name in names:
        side, index = name.split(".")[1], name.split(".")[-1]
        if side == "down":
            assert config.down_block_types[int(index)] == "DownBlock2D"
        elif side == "up":
            assert config.up_block_types[int(index) - ("stage.3" in names)] == "UpBlock2D"
        elif side == "mid":
            assert config.mid_block_type == "UNetMidBlock2D" and len(reloaded.mid_block.resnets) == 1
    if names == ATTENTION_SETS[-1]:
        assert not any("attentions" in key for key in reloaded.state_dict())


def test_attention_units_conflict_with_what_contains_their_attentions(tiny_unet):
    units = {u.name: u for u in enumerate_units(tiny_unet, "diffusers")}
    assert units_conflict(units["attn.down.1"], units["layer.1"])
    assert units_conflict(units["attn.mid"], units["mid"])
    assert not units_conflict(units["attn.down.1"], units["attn.up.2"])
    assert "attn.up.0" not in units and "attn.down.3" not in units  # those stages have no attention


def test_pruned_config_is_stock(tiny_unet):
    units = find_units(tiny_unet, ["layer.1", "mid", "stage.3"], "diffusers")
    config = build_diffusers_unet(tiny_unet, units).config
    assert config.mid_block_type is None
    assert list(config.block_out_channels) == [8, 16, 16]
    assert list(config.layers_per_block) == [2, 1, 2]
    assert list(config.up_block_types) == ["CrossAttnUpBlock2D"] * 3
