"""The unit graph: every removable part of a diffusers UNet and what removing it means.

This module says *what* can be removed; `surgery.py` says *how*.

Naming (indices as in diffusers' module tree):
  down.I.resnet.K / down.I.attn.K / down.I.pair.K   a block or R+A pair of down stage I
  up.J.resnet.K   / up.J.attn.K   / up.J.pair.K     the same in up block J
  mid.resnet.0 / mid.attn.0 / mid.resnet.1, mid     mid singles and the R-A-R triplet
  stage.N                                           the innermost stage (down N, up 0, and the
                                                    downsampler feeding it)
  layer.I                                           one R+A layer of down stage I together with one
                                                    of its mirrored up stage: the change a stock
                                                    diffusers config expresses by layers_per_block
  attn.down.I / attn.up.J                           every attention of one stage (CrossAttnDownBlock2D
                                                    becomes DownBlock2D, CrossAttnUpBlock2D UpBlock2D)
  attn.mid                                          the mid block's A-R (UNetMidBlock2DCrossAttn becomes
                                                    the resnet-only UNetMidBlock2D, which stock diffusers
                                                    builds with one resnet)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from compress.errors import CompressError
from compress.types import Unit

if TYPE_CHECKING:
    from diffusers import UNet2DConditionModel

GRANULARITIES = ("diffusers", "block")


@dataclass(frozen=True)
class StageInfo:
    """Layer counts and channels of one resolution level of the UNet."""

    index: int  # down block index; its mirror is up block `num_stages - 1 - index`
    layers: int  # resnets in the down block (the up block has layers + 1)
    has_attention: bool
    channels: int


def stage_infos(unet: UNet2DConditionModel) -> list[StageInfo]:
    channels = unet.config.block_out_channels
    return [StageInfo(i, len(block.resnets), hasattr(block, "attentions"), channels[i])
            for i, block in enumerate(unet.down_blocks)]


def _up_hidden_channels(unet: UNet2DConditionModel, j: int, k: int) -> int:
    """Channels of the hidden state entering up block j's resnet k (before its skip is concatenated)."""
    if k > 0:
        return unet.up_blocks[j].resnets[k - 1].out_channels
    if j > 0:
        return unet.up_blocks[j - 1].resnets[-1].out_channels
    return unet.config.block_out_channels[-1]


def _stage_removable(unet: UNet2DConditionModel) -> bool:
    """The innermost stage can go only if its channels and attention heads match the stage before it."""
    cfg = unet.config
    n = len(unet.down_blocks)
    if n < 2 or len(cfg.block_out_channels) != n or cfg.block_out_channels[-1] != cfg.block_out_channels[-2]:
        return False
    for key in ("attention_head_dim", "num_attention_heads"):
        value = cfg.get(key)
        if isinstance(value, (list, tuple)) and value[-1] != value[-2]:
            return False
    return unet.down_blocks[-2].downsamplers is not None


def _single_units(unet: UNet2DConditionModel) -> list[Unit]:
    units: list[Unit] = []
    for i, block in enumerate(unet.down_blocks):
        for k, resnet in enumerate(block.resnets):
            same = resnet.in_channels == resnet.out_channels
            units.append(Unit(f"down.{i}.resnet.{k}", "resnet", "pass-through" if same else "replace-by-shortcut",
                              (f"down_blocks.{i}.resnets.{k}",)))
            if hasattr(block, "attentions"):
                units.append(Unit(f"down.{i}.attn.{k}", "attention", "pass-through",
                                  (f"down_blocks.{i}.attentions.{k}",)))
    if unet.mid_block is not None:
        mid = unet.mid_block
        units.append(Unit("mid.resnet.0", "resnet", "pass-through", ("mid_block.resnets.0",)))
        for k in range(len(getattr(mid, "attentions", []))):
            units.append(Unit(f"mid.attn.{k}", "attention", "pass-through", (f"mid_block.attentions.{k}",)))
            units.append(Unit(f"mid.resnet.{k + 1}", "resnet", "pass-through", (f"mid_block.resnets.{k + 1}",)))
    for j, block in enumerate(unet.up_blocks):
        for k, resnet in enumerate(block.resnets):
            same = _up_hidden_channels(unet, j, k) == resnet.out_channels
            units.append(Unit(f"up.{j}.resnet.{k}", "resnet", "drop-skip" if same else "replace-by-shortcut",
                              (f"up_blocks.{j}.resnets.{k}",)))
            if hasattr(block, "attentions"):
                units.append(Unit(f"up.{j}.attn.{k}", "attention", "pass-through", (f"up_blocks.{j}.attentions.{k}",)))
    return units


