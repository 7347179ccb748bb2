"""SPAN architecture: exact fusion, published size, and loading official and own checkpoints."""

import copy

import pytest
import torch
from safetensors.torch import save_file

from compress.errors import CompressError
from compress.sr import SPAN, load_span, save_span, span_cost


def random_span(channels: int = 8, scale: int = 2, seed: int = 0) -> SPAN:
    torch.manual_seed(seed)
    return SPAN(channels=channels, scale=scale).eval()


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("size", [(13, 17), (1, 1), (31, 9)])
def test_fused_matches_unfused(scale, size):
    model = random_span(channels=12, scale=scale)
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        reference = model(x)
        fused = copy.deepcopy(model).fuse()
        out = fused(x)
    assert fused.is_fused and not model.is_fused
    assert out.shape == (2, 3, size[0] * scale, size[1] * scale)
    assert (out - reference).abs().max().item() <= 1e-4


def test_fused_model_is_plain_3x3_convolutions():
    fused = random_span().fuse()
    convs = [m for m in fused.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 6 * 3 + 1 + 1 + 1  # conv_1, blocks, conv_2, conv_cat, upsampler
    assert {m.kernel_size for m in convs} == {(3, 3), (1, 1)}
    assert [m.kernel_size for m in convs].count((1, 1)) == 1  # only conv_cat


def test_published_size_c48_x4():
    cost = span_cost(channels=48, scale=4, height=256, width=256)
    assert cost.params == 426_288  # "0.426 M" in the paper
    assert round(cost.macs / 1e9, 1) == 27.9
    assert span_cost(channels=28, scale=4).params == 150_688  # NTIRE 2024 entry: 0.151 M
    assert cost.params == sum(p.numel() for p in SPAN(48, 4).fuse().parameters())


def official_state(model: SPAN) -> dict[str, torch.Tensor]:
    """The state dict the authors' code saves: training branches plus the derived `eval_conv` tensors."""
    state = dict(model.state_dict())
    fused = copy.deepcopy(model).fuse().state_dict()
    for key in list(state):
        if key.endswith(".sk.weight"):
            prefix = key.removesuffix("sk.weight")
            state[prefix + "eval_conv.weight"] = fused[prefix + "weight"]
            state[prefix + "eval_conv.bias"] = fused[prefix + "bias"]
    return state


@pytest.mark.parametrize("wrapper", [None, "params", "params_ema"])
def test_official_checkpoint_loads_like_ours(tmp_path, wrapper):
    model = random_span(channels=6, scale=3)
    state = official_state(model)
    checkpoint = state if wrapper is None else {wrapper: state}
    torch.save(checkpoint, tmp_path / "official.pth")
    save_span(model, tmp_path / "ours")

    official, ours = load_span(tmp_path / "official.pth"), load_span(tmp_path / "ours")
    assert (official.channels, official.scale) == (6, 3)
    x = torch.rand(1, 3, 11, 14)
    with torch.no_grad():
        assert torch.equal(official(x), ours(x))
        assert torch.equal(ours(x), model(x))


def test_fused_checkpoints_load(tmp_path):
    model = random_span(channels=5, scale=4)
    official_fused = {k: v for k, v in official_state(model).items()
                      if k.startswith(("conv_cat.", "upsampler.")) or ".eval_conv." in k}
    save_file(official_fused, str(tmp_path / "official_fused.safetensors"))
    save_span(copy.deepcopy(model).fuse(), tmp_path / "ours_fused")
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        reference = model(x)
        for path in (tmp_path / "official_fused.safetensors", tmp_path / "ours_fused"):
            loaded = load_span(path)
            assert loaded.is_fused
            assert (loaded(x) - reference).abs().max().item() <= 1e-4


def test_mismatch_names_the_key(tmp_path):
    state = random_span(channels=4).state_dict()
    missing = {k: v for k, v in state.items() if k != "block_3.c2_r.conv.1.bias"}
    torch.save({"params": missing}, tmp_path / "missing.pth")
    with pytest.raises(CompressError, match=r"missing key block_3\.c2_r\.conv\.1\.bias"):
        load_span(tmp_path / "missing.pth")

    wrong = dict(state, **{"conv_cat.weight": torch.zeros(4, 8, 1, 1)})
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CompressError, match=r"conv_cat\.weight has shape \(4, 8, 1, 1\)"):
        load_span(tmp_path / "wrong.pth")

    extra = dict(state, **{"block_7.c1_r.sk.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.pth")
    with pytest.raises(CompressError, match=r"unexpected key block_7\.c1_r\.sk\.weight"):
        load_span(tmp_path / "extra.pth")


def test_bad_checkpoints_raise_compress_error(tmp_path):
    (tmp_path / "corrupt.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 20)
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other.pth")
    for name, message in [("corrupt.pth", "cannot load"), ("corrupt.safetensors", "cannot read"),
                          ("other.pth", "not a SPAN checkpoint"), ("absent.pth", "not found")]:
        with pytest.raises(CompressError, match=message):
            load_span(tmp_path / name)
    with pytest.raises(CompressError, match="unknown model"):
        load_span("span-x9")


def test_invalid_scale_rejected():
    with pytest.raises(CompressError, match="scale must be one of 2, 3, 4"):
        SPAN(channels=8, scale=5)
