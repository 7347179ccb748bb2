"""The formats and their options, with every check of them that needs no model: a module without torch, so
`compress export --help` answers at once and a bad option is refused before torch is imported."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from compress.errors import CompressError
from compress.optional import check_installed
from compress.sr.settings import IMAGE_SUFFIXES

FORMATS = ("onnx", "openvino", "coreml")
MIN_OPSET = 18  # asking for opset 17 produced an invalid model (a Split with num_outputs), DESIGN.md section 7
TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18", "macOS12", "macOS13", "macOS14", "macOS15")  # Core ML deployment
PALETTE_BITS = (1, 2, 3, 4, 6, 8)  # Core ML palettization
ATTENTION_IMPLEMENTATIONS = ("original", "split-einsum")  # Core ML UNets (exporters/attention.py)
FORMAT_OPTIONS = {  # each format's own options with their defaults; another format's must stay at its default
    "onnx": {"opset": MIN_OPSET, "dynamic_batch": False},
    "openvino": {"int8_weights": False},
    "coreml": {"minimum_deployment_target": "iOS16", "attention": "original", "palettize": None, "chunk": False},
}
DEFAULT_FP16 = {"onnx": False, "openvino": False, "coreml": True}  # Core ML computes in fp16 unless asked not to
RUNTIMES = {"onnx": ("onnx", "onnxscript", "onnxruntime"), "openvino": ("openvino",), "coreml": ("coremltools",)}


def check_export_options(format: str, options: dict[str, Any]) -> None:
    """Refuse an unknown format, an option of another format, a value out of range or a missing runtime."""
    if format not in FORMATS:
        raise CompressError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    for other, defaults in FORMAT_OPTIONS.items():
        for name, default in defaults.items():
            if other != format and options[name] != default:
                raise CompressError(f"--{name.replace('_', '-')} applies to --format {other} only")
    if options["opset"] < MIN_OPSET:
        raise CompressError(f"--opset must be >= {MIN_OPSET} (opset 17 exports an invalid UNet), "
                            f"got {options['opset']}")
    target, palettize = options["minimum_deployment_target"], options["palettize"]
    if target not in TARGETS:
        raise CompressError(f"--minimum-deployment-target must be one of {', '.join(TARGETS)}, not {target!r}")
    if options["attention"] not in ATTENTION_IMPLEMENTATIONS:
        raise CompressError(f"--attention must be one of {', '.join(ATTENTION_IMPLEMENTATIONS)}, "
                            f"not {options['attention']!r}")
    if palettize is not None:
        if palettize not in PALETTE_BITS:
            raise CompressError(f"--palettize takes one of {', '.join(map(str, PALETTE_BITS))} bits, not {palettize}")
        if target in ("iOS15", "macOS12"):
            raise CompressError("--palettize needs --minimum-deployment-target iOS16 / macOS13 or newer")
    for module in RUNTIMES[format] + (("nncf",) if options["int8_weights"] else ()):
        check_installed(module, "this export")


# `compress quantize`: the modes each format offers. w8a8: int8 weights and activations, calibrated; w8: int8 weights
# only (data-free); hybrid (OpenVINO): optimum-intel's SD recipe, int8 weights of matmuls and w8a8 for the rest.
DEFAULT_QUANT_SAMPLES = 128  # calibration rows (Qualcomm's SD recipe uses 100 over the sampling steps)
TASK_SAMPLES = 500  # toy samples per seed for the quantized fd check (`compress eval`'s default)
QUANT_MODES = {"openvino": ("w8a8", "hybrid", "w8"), "onnx": ("w8a8", "w8"), "coreml": ("w8", "w8a8")}
QUANT_RUNTIMES = {"openvino": ("openvino", "nncf", "onnx", "onnxscript"), "onnx": ("onnx", "onnxscript", "onnxruntime"),
                  "coreml": ("coremltools",)}


def check_quantize_options(format: str, mode: str, samples: int, keep_sensitive: int, data: str | None,
                           platform: str = sys.platform) -> None:
    """Refuse what `compress quantize` cannot do before any model is loaded."""
    if format not in FORMATS:
        raise CompressError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if mode not in QUANT_MODES[format]:
        raise CompressError(f"unknown mode {mode!r} for --format {format}; choose one of "
                            f"{', '.join(QUANT_MODES[format])}")
    if samples < 1:
        raise CompressError(f"--samples must be at least 1, got {samples}")
    if keep_sensitive < 0:
        raise CompressError(f"--keep-sensitive must be 0 or more, got {keep_sensitive}")
    if format == "coreml" and keep_sensitive:
        raise CompressError("--keep-sensitive applies to --format onnx and openvino (Core ML's op names do not map "
                            "back to the model's layers)")
    if format == "coreml" and mode == "w8a8" and platform != "darwin":
        raise CompressError("Core ML w8a8 calibrates its activations by running the model, which Core ML does only "
                            "on macOS; use --mode w8 here, or quantize on a Mac")
    if data is not None:
        folder = Path(data)
        if not folder.is_dir():
            raise CompressError(f"calibration folder not found: {data}")
        if not any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            raise CompressError(f"calibration folder {data} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    for module in QUANT_RUNTIMES[format]:
        check_installed(module, f"{format} quantization")