def _pair_units(singles: list[Unit]) -> list[Unit]:
    """R+A pairs: a resnet together with the attention that follows it in the same block."""
    by_name = {u.name: u for u in singles}
    pairs = []
    for unit in singles:
        if unit.kind != "resnet" or unit.name.startswith("mid."):
            continue
        attn = by_name.get(unit.name.replace(".resnet.", ".attn."))
        if attn is not None:
            name = unit.name.replace(".resnet.", ".pair.")
            pairs.append(Unit(name, "pair", unit.removal, unit.modules + attn.modules))
    return pairs


def _attention_units(unet: UNet2DConditionModel) -> list[Unit]:
    """Per-stage attention removal, as a stock config expresses it (one block type swapped for another)."""
    units = []
    for side, blocks in (("down", unet.down_blocks), ("up", unet.up_blocks)):
        for i, block in enumerate(blocks):
            if hasattr(block, "attentions"):
                modules = tuple(f"{side}_blocks.{i}.attentions.{k}" for k in range(len(block.attentions)))
                units.append(Unit(f"attn.{side}.{i}", "attentions", "drop-attention", modules))
    mid = unet.mid_block
    if mid is not None and len(getattr(mid, "attentions", [])) == 1 and len(mid.resnets) == 2:
        modules = ("mid_block.attentions.0", "mid_block.resnets.1")
        units.append(Unit("attn.mid", "attentions", "drop-attention", modules))
    return units


def _group_units(unet: UNet2DConditionModel) -> list[Unit]:
    """Units a stock diffusers config can express: layers, stage attentions, the mid block, the innermost stage."""
    units = []
    n = len(unet.down_blocks)
    for info in stage_infos(unet):
        if info.layers < 2:
            continue
        j, k = n - 1 - info.index, info.layers - 1
        modules = [f"down_blocks.{info.index}.resnets.{k}", f"up_blocks.{j}.resnets.{k}"]
        if info.has_attention:
            modules += [f"down_blocks.{info.index}.attentions.{k}", f"up_blocks.{j}.attentions.{k}"]
        units.append(Unit(f"layer.{info.index}", "layer", "drop-layer", tuple(sorted(modules))))
    units += _attention_units(unet)
    if unet.mid_block is not None:
        units.append(Unit("mid", "mid", "drop-mid", ("mid_block",)))
    if _stage_removable(unet):
        units.append(Unit(f"stage.{n - 1}", "stage", "drop-stage",
                          (f"down_blocks.{n - 1}", "up_blocks.0", f"down_blocks.{n - 2}.downsamplers")))
    return units


def enumerate_units(unet: UNet2DConditionModel, granularity: str) -> list[Unit]:
    """Removable units (costs not yet filled in) for `diffusers` or `block` granularity."""
    if granularity not in GRANULARITIES:
        raise CompressError(f"--granularity must be one of {', '.join(GRANULARITIES)}, not {granularity!r}")
    groups = _group_units(unet)
    if granularity == "diffusers":
        return groups
    singles = _single_units(unet)
    return singles + _pair_units(singles) + [u for u in groups if u.kind in ("mid", "stage")]


def units_conflict(a: Unit, b: Unit) -> bool:
    """Two units conflict when one removes (part of) what the other removes."""
    return any(p == q or p.startswith(q + ".") or q.startswith(p + ".") for p in a.modules for q in b.modules)


def find_units(unet: UNet2DConditionModel, names: list[str], granularity: str) -> list[Unit]:
    """Look units up by name; an unknown name is a CompressError listing what exists."""
    units = {u.name: u for u in enumerate_units(unet, granularity)}
    missing = [n for n in names if n not in units]
    if missing:
        raise CompressError(f"no unit {missing[0]!r} at {granularity} granularity in this UNet")
    return [units[n] for n in names]
