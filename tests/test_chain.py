"""`compress chain`: recipes checked whole, stages resumed by hash, and the trade-off report."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from compress.chain.recipe import _schemas, check_recipe, options_set, read_recipe
from compress.chain.report import fronts
from compress.io import load_safetensors

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "calib_data" / "recipes").glob("*.toml"))

PRUNE = """model = "toy"
[prune]
ratio = 0.3
budget = "params"
[prune.score]
samples = 4
steps = 2
"""
# prune + a short recovery that checkpoints every 2 steps: long enough to be killed between checkpoints
RESUMABLE = PRUNE + """[recover]
steps = 40
batch_size = 4
checkpoint_every = 2
"""

# every stage but recover, as small as each allows
WHOLE = PRUNE + """[distill]
steps = 2
batch_size = 4
[quantize]
format = "openvino"
samples = 4
task_check = false
[export]
format = ["onnx"]
[bench]
backend = ["ov-cpu"]
rounds = 2
pairs = 1
calls = 2
warmup = 0
[eval]
samples = 10
seeds = [0, 1]
steps = 2
student_steps = [1, 2]
cache_interval = [2]
"""


def _chain(recipe: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "compress", "chain", str(recipe), "--out", str(out), "--no-progress",
                           *extra], capture_output=True, text=True, timeout=900)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {f"{p.name}:{k}": v for p in sorted(folder.rglob("*.safetensors")) for k, v in load_safetensors(p).items()}


@pytest.mark.parametrize("recipe", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_recipes_are_valid(recipe, tmp_path):
    parsed = read_recipe(recipe)
    check_recipe(parsed, tmp_path / "run")
    assert parsed.stages


def test_recipe_options_are_the_library_functions_arguments():
    """A recipe key must be a keyword of the function its stage calls, or a field of that function's settings."""
    from compress.prune import prune
    from exporters.api import export
    from exporters.quantize import quantize

    schemas = _schemas()
    for stage, function in (("prune", prune), ("quantize", quantize), ("export", export)):
        parameters = inspect.signature(function).parameters
        assert set(schemas[stage]) <= set(parameters), (stage, set(schemas[stage]) - set(parameters))
        for key, (kind, default) in schemas[stage].items():  # and the recipe's default is the function's
            own = parameters[key].default
            if not isinstance(kind, type) and own is not inspect.Parameter.empty and kind != "list[str]":
                assert default == (list(own) if isinstance(own, tuple) else own), (stage, key, default, own)


def test_a_span_checkpoint_file_is_a_span_model(tmp_path):
    recipe = tmp_path / "span.toml"
    recipe.write_text(f'model = "{ROOT / "compress" / "assets" / "span-x4" / "model.safetensors"}"\n[eval]\n')
    assert read_recipe(recipe).family == "span"


