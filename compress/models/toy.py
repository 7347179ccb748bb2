"""The embedded `toy` model's facts: SD-v1.4 topology at small width, trained on 16x16 digits.

It exists so that pruning, recovery and distillation are measured on a trained model offline. The UNet is a
stock diffusers `UNet2DConditionModel`; the text encoder is replaced by `ClassConditioner`
(`compress.models.class_conditioner`), a learned table of token embeddings per digit class. Torch-free, like
`sd.py`, so the registry and the CLI's checks need no torch.
"""

from __future__ import annotations

NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES  # the unconditional token used for classifier-free guidance
IMAGE_SIZE = 16

TOY_UNET_CONFIG = {
    "sample_size": IMAGE_SIZE,
    "in_channels": 1,
    "out_channels": 1,
    "layers_per_block": 2,
    "block_out_channels": (32, 32, 64, 64),
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "cross_attention_dim": 32,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}
