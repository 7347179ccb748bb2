"""Width pruning: the narrowed stock UNet computes what the original computes with the dropped channels masked."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DConditionModel
from torch import nn

from compress.errors import CompressError
from compress.prune.width import ChannelSpaces, choose_channels, index, narrowed_unet, stage_widths


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "compress", *map(str, args)], capture_output=True, text=True)

SD_TOPOLOGY = dict(  # SD-v1.4's block types and depth, small widths that differ per stage (uneven concats)
    block_out_channels=(32, 48, 64, 64), norm_num_groups=8, attention_head_dim=4, cross_attention_dim=16,
    layers_per_block=2, sample_size=16, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)


def _small_unet(**overrides) -> UNet2DConditionModel:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**SD_TOPOLOGY, **overrides}).eval()
    with torch.no_grad():  # norm affines away from (1, 0), so a misplaced norm channel shows
        for p in unet.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return unet


def _mask(layout, dim: int, ndim: int) -> torch.Tensor:
    size = sum(s.size for s in layout)
    mask = torch.zeros(size)
    mask[index(layout)] = 1.0
    shape = [1] * ndim
    shape[dim] = size
    return mask.view(shape)


def _masked_original(unet: UNet2DConditionModel, spaces: ChannelSpaces, narrowed: UNet2DConditionModel) -> list:
    """Hooks on the stock original: every layer's dropped output channels are zeroed, and every norm
    normalises over its input's kept channels only (a group norm over kept channels, as the narrow one does)."""
    handles = []

    def zero_dropped(layout):
        def hook(module, _inputs, output):
            dim = 1 if isinstance(module, nn.Conv2d) else output.ndim - 1  # NCHW, or channels last
            return output * _mask(layout, dim, output.ndim)
        return hook

    def normalise_kept(layout):
        kept = index(layout)

        def hook(module, inputs, _output):
            x = inputs[0]
            if isinstance(module, nn.GroupNorm):
                out = torch.zeros_like(x)
                out[:, kept] = F.group_norm(x[:, kept], module.num_groups, module.weight[kept], module.bias[kept],
                                            module.eps)
                return out
            out = torch.zeros_like(x)
            out[..., kept] = F.layer_norm(x[..., kept], (len(kept),), module.weight[kept], module.bias[kept],
                                          module.eps)
            return out
        return hook

    for name, dims in spaces.dims.items():
        path, kind = name.rsplit(".", 1)
        module = unet.get_submodule(path)
        if kind != "weight" or 0 not in dims:
            continue
        if isinstance(module, (nn.GroupNorm, nn.LayerNorm)):
            handles.append(module.register_forward_hook(normalise_kept(dims[0])))
        else:
            handles.append(module.register_forward_hook(zero_dropped(dims[0])))
    # the timestep features are not channels: the narrowed model refits the dropped ones (tested on its own
    # below), so the reference feeds the narrowed time embedding the original's kept features
    kept = index(spaces.time_features)
    handles.append(unet.time_embedding.register_forward_hook(
        lambda _m, inputs, _out: narrowed.time_embedding(inputs[0][:, kept])))
    return handles


@pytest.mark.parametrize("ratio,importance", [(0.25, "magnitude"), (0.5, "random")])
def test_narrowed_stock_unet_equals_masked_original(ratio, importance):
    unet = _small_unet()
    widths = stage_widths(unet.config, ratio)
    spaces = choose_channels(unet, widths, importance)
    narrowed = narrowed_unet(unet, spaces)
    assert list(narrowed.config.block_out_channels) == widths != list(unet.config.block_out_channels)
    torch.manual_seed(1)
    sample, context = torch.randn(2, 4, 16, 16), torch.randn(2, 5, 16)
    timestep = torch.tensor([3.0, 700.0])
    with torch.no_grad():
        plain = unet(sample, timestep, context).sample
        narrow_out = narrowed(sample, timestep, context).sample
        handles = _masked_original(unet, spaces, narrowed)
        masked = unet(sample, timestep, context).sample
        for h in handles:
            h.remove()
    scale = masked.abs().max()
    assert (narrow_out - masked).abs().max() <= 1e-5 * scale, "the narrowed model is not the masked original"
    assert (plain - masked).abs().max() > 1e-2 * scale, "masking changed nothing: the test would prove nothing"


