"""SPAN architecture: the official function (against an independent reference), exact fusion, published size,
and reading and writing the official layout."""

import copy
import json

import pytest
import span_reference
import torch
from safetensors.torch import load_file, save_file

from compress.errors import CompressError
from compress.sr import SPAN, export_official, load_span, save_span, span_cost, span_from_state_dict


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


@pytest.mark.parametrize("channels, scale, size", [(16, 2, (13, 17)), (8, 3, (7, 5)), (12, 4, (9, 11))])
def test_loaded_official_checkpoint_computes_the_independent_reference(tmp_path, channels, scale, size):
    """DESIGN.md section 6, stated in span_reference.py without our module, on random official-layout weights."""
    state = span_reference.random_official_state(channels, scale, seed=channels)
    torch.save({"params": state}, tmp_path / "official.pth")
    model = load_span(tmp_path / "official.pth").double()
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        ours, reference = model(x), span_reference.forward(state, x, scale)
        fused = copy.deepcopy(model).fuse()(x)
    assert (ours - reference).abs().max().item() < 1e-6
    assert (fused - reference).abs().max().item() < 1e-6


def test_conv_cat_sees_silu_of_the_first_conv_which_changes_the_output():
    """The function before the fix fed the raw first-conv output; the difference is far above rounding."""
    state = span_reference.random_official_state(16, 2, seed=3)
    model = span_from_state_dict(state).double()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        ours = model(x)
    raw = span_reference.forward(state, x, 2, raw_out1=True)
    assert (ours - raw).abs().max().item() > 1e-3
    assert (ours - span_reference.forward(state, x, 2)).abs().max().item() < 1e-6


@pytest.mark.parametrize("fused", [False, True])
def test_official_export_round_trips_with_the_official_keys(tmp_path, fused):
    model = random_span(channels=6, scale=3)
    if fused:
        model.fuse()
    export_official(model, tmp_path / "out.pth")
    model.double()  # compare in float64: the file holds the model's float32 values exactly
    state = torch.load(tmp_path / "out.pth", weights_only=True)["params"]
    expected = span_reference.official_shapes(6, 3)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    double = {k: v.double() for k, v in state.items()}
    for name in span_reference.REPARAM:
        weight, bias = span_reference.fuse(double, name)
        torch.testing.assert_close(double[f"{name}.eval_conv.weight"], weight, atol=1e-6, rtol=0)
        torch.testing.assert_close(double[f"{name}.eval_conv.bias"], bias, atol=1e-6, rtol=0)
    x = torch.rand(1, 3, 11, 14, dtype=torch.float64)
    with torch.no_grad():
        expected_out = model(x)
        assert (load_span(tmp_path / "out.pth").double()(x) - expected_out).abs().max().item() < 1e-6
        assert (span_reference.forward(double, x, 3) - expected_out).abs().max().item() < 1e-6


def test_our_folder_holds_the_official_layout_and_round_trips(tmp_path):
    model = random_span(channels=6, scale=2)
    save_span(model, tmp_path / "ours")
    state = load_file(str(tmp_path / "ours" / "model.safetensors"))
    assert set(state) == set(span_reference.official_shapes(6, 2))  # spandrel finds its eval_conv keys
    x = torch.rand(1, 3, 10, 9)
    with torch.no_grad():
        assert torch.equal(load_span(tmp_path / "ours")(x), model(x))


def test_fused_checkpoints_load(tmp_path):
    state = span_reference.random_official_state(5, 4)
    official_fused = {k: v for k, v in state.items() if k.startswith(("conv_cat.", "upsampler.")) or ".eval_conv." in k}
    save_file(official_fused, str(tmp_path / "official_fused.safetensors"))
    save_span(span_from_state_dict(state).fuse(), tmp_path / "ours_fused")
    x = torch.rand(1, 3, 9, 7)
    reference = span_reference.forward(state, x.double(), 4)
    with torch.no_grad():
        for path in (tmp_path / "official_fused.safetensors", tmp_path / "ours_fused"):
            loaded = load_span(path)
            assert loaded.is_fused
            # float32 convolutions on random weights whose outputs reach ~1e2: compare relative to that size
            assert (loaded(x).double() - reference).abs().max().item() <= 2e-5 * reference.abs().max().item()


def test_models_of_the_earlier_network_are_refused(tmp_path):
    """Written before the fix: no `function` marker in config.json, no eval_conv keys in the weights."""
    model = random_span(channels=4)
    folder = tmp_path / "old"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"architecture": "span", "channels": 4, "scale": 2,
                                                    "fused": False}))
    for path in (folder, folder / "model.safetensors"):
        with pytest.raises(CompressError, match="earlier compress .* retrain it"):
            load_span(path)


def test_mismatch_names_the_key(tmp_path):
    state = span_reference.random_official_state(4, 2)
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
