"""`compress eval` / `compress sample` on export folders: the samples come from the runtime that ships.

The trained toy's samples through ONNX Runtime (fp32) must match torch's; through OpenVINO (bf16 compute where the
CPU has it) they must stay close; an export with one corrupted weight must score clearly worse, so the metric
catches what a validation on one random batch might not.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from compress.cli import main
from compress.evaluate import evaluate
from compress.models.registry import assets_dir
from exporters import export
from helpers import corrupt_onnx_export, make_tiny_unet, run_console

pytestmark = pytest.mark.skipif(not (assets_dir("toy") / "unet").is_dir(), reason="trained toy not shipped")
SETTINGS = {"steps": 8, "samples": 60, "seeds": [0], "guidance": 1.0}  # 480 one-sample runtime calls per eval


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    return {fmt: Path(export("toy", fmt, root / fmt).directory) for fmt in ("onnx", "openvino")}


@pytest.fixture(scope="module")
def torch_result():
    return evaluate("toy", **SETTINGS)


def test_an_export_keeps_what_sampling_needs(exports):
    for folder in exports.values():
        assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["num_train_timesteps"] == 1000
        assert (folder / "conditioner" / "model.safetensors").is_file()
        report = json.loads((folder / "export_report.json").read_text())
        assert "scheduler/scheduler_config.json" in report["files"] and "conditioner/config.json" in report["files"]


def test_onnx_fp32_samples_as_torch_does(exports, torch_result):
    result = evaluate(exports["onnx"], **SETTINGS)
    assert result.runtime.startswith("onnxruntime ") and result.precision == "fp32"
    assert result.fd == pytest.approx(torch_result.fd, rel=1e-3)
    assert result.class_accuracy == torch_result.class_accuracy


def test_openvino_samples_close_to_torch_and_says_its_compute_precision(exports, torch_result):
    result = evaluate(exports["openvino"], **SETTINGS)
    assert result.runtime.startswith("openvino ") and result.precision.startswith("fp32 weights, ")
    assert result.precision.split(", ")[1] in ("f32 compute", "bf16 compute", "f16 compute")
    assert result.fd == pytest.approx(torch_result.fd, rel=0.05)


def test_a_corrupted_weight_scores_clearly_worse(exports, torch_result, tmp_path):
    corrupt_onnx_export(exports["onnx"], tmp_path / "bad")
    broken = evaluate(tmp_path / "bad", **SETTINGS)
    assert broken.fd > 2 * torch_result.fd and broken.class_accuracy < torch_result.class_accuracy


def test_sample_writes_a_grid_from_an_export(exports, tmp_path):
    result = CliRunner().invoke(main, ["sample", "--model", str(exports["onnx"]), "--steps", "2",
                                       "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grid.png").read_bytes().startswith(b"\x89PNG")


def _assert_one_error(code: int, err: str, message: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_an_export_of_another_family_is_one_error_line(tmp_path, monkeypatch, capsys):
    export(make_tiny_unet(), "onnx", tmp_path / "sd")
    capsys.readouterr()  # the export's own progress lines
    code, _, err = run_console(monkeypatch, capsys, "eval", "--model", tmp_path / "sd", "--json", tmp_path / "e.json")
    _assert_one_error(code, err, "not of a toy-family model")
    assert not (tmp_path / "e.json").exists()


def test_an_export_whose_runtime_is_missing_is_one_error_line(exports, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now fails as if not installed
    code, _, err = run_console(monkeypatch, capsys, "eval", "--model", exports["onnx"], "--json", tmp_path / "e.json")
    _assert_one_error(code, err, "pip install 'compress[onnx]'")
    assert not (tmp_path / "e.json").exists()


def test_an_export_without_a_scheduler_is_one_error_line(exports, tmp_path, monkeypatch, capsys):
    import shutil

    shutil.copytree(exports["onnx"], tmp_path / "old")
    shutil.rmtree(tmp_path / "old" / "scheduler")
    code, _, err = run_console(monkeypatch, capsys, "eval", "--model", tmp_path / "old")
    _assert_one_error(code, err, "export the model again")