def test_time_embedding_is_the_originals_at_every_training_timestep():
    unet = _small_unet()
    spaces = choose_channels(unet, stage_widths(unet.config, 0.25))
    narrowed = narrowed_unet(unet, spaces)
    t = torch.arange(1000).float()
    with torch.no_grad():
        old, new = unet.time_proj(t), narrowed.time_proj(t)
        half_old, half_new = old.shape[1] // 2, new.shape[1] // 2
        kept = torch.cat([torch.arange(half_new), half_old + torch.arange(half_new)])
        torch.testing.assert_close(new, old[:, kept], rtol=0, atol=1e-6)  # diffusers' own sinusoids, shifted
        emb_old, emb_new = unet.time_embedding(old), narrowed.time_embedding(new)
    assert 0 < spaces.time_fit_error < 1e-4
    assert (emb_new - emb_old).abs().max() < 1e-4 * emb_old.abs().max()
    zeroed = unet.time_embedding.linear_1.weight[:, kept] @ old[:, kept].T  # no refit: dropping them
    assert (zeroed.T + unet.time_embedding.linear_1.bias - unet.time_embedding.linear_1(old)).abs().max() > 1e-2


def test_stage_widths_round_to_what_a_stock_config_expresses():
    config = UNet2DConditionModel.load_config("compress/assets/toy/unet")
    sd = dict(block_out_channels=[320, 640, 1280, 1280], norm_num_groups=32, attention_head_dim=8,
              num_attention_heads=None)
    assert stage_widths(type("C", (), sd), 0.25) == [256, 480, 960, 960]
    assert stage_widths(type("C", (), {**config, "num_attention_heads": None}), 0.3) == [24, 24, 48, 48]
    with pytest.raises(CompressError, match="below one unit of 8"):
        stage_widths(type("C", (), {**config, "num_attention_heads": None}), 0.9)


def test_width_pruned_toy_loads_in_stock_diffusers_and_recovers(tmp_path):
    out = tmp_path / "narrow"
    result = run_cli("prune", "--model", "toy", "--width", "0.3", "--budget", "params", "--out", str(out),
                     "--no-progress")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "prune_report.json").read_text())
    assert report["width"]["widths_after"] == [24, 24, 48, 48] and report["width"]["importance"] == "magnitude"
    assert report["params_after"] < 0.7 * report["params_before"]
    check = ("import sys, torch; from diffusers import UNet2DConditionModel;"
             f"m = UNet2DConditionModel.from_pretrained({str(out / 'unet')!r});"
             "y = m(torch.randn(1, 1, 16, 16), 10, torch.randn(1, 2, 32)).sample;"
             "assert 'compress' not in sys.modules and y.shape == (1, 1, 16, 16);"
             "print(list(m.config.block_out_channels))")
    stock = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert stock.returncode == 0, stock.stderr
    assert stock.stdout.strip() == "[24, 24, 48, 48]"
    exported = run_cli("export", str(out), "--format", "onnx", "--out", str(tmp_path / "onnx"))
    assert exported.returncode == 0, exported.stderr  # `compress export` validates the graph against torch
    recovered = run_cli("recover", "--teacher", "toy", "--student", str(out), "--out", str(tmp_path / "rec"),
                        "--steps", "2", "--no-eval", "--no-progress")
    assert recovered.returncode == 0, recovered.stderr
    log = [json.loads(line) for line in (tmp_path / "rec" / "recover_log.jsonl").read_text().splitlines()]
    assert log and all(row["loss_kd_feat"] > 0 for row in log if "loss_kd_feat" in row)


def test_unexpressible_width_is_refused_before_any_work(tmp_path):
    out = tmp_path / "never"
    result = run_cli("prune", "--model", "toy", "--width", "0.9", "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert "below one unit" in result.stderr and not out.exists()
    bad = run_cli("prune", "--model", "toy", "--width", "1.5", "--out", str(out))
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and not out.exists()


def test_width_and_blocks_share_one_budget(tmp_path):
    out = tmp_path / "both"
    result = run_cli("prune", "--model", "toy", "--width", "0.2", "--ratio", "0.5", "--budget", "params",
                     "--granularity", "block", "--out", str(out), "--no-progress", "--calib-samples", "8")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "prune_report.json").read_text())
    width = report["width"]
    assert report["ratio_requested"] == 0.5 and report["removed"]
    # the blocks' share of the narrowed UNet completes the ratio: 1 - (1 - 0.5) / (1 - narrowing's share)
    assert width["block_ratio"] == pytest.approx(1 - 0.5 / (1 - width["params_saving"]), abs=1e-4)
    assert 0.5 <= 1 - report["params_after"] / report["params_before"] < 0.6
    from compress import load_unet

    unet = load_unet(out)
    assert list(unet.config.block_out_channels) == width["widths_after"]
    assert sum(p.numel() for p in unet.parameters()) == report["params_after"]
