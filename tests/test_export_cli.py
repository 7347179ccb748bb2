"""`compress export` on bad input: one `error:` line, exit code 2, nothing written; missing runtimes name the extra."""

from __future__ import annotations

import sys

import pytest
import torch
from click.testing import CliRunner

from compress.cli import main
from compress.errors import CompressError
from compress.io import read_json
from compress.sr import SPAN, save_span
from exporters import ValidationError, export, validate_artifact
from exporters.coreml import unavailable_ops
from exporters.validate import REL_L2_LIMITS


@pytest.fixture(scope="module")
def span_folder(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("span") / "span"
    save_span(SPAN(channels=8, scale=2), folder)
    return folder


def _run(*args: str):
    return CliRunner().invoke(main, ["export", *args])


@pytest.mark.parametrize("args, message", [
    (["toy", "--init", "random", "--format", "tflite"], "Invalid value for '--format'"),
    (["/nowhere/model", "--format", "onnx"], "not found: /nowhere/model"),
    (["toy", "--init", "random", "--format", "onnx", "--height", "12"], "must be divisible by 8"),
    (["no-such-model", "--format", "onnx"], "unknown model"),
    (["toy", "--init", "random", "--format", "onnx", "--palettize", "6"], "--palettize applies to --format coreml"),
    (["toy", "--init", "random", "--format", "onnx", "--opset", "17"], "--opset must be >= 18"),
    (["toy", "--init", "random", "--format", "openvino", "--dynamic-batch"], "--dynamic-batch applies to --format"),
])
def test_bad_input_is_one_error_line_exit_2_no_output(tmp_path, args, message):
    out = tmp_path / "out"
    result = _run(*args, "--out", str(out))
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []  # not even the temporary sibling


def test_span_rejects_unet_options(span_folder, tmp_path):
    result = _run(str(span_folder), "--format", "coreml", "--chunk", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "error: --attention and --chunk apply to UNets only" in result.output
    result = _run(str(span_folder), "--init", "random", "--format", "onnx", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "--init random builds registered diffusion models only" in result.output


def test_existing_output_needs_overwrite(span_folder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = _run(str(span_folder), "--format", "onnx", "--out", str(out))
    assert result.exit_code == 2 and "already exists" in result.output


def test_cli_export_writes_report_and_says_so(span_folder, tmp_path):
    out = tmp_path / "out"
    result = _run(str(span_folder), "--format", "openvino", "--height", "16", "--width", "24", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "export_report.json").is_file() and (out / "span_x2.xml").is_file()
    assert "ok   rel_l2" in result.output and f"wrote {out}/span_x2.xml" in result.output


@pytest.mark.parametrize("format, module, extra", [
    ("onnx", "onnxruntime", "onnx"), ("openvino", "openvino", "openvino"), ("coreml", "coremltools", "coreml")])
def test_missing_runtime_names_the_extra(monkeypatch, span_folder, tmp_path, format, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(CompressError, match=rf"pip install 'compress\[{extra}\]'"):
        export(span_folder, format, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_op_set_check_knows_the_deployment_targets():
    assert unavailable_ops(["conv", "softmax"], "iOS15") == []
    assert unavailable_ops(["scaled_dot_product_attention"], "iOS17") == ["scaled_dot_product_attention"]
    assert unavailable_ops(["scaled_dot_product_attention"], "iOS18") == []
    assert unavailable_ops(["not_an_op"], "iOS18") == ["not_an_op"]


def test_failed_validation_exits_1_and_keeps_the_folder(monkeypatch, span_folder, tmp_path):
    monkeypatch.setitem(REL_L2_LIMITS, "fp32", 0.0)  # no export is that exact
    out = tmp_path / "out"
    result = _run(str(span_folder), "--format", "onnx", "--height", "16", "--width", "16", "--out", str(out))
    assert result.exit_code == 1
    assert "FAIL rel_l2" in result.output and "error: validation of" in result.output
    report = read_json(out / "export_report.json")
    assert report["validated"] is False and (out / "span_x2.onnx").is_file()


def test_unloadable_model_is_a_failed_check(span_folder, tmp_path):
    out = tmp_path / "out"
    export(span_folder, "onnx", out, height=16, width=16)
    (out / "span_x2.onnx").write_bytes(b"not a model")
    with pytest.raises(ValidationError) as failure:
        validate_artifact(out)
    assert [c["name"] for c in failure.value.artifact.checks if c["passed"] is False] == ["load"]
