"""Stable Diffusion facts: the hub checkpoints' exact UNet configs (`unet/config.json`) and their noise schedule."""

from __future__ import annotations

_SD1_UNET = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}

SD14_UNET_CONFIG = dict(_SD1_UNET)
SD15_UNET_CONFIG = dict(_SD1_UNET)
SD21_BASE_UNET_CONFIG = dict(
    _SD1_UNET,
    attention_head_dim=[5, 10, 20, 20],
    cross_attention_dim=1024,
    dual_cross_attention=False,
    num_class_embeds=None,
    only_cross_attention=False,
    use_linear_projection=True,
)

# Text-encoder sequence length of every SD-v1/v2 checkpoint (CLIP's 77 tokens).
SD_TEXT_TOKENS = 77

# SD-v1.x noise schedule (scaled-linear betas, epsilon prediction); the toy family trains on it too.
SD_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
}
NUM_TRAIN_TIMESTEPS = SD_SCHEDULER_CONFIG["num_train_timesteps"]
