"""SPAN exports: fused deploy form, `image -> upscaled` in every format, fp16 and int8 weight variants."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from compress.models.registry import assets_dir
from compress.sr import SPAN, save_span
from exporters import export

SIZE = 32  # small input image: the graph is the same at any size


@pytest.fixture(scope="module")
def span_x2(tmp_path_factory) -> Path:
    """A seeded random SPAN x2 in training form (export must fuse it), saved as compress.sr saves models."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("span") / "span-x2"
    save_span(SPAN(channels=16, scale=2), folder)
    return folder


def _rel_l2(artifact) -> dict:
    return next(c for c in artifact.checks if c["name"] == "rel_l2")


@pytest.mark.parametrize("format, main_file", [("onnx", "span_x2.onnx"), ("openvino", "span_x2.xml"),
                                               ("coreml", "span_x2.mlpackage")])
def test_span_every_format(span_x2, tmp_path, format, main_file):
    artifact = export(span_x2, format, tmp_path / "out", height=SIZE, width=SIZE)
    assert artifact.path == main_file and (Path(artifact.directory) / main_file).exists()
    assert artifact.input_names == ["image"] and artifact.output_names == ["upscaled"]
    assert artifact.output_shapes == [[1, 3, 2 * SIZE, 2 * SIZE]]
    assert artifact.family == "span" and artifact.model_info["span"] == {"scale": 2, "channels": 16}
    assert artifact.validated == ("structural-only" if format == "coreml" and sys.platform != "darwin" else True)
    if format == "openvino":
        assert (Path(artifact.directory) / "span_x2.bin").is_file()


def test_default_input_size_is_256(span_x2, tmp_path):
    artifact = export(span_x2, "onnx", tmp_path / "out", validate=False)
    assert artifact.input_shapes == [[1, 3, 256, 256]] and artifact.validated is None and artifact.checks == []


@pytest.mark.parametrize("format", ["onnx", "openvino"])
def test_fp16_is_half_the_size_and_within_tolerance(span_x2, tmp_path, format):
    fp32 = export(span_x2, format, tmp_path / "fp32", height=SIZE, width=SIZE)
    fp16 = export(span_x2, format, tmp_path / "fp16", height=SIZE, width=SIZE, fp16=True)
    weights = [name for name in fp32.file_sizes if name.endswith((".onnx", ".bin"))]
    ratio = sum(fp16.file_sizes[n] for n in weights) / sum(fp32.file_sizes[n] for n in weights)
    assert 0.4 < ratio < 0.7
    assert fp16.validated and _rel_l2(fp16)["limit"] == 1e-2
    assert fp16.input_dtypes == (["float16"] if format == "onnx" else ["float32"])


def test_openvino_int8_weights(span_x2, tmp_path):
    artifact = export(span_x2, "openvino", tmp_path / "int8", height=SIZE, width=SIZE, int8_weights=True)
    assert artifact.weights == "int8" and artifact.validated and _rel_l2(artifact)["limit"] == 5e-2


def test_dynamic_batch_onnx(span_x2, tmp_path):
    import onnxruntime as ort

    artifact = export(span_x2, "onnx", tmp_path / "dyn", height=SIZE, width=SIZE, dynamic_batch=True)
    session = ort.InferenceSession(str(Path(artifact.directory) / artifact.path))
    assert session.get_inputs()[0].shape[0] != 1 and artifact.validated
    out = session.run(None, {"image": torch.rand(3, 3, SIZE, SIZE).numpy()})[0]
    assert out.shape == (3, 3, 2 * SIZE, 2 * SIZE)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["span-x2", "span-x4"])
@pytest.mark.parametrize("format", ["onnx", "openvino", "coreml"])
def test_shipped_models(tmp_path, name, format):
    if not (assets_dir(name) / "model.safetensors").is_file():
        pytest.skip(f"shipped weights of {name} are not in this checkout")
    artifact = export(name, format, tmp_path / "out")
    assert artifact.validated in (True, "structural-only") and artifact.path.startswith(f"span_x{name[-1]}")
