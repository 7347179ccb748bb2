"""`compress sr` commands: info, upscale (tiled, batch), eval, and one-line errors that leave nothing behind."""

import json

import numpy as np
import pytest
import span_reference
import torch
from click.testing import CliRunner
from PIL import Image

from compress.cli import main
from compress.sr import SPAN, load_span, save_span, upscale_tensor
from compress.sr.files import read_image


def run(*args: str):
    return CliRunner().invoke(main, ["sr", *map(str, args)])


def assert_user_error(result) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr


def write_png(path, height: int, width: int, seed: int = 0) -> None:
    """A smooth random picture (noise upscaled), so bicubic and SR scores are meaningful."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8))
    small.resize((width, height), Image.BICUBIC).save(path)


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    save_span(SPAN(channels=4, scale=2).eval(), tmp_path / "model")
    return tmp_path / "model"


def test_info_prints_published_size():
    result = run("info", "--channels", 48, "--scale", 4)
    assert result.exit_code == 0, result.output
    assert "426,288" in result.output and "27.87 G" in result.output and "1x3x256x256" in result.output


def test_info_from_model(model_dir):
    result = run("info", "--model", model_dir)
    assert result.exit_code == 0, result.output
    assert "C=4 x2" in result.output


def test_upscale_file_and_folder(tmp_path, model_dir):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_png(inputs / "a.png", 20, 15)
    Image.open(inputs / "a.png").convert("L").save(inputs / "b.jpg")

    result = run("upscale", "--model", model_dir, inputs / "a.png", tmp_path / "a_x2.png")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "a_x2.png") as image:
        assert image.size == (30, 40) and image.mode == "RGB"
        upscaled = np.asarray(image)
    expected = upscale_tensor(load_span(model_dir).fuse(), read_image(inputs / "a.png")).permute(1, 2, 0).numpy()
    assert np.array_equal(upscaled, expected)

    result = run("upscale", "--model", model_dir, "--scale", 2, inputs, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]


def test_tiled_equals_untiled():
    torch.manual_seed(1)
    model = SPAN(channels=6, scale=3).eval().fuse()
    image = torch.rand(3, 37, 29)
    whole = upscale_tensor(model, image, tile=1000)
    tiled = upscale_tensor(model, image, tile=8, overlap=24)
    assert whole.shape == tiled.shape == (3, 111, 87)
    diff = (whole.int() - tiled.int()).abs()
    assert diff.max() <= 1 and (diff == 0).float().mean() > 0.99


def test_eval_reports_model_and_bicubic(tmp_path, model_dir):
    data = tmp_path / "data"
    data.mkdir()
    write_png(data / "x.png", 41, 50, seed=1)
    write_png(data / "y.png", 32, 32, seed=2)
    result = run("eval", "--model", model_dir, "--data", data, "--scale", 2, "--json", tmp_path / "scores.json")
    assert result.exit_code == 0, result.output
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["scale"] == 2 and [image["name"] for image in scores["images"]] == ["x.png", "y.png"]
    assert 25 < scores["bicubic_psnr"] < 60 and 0 < scores["bicubic_ssim"] <= 1
    assert scores["psnr"] == pytest.approx(np.mean([image["psnr"] for image in scores["images"]]))
    assert "mean" in result.output and "x.png" in result.output


def test_bad_inputs_give_one_error_line_and_no_output(tmp_path, model_dir):
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    write_png(good, 16, 16)
    bad.write_text("this is not an image")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02garbage")
    out = tmp_path / "out.png"

    assert_user_error(run("upscale", "--model", model_dir, bad, out))
    assert_user_error(run("upscale", "--model", model_dir, "--scale", 4, good, out))
    assert_user_error(run("upscale", "--model", corrupt, good, out))
    assert_user_error(run("eval", "--model", model_dir, "--data", tmp_path, "--scale", 3))
    assert_user_error(run("info", "--size", 0))
    assert not out.exists()

    folder = tmp_path / "batch"
    folder.mkdir()
    write_png(folder / "a.png", 16, 16)
    (folder / "z.png").write_text("truncated")
    assert_user_error(run("upscale", "--model", model_dir, folder, tmp_path / "batch_out"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png", "batch", "corrupt.pth", "good.png", "model"]


def test_existing_output_needs_overwrite(tmp_path, model_dir):
    image, out = tmp_path / "in.png", tmp_path / "out.png"
    write_png(image, 16, 16)
    out.write_text("keep me")
    assert_user_error(run("upscale", "--model", model_dir, image, out))
    assert out.read_text() == "keep me"
    assert run("upscale", "--model", model_dir, "--overwrite", image, out).exit_code == 0
    assert Image.open(out).size == (32, 32)


def _visible_official_state(channels: int, scale: int, x: torch.Tensor) -> dict:
    """Random official-layout weights whose output on `x` lies mostly inside [0, 1], so 8-bit output says
    something (the upsampler is an affine map of the features: rescale it and centre it on 0.5)."""
    state = span_reference.random_official_state(channels, scale, seed=channels + scale)
    state["upsampler.0.bias"] = torch.zeros_like(state["upsampler.0.bias"])
    spread = span_reference.forward(state, x.double(), scale).std().item()
    state["upsampler.0.weight"] = (state["upsampler.0.weight"] * (0.15 / spread)).contiguous()
    state["upsampler.0.bias"] = torch.full_like(state["upsampler.0.bias"], 0.5)
    return state


@pytest.mark.parametrize("channels, scale", [(16, 2), (48, 4)])
@pytest.mark.parametrize("wrapped", [False, True])
def test_upscale_of_an_official_checkpoint_matches_the_reference_in_8_bits(tmp_path, channels, scale, wrapped):
    write_png(tmp_path / "in.png", 21, 18, seed=scale)
    x = read_image(tmp_path / "in.png").unsqueeze(0)
    state = _visible_official_state(channels, scale, x)
    torch.save({"params": state} if wrapped else state, tmp_path / "official.pth")
    result = run("upscale", "--model", tmp_path / "official.pth", tmp_path / "in.png", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    ours = np.asarray(Image.open(tmp_path / "out.png"), dtype=np.int16)
    reference = span_reference.forward(state, x.double(), scale)[0].clamp(0, 1).mul(255).round()
    reference = reference.permute(1, 2, 0).numpy().astype(np.int16)
    assert (reference > 0).mean() > 0.05 and (reference < 255).mean() > 0.05  # not all clipped
    assert np.abs(ours - reference).max() <= 1


def test_export_official_writes_what_loads_back(tmp_path, model_dir):
    result = run("export-official", "--model", model_dir, tmp_path / "span.pth")
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "span.pth", weights_only=True)
    assert set(state) == {"params"} and "conv_1.eval_conv.weight" in state["params"]
    x = torch.rand(1, 3, 8, 9)
    with torch.no_grad():
        assert torch.equal(load_span(tmp_path / "span.pth")(x), load_span(model_dir)(x))
    again = run("export-official", "--model", model_dir, tmp_path / "span.pth")
    assert_user_error(again)
    assert_user_error(run("export-official", "--model", model_dir, tmp_path / "span.onnx"))
