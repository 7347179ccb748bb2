"""`compress quantize`: calibrated int8 graphs, checked by tensors and by the task through the runtime.

The references are outside this project: onnxruntime's own QDQ graph and OpenVINO's compiled int8 model compute
the outputs, the toy's fd comes from sampling through those runtimes, and SPAN's PSNR from the held-out images.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from pathlib import Path

import onnx
import pytest
import torch

from compress.models.registry import assets_dir
from compress.models.resolve import create
from exporters.calibration import unet_calibration
from exporters.quantize import quantize
from helpers import run_console

pytestmark = pytest.mark.skipif(not (assets_dir("toy") / "unet").is_dir(), reason="trained toy not shipped")
FAST = ("--samples", "16", "--no-task-check")  # enough rows to calibrate the toy; the task check has its own test


def _report(folder: Path) -> dict:
    return json.loads((folder / "export_report.json").read_text())


def test_calibration_takes_the_same_rows_from_every_sampling_step():
    toy = create("toy")
    calibration = unet_calibration(toy, (1, 16, 16), samples=50, seed=3, steps=25)
    per_step = Counter(float(row["timestep"]) for row in calibration.rows)
    assert len(per_step) == 25 and set(per_step.values()) == {2}
    assert calibration.info["timesteps"] == sorted(per_step, reverse=True)
    again = unet_calibration(toy, (1, 16, 16), samples=50, seed=3, steps=25)
    assert all(torch.equal(a[k], b[k]) for a, b in zip(calibration.rows, again.rows, strict=True) for k in a)
    other = unet_calibration(toy, (1, 16, 16), samples=50, seed=4, steps=25)
    assert not torch.equal(calibration.rows[0]["sample"], other.rows[0]["sample"])


def test_a_consistency_student_is_calibrated_at_its_own_steps_with_its_guidance_embedding():
    from compress.distill import with_guidance_embedding

    toy = create("toy")
    student = dataclasses.replace(toy, unet=with_guidance_embedding(toy.unet))
    calibration = unet_calibration(student, (1, 16, 16), samples=8, seed=0)
    assert calibration.info["steps"] == 4 and calibration.info["sampler"] == "lcm"
    assert len({float(row["timestep"]) for row in calibration.rows}) == 4
    width = student.unet.config.time_cond_proj_dim
    assert all(row["timestep_cond"].shape == (1, width) for row in calibration.rows)


def _same_bytes_and_timed(first: Path, second: Path, model_file: str, backend: str, monkeypatch, capsys) -> None:
    """Two quantizations with the same seed wrote the same graph, and `compress bench` times it like any export."""
    assert (first / model_file).read_bytes() == (second / model_file).read_bytes()
    report = _report(first)
    assert report["weights"] == "int8-w8a8" and report["validated"] is True
    fresh = [c for c in report["checks"] if c["name"].startswith("calibration") and c["name"].endswith("rel_l2")]
    assert len(fresh) == 4 and all(c["passed"] for c in fresh)
    code, out, err = run_console(monkeypatch, capsys, "bench", first, "--backend", backend, "--warmup", "1",
                                 "--runs", "3", "--json", first.parent / "bench.json")
    assert code == 0, err
    result = json.loads((first.parent / "bench.json").read_text())["results"][0]
    assert result["backend"] == backend and result["p50_ms"] > 0


def test_the_same_seed_gives_the_same_onnx_int8_graph(tmp_path, monkeypatch, capsys):
    for name in ("a", "b"):
        code, out, err = run_console(monkeypatch, capsys, "quantize", "toy", "--format", "onnx", "--out",
                                     tmp_path / name, *FAST)
        assert code == 0, err
    assert _report(tmp_path / "a")["quantization"]["calibration"]["samples"] == 16
    _same_bytes_and_timed(tmp_path / "a", tmp_path / "b", "unet/model.onnx", "ort-cpu", monkeypatch, capsys)


def test_onnx_w8a8_is_a_qdq_graph_and_keep_sensitive_leaves_the_worst_layers_in_float(tmp_path, monkeypatch,
                                                                                         capsys):
    code, out, err = run_console(monkeypatch, capsys, "quantize", "toy", "--format", "onnx", "--keep-sensitive", "2",
                                 "--out", tmp_path / "q", *FAST)
    assert code == 0, err
    quantization = _report(tmp_path / "q")["quantization"]
    kept = [k["layer"] for k in quantization["kept_layers"]]
    ranked = quantization["sensitivity"]
    assert kept == [s["layer"] for s in ranked[:2]] and len(ranked) > 20
    assert [s["rel_l2"] for s in ranked] == sorted((s["rel_l2"] for s in ranked), reverse=True)
    assert f"kept unquantized: {', '.join(kept)}" in err
    graph = onnx.load(str(tmp_path / "q" / "unet" / "model.onnx")).graph
    producers = {output: node.op_type for node in graph.node for output in node.output}
    weighted = [n for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    excluded = set(quantization["excluded_nodes"])
    assert excluded and excluded <= {n.name for n in weighted}
    for node in weighted:  # QDQ: a quantized node reads its weight through DequantizeLinear, a kept one in float
        weight = node.input[1]
        if producers.get(weight) not in (None, "DequantizeLinear"):
            continue  # a matmul of two activations (attention scores): no weight
        assert (producers.get(weight) == "DequantizeLinear") == (node.name not in excluded), node.name


def test_toy_openvino_w8a8_passes_its_task_check_samples_through_openvino_and_is_the_same_graph_again(
        tmp_path, monkeypatch, capsys):
    code, out, err = run_console(monkeypatch, capsys, "quantize", "toy", "--format", "openvino", "--samples", "32",
                                 "--task-samples", "50", "--task-seeds", "0,1", "--out", tmp_path / "q")
    assert code == 0, err
    code, out, err = run_console(monkeypatch, capsys, "quantize", "toy", "--format", "openvino", "--samples", "32",
                                 "--no-task-check", "--out", tmp_path / "again")  # the task check only reads
    assert code == 0, err
    _same_bytes_and_timed(tmp_path / "q", tmp_path / "again", "unet/openvino_model.bin", "ov-cpu", monkeypatch,
                          capsys)
    report = _report(tmp_path / "q")
    assert report["quantization"]["calibration"]["samples"] == 32
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["task_fd_ratio"]["passed"] and checks["task_fd_ratio"]["limit"] == 1.10
    assert checks["task_class_accuracy_drop"]["passed"]
    task = report["quantization"]["task"]
    assert task["fp32"]["runtime"].startswith("torch") and task["quantized"]["runtime"].startswith("openvino")
    assert task["quantized"]["precision"].startswith("int8-w8a8 weights")
    assert len(task["quantized"]["per_seed"]) == 2
    code, out, err = run_console(monkeypatch, capsys, "eval", "--model", tmp_path / "q", "--samples", "20",
                                 "--seeds", "0", "--steps", "4")
    assert code == 0, err
    assert "int8-w8a8 weights" in out


def test_span_w8a8_is_scored_by_psnr_and_a_missed_limit_exits_1_with_the_folder_kept(tmp_path, monkeypatch, capsys):
    # every layer in int8: SPAN's first features (image x 255) feed its last convolution too, and rounding them to
    # 8 bits per tensor costs dB; the task check must say so and exit 1, keeping the folder
    code, out, err = run_console(monkeypatch, capsys, "quantize", "span-x4", "--format", "onnx", "--out",
                                 tmp_path / "all")
    assert code == 1
    assert "task_psnr_drop_db" in err.splitlines()[-1] and err.splitlines()[-1].startswith("error: ")
    report = _report(tmp_path / "all")
    missed = next(c for c in report["checks"] if c["name"] == "task_psnr_drop_db")
    assert report["validated"] is False and missed["passed"] is False and missed["value"] > 1.0
    # the sensitivity pass finds those layers (the first, the two that read its output, the last) and keeping
    # them in float brings the drop within 0.1 dB
    code, out, err = run_console(monkeypatch, capsys, "quantize", "span-x4", "--format", "onnx", "--keep-sensitive",
                                 "4", "--out", tmp_path / "kept")
    assert code == 0, err
    report = _report(tmp_path / "kept")
    assert {k["layer"] for k in report["quantization"]["kept_layers"]} == {
        "span.conv_1", "span.block_1.c1_r", "span.conv_cat", "span.upsampler.0"}
    drop = next(c for c in report["checks"] if c["name"] == "task_psnr_drop_db")
    assert drop["passed"] and drop["limit"] == 0.1 and drop["value"] < missed["value"] / 10


def test_sr_eval_scores_a_quantized_span_export(tmp_path, monkeypatch, capsys):
    from compress.sr.files import split_images, write_image

    quantize("span-x4", "openvino", tmp_path / "q", samples=8, keep_sensitive=4, task_check=False)
    (tmp_path / "imgs").mkdir()
    name, image = next(iter(split_images("test").items()))
    write_image(image[:, :256, :256], tmp_path / "imgs" / f"{name}.png")
    code, out, err = run_console(monkeypatch, capsys, "sr", "eval", "--model", tmp_path / "q", "--data",
                                 tmp_path / "imgs", "--json", tmp_path / "e.json")
    assert code == 0, err
    assert json.loads((tmp_path / "e.json").read_text())["psnr"] > 20


def test_missing_runtime_and_too_many_kept_layers_are_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "nncf", None)  # as if the [openvino] extra were not installed
    code, out, err = run_console(monkeypatch, capsys, "quantize", "toy", "--format", "openvino", "--out",
                                 tmp_path / "q")
    assert code == 2 and err.strip() == ("error: openvino quantization needs nncf, which is not installed: "
                                         "pip install 'compress[openvino]'")
    code, out, err = run_console(monkeypatch, capsys, "quantize", "toy", "--format", "onnx", "--keep-sensitive",
                                 "10000", "--out", tmp_path / "q")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "quantizable layers" in err
    assert not (tmp_path / "q").exists()


def test_coreml_w8_stores_int8_weights_and_says_its_numerics_were_not_run_off_macos(tmp_path, monkeypatch, capsys):
    code, out, err = run_console(monkeypatch, capsys, "quantize", "toy", "--format", "coreml", "--mode", "w8",
                                 "--samples", "8", "--out", tmp_path / "q")
    assert code == 0, err
    report = _report(tmp_path / "q")
    checks = {c["name"]: c for c in report["checks"]}
    assert report["weights"] == "int8" and report["options"]["minimum_deployment_target"] == "iOS16"
    assert "constexpr_affine_dequantize" in checks["Unet.mlpackage:op_set"]["detail"]  # int8 weights, dequantized
    if sys.platform != "darwin":
        assert report["validated"] == "structural-only" and "numerics not checked" in err
        assert checks["task_metric"]["passed"] is None and "needs macOS" in checks["task_metric"]["detail"]


def test_openvino_hybrid_compresses_matmul_weights_and_quantizes_the_rest(tmp_path):
    """optimum-intel's SD recipe: weight-only (asymmetric u8, NNCF's default) for matmuls with a weight, full int8
    (FakeQuantize on activations, i8 weights) for convolutions; plain w8a8 has no weight-only u8 constants."""
    artifact = quantize("toy", "openvino", tmp_path / "q", mode="hybrid", samples=8, task_check=False)
    ir = (tmp_path / "q" / "unet" / "openvino_model.xml").read_text()
    assert artifact.weights == "int8-hybrid" and artifact.validated is True
    assert 'type="FakeQuantize"' in ir and 'element_type="u8"' in ir and 'element_type="i8"' in ir
