"""Split a UNet into two halves of about equal weight, for Core ML packages under iOS's 1 GB limit.

Apple's ml-stable-diffusion cuts the converted MIL program at the op where half the weights are behind it. We cut
the torch model instead, between the steps of its forward pass (time embedding + conv_in, each down block, the mid
block, each layer and upsampler of the up blocks, conv_out), at the boundary that best halves the parameter bytes.
Up blocks are stepped per layer because they hold most of the weights: for SD-v1.4 at fp16 a cut between whole
blocks leaves 0.65 + 0.95 GiB, a cut inside `up_blocks[0]` 0.83 + 0.77 GiB. Each half is an ordinary module that
`torch.export` converts on its own, and the chain `second(first(x))` can be compared with the whole UNet in torch
on any host.

The first half returns `hidden_states`, `emb` and the skip tensors still owed to the remaining up blocks
(`skip_0`, ...); the second half takes those plus the original `encoder_hidden_states`. That is the contract of
Apple's Swift pipeline, which feeds each chunk the previous chunk's outputs merged with the original inputs.
A tensor that reaches the boundary twice (a pruned pass-through block repeats its input, a down block without
downsampler returns its last skip as its output) crosses it once, under its first name: Core ML merges outputs
that are one value, so a repeated name would go missing.
"""

from __future__ import annotations

import torch
from torch import nn

from compress.errors import CompressError
from exporters.config import TensorSpec

_UNSUPPORTED = ("class_embed_type", "num_class_embeds", "addition_embed_type", "encoder_hid_dim",
                "time_embedding_act_fn", "time_cond_proj_dim")


class UpLayer(nn.Module):
    """One resnet (and transformer) of an up block, as the block's forward runs it on the last skip tensor."""

    def __init__(self, resnet: nn.Module, attention: nn.Module | None):
        super().__init__()
        self.resnet, self.attention = resnet, attention

    def forward(self, hidden: torch.Tensor, skip: torch.Tensor, emb: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        hidden = self.resnet(torch.cat([hidden, skip], dim=1), emb)
        if self.attention is not None:
            hidden = self.attention(hidden, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]
        return hidden


def _stages(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """The forward pass as (kind, module) steps: down blocks, mid block, then up-block layers and upsamplers."""
    stages = [("down", block) for block in unet.down_blocks]
    if unet.mid_block is not None:
        stages.append(("mid", unet.mid_block))
    for block in unet.up_blocks:
        attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
        stages += [("up", UpLayer(resnet, attn)) for resnet, attn in zip(block.resnets, attentions, strict=True)]
        stages += [("upsample", upsampler) for upsampler in block.upsamplers or []]
    return stages


def _cross(block: nn.Module) -> bool:
    return getattr(block, "has_cross_attention", False)


class UNetChunk(nn.Module):
    """Stages `[start, stop)` of a UNet's forward pass (diffusers' `UNet2DConditionModel.forward`, no extras)."""

    def __init__(self, unet: nn.Module, start: int, stop: int):
        super().__init__()
        self.keep: list[int] | None = None  # first half: which boundary tensors it returns (set by split_unet)
        self.layout: list[int] | None = None  # second half: boundary position -> index of the tensor it receives
        stages = _stages(unet)
        self.first, self.last = start == 0, stop == len(stages)
        self.kinds = [kind for kind, _ in stages[start:stop]]
        self.blocks = nn.ModuleList(block for _, block in stages[start:stop])
        if self.first:
            self.time_proj, self.time_embedding, self.conv_in = unet.time_proj, unet.time_embedding, unet.conv_in
        if self.last:
            self.conv_norm_out, self.conv_act, self.conv_out = unet.conv_norm_out, unet.conv_act, unet.conv_out

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        if self.first:
            sample, timestep, encoder_hidden_states = tensors
            t_emb = self.time_proj(timestep.expand(sample.shape[0])).to(sample.dtype)
            emb = self.time_embedding(t_emb)
            hidden = self.conv_in(sample)
            skips = [hidden]
        else:
            *received, encoder_hidden_states = tensors
            hidden, emb, *skips = [received[i] for i in self.layout] if self.layout else received
        cross = {"encoder_hidden_states": encoder_hidden_states}
        for kind, block in zip(self.kinds, self.blocks, strict=True):
            if kind == "down":
                hidden, res = block(hidden_states=hidden, temb=emb, **(cross if _cross(block) else {}))
                skips += res
            elif kind == "mid":
                hidden = block(hidden, emb, **(cross if _cross(block) else {}))
            elif kind == "up":
                hidden = block(hidden, skips.pop(), emb, encoder_hidden_states)
            else:
                hidden = block(hidden)
        if self.last:
            if self.conv_norm_out is not None:
                hidden = self.conv_act(self.conv_norm_out(hidden))
            return self.conv_out(hidden)
        boundary = (hidden, emb, *skips)
        return tuple(boundary[i] for i in self.keep) if self.keep else boundary


def _parameter_bytes(modules: list[nn.Module]) -> int:
    return sum(p.numel() * p.element_size() for m in modules for p in m.parameters())


def _same_value(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()


def split_unet(unet: nn.Module, inputs: list[TensorSpec]) -> tuple[list[UNetChunk], list[list[TensorSpec]]]:
    """The two chunks and the input specs of each (the first takes the UNet's own inputs).

    The cut is the stage boundary where the weights before it are closest to half of all weights. The second
    chunk's inputs are the boundary tensors, then `encoder_hidden_states`.
    """
    config = unet.config
    used = [key for key in _UNSUPPORTED if config.get(key)]
    if used or config.get("center_input_sample") or getattr(unet, "encoder_hid_proj", None) is not None:
        raise CompressError(f"--chunk supports SD-style UNets only; this one sets {', '.join(used) or 'extras'}")
    stages = _stages(unet)
    head = [unet.time_proj, unet.time_embedding, unet.conv_in]
    total = _parameter_bytes([unet])
    cut = min(range(1, len(stages)),
              key=lambda k: abs(2 * _parameter_bytes(head + [b for _, b in stages[:k]]) - total))
    first, second = UNetChunk(unet, 0, cut).eval(), UNetChunk(unet, cut, len(stages)).eval()
    with torch.no_grad():
        boundary = first(*(torch.randn(spec.shape, dtype=spec.dtype) for spec in inputs))
    names = ["hidden_states", "emb"] + [f"skip_{i}" for i in range(len(boundary) - 2)]
    first.keep, second.layout = [], []
    for tensor in boundary:
        match = next((k for k, i in enumerate(first.keep) if _same_value(boundary[i], tensor)), None)
        if match is None:
            match = len(first.keep)
            first.keep.append(len(second.layout))
        second.layout.append(match)
    second_inputs = [TensorSpec(names[i], tuple(boundary[i].shape)) for i in first.keep] + [inputs[2]]
    return [first, second], [inputs, second_inputs]


def first_chunk_outputs(second_inputs: list[TensorSpec]) -> list[TensorSpec]:
    """What the first chunk returns: the second chunk's inputs except the original `encoder_hidden_states`."""
    return second_inputs[:-1]
