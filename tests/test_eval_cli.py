"""`compress eval` and `compress.evaluate.evaluate`: result keys, files written, one-line errors."""

import json
import statistics

import pytest
from click.testing import CliRunner

from compress.cli import main
from compress.evaluate import EvalResult, evaluate
from compress.models.registry import assets_dir
from compress.models.resolve import load_diffusion_model
from helpers import run_console

KEYS = {"model", "class_accuracy", "class_accuracy_std", "fd", "fd_std", "kid", "kid_std", "fd_real", "kid_real",
        "samples", "steps", "sampler", "guidance", "seeds", "per_seed", "runtime", "precision", "seconds",
        "sampling_seconds", "cache_interval", "cache_branch"}


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
    assert written["seeds"] == [0, 1, 2] and [run["seed"] for run in written["per_seed"]] == [0, 1, 2]
    assert written["runtime"] == "torch" and written["precision"] == "float32"
    for metric in ("class_accuracy", "fd", "kid"):  # the summary is the mean and sample std of the runs
        values = [run[metric] for run in written["per_seed"]]
        assert written[metric] == pytest.approx(statistics.fmean(values), abs=1e-4)
        assert written[f"{metric}_std"] == pytest.approx(statistics.stdev(values), abs=1e-4)
    assert 0.0 <= written["class_accuracy"] <= 1.0 and written["fd"] > written["fd_real"] > 0.0
    assert written["kid"] > written["kid_real"]
    assert len({run["fd"] for run in written["per_seed"]}) == 3  # the seeds really drew different samples
    assert (tmp_path / "eval.png").read_bytes().startswith(b"\x89PNG")
    assert "fd" in result.stdout and "+-" in result.stdout and "per seed" in result.stdout


def test_one_seed_has_no_spread_and_a_seed_repeats_its_samples(toy_dir):
    first = evaluate(toy_dir, steps=2, samples=12, seeds=[5])
    again = evaluate(toy_dir, steps=2, samples=12, seeds=[4, 5])
    assert first.fd_std == 0.0 and first.seeds == [5]
    assert again.per_seed[1]["fd"] == first.fd and again.per_seed[1]["kid"] == first.kid


@pytest.mark.parametrize("seeds,message", [("", "comma-separated list of integers"),
                                           ("0,a", "comma-separated list of integers"),
                                           ("1,,2", "comma-separated list of integers"),
                                           ("0,1,0", "repeats a value")])
def test_malformed_seeds_are_one_error_line_before_any_work(toy_dir, tmp_path, monkeypatch, capsys, seeds,
                                                            message):
    code, _, err = run_console(monkeypatch, capsys, "eval", "--model", toy_dir, "--seeds", seeds,
                               "--json", tmp_path / "eval.json")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert not (tmp_path / "eval.json").exists()


def test_python_api_takes_a_loaded_model_and_an_explicit_grid(toy_dir, tmp_path):
    result = evaluate(load_diffusion_model(toy_dir), steps=1, sampler="lcm", samples=10, guidance=1.0,
                      seeds=[0], grid_path=tmp_path / "grid.png")
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
    result = evaluate("toy", samples=100, seeds=[0])
    assert result.class_accuracy >= 0.9


def test_eval_does_not_replace_a_grid_or_json_the_user_did_not_allow(toy_dir, tmp_path, monkeypatch, capsys):
    """--json X.json puts its grid at X.png: an existing X.png (or X.json) is refused before any sampling."""
    (tmp_path / "eval.png").write_bytes(b"mine")
    code, _, err = run_console(monkeypatch, capsys, "eval", "--model", toy_dir, "--json", tmp_path / "eval.json")
    assert code == 2 and err.startswith("error: ") and "already exists" in err and len(err.splitlines()) == 1
    assert (tmp_path / "eval.png").read_bytes() == b"mine" and not (tmp_path / "eval.json").exists()
    result = run("--model", toy_dir, "--samples", 4, "--steps", 1, "--seeds", "0", "--json", tmp_path / "eval.json",
                 "--overwrite")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "eval.png").read_bytes().startswith(b"\x89PNG")


def test_sample_refuses_an_existing_file_and_writes_the_format_its_extension_names(toy_dir, tmp_path, monkeypatch,
                                                                                   capsys):
    (tmp_path / "s.png").write_bytes(b"mine")
    for out, message in ((tmp_path / "s.png", "already exists"), (tmp_path / "s.gif", "unknown image extension"),
                         (tmp_path, "is a folder")):
        code, _, err = run_console(monkeypatch, capsys, "sample", "--model", toy_dir, "--steps", 1, "--out", out)
        assert code == 2 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    assert (tmp_path / "s.png").read_bytes() == b"mine" and not (tmp_path / "s.gif").exists()
    code, _, _ = run_console(monkeypatch, capsys, "sample", "--model", toy_dir, "--steps", 1, "--out",
                             tmp_path / "s.jpg")
    assert code == 0 and (tmp_path / "s.jpg").read_bytes().startswith(b"\xff\xd8")  # JPEG, not PNG bytes
    code, _, _ = run_console(monkeypatch, capsys, "sample", "--model", toy_dir, "--steps", 1, "--out",
                             tmp_path / "s.png", "--overwrite")
    assert code == 0 and (tmp_path / "s.png").read_bytes().startswith(b"\x89PNG")