def test_options_set_lists_what_differs_from_the_defaults(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(RESUMABLE)
    parsed = read_recipe(recipe)
    assert options_set("prune", parsed.stages["prune"]) == {"ratio": 0.3, "budget": "params", "score.samples": 4,
                                                            "score.steps": 2}
    assert parsed.settings("recover").checkpoint_every == 2


def test_pareto_front_and_selection():
    def row(key, fd, ms):
        return {"key": key, "point": key.split("-")[0], "cache_interval": None, "quality": "fd", "fd": fd,
                "latency": {"ov-cpu": {"per_image_ms": ms}}}

    rows = [row("teacher-25", 10.0, 100.0), row("pruned-25", 11.0, 70.0), row("slow-25", 12.0, 90.0),
            row("student-1", 30.0, 4.0), row("student-2", 12.4, 8.0), row("student-4", 12.6, 16.0)]

    class Recipe:
        stages = {"eval": {"fd_ratio_limit": 1.25, "psnr_drop_limit": 0.1}}

    result = fronts(rows, Recipe())["ov-cpu"]
    assert result["front"] == ["student-1", "student-2", "pruned-25", "teacher-25"]  # faster and better
    assert result["selected"] == "student-2"  # the fastest with fd <= 12.5


def test_a_chain_killed_during_recovery_resumes_there_and_ends_with_the_uninterrupted_weights(tmp_path):
    from test_kill_resume import _kill_when, _start

    recipe = tmp_path / "resumable.toml"
    recipe.write_text(RESUMABLE)
    whole = _chain(recipe, tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    run, log = tmp_path / "run", tmp_path / "killed.log"
    process = _start(["chain", str(recipe), "--out", str(run), "--no-progress"], log)
    checkpoint = run / "02-recover" / "model" / "checkpoint.pt"
    _kill_when(process, checkpoint.is_file, log)
    assert json.loads((run / "02-recover" / "chain_stage.json").read_text())["state"] == "running"
    dry = _chain(recipe, run, "--dry-run")
    assert "01-prune: prune (done earlier" in dry.stdout and "02-recover: recover (stopped earlier" in dry.stdout
    resumed = _chain(recipe, run)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "01-prune: done earlier with the same inputs and options, skipped" in resumed.stdout
    assert "02-recover: stopped earlier; continuing it" in resumed.stdout
    expected, got = _weights(tmp_path / "whole" / "02-recover" / "model" / "unet"), \
        _weights(run / "02-recover" / "model" / "unet")
    assert expected.keys() == got.keys() and expected
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6)


def test_whole_chain_report_rerun_and_a_changed_option(tmp_path):
    recipe = tmp_path / "whole.toml"
    recipe.write_text(WHOLE)
    out = tmp_path / "run"
    first = _chain(recipe, out)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads((out / "chain_report.json").read_text())
    keys = {row["key"] for row in report["rows"]}
    assert keys == {"teacher-2", "teacher-2-cache2", "pruned-2", "distilled-1", "distilled-2", "quantized-1",
                    "quantized-2"}
    by_key = {row["key"]: row for row in report["rows"]}
    assert by_key["teacher-2"]["calls"] == 4 and by_key["distilled-2"]["calls"] == 2  # guidance doubles DDIM calls
    assert "ov-cpu" in by_key["quantized-1"]["latency"] and "ov-cpu" not in by_key["teacher-2-cache2"]["latency"]
    assert "runtime" in by_key["quantized-1"] and "openvino" in by_key["quantized-1"]["runtime"]
    front = report["fronts"]["ov-cpu"]
    assert front["front"] and front["front"][0] in keys
    assert (out / "chain_tradeoff.png").stat().st_size > 10_000
    assert "Pareto" in (out / "chain_report.md").read_text()
    assert (out / "05-export" / "onnx" / "export_report.json").is_file()

    again = _chain(recipe, out)
    skipped = "with the same inputs and options, skipped"
    assert again.returncode == 0 and again.stdout.count(skipped) == 6, again.stdout
    recipe.write_text(WHOLE.replace("samples = 10", "samples = 12"))
    changed = _chain(recipe, out)
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert changed.stdout.count(skipped) == 5 and "07-eval: its inputs or options changed" in changed.stdout
    assert json.loads((out / "07-eval" / "teacher-2.json").read_text())["samples"] == 12


def test_a_latency_only_chain_on_an_sd_unet_folder(tiny_unet_dir, tmp_path):
    """An SD-family folder: prune, export and bench, no eval; the report still says what pruning bought."""
    recipe = tmp_path / "sd.toml"
    recipe.write_text(f'model = "{tiny_unet_dir}"\n' + PRUNE.split("\n", 1)[1].replace("samples = 4", "samples = 2")
                      + '[export]\nformat = ["onnx"]\n[bench]\nbackend = ["ort-cpu"]\nrounds = 2\npairs = 1\n'
                      'calls = 2\nwarmup = 0\n')
    out = tmp_path / "run"
    result = _chain(recipe, out)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "chain_report.json").read_text())
    assert report["family"] == "sd" and report["rows"] == []
    assert list(report["bench"]["ort-cpu"]["points"]) == ["teacher", "pruned"]
    assert "Per-call latency on ort-cpu" in (out / "chain_report.md").read_text()
    assert (out / "05-export" / "onnx" / "export_report.json").is_file()


def test_a_random_init_chain_loads_the_folders_it_writes_as_they_are(tmp_path):
    """`init = "random"` builds the recipe's model; the pruned folder after it holds those weights."""
    recipe = tmp_path / "random.toml"
    recipe.write_text('init = "random"\n' + PRUNE + '[export]\nformat = ["onnx"]\n')
    result = _chain(recipe, tmp_path / "run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "05-export" / "onnx" / "export_report.json").is_file()
