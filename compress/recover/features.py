"""Which teacher stage output each student stage output is distilled towards.

The mapping is derived from the prune report, never written per model: stage outputs keep
their index unless the innermost stage was removed, in which case the student's up block j
is the teacher's up block j + 1, the teacher's innermost down block has no partner, and the
down block before it is not matched either (the student's has no downsampler, so its output
is at twice the resolution). The mid block is matched when the student kept it and runs at
the teacher's resolution (not after a stage removal). A width-pruned student's stage output holds
the teacher's channels the prune kept (recorded in the report), so it is matched to those.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from compress.models.surgery import get_module


@dataclass(frozen=True)
class FeaturePair:
    name: str
    teacher: str  # module path in the teacher UNet
    student: str  # module path in the student UNet
    channels: tuple[int, ...] | None = None  # the teacher's channels the student's stage kept (width pruning)

    def teacher_feature(self, feature: torch.Tensor) -> torch.Tensor:
        return feature if self.channels is None else feature[:, list(self.channels)]


def feature_pairs(
    removed: list[str], teacher: UNet2DConditionModel, student: UNet2DConditionModel,
    kept_channels: dict[str, list[int]] | None = None,
) -> list[FeaturePair]:
    stage_dropped = any(name.startswith("stage.") for name in removed)
    pairs = []
    for i in range(len(student.down_blocks)):
        if stage_dropped and i == len(student.down_blocks) - 1:
            continue
        pairs.append(FeaturePair(f"down.{i}", f"down_blocks.{i}", f"down_blocks.{i}"))
    if student.mid_block is not None and teacher.mid_block is not None and not stage_dropped:
        pairs.append(FeaturePair("mid", "mid_block", "mid_block"))
    shift = 1 if stage_dropped else 0
    for j in range(len(student.up_blocks)):
        pairs.append(FeaturePair(f"up.{j}", f"up_blocks.{j + shift}", f"up_blocks.{j}"))
    kept = kept_channels or {}
    return [replace(p, channels=tuple(kept[p.teacher])) if p.teacher in kept else p for p in pairs]


@contextlib.contextmanager
def record_outputs(unet: nn.Module, paths: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks that keep each module's output hidden state (the first element of a tuple)."""
    outputs: dict[str, torch.Tensor] = {}

    def hook(path: str):
        def keep(_module, _inputs, output):
            outputs[path] = output[0] if isinstance(output, tuple) else output

        return keep

    handles = [get_module(unet, path).register_forward_hook(hook(path)) for path in paths]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
