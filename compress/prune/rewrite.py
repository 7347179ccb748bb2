"""The stock diffusers config of a UNet with units removed, and the stock UNet itself.

`--granularity diffusers` applies the removals in place (`compress.models.surgery`), then loads the
edited weights strictly into a stock `UNet2DConditionModel` built from the rewritten config.
Strict loading proves the config rewrite and the weight name mapping agree.
"""

from __future__ import annotations

from typing import Any

from diffusers import UNet2DConditionModel

from compress.errors import CompressError
from compress.models.loading import public_config
from compress.models.pruned import build_unet
from compress.models.surgery import removed_units
from compress.types import Unit


def _truncate_stage_lists(config: dict[str, Any], n: int) -> None:
    """Drop the innermost stage from every per-stage list in a UNet config."""
    for key, value in list(config.items()):
        if key == "up_block_types":
            config[key] = list(value[1:])
        elif isinstance(value, (list, tuple)) and len(value) == n:
            config[key] = list(value[:-1])


ATTENTION_FREE = {"CrossAttnDownBlock2D": "DownBlock2D", "CrossAttnUpBlock2D": "UpBlock2D",
                  "UNetMidBlock2DCrossAttn": "UNetMidBlock2D"}


def _drop_attention(config: dict[str, Any], name: str) -> None:
    """attn.down.I / attn.up.J / attn.mid: the block's type becomes its attention-free stock twin."""
    _, side, *index = name.split(".")
    key = "mid_block_type" if side == "mid" else f"{side}_block_types"
    if side == "mid":
        current = config.get(key) or "UNetMidBlock2DCrossAttn"
        config[key] = ATTENTION_FREE[current]
    else:
        types = list(config[key])
        types[int(index[0])] = ATTENTION_FREE[types[int(index[0])]]
        config[key] = types


def pruned_config(config: dict[str, Any], units: list[Unit]) -> dict[str, Any]:
    """The stock diffusers config of the UNet with `units` (layer/mid/stage kinds) removed."""
    config = public_config(config)
    n = len(config["block_out_channels"])
    layers = config["layers_per_block"]
    layers = list(layers) if isinstance(layers, (list, tuple)) else [layers] * n
    for unit in units:
        if unit.removal == "drop-layer":
            layers[int(unit.name.split(".")[1])] -= 1
        elif unit.removal == "drop-mid":
            config["mid_block_type"] = None
        elif unit.removal == "drop-attention":
            _drop_attention(config, unit.name)
        elif unit.removal != "drop-stage":
            raise CompressError(f"unit {unit.name} ({unit.kind}) cannot be expressed in a stock diffusers config; "
                                "use --granularity block")
    config["layers_per_block"] = layers if len(set(layers)) > 1 else layers[0]
    if any(u.removal == "drop-stage" for u in units):
        _truncate_stage_lists(config, n)
    return config


def build_diffusers_unet(unet: UNet2DConditionModel, units: list[Unit]) -> UNet2DConditionModel:
    """A stock UNet2DConditionModel without `units`, sharing the original's weight tensors (the original is
    left intact, so both can be timed side by side)."""
    config = pruned_config(unet.config, units)
    with removed_units(unet, units):
        state = unet.state_dict()
    pruned = build_unet(config, meta=True)
    pruned.load_state_dict(state, strict=True, assign=True)
    return pruned.eval()


def pruned_module(unet: UNet2DConditionModel, units: list[Unit], granularity: str) -> UNet2DConditionModel:
    """The pruned UNet as its own module, sharing the original's weight tensors; the original stays intact.

    At `diffusers` granularity it is the stock UNet that ships; at `block` granularity a replica with the bypasses.
    """
    if granularity == "diffusers":
        return build_diffusers_unet(unet, units)
    pruned = build_unet(public_config(unet.config), meta=True)
    pruned.load_state_dict(unet.state_dict(), strict=True, assign=True)
    with removed_units(pruned, units, restore=False):
        pass
    return pruned.eval()
