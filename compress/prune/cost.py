"""Parameter and MAC counts for a UNet and for each removable unit.

MACs count the parametric ops (convolutions and linear layers), the convention of the
published SD figures (338.6 G for SD-v1.4 at a 64x64 latent); the attention matmuls
(QK^T and AV) are reported separately as `attention_macs`. Counting runs on a meta-device
replica, so it costs no memory and well under a second even for SD.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

from compress.models.surgery import removed_units
from compress.types import Unit

ATTENTION_OPS = ("bmm", "baddbmm", "scaled_dot_product")


@dataclass(frozen=True)
class UNetCost:
    params: int
    macs: int  # conv + linear
    attention_macs: int  # attention matmuls


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def meta_replica(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """The same architecture (stock config) on the meta device."""
    with torch.device("meta"):
        return UNet2DConditionModel.from_config(unet.config)


def _cross_dim(unet: UNet2DConditionModel) -> int:
    dim = unet.config.cross_attention_dim
    return dim[0] if isinstance(dim, (list, tuple)) else dim


def measure(unet: UNet2DConditionModel, resolution: int, text_tokens: int) -> UNetCost:
    """Params and MACs of one batch-1 forward of `unet` (which must live on the meta device)."""
    cfg = unet.config
    with torch.device("meta"):
        sample = torch.empty(1, cfg.in_channels, resolution, resolution)
        hidden = torch.empty(1, text_tokens, _cross_dim(unet))
        timestep = torch.tensor([1])
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        unet(sample, timestep, hidden)
    macs = attention = 0
    for op, flops in counter.get_flop_counts()["Global"].items():
        if any(name in str(op) for name in ATTENTION_OPS):
            attention += flops // 2
        else:
            macs += flops // 2
    return UNetCost(count_params(unet), macs, attention)


def unit_costs(unet: UNet2DConditionModel, units: list[Unit], resolution: int, text_tokens: int) -> list[Unit]:
    """Fill in each unit's params and MACs: the full model's cost minus the cost without the unit."""
    replica = meta_replica(unet)
    full = measure(replica, resolution, text_tokens)
    costed = []
    for unit in units:
        with removed_units(replica, [unit]):
            after = measure(replica, resolution, text_tokens)
        costed.append(Unit(unit.name, unit.kind, unit.removal, unit.modules,
                           params=full.params - after.params, macs=full.macs - after.macs))
    return costed


def cost_without(unet: UNet2DConditionModel, units: list[Unit], resolution: int, text_tokens: int) -> UNetCost:
    """Exact cost of the UNet with `units` removed (interactions such as mid + stage included)."""
    replica = meta_replica(unet)
    with removed_units(replica, units):
        return measure(replica, resolution, text_tokens)
