"""Unit graph and cost model, on a tiny SD-topology UNet and on the real SD configs (meta device)."""

import pytest
import torch
from diffusers import UNet2DConditionModel

from compress.models.sd import SD14_UNET_CONFIG, SD21_BASE_UNET_CONFIG
from compress.models.units import units_conflict
from compress.prune import build_diffusers_unet, cost_without, count_params, enumerate_units, find_units, unit_costs
from compress.prune.cost import measure, meta_replica
from compress.prune.presets import PRESETS


def meta_unet(config):
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(config)


def test_sd14_params_and_macs_match_published_figures():
    unet = meta_unet(SD14_UNET_CONFIG)
    cost = measure(unet, 64, 77)
    assert cost.params == 859_520_964
    assert abs(cost.macs / 338.6e9 - 1) < 0.005
    assert abs(measure(meta_replica(unet), 32, 77).macs / 85.8e9 - 1) < 0.005
    assert count_params(meta_unet(SD21_BASE_UNET_CONFIG)) == 865_910_724


@pytest.mark.parametrize("preset,params", [("bk-base", 579_384_964), ("bk-small", 482_346_884),
                                           ("bk-tiny", 323_384_964)])
def test_bk_presets_give_published_param_counts(preset, params):
    unet = meta_unet(SD14_UNET_CONFIG)
    pruned = build_diffusers_unet(unet, find_units(unet, PRESETS[preset], "diffusers"))
    assert count_params(pruned) == params


def test_block_units_cover_every_block_with_the_right_removal(tiny_unet):
    units = {u.name: u for u in enumerate_units(tiny_unet, "block")}
    kinds = [u.kind for u in units.values()]
    # 4 down stages x 2 resnets, 3 attn stages x 2 attentions; up: 4 x 3 resnets, 3 x 3 attentions; mid 3
    assert kinds.count("resnet") == 8 + 12 + 2 and kinds.count("attention") == 6 + 9 + 1
    assert kinds.count("pair") == 6 + 9 and kinds.count("mid") == 1 and kinds.count("stage") == 1
    assert units["down.1.resnet.0"].removal == "replace-by-shortcut"  # 8 -> 16 channels
    assert units["down.1.resnet.1"].removal == "pass-through"
    assert units["up.3.resnet.0"].removal == "replace-by-shortcut"  # hidden 16 -> out 8
    assert units["up.3.resnet.1"].removal == "drop-skip"  # hidden 8 == out 8: skip not consumed
    assert units["stage.3"].modules == ("down_blocks.3", "up_blocks.0", "down_blocks.2.downsamplers")


def test_conflicts_follow_module_containment(tiny_unet):
    units = {u.name: u for u in enumerate_units(tiny_unet, "block")}
    assert units_conflict(units["down.0.pair.1"], units["down.0.attn.1"])
    assert units_conflict(units["mid"], units["mid.attn.0"])
    assert units_conflict(units["stage.3"], units["down.3.resnet.0"])
    assert not units_conflict(units["down.0.pair.0"], units["down.0.pair.1"])


def test_diffusers_units_and_costs_add_up(tiny_unet):
    units = unit_costs(tiny_unet, enumerate_units(tiny_unet, "diffusers"), 16, 77)
    assert [u.name for u in units] == ["layer.0", "layer.1", "layer.2", "layer.3", "attn.down.0", "attn.down.1",
                                       "attn.down.2", "attn.up.1", "attn.up.2", "attn.up.3", "attn.mid", "mid",
                                       "stage.3"]
    full = cost_without(tiny_unet, [], 16, 77)
    layers = [u for u in units if u.kind == "layer"]
    assert cost_without(tiny_unet, layers, 16, 77).params == full.params - sum(u.params for u in layers)
    assert all(u.params > 0 and u.macs > 0 for u in layers)


def test_unknown_unit_name_is_a_clear_error(tiny_unet):
    from compress.errors import CompressError

    with pytest.raises(CompressError, match="no unit 'layer.9'"):
        find_units(tiny_unet, ["layer.9"], "diffusers")
