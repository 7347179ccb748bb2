"""`compress eval` and `compress.evaluate.evaluate`: result keys, files written, one-line errors."""

import json

import pytest
from click.testing import CliRunner

from compress.cli import main
from compress.evaluate import EvalResult, evaluate
from compress.models.registry import assets_dir
from compress.models.resolve import load_diffusion_model

KEYS = {"model", "class_accuracy", "fd", "fd_real", "samples", "steps", "sampler", "guidance", "seed", "seconds",
        "sampling_seconds"}


def run(*args: str):
    return CliRunner().invoke(main, ["eval", *map(str, args)])


def assert_user_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    """A random-init toy written the way the toolkit writes models: unet/ + conditioner/."""
    folder = tmp_path_factory.mktemp("toy")
    model = load_diffusion_model("toy", init="random")
    model.unet.save_pretrained(folder / "unet")
    model.conditioner.save(folder / "conditioner")
    return folder


def test_tiny_run_writes_json_and_grid_beside_it(toy_dir, tmp_path):
    result = run("--model", toy_dir, "--samples", 20, "--steps", 2, "--json", tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "eval.json").read_text())
    assert set(written) == KEYS
    assert written["samples"] == 20 and written["steps"] == 2 and written["sampler"] == "ddim"
    assert 0.0 <= written["class_accuracy"] <= 1.0 and written["fd"] > written["fd_real"] > 0.0
    assert (tmp_path / "eval.png").read_bytes().startswith(b"\x89PNG")
    assert "class_accuracy" in result.stdout


def test_python_api_takes_a_loaded_model_and_an_explicit_grid(toy_dir, tmp_path):
    result = evaluate(load_diffusion_model(toy_dir), steps=1, sampler="lcm", samples=10, guidance=1.0,
                      grid_path=tmp_path / "grid.png")
    assert isinstance(result, EvalResult) and result.sampler == "lcm" and result.guidance == 1.0
    assert EvalResult.from_dict(result.to_dict()) == result
    assert (tmp_path / "grid.png").is_file()


def test_unknown_model_is_one_error_line():
    assert_user_error(run("--model", "no-such-model"), "unknown model")


def test_non_toy_models_are_refused(tmp_path):
    assert_user_error(run("--model", "sd14"), "eval needs a toy-family model")
    load_diffusion_model("toy", init="random").unet.save_pretrained(tmp_path / "unet")  # no conditioner/
    assert_user_error(run("--model", tmp_path, "--json", tmp_path / "eval.json"), "eval needs a toy-family model")
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.slow
@pytest.mark.skipif(not (assets_dir("toy") / "unet").is_dir(), reason="trained toy not shipped yet")
def test_trained_toy_draws_the_digits_it_is_asked_for():
    result = evaluate("toy", samples=100)
    assert result.class_accuracy >= 0.9
