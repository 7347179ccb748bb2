"""Helpers shared by tests: a tiny SD-topology UNet (SD-v1.4's block types at tiny width)."""

from __future__ import annotations

import json

import numpy as np
import torch
from diffusers import UNet2DConditionModel
from PIL import Image

# SD-v1.4's scheduler_config.json (PNDM, scaled-linear betas).
SD_SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False}

TINY_SD_CONFIG = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "block_out_channels": [8, 16, 16, 16],
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 16,
    "attention_head_dim": 2,
    "norm_num_groups": 4,
}


def make_tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**TINY_SD_CONFIG).eval()


def tiny_inputs(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, 16, 16, generator=g), torch.tensor([500] * batch),
            torch.randn(batch, 77, 16, generator=g))


def tiny_tokenizer(folder):
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in "abcdefghijklmnopqrstuvwxyz":
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    folder.mkdir(parents=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77).save_pretrained(folder)


def tiny_sd_pipeline(root):
    """A small SD-v1.4-topology pipeline folder, saved by diffusers' own `StableDiffusionPipeline.save_pretrained`
    (model_index.json, unet, vae, CLIP text encoder, tokenizer, PNDM scheduler as SD-v1.4 ships it): random weights,
    real formats."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        sample_size=32)
    config = CLIPTextConfig(hidden_size=TINY_SD_CONFIG["cross_attention_dim"], intermediate_size=32,
                            num_attention_heads=2, num_hidden_layers=1, vocab_size=60, max_position_embeddings=77,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    text_encoder = CLIPTextModel(config).eval()
    tiny_tokenizer(root / "tokenizer_source")
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer_source")
    scheduler = PNDMScheduler.from_config({**SD_SCHEDULER, "skip_prk_steps": True})
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=make_tiny_unet(),
                            scheduler=scheduler, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(root)
    import shutil

    shutil.rmtree(root / "tokenizer_source")
    return root


def caption_folder(root, n=4):
    root.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(root / f"{i}.png")
        lines.append(json.dumps({"file_name": f"{i}.png", "text": f"a photo number {i}"}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root


def run_console(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """The console entry point (`compress ...`) in-process: exit code, stdout, stderr, as a user would see them."""
    import pytest

    from compress.cli import run

    monkeypatch.setattr("sys.argv", ["compress", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        run()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def corrupt_onnx_export(source, target, scale: float = 0.1) -> None:
    """Copy an ONNX export and add noise (`scale` x the largest |weight|) to the last convolution's weight: a wrong
    weight the runtime still loads. (A weight followed by a normalisation could be scaled without effect;
    conv_out feeds the output directly.)"""
    import shutil

    import numpy as np
    import onnx
    from onnx import numpy_helper

    shutil.copytree(source, target)
    path = target / "unet" / "model.onnx"
    model = onnx.load(str(path))
    weight = next(t for t in model.graph.initializer if t.name.endswith("conv_out.weight"))
    values = numpy_helper.to_array(weight)
    noisy = values + scale * np.abs(values).max() * np.random.default_rng(0).standard_normal(values.shape)
    weight.CopyFrom(numpy_helper.from_array(noisy.astype(values.dtype), weight.name))
    onnx.save(model, str(path))
