"""Parameter and MAC counts of the fused (deploy) SPAN, computed on the meta device without any weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from compress.models.span import SPAN


@dataclass
class SPANCost:
    """`macs` counts convolution multiply-accumulates only (fvcore style: no bias, activation or pixel shuffle)."""

    channels: int
    scale: int
    input_shape: tuple[int, int, int, int]
    params: int
    macs: int


def span_cost(channels: int = 48, scale: int = 4, height: int = 256, width: int = 256) -> SPANCost:
    """Cost of the fused SPAN with `channels` and `scale` on a 1x3xHxW low-resolution input."""
    with torch.device("meta"):
        model = SPAN(channels=channels, scale=scale).fuse()
        x = torch.empty(1, 3, height, width)
    with FlopCounterMode(display=False) as counter:
        model(x)
    params = sum(p.numel() for p in model.parameters())
    return SPANCost(channels, scale, (1, 3, height, width), params, counter.get_total_flops() // 2)
