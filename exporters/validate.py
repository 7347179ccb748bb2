"""Check an exported model against torch: the same contract, and the same numbers within its precision's tolerance.

Every format is run on fresh seeded inputs (not the ones it was traced with) and compared with the fp32 torch
model: relative L2 error ||y - y_ref|| / ||y_ref|| must stay within the limit for how the weights are stored; max
abs error is reported alongside.
Core ML runs only on Apple platforms: elsewhere each package's specification is checked (inputs, outputs, dtypes,
specification version and op set against the deployment target, weight bytes per package), and the torch-side
rewrites that the conversion starts from (split-einsum attention, the chunk chain) are compared with the model.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.errors import CompressError
from compress.io import read_json, write_json
from compress.types import ExportArtifact
from exporters import coreml, onnx, openvino
from exporters.attention import attention_implementation
from exporters.chunks import split_unet
from exporters.config import ExportConfig
from exporters.formats import MIN_OPSET
from exporters.utils import describe_exception

# rel L2 limits by how the weights are stored (int8: weights only). int8-w8a8 / int8-hybrid (compress quantize, on
# calibration-distributed inputs): activations rounded to 8 bits too; measured on this Intel Xeon: the toy 0.06
# (OpenVINO), SPAN x4 0.004-0.006 with its 4 most sensitive layers kept in float and 0.15-0.34 with none kept.
REL_L2_LIMITS = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2, "int8-w8a8": 0.15, "int8-hybrid": 0.15}
# OpenVINO's CPU default computes matmuls and convolutions in bf16 where the CPU has it (8-bit mantissa, 0.4%
# rounding per operand). Measured here: the toy 3e-3, SPAN 4e-3, SD-v1.4's UNet with random weights 1.9e-2 to
# 2.6e-2 (fp32 / fp16 weights, full and BK-Small). 5e-2 passes those and fails a model that needs more precision
# than bf16 holds (a planted weight reads 0.5).
RUNTIME_PRECISION_LIMITS = {"bf16": 5e-2, "f16": 5e-2}
PSNR_MIN_DB = 35.0  # Apple's acceptance for converted SD models
REPORT_FILE = "export_report.json"


class ValidationError(CompressError):
    """An export was written but does not match torch; the CLI exits with code 1 and keeps the folder."""

    def __init__(self, artifact: ExportArtifact):
        self.artifact = artifact
        failed = [c for c in artifact.checks if c["passed"] is False]
        summary = "; ".join(f"{c['name']}: {_describe(c)}" for c in failed)
        super().__init__(f"validation of {artifact.directory} failed ({summary}); see {artifact.report}")


def _describe(check: dict[str, Any]) -> str:
    if check["limit"] is None:
        return check["detail"] or str(check["value"])
    return f"{check['value']:.3g} vs limit {check['limit']:.3g}" + (f" ({check['detail']})" if check["detail"] else "")


def make_check(name: str, passed: bool | None, value: Any = None, limit: Any = None, detail: str = "") -> dict:
    """One entry of `ExportArtifact.checks`; `passed=None` marks information that cannot fail."""
    return {"name": name, "passed": passed, "value": value, "limit": limit, "detail": detail}


def compare(output: np.ndarray | torch.Tensor, reference: torch.Tensor, limit: float | None, prefix: str = ""
            ) -> list[dict]:
    """rel L2 (checked against `limit` unless None) and max abs error, computed in float64."""
    out = torch.as_tensor(np.asarray(output)).double()
    ref = reference.double()
    if out.shape != ref.shape:
        return [make_check(f"{prefix}rel_l2", False, detail=f"output shape {tuple(out.shape)} != {tuple(ref.shape)}")]
    rel_l2 = float((out - ref).norm() / ref.norm().clamp_min(1e-12))
    max_abs = float((out - ref).abs().max())
    passed = None if limit is None else bool(rel_l2 <= limit)  # NaN fails
    return [make_check(f"{prefix}rel_l2", passed, rel_l2, limit), make_check(f"{prefix}max_abs", None, max_abs)]


def psnr(output: np.ndarray, reference: torch.Tensor) -> float:
    """Apple's PSNR for conversion checks: peak = max |reference|."""
    ref = reference.double().numpy()
    mse = float(np.mean((np.asarray(output, dtype=np.float64) - ref) ** 2))
    return float(20 * np.log10(np.abs(ref).max()) - 10 * np.log10(max(mse, 1e-30)))


