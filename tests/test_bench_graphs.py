"""Graph readers agree on FLOPs with each other and with the formula; roofline estimates and npu-check findings.

`tiny_onnx` / `tiny_openvino` build a small static model (conv 3->8, ReLU, flatten, matmul to 10) that the other
bench tests reuse; its FLOPs are known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from compress.bench import Target, estimate, npu_check, resolve_target
from compress.bench.estimate import PROFILES
from compress.bench.graphs import Graph, OpCost, einsum_flops
from compress.errors import CompressError

CONV_FLOPS = 2 * 8 * 16 * 16 * 3 * 3 * 3  # 2 x output elements x (Cin x kernel)
MATMUL_FLOPS = 2 * 10 * 8 * 16 * 16
TINY_FLOPS = CONV_FLOPS + MATMUL_FLOPS


def tiny_weights() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((8, 3, 3, 3)).astype(np.float32), rng.standard_normal(8).astype(np.float32),
            rng.standard_normal((8 * 16 * 16, 10)).astype(np.float32) * 0.01)


def tiny_onnx(path: Path, batch: int | str = 1, extra_op: str | None = None) -> Path:
    """x (batch, 3, 16, 16) -> Conv 3x3 -> Relu -> Reshape (batch, 2048) -> MatMul (2048, 10) -> y."""
    conv_w, conv_b, fc_w = tiny_weights()
    nodes = [helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Reshape", ["r", "shape"], ["f"]),
             helper.make_node("MatMul", ["f", "fc_w"], ["m"])]
    nodes.append(helper.make_node(extra_op or "Identity", ["m"], ["y"]))
    inits = [numpy_helper.from_array(conv_w, "conv_w"), numpy_helper.from_array(conv_b, "conv_b"),
             numpy_helper.from_array(fc_w, "fc_w"), numpy_helper.from_array(np.array([-1, 2048]), "shape")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 16, 16])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])
    graph = helper.make_graph(nodes, "tiny", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def tiny_openvino(path: Path) -> Path:
    import openvino as ov

    model = ov.convert_model(str(tiny_onnx(path.with_suffix(".onnx"))))
    ov.save_model(model, str(path), compress_to_fp16=False)
    return path


class TinyTorch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        conv_w, conv_b, fc_w = tiny_weights()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv.weight.data, self.conv.bias.data = torch.from_numpy(conv_w), torch.from_numpy(conv_b)
        self.fc = torch.nn.Parameter(torch.from_numpy(fc_w))

    def forward(self, x):
        return torch.relu(self.conv(x)).flatten(1) @ self.fc


def test_torch_onnx_and_openvino_readers_count_the_same_flops(tmp_path):
    torch_graph = Target.from_module("tiny", TinyTorch(), {"x": torch.randn(1, 3, 16, 16)}).graph()
    onnx_graph = resolve_target(tiny_onnx(tmp_path / "tiny.onnx")).graph()
    ov_graph = resolve_target(tiny_openvino(tmp_path / "ov" / "tiny.xml")).graph()
    for graph in (torch_graph, onnx_graph, ov_graph):
        assert graph.flops == TINY_FLOPS, graph.format
        assert graph.inputs[0].shape == (1, 3, 16, 16)
    conv = next(op for op in onnx_graph.ops if op.type == "Conv")
    assert conv.weights == 8 * 3 * 3 * 3 + 8
    assert conv.read == 3 * 16 * 16 + conv.weights and conv.written == 8 * 16 * 16
    assert onnx_graph.weight_bytes["float32"] == 4 * (8 * 27 + 8 + 2048 * 10)
    assert "Reshape" in onnx_graph.op_counts and all(op.type != "Reshape" for op in onnx_graph.ops)


def test_einsum_flops_multiply_every_index_size():
    assert einsum_flops("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]) == 2 * 2 * 3 * 4 * 5


def test_roofline_estimate_takes_the_slower_bound_per_op_and_is_labelled():
    profile = PROFILES["a17-pro-ane"]
    peak, bandwidth = profile.fp16_tflops * 1e12, profile.bandwidth_gbs * 1e9
    compute_heavy = OpCost("conv", flops=int(1e12), read=1000, written=1000)
    memory_heavy = OpCost("add", flops=0, read=10**9, written=5 * 10**8)
    target = Target("synthetic", "onnx", _graph=Graph("onnx", [], [], [compute_heavy, memory_heavy]))
    result = estimate(target, "a17-pro-ane", "fp16")
    expected = max(1e12 / peak, 2000 * 2 / bandwidth) + max(0.0, 1.5e9 * 2 / bandwidth)
    assert result.estimate_ms == pytest.approx(expected * 1e3, rel=1e-4) and result.p50_ms is None
    assert result.estimate is True and "ESTIMATE" in result.label and result.backend == "estimate:a17-pro-ane"
    assert result.mean_ms is None and result.efficiency is None  # nothing was measured
    int8 = estimate(target, "a17-pro-ane", "int8")
    assert int8.estimate_ms < result.estimate_ms
    with pytest.raises(CompressError, match="unknown device profile"):
        estimate(target, "pixel-tpu")


def test_every_profile_names_its_sources():
    for profile in PROFILES.values():
        assert profile.sources and profile.int8_tops > 0 and profile.fp16_tflops > 0 and profile.bandwidth_gbs > 0


def test_npu_check_finds_dynamic_shapes_unsupported_ops_and_fp32_weights(tmp_path):
    path = tiny_onnx(tmp_path / "dyn.onnx", batch="batch", extra_op="Erf")
    report = npu_check(path, "qnn")
    by_check = {f["check"]: f for f in report.findings}
    assert by_check["static shapes"]["severity"] == "blocker"
    assert by_check["supported ops"]["severity"] == "blocker" and "Erf" in by_check["supported ops"]["detail"]
    assert by_check["precision"]["severity"] == "warning"  # fp32 runs at fp16 on the HTP, but slower than int8
    clean = npu_check(tiny_onnx(tmp_path / "static.onnx"), "intel-npu")
    assert not clean.blockers
    with pytest.raises(CompressError, match="format coreml"):
        npu_check(tmp_path / "static.onnx", "ane")


def test_export_folder_is_read_through_its_report(tmp_path):
    folder = tmp_path / "export"
    tiny_onnx(folder / "unet" / "model.onnx")
    report = {"format": "onnx", "path": "unet/model.onnx", "input_names": ["x"], "input_shapes": [[1, 3, 16, 16]],
              "input_dtypes": ["float32"], "options": {}}
    (folder / "export_report.json").write_text(json.dumps(report))
    target = resolve_target(folder)
    assert (target.name, target.format, target.paths) == ("export", "onnx", [folder / "unet" / "model.onnx"])
    assert target.numpy_inputs()["x"].shape == (1, 3, 16, 16)
    (folder / "unet" / "model.onnx").unlink()
    with pytest.raises(CompressError, match="does not exist"):
        resolve_target(folder)


def test_core_ml_package_is_walked_and_checked_for_the_neural_engine(tmp_path):
    ct = pytest.importorskip("coremltools")

    class Dilated(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=2, dilation=2)

        def forward(self, x):
            return self.conv(x)

    x = torch.randn(1, 3, 16, 16)
    program = torch.export.export(Dilated().eval(), (x,)).run_decompositions({})
    package = tmp_path / "dilated.mlpackage"
    ct.convert(program, inputs=[ct.TensorType(name="x", shape=x.shape)], convert_to="mlprogram",
               minimum_deployment_target=ct.target.iOS16).save(str(package))
    graph = resolve_target(package).graph()
    assert graph.flops == CONV_FLOPS and graph.inputs[0].shape == (1, 3, 16, 16)
    assert "float16" in graph.weight_bytes  # Core ML's default fp16 compute precision
    report = npu_check(package, "ane")
    by_check = {f["check"]: f["severity"] for f in report.findings}
    assert by_check["dilated convolutions"] == "blocker" and by_check["precision"] == "ok"
    assert by_check["package size"] == "ok"


def test_npu_check_agrees_with_onnxruntimes_mobile_checker_on_omitted_inputs(tmp_path):
    """ORT's usability checker counts a node with an omitted optional input (Resize's roi, as torch exports an
    upsample) as one "with a dynamic input shape"; every real shape is static, and npu-check says both."""
    import onnx
    from onnx import TensorProto, helper
    from onnxruntime.tools.mobile_helpers.usability_checker import check_nnapi_partitions
    from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo

    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])
    graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "scales"], ["up"], mode="nearest"),
         helper.make_node("Relu", ["up"], ["y"])], "upsample",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])], [scales])
    path = tmp_path / "upsample.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    ort = check_nnapi_partitions(ModelProtoWithShapeInfo(path).model_with_shape_info, True)
    assert ort.nodes_unsupported_due_to_dynamic_input == 1
    shapes = {f["check"]: f for f in npu_check(path, "qnn").findings}["static shapes"]
    assert shapes["severity"] == "ok" and "1 Resize op(s) leave an optional input out" in shapes["detail"]
