"""DeepCache-style feature reuse for diffusers UNets (Ma et al., "DeepCache", CVPR 2024), without a pinned helper.

Between two sampling steps a UNet's deep features change little. A full call every `interval` steps records the
input of the up block that pairs with down block `branch` (the skip branch); the calls in between run only the
shallow part, `conv_in`, down blocks 0..branch, and the up blocks from the pair of `branch` to the output, with
the recorded deep feature in place of everything below. Branch 0 (the shallowest skip, DeepCache's default) skips
the most work.

A full call is the stock `UNet2DConditionModel.forward` with a pre-hook that records the feature, so a cache
whose interval is 1 gives exactly the uncached samples. The shallow pass mirrors the stock forward loop (residuals
are consumed by each up block's own resnet count), so pruned UNets and consistency students work as they are.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DConditionModel

from compress.errors import CompressError


class DeepFeatureCache:
    """Call like a UNet, with the sampling step index and a stream name first: `cache(step, "cond", x, t, ctx)`.

    Each stream (the conditional and unconditional passes of classifier-free guidance) keeps its own feature.
    Step indices count from 0; steps 0, interval, 2 x interval... are full calls. Returns the predicted tensor.
    """

    def __init__(self, unet: Any, interval: int, branch: int = 0) -> None:
        if not isinstance(unet, UNet2DConditionModel):
            raise CompressError("--cache-interval needs a torch UNet: an exported graph runs whole, so nothing "
                                "inside it can be reused")
        if interval < 1:
            raise CompressError(f"the cache interval must be at least 1 (1 = a full call every step), not {interval}")
        last = len(unet.down_blocks) - 1
        if not 0 <= branch <= last:
            raise CompressError(f"--cache-branch must be 0..{last} for a UNet with {last + 1} down blocks, "
                                f"not {branch}")
        if unet.class_embedding is not None or unet.config.addition_embed_type is not None:
            raise CompressError("--cache-interval supports UNets without class or added embeddings (SD-v1/v2, toy)")
        self.unet, self.interval, self.branch = unet, interval, branch
        self._first_up = len(unet.up_blocks) - 1 - branch  # the up block that pairs with down block `branch`
        self._deep: dict[str, torch.Tensor] = {}

    def __call__(self, step: int, stream: str, sample: torch.Tensor, timestep: Any,
                 encoder_hidden_states: torch.Tensor, timestep_cond: torch.Tensor | None = None) -> torch.Tensor:
        if step % self.interval == 0 or stream not in self._deep:
            return self._full(stream, sample, timestep, encoder_hidden_states, timestep_cond)
        return self._shallow(self._deep[stream], sample, timestep, encoder_hidden_states, timestep_cond)

    def _full(self, stream: str, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
              timestep_cond: torch.Tensor | None) -> torch.Tensor:
        def record(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            self._deep[stream] = kwargs["hidden_states"]

        handle = self.unet.up_blocks[self._first_up].register_forward_pre_hook(record, with_kwargs=True)
        try:
            return self.unet(sample, timestep, encoder_hidden_states, timestep_cond=timestep_cond).sample
        finally:
            handle.remove()

    def _shallow(self, deep: torch.Tensor, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor,
                 timestep_cond: torch.Tensor | None) -> torch.Tensor:
        """The stock forward's loops restricted to the outer blocks, `deep` standing in for what lies between."""
        unet = self.unet
        if unet.config.center_input_sample:
            sample = 2 * sample - 1.0
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), timestep_cond)
        if unet.time_embed_act is not None:
            emb = unet.time_embed_act(emb)
        context = unet.process_encoder_hidden_states(encoder_hidden_states=encoder_hidden_states,
                                                     added_cond_kwargs=None)
        factor = 2 ** unet.num_upsamplers
        forward_upsample_size = any(dim % factor for dim in sample.shape[-2:])
        sample = unet.conv_in(sample)
        residuals: tuple[torch.Tensor, ...] = (sample,)
        for block in unet.down_blocks[:self.branch + 1]:
            if getattr(block, "has_cross_attention", False):
                sample, block_residuals = block(hidden_states=sample, temb=emb, encoder_hidden_states=context)
            else:
                sample, block_residuals = block(hidden_states=sample, temb=emb)
            residuals += block_residuals
        up_blocks = unet.up_blocks[self._first_up:]
        # the last down block's downsampler output feeds a deeper up block, which the deep feature replaces
        needed = sum(len(block.resnets) for block in up_blocks)
        if len(residuals) < needed:
            raise CompressError(f"--cache-branch {self.branch}: the outer up blocks take {needed} skip tensors, "
                                f"the outer down blocks give {len(residuals)}; choose another branch")
        residuals = residuals[:needed]
        sample = deep
        for index, block in enumerate(up_blocks, start=self._first_up):
            block_residuals = residuals[-len(block.resnets):]
            residuals = residuals[:-len(block.resnets)]
            is_final = index == len(unet.up_blocks) - 1
            upsample_size = residuals[-1].shape[2:] if not is_final and forward_upsample_size else None
            if getattr(block, "has_cross_attention", False):
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=block_residuals,
                               encoder_hidden_states=context, upsample_size=upsample_size)
            else:
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=block_residuals,
                               upsample_size=upsample_size)
        if unet.conv_norm_out:
            sample = unet.conv_act(unet.conv_norm_out(sample))
        return unet.conv_out(sample)
