"""How units are removed: in-place edits of a diffusers UNet (the bypass mechanics).

One mechanism serves three uses:
  * scoring bypasses a unit in place and restores it (`removed_units`), so no copy of the
    model is made per candidate;
  * `--granularity block` applies the same edits when `compress.models.pruned` loads a plan;
  * `--granularity diffusers` applies them, then `compress.prune.rewrite` loads the edited
    weights strictly into a stock UNet built from the rewritten config.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from compress.errors import CompressError
from compress.models.units import find_units, units_conflict
from compress.types import RemovalPlan, Unit


class PassThroughResnet(nn.Module):
    """A removed resnet: its input goes on unchanged; in an up block its skip channels are dropped."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels = out_channels

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None = None, *args: Any, **kwargs: Any):
        return input_tensor[:, : self.out_channels]


class ShortcutResnet(nn.Module):
    """A resnet replaced by its 1x1 shortcut (the only removal possible when channels change)."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.conv_shortcut = resnet.conv_shortcut
        self.output_scale_factor = resnet.output_scale_factor
        self.out_channels = resnet.out_channels

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None = None, *args: Any, **kwargs: Any):
        return self.conv_shortcut(input_tensor) / self.output_scale_factor


class PassThroughAttention(nn.Module):
    """A removed transformer block: the residual stream passes through (blocks call it with return_dict=False)."""

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> tuple[torch.Tensor]:
        return (hidden_states,)


def get_module(root: nn.Module, path: str) -> nn.Module:
    """The submodule at a dotted path (ModuleList indices included)."""
    module = root
    for part in path.split("."):
        module = module._modules[part]
    return module


def _parent(root: nn.Module, path: str) -> tuple[nn.Module, str]:
    head, _, name = path.rpartition(".")
    return (get_module(root, head) if head else root), name


def _replacement(module: nn.Module, removal: str) -> nn.Module:
    """The stand-in for one module; a pair's removal kind is its resnet's, its attention passes through."""
    if not hasattr(module, "conv1"):  # an attention (transformer) block
        return PassThroughAttention()
    if removal == "replace-by-shortcut":
        if getattr(module, "conv_shortcut", None) is None:
            raise CompressError("a resnet that keeps its channels cannot be replaced by a shortcut")
        return ShortcutResnet(module)
    return PassThroughResnet(module.out_channels)


@contextlib.contextmanager
def removed_units(unet: UNet2DConditionModel, units: list[Unit], restore: bool = True) -> Iterator[None]:
    """Apply the removals in place; restore the original structure on exit unless `restore=False`.

    All module paths are resolved against the unmodified model first, so the order of units
    does not matter. Restoring puts back the containers' original `_modules` tables.
    """
    for a_i, a in enumerate(units):
        for b in units[a_i + 1:]:
            if units_conflict(a, b):
                raise CompressError(f"units {a.name} and {b.name} overlap and cannot both be removed")
    snapshots: dict[int, tuple[nn.Module, dict[str, Any]]] = {}

    def touch(container: nn.Module) -> nn.Module:
        snapshots.setdefault(id(container), (container, dict(container._modules)))
        return container

    replacements, deletions = [], []
    for unit in units:
        if unit.removal == "drop-layer":
            deletions += [(_parent(unet, p), get_module(unet, p)) for p in unit.modules]
        elif unit.removal == "drop-mid":
            replacements.append((unet, "mid_block", None))
        elif unit.removal == "drop-stage":
            n = len(unet.down_blocks)
            deletions.append(((unet.down_blocks, str(n - 1)), unet.down_blocks[n - 1]))
            deletions.append(((unet.up_blocks, "0"), unet.up_blocks[0]))
            replacements.append((unet.down_blocks[n - 2], "downsamplers", None))
        else:
            for path in unit.modules:
                parent, name = _parent(unet, path)
                replacements.append((parent, name, _replacement(get_module(unet, path), unit.removal)))
    try:
        for parent, name, new in replacements:
            touch(parent)._modules[name] = new
        for (container, _), module in deletions:
            touch(container)
            index = next(i for i, m in enumerate(container) if m is module)
            del container[index]
        yield
    finally:
        if restore:
            for container, modules in snapshots.values():
                container._modules.clear()
                container._modules.update(modules)


def apply_block_plan(unet: UNet2DConditionModel, plan: RemovalPlan) -> None:
    """Apply a saved plan's removals to a freshly built UNet (used by `load_unet`)."""
    units = find_units(unet, plan.removed, plan.granularity)
    with removed_units(unet, units, restore=False):
        pass
