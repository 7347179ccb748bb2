"""`compress prune` end to end on a tiny SD-topology folder: outputs, reproducibility, bad input."""

import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from compress import load_unet
from compress.cli import main
from compress.prune import find_units, removed_units
from helpers import make_tiny_unet, tiny_inputs

FAST = ["--calib-samples", "4", "--calib-steps", "2", "--no-progress"]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_prune_writes_a_stock_diffusers_unet_and_reports(tiny_unet_dir, tmp_path):
    out = tmp_path / "out"
    result = run("prune", "--model", tiny_unet_dir, "--ratio", "0.3", "--budget", "params", "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("budget: params (no latency model)")
    report = json.loads((out / "prune_report.json").read_text())
    for key in ("model", "ratio_requested", "budget", "granularity", "params_before", "params_after", "macs_before",
                "macs_after", "removed", "scores", "seed"):
        assert key in report
    assert 0.3 <= 1 - report["params_after"] / report["params_before"] < 0.4
    assert {"unit", "kind", "params", "macs", "score"} <= set(report["scores"][0])
    assert (out / "prune_report.md").read_text().startswith("# Prune report")
    assert (out / "importance.png").read_bytes()[:4] == b"\x89PNG"
    # A process that never imports compress loads and runs it with stock diffusers.
    code = (
        "import sys, torch; from diffusers import UNet2DConditionModel;"
        f"u = UNet2DConditionModel.from_pretrained({str(out / 'unet')!r});"
        "o = u(torch.randn(1, 4, 16, 16), 10, torch.randn(1, 77, 16)).sample;"
        "assert o.shape == (1, 4, 16, 16) and 'compress' not in sys.modules;"
        "print(sum(p.numel() for p in u.parameters()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) == report["params_after"]


def test_same_seed_same_removal_and_scores(tiny_unet_dir, tmp_path):
    reports = []
    for name in ("a", "b"):
        assert run("prune", "--model", tiny_unet_dir, "--ratio", "0.2", "--budget", "macs", "--seed", "7",
                   "--out", tmp_path / name, *FAST).exit_code == 0
        reports.append(json.loads((tmp_path / name / "prune_report.json").read_text()))
    assert reports[0]["removed"] == reports[1]["removed"]
    assert [s["score"] for s in reports[0]["scores"]] == pytest.approx([s["score"] for s in reports[1]["scores"]],
                                                                       abs=1e-6)


def test_block_granularity_output_reloads_with_its_plan(tiny_unet_dir, tmp_path):
    out = tmp_path / "block"
    result = run("prune", "--model", tiny_unet_dir, "--ratio", "0.15", "--granularity", "block", "--budget", "params",
                 "--out", out, *FAST)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "prune_report.json").read_text())
    pruned = load_unet(out)
    assert sum(p.numel() for p in pruned.parameters()) == report["params_after"]
    original = make_tiny_unet()
    inputs = tiny_inputs()
    with torch.no_grad(), removed_units(original, find_units(original, report["removed"], "block")):
        expected = original(*inputs).sample
    with torch.no_grad():
        torch.testing.assert_close(pruned(*inputs).sample, expected, rtol=0, atol=0)


def test_preset_on_sd_topology(tiny_unet_dir, tmp_path):
    out = tmp_path / "tiny-bk"
    assert run("prune", "--model", tiny_unet_dir, "--preset", "bk-tiny", "--budget", "params", "--out", out,
               "--no-progress").exit_code == 0
    report = json.loads((out / "prune_report.json").read_text())
    assert report["removed"] == ["layer.0", "layer.1", "layer.2", "mid", "stage.3"] and report["scores"] == []
    assert load_unet(out).config.mid_block_type is None


def _corrupt_folder(tmp_path):
    folder = tmp_path / "corrupt"
    make_tiny_unet().save_pretrained(folder)
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    return folder


@pytest.mark.parametrize("args,message", [
    (["--model", "toy", "--ratio", "0"], "--ratio must be strictly between 0 and 1"),
    (["--model", "toy", "--ratio", "1.5"], "--ratio must be strictly between 0 and 1"),
    (["--model", "toy", "--ratio", "0.3", "--latency-margin", "-0.1"], "--latency-margin must be in [0, 1)"),
    (["--model", "no-such-model", "--ratio", "0.3"], "unknown model"),
    (["--model", "sd14", "--weights", "/no/such/folder", "--ratio", "0.3"], "--weights path not found"),
    (["--model", "CORRUPT", "--ratio", "0.3"], "cannot read safetensors file"),
    (["--model", "TINY", "--ratio", "0.95", "--budget", "params"], "cannot be reached"),  # no table to time
    (["--model", "sd14", "--ratio", "0.3"], "offline"),
])
def test_bad_input_gives_one_error_line_exit_2_and_no_output(args, message, tmp_path, tiny_unet_dir):
    args = [str(_corrupt_folder(tmp_path)) if a == "CORRUPT" else str(tiny_unet_dir) if a == "TINY" else a
            for a in args]
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "compress", "prune", *args, "--out", str(out), *FAST],
                          capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]


def test_zero_calibration_samples_is_an_error_not_the_default(tmp_path):
    out = tmp_path / "out"
    result = run("prune", "--model", "toy", "--ratio", "0.3", "--budget", "params", "--calib-samples", "0",
                 "--out", str(out), "--no-progress")
    assert result.exit_code == 2 and "error: --calib-samples must be at least 2" in result.output, result.output
    assert not out.exists()


def test_models_lists_the_registry():
    result = run("models")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert {"sd14", "sd15", "sd21-base", "toy"} <= set(names)