def _signature_checks(artifact: ExportArtifact, inputs: list, outputs: list) -> list[dict]:
    """Names, shapes and dtypes the runtime reports against the artifact's contract (a dynamic batch as -1). A runtime
    that gives a port several names (OpenVINO) matches when the contract's name is among them."""
    expected_in = list(zip(artifact.input_names, artifact.input_shapes, artifact.input_dtypes, strict=True))
    expected_out = list(zip(artifact.output_names, artifact.output_shapes, artifact.output_dtypes, strict=True))
    if artifact.options.get("dynamic_batch"):
        expected_in = [(n, [-1, *s[1:]], d) for n, s, d in expected_in]
        expected_out = [(n, [-1, *s[1:]], d) for n, s, d in expected_out]
    checks = []
    for kind, actual, expected in (("inputs", inputs, expected_in), ("outputs", outputs, expected_out)):
        actual = [(names if isinstance(names, str) else sorted(names), list(s), d) for names, s, d in actual]
        same = len(actual) == len(expected) and all(
            (names == name if isinstance(names, str) else name in names) and (s, d) == (shape, dtype)
            for (names, s, d), (name, shape, dtype) in zip(actual, expected, strict=False))
        checks.append(make_check(f"{kind}", same, detail="" if same else
                                 f"runtime reports {actual}, expected {expected}"))
    return checks


def _validation_inputs(artifact: ExportArtifact, config: ExportConfig) -> dict[str, torch.Tensor]:
    return config.random_inputs(artifact.seed + 1)  # fresh: the export traced with `seed`


def _numpy_inputs(inputs: dict[str, torch.Tensor], dtypes: list[str]) -> dict[str, np.ndarray]:
    return {name: tensor.numpy().astype(dtype) for (name, tensor), dtype in zip(inputs.items(), dtypes, strict=True)}


def _validation_cases(artifact: ExportArtifact, config: ExportConfig
                      ) -> list[tuple[str, dict[str, np.ndarray], torch.Tensor]]:
    """(check-name prefix, runtime inputs, torch reference) for every validation set: the random batch first, then
    the model's own conditioning where known (`ExportConfig.validation_sets`), or the config's own
    `validation_inputs` where set (a quantized export: fresh calibration-distributed batches). Computed once, so a
    runtime checked at two precisions does not run the torch reference twice."""
    sets = config.validation_inputs or config.validation_sets(artifact.seed + 1)
    return [(prefix, _numpy_inputs(inputs, artifact.input_dtypes), config.reference(inputs)) for prefix, inputs in sets]


def _runtime_comparisons(run, cases: list[tuple[str, dict[str, np.ndarray], torch.Tensor]], limit: float,
                         prefix: str = "") -> list[dict]:
    """`run(numpy inputs) -> output` against torch on every validation case, each case's checks named by its prefix."""
    checks = []
    for case_prefix, inputs, reference in cases:
        checks += compare(run(inputs), reference, limit, prefix=prefix + case_prefix)
    return checks


def _check_onnx(artifact: ExportArtifact, config: ExportConfig, directory: Path) -> list[dict]:
    path = directory / artifact.path
    session = onnx.load_onnx(path)
    checks = _signature_checks(artifact, *onnx.onnx_signature(session))
    opset = onnx.onnx_opset(path)
    checks.append(make_check("opset", opset >= MIN_OPSET, opset, MIN_OPSET))
    return checks + _runtime_comparisons(lambda inputs: onnx.run_onnx(session, inputs),
                                         _validation_cases(artifact, config), REL_L2_LIMITS[artifact.weights])


