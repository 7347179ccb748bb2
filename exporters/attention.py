"""Apple's split-einsum attention for the Neural Engine, as a processor for diffusers' `Attention`.

The Neural Engine runs 4-D channels-first tensors well and large batched matmuls with reshapes badly. Apple's
ml-stable-diffusion therefore computes attention on (B, C, 1, S) tensors: projections are 1x1 convolutions and
each head is its own einsum over a channel slice ("Deploying Transformers on the Apple Neural Engine", 2022).
The function is unchanged; validation compares the rewritten UNet with the original in torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from compress.errors import CompressError
from exporters.formats import ATTENTION_IMPLEMENTATIONS


def _conv1x1(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """`linear` applied along the channels of a (B, C, 1, S) tensor."""
    return F.conv2d(x, linear.weight[:, :, None, None], linear.bias)


class SplitEinsumAttnProcessor:
    """Self- and cross-attention of SD UNets in the (B, C, 1, S) layout, one einsum pair per head."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args, **kwargs):
        unsupported = attention_mask is not None or any(
            getattr(attn, name, None) is not None for name in ("spatial_norm", "group_norm", "norm_q", "add_k_proj"))
        if unsupported or hidden_states.ndim != 3:
            raise CompressError("split-einsum attention supports plain self/cross attention on (B, S, C) tokens "
                                "(SD UNets); use --attention original for this model")
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if attn.norm_cross and encoder_hidden_states is not None:
            context = attn.norm_encoder_hidden_states(context)
        x = hidden_states.transpose(1, 2).unsqueeze(2)  # (B, C, 1, S)
        context = context.transpose(1, 2).unsqueeze(2)
        q, k, v = _conv1x1(attn.to_q, x), _conv1x1(attn.to_k, context), _conv1x1(attn.to_v, context)
        dim_head = q.shape[1] // attn.heads
        k = k.transpose(1, 3)  # (B, S_k, 1, C): keys sliced along their last axis, as Apple does
        heads = []
        for h in range(attn.heads):
            channels = slice(h * dim_head, (h + 1) * dim_head)
            weights = torch.einsum("bchq,bkhc->bkhq", q[:, channels], k[..., channels]) * attn.scale
            weights = weights.softmax(dim=1)  # over keys
            heads.append(torch.einsum("bkhq,bchk->bchq", weights, v[:, channels]))
        out = _conv1x1(attn.to_out[0], torch.cat(heads, dim=1))
        out = attn.to_out[1](out).squeeze(2).transpose(1, 2)  # dropout (identity in eval), back to (B, S, C)
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


@contextlib.contextmanager
def attention_implementation(unet: nn.Module, name: str) -> Iterator[None]:
    """Run `unet` with the named attention inside the block; its own processors are put back afterwards."""
    if name not in ATTENTION_IMPLEMENTATIONS:
        raise CompressError(f"--attention must be one of {', '.join(ATTENTION_IMPLEMENTATIONS)}, not {name!r}")
    if name == "original" or not unet.attn_processors:
        yield
        return
    saved = unet.attn_processors
    unet.set_attn_processor(SplitEinsumAttnProcessor())
    try:
        yield
    finally:
        unet.set_attn_processor(saved)