def _check_openvino(artifact: ExportArtifact, config: ExportConfig, directory: Path) -> list[dict]:
    path = directory / artifact.path
    compiled = openvino.load_openvino(path)
    checks = _signature_checks(artifact, *openvino.openvino_signature(compiled))
    cases = _validation_cases(artifact, config)
    checks += _runtime_comparisons(lambda inputs: openvino.run_openvino(compiled, inputs), cases,
                                   REL_L2_LIMITS[artifact.weights])
    del compiled  # a second compiled copy of a large model would double the memory
    default = openvino.default_precision()
    if default != "f32":  # what runs with default settings on this CPU (and what `compress bench` times)
        compiled = openvino.load_openvino(path, precision=None)
        limit = max(REL_L2_LIMITS[artifact.weights], RUNTIME_PRECISION_LIMITS.get(default, 0.0))
        checks += _runtime_comparisons(lambda inputs: openvino.run_openvino(compiled, inputs), cases, limit,
                                       prefix=f"default_{default}_")
    return checks


def _torch_rewrite_checks(artifact: ExportArtifact, config: ExportConfig) -> list[dict]:
    """The torch models Core ML converts from (split-einsum attention, two chunks) against the plain UNet."""
    attention, chunk = artifact.options.get("attention", "original"), artifact.options.get("chunk", False)
    if config.family != "unet" or (attention == "original" and not chunk):
        return []
    inputs = _validation_inputs(artifact, config)
    reference = config.reference(inputs)
    with attention_implementation(config.unet, attention), torch.no_grad():
        if chunk:
            (first, second), _ = split_unet(config.unet, config.inputs)
            output = second(*first(*inputs.values()), inputs["encoder_hidden_states"])
        else:
            output = config.module(*inputs.values())
    return compare(output, reference, REL_L2_LIMITS["fp32"], prefix="torch_rewrite_")


def _check_package_chain(packages: list[dict]) -> list[dict]:
    """Chunks: every input of the second is an original input or an output of the first, with its shape."""
    available = {name: shape for name, shape, _ in packages[0]["outputs"] + packages[0]["inputs"]}
    missing = [f"{name}{shape}" for name, shape, _ in packages[1]["inputs"] if available.get(name) != shape]
    checks = [make_check("chunk_chain", not missing, detail=f"not provided by chunk 1: {missing}" if missing else "")]
    sizes = [p["weight_bytes"] for p in packages]
    checks.append(make_check("chunk_weight_bytes", max(sizes) < coreml.CHUNK_WEIGHT_LIMIT, max(sizes),
                             coreml.CHUNK_WEIGHT_LIMIT, detail=f"per package: {sizes}"))
    return checks


def _check_coreml(artifact: ExportArtifact, config: ExportConfig, directory: Path) -> list[dict]:
    target = artifact.options["minimum_deployment_target"]
    paths = [directory / name for name in artifact.options["packages"]]
    packages = [coreml.read_package(path) for path in paths]
    first, last = packages[0], packages[-1]
    checks = _signature_checks(artifact, first["inputs"], last["outputs"])
    if len(packages) == 2:
        checks += _check_package_chain(packages)
    for name, package in zip(artifact.options["packages"], packages, strict=True):
        version = coreml.target_version(target)
        checks.append(make_check(f"{name}:specification_version", package["specification_version"] <= version,
                                 package["specification_version"], version, detail=f"opset {package['opset']}"))
        missing = coreml.unavailable_ops(package["ops"], target)
        checks.append(make_check(f"{name}:op_set", not missing, len(package["ops"]),
                                 detail=f"not in {target}: {missing}" if missing else ", ".join(package["ops"])))
        checks.append(make_check(f"{name}:weight_bytes", None, package["weight_bytes"]))
    checks += _torch_rewrite_checks(artifact, config)
    if sys.platform != "darwin":
        return checks + [make_check("psnr", None, detail="not run: Core ML prediction needs macOS")]
    inputs = _validation_inputs(artifact, config)
    outputs = coreml.predict_coreml(paths, _numpy_inputs(inputs, artifact.input_dtypes))
    output = outputs[artifact.output_names[0]]
    reference = config.reference(inputs)
    value = psnr(output, reference)
    return checks + [make_check("psnr", value >= PSNR_MIN_DB, value, PSNR_MIN_DB)] + compare(output, reference, None)


STRUCTURAL_ONLY = "structural-only"  # `validated` when the artifact's numerics could not run here (Core ML off macOS)
def _is_runtime_numeric(name: str) -> bool:
    """A check of the runtime's own output against torch (torch_rewrite_* ones compare torch with torch)."""
    return name.endswith(("rel_l2", "psnr")) and not name.startswith("torch_rewrite_")


CHECKERS = {"onnx": _check_onnx, "openvino": _check_openvino, "coreml": _check_coreml}


def run_checks(artifact: ExportArtifact, config: ExportConfig, directory: Path) -> ExportArtifact:
    """Fill in `checks`, `validated` and `validation_seconds`; a model the runtime cannot load fails a check.

    `validated` is False when a check failed, True when the runtime's output was compared with torch and every
    check passed, and "structural-only" when only the structure could be checked (Core ML off macOS).
    """
    started = time.time()
    try:
        checks = CHECKERS[artifact.format](artifact, config, directory)
    except CompressError:
        raise  # a missing runtime is the user's to fix, not a property of the artifact
    except Exception as exc:  # runtimes raise their own types for files they cannot read
        checks = [make_check("load", False, detail=describe_exception(exc))]
    artifact.checks = checks
    runtime_numerics = any(_is_runtime_numeric(c["name"]) and c["passed"] is not None for c in checks)
    if any(c["passed"] is False for c in checks):
        artifact.validated = False
    else:
        artifact.validated = True if runtime_numerics else STRUCTURAL_ONLY
    artifact.validation_seconds = round(time.time() - started, 2)
    return artifact


def read_artifact(directory: str | Path) -> ExportArtifact:
    """The `ExportArtifact` an export folder describes (its `export_report.json`)."""
    path = Path(directory) / REPORT_FILE
    if not path.is_file():
        raise CompressError(f"{directory} is not an export folder (no {REPORT_FILE})")
    data = read_json(path)
    if isinstance(data, dict) and "components" in data:
        raise CompressError(f"{directory} is a whole-pipeline export; this command takes a single-model export "
                            "(compress export PIPELINE_DIR --unet-only)")
    try:
        return ExportArtifact.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise CompressError(f"{path} is not an export report: {exc}") from None


def validate_artifact(directory: str | Path, reference: Any = None) -> ExportArtifact:
    """Re-run the checks of an export folder against `reference` and rewrite its report.

    `reference` is what was exported (registry name, folder, model object); by default the report's `model`,
    rebuilt with the report's `init` and `seed`. Raises `ValidationError` when a check fails.
    """
    from exporters.config import load_export_config

    directory = Path(directory)
    artifact = read_artifact(directory)
    shape = artifact.input_shapes[0]
    sequence_length = artifact.input_shapes[2][1] if artifact.family == "unet" else None
    config = load_export_config(artifact.model if reference is None else reference, batch=shape[0],
                                height=shape[2], width=shape[3], sequence_length=sequence_length,
                                init=artifact.init, seed=artifact.seed)
    artifact.directory = str(directory.resolve())
    run_checks(artifact, config, directory)
    write_json(directory / REPORT_FILE, artifact.to_dict())
    if not artifact.validated:
        raise ValidationError(artifact)
    return artifact
