"""UNet exports (toy, block-pruned toy, diffusers-pruned toy) in every format, validated against torch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from diffusers import UNet2DConditionModel

from compress.cli import main
from compress.io import write_json
from compress.models.pruned import PLAN_FILE
from compress.models.registry import assets_dir
from compress.models.resolve import load_diffusion_model
from compress.prune import build_diffusers_unet, find_units, removed_units
from compress.types import ExportArtifact, RemovalPlan
from exporters import ValidationError, export, load_export_config, read_artifact, validate_artifact
from exporters.attention import attention_implementation
from exporters.chunks import split_unet
from helpers import corrupt_onnx_export

UNET_INPUTS = ["sample", "timestep", "encoder_hidden_states"]
# covers every bypass module: ShortcutResnet (down.2.pair.0), PassThroughResnet + PassThroughAttention (pairs),
# a dropped skip (up.3.resnet.1) and a removed mid block
BLOCK_REMOVALS = ["down.1.pair.1", "down.2.pair.0", "up.1.attn.0", "up.3.resnet.1", "mid"]


def _toy_folder(root: Path, granularity: str | None = None) -> Path:
    """The trained toy when shipped, else a seeded random one, saved as `compress prune` / `distill` save theirs.

    With a `scheduler/` folder, the unpruned one doubles as a distilled student (a UNet folder plus scheduler).
    """
    trained = (assets_dir("toy") / "unet").is_dir()
    model = load_diffusion_model("toy", init="pretrained" if trained else "random")
    folder = root / f"toy-{granularity or 'full'}"
    if granularity == "block":
        units = find_units(model.unet, BLOCK_REMOVALS, "block")
        with removed_units(model.unet, units):
            model.unet.save_pretrained(folder / "unet")
        write_json(folder / "unet" / PLAN_FILE, RemovalPlan("block", BLOCK_REMOVALS).to_dict())
    elif granularity == "diffusers":
        build_diffusers_unet(model.unet, find_units(model.unet, ["mid", "stage.3"], "diffusers")
                             ).save_pretrained(folder / "unet")
    else:
        model.unet.save_pretrained(folder / "unet")
    model.conditioner.save(folder / "conditioner")
    (folder / "scheduler").mkdir()
    scheduler = {"_class_name": "LCMScheduler", **model.scheduler_config}
    write_json(folder / "scheduler" / "scheduler_config.json", scheduler)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {name: _toy_folder(root, granularity) for name, granularity in
            (("toy", None), ("block", "block"), ("diffusers", "diffusers"))}


@pytest.fixture(scope="module")
def toy_onnx(models, tmp_path_factory) -> ExportArtifact:
    return export(models["toy"], "onnx", tmp_path_factory.mktemp("onnx") / "out")


def _passed(artifact: ExportArtifact, name: str) -> bool:
    return next(c for c in artifact.checks if c["name"] == name)["passed"]


def test_onnx_layout_contract_and_report(toy_onnx):
    out = Path(toy_onnx.directory)
    assert toy_onnx.path == "unet/model.onnx" and (out / "unet" / "model.onnx").is_file()
    assert json.loads((out / "unet" / "config.json").read_text())["sample_size"] == 16
    assert toy_onnx.input_names == UNET_INPUTS and toy_onnx.output_names == ["out_sample"]
    assert toy_onnx.input_shapes == [[1, 1, 16, 16], [1], [1, 4, 32]]  # toy: 4 class tokens of width 32
    assert toy_onnx.validated and toy_onnx.weights == "fp32" and not toy_onnx.options["external_data"]
    rel_l2 = next(c for c in toy_onnx.checks if c["name"] == "rel_l2")
    assert rel_l2["value"] <= 1e-4 == rel_l2["limit"]
    assert read_artifact(out) == toy_onnx  # export_report.json round-trips through ExportArtifact
    assert toy_onnx.peak_memory_mb > 0 and toy_onnx.export_seconds > 0
    for timestep in (999, 1):  # validated on the toy's own class embeddings too, at both ends of sampling
        assert _passed(toy_onnx, f"conditioned_t{timestep}_rel_l2")


def test_validation_sets_use_the_models_own_conditioning(models):
    from compress.models.conditioning import class_conditioning

    config = load_export_config(models["toy"], batch=3)
    sets = dict(config.validation_sets(seed=1))
    assert list(sets) == ["", "conditioned_t999_", "conditioned_t1_"]
    model = load_diffusion_model(models["toy"])
    expected = class_conditioning(model, torch.arange(3))
    for prefix in ("conditioned_t999_", "conditioned_t1_"):
        assert torch.equal(sets[prefix]["encoder_hidden_states"], expected)
        assert sets[prefix]["timestep"].tolist() == [int(prefix[len("conditioned_t"):-1])] * 3
    plain = load_export_config(UNet2DConditionModel.from_pretrained(models["toy"] / "unet"))
    assert [prefix for prefix, _ in plain.validation_sets(seed=1)] == [""]  # no conditioner known: random only


def test_wrong_weight_fails_validation(toy_onnx, models, tmp_path):
    bad = tmp_path / "bad"
    corrupt_onnx_export(Path(toy_onnx.directory), bad)
    with pytest.raises(ValidationError) as failure:
        validate_artifact(bad, models["toy"])
    assert _passed(failure.value.artifact, "rel_l2") is False
    assert read_artifact(bad).validated is False  # the report now says so

    result = CliRunner().invoke(main, ["export", str(models["toy"]), "--validate-only", "--out", str(bad)])
    assert result.exit_code == 1
    assert "FAIL rel_l2" in result.output and "error: validation of" in result.output


def test_validate_only_passes_on_a_good_export(toy_onnx, models):
    result = CliRunner().invoke(main, ["export", str(models["toy"]), "--validate-only", "--out", toy_onnx.directory])
    assert result.exit_code == 0, result.output


def test_openvino_block_pruned(models, tmp_path):
    artifact = export(models["block"], "openvino", tmp_path / "ov")
    out = Path(artifact.directory)
    assert (out / "unet" / "openvino_model.xml").is_file() and (out / "unet" / "openvino_model.bin").is_file()
    assert artifact.input_names == UNET_INPUTS and artifact.validated and _passed(artifact, "rel_l2")


def test_openvino_guidance_batch_validates(models, tmp_path):
    """At batch 2 (what a pipeline with guidance calls) compiling merges other tensor names into the timestep port;
    the signature check matches the contract's name among all of a port's names."""
    from exporters.openvino import load_openvino, openvino_signature

    artifact = export(models["toy"], "openvino", tmp_path / "ov2", batch=2)
    assert artifact.validated is True and _passed(artifact, "inputs")
    inputs, _ = openvino_signature(load_openvino(Path(artifact.directory) / artifact.path))
    assert [name in names for name, (names, _, _) in zip(UNET_INPUTS, inputs, strict=True)] == [True] * 3
    assert [shape[0] for _, shape, _ in inputs] == [2, 2, 2]


def test_openvino_is_validated_at_the_precision_it_runs_and_a_bf16_sensitive_weight_fails(models, tmp_path):
    from exporters.openvino import default_precision

    if default_precision() == "f32":
        pytest.skip("OpenVINO computes f32 by default on this CPU: there is no bf16 run to validate")
    plain = export(models["toy"], "openvino", tmp_path / "plain")
    assert _passed(plain, "rel_l2") and _passed(plain, f"default_{default_precision()}_rel_l2")
    assert plain.options["validation_precision"] == sorted({"f32", default_precision()})
    unet = UNet2DConditionModel.from_pretrained(models["toy"] / "unet")
    with torch.no_grad():  # two channels made constant, then weighted +256.5 and -256: bf16 keeps 256 of the first
        unet.conv_norm_out.weight[:2] = 0.0
        unet.conv_norm_out.bias[:2] = 2.0
        unet.conv_out.weight[:, :2] = 0.0
        unet.conv_out.weight[:, 0, 1, 1] = 256.5
        unet.conv_out.weight[:, 1, 1, 1] = -256.0
    unet.save_pretrained(tmp_path / "planted" / "unet")
    with pytest.raises(ValidationError) as failure:
        export(tmp_path / "planted", "openvino", tmp_path / "planted-ov")
    artifact = failure.value.artifact
    assert _passed(artifact, "rel_l2") is True  # the export is right in f32
    assert _passed(artifact, f"default_{default_precision()}_rel_l2") is False and artifact.validated is False


def test_coreml_toy_structural(models, tmp_path):
    artifact = export(models["toy"], "coreml", tmp_path / "cm", height=8, width=8)
    assert artifact.path == "Unet.mlpackage" and (Path(artifact.directory) / "Unet.mlpackage").is_dir()
    assert artifact.fp16 and artifact.input_shapes[0] == [1, 1, 8, 8]
    for name in ("inputs", "outputs", "Unet.mlpackage:op_set", "Unet.mlpackage:specification_version"):
        assert _passed(artifact, name), name
    # off macOS Core ML cannot predict: the report must not read as a numeric pass
    expected = True if sys.platform == "darwin" else "structural-only"
    assert artifact.validated == expected
    assert json.loads((Path(artifact.directory) / "export_report.json").read_text())["validated"] == expected


def test_coreml_export_cli_says_numerics_were_not_checked(tmp_path):
    if sys.platform == "darwin":
        pytest.skip("Core ML predicts on macOS")
    result = CliRunner().invoke(main, ["export", "toy", "--init", "random", "--format", "coreml", "--height", "8",
                                       "--width", "8", "--out", str(tmp_path / "cm")])
    assert result.exit_code == 0, result.output
    assert "numerics not checked on this host" in result.output


def test_split_einsum_attention_matches_original(models):
    config = load_export_config(models["toy"])
    inputs = config.random_inputs(seed=3)
    reference = config.reference(inputs)
    with attention_implementation(config.unet, "split-einsum"):
        processors = {type(p).__name__ for p in config.unet.attn_processors.values()}
        rewritten = config.reference(inputs)
    assert processors == {"SplitEinsumAttnProcessor"}
    assert "SplitEinsumAttnProcessor" not in {type(p).__name__ for p in config.unet.attn_processors.values()}
    assert ((rewritten - reference).norm() / reference.norm()) < 1e-5


@pytest.mark.parametrize("kind", ["toy", "block", "diffusers"])
def test_chunks_chain_to_the_whole_unet(models, kind):
    config = load_export_config(models[kind])
    (first, second), (first_inputs, second_inputs) = split_unet(config.unet, config.inputs)
    inputs = config.random_inputs(seed=4)
    with torch.no_grad():
        output = second(*first(*inputs.values()), inputs["encoder_hidden_states"])
    assert torch.equal(output, config.reference(inputs))
    names = [spec.name for spec in second_inputs]
    assert names[:2] == ["hidden_states", "emb"] and names[-1] == "encoder_hidden_states"
    assert len(set(names)) == len(names)  # a tensor reaching the boundary twice crosses it once
    params = [sum(p.numel() for p in chunk.parameters()) for chunk in (first, second)]
    assert min(params) > 0.25 * sum(params)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["toy", "block", "diffusers"])
@pytest.mark.parametrize("format", ["onnx", "openvino", "coreml"])
def test_every_model_every_format(models, tmp_path, kind, format):
    artifact = export(models[kind], format, tmp_path / "out")
    numeric = format != "coreml" or sys.platform == "darwin"
    assert artifact.validated == (True if numeric else "structural-only") and artifact.input_names == UNET_INPUTS


@pytest.mark.slow
@pytest.mark.parametrize("format", ["onnx", "openvino"])
def test_fp16_halves_the_files_and_meets_its_tolerance(models, tmp_path, format):
    fp32 = export(models["toy"], format, tmp_path / "fp32")
    fp16 = export(models["toy"], format, tmp_path / "fp16", fp16=True)
    assert fp16.validated and fp16.weights == "fp16"
    assert _passed(fp16, "rel_l2") and next(c for c in fp16.checks if c["name"] == "rel_l2")["limit"] == 1e-2
    assert 0.4 < fp16.total_bytes / fp32.total_bytes < 0.75


@pytest.mark.slow
def test_coreml_chunked_split_einsum_block_pruned(models, tmp_path):
    artifact = export(models["block"], "coreml", tmp_path / "cm", chunk=True, attention="split-einsum")
    assert artifact.options["packages"] == ["UnetChunk1.mlpackage", "UnetChunk2.mlpackage"]
    for name in ("chunk_chain", "chunk_weight_bytes", "torch_rewrite_rel_l2"):
        assert _passed(artifact, name), name


@pytest.mark.slow
def test_coreml_palettized(models, tmp_path):
    artifact = export(models["toy"], "coreml", tmp_path / "cm", palettize=6)
    assert artifact.weights == "palettized-6bit" and artifact.validated in (True, "structural-only")
    assert "constexpr_lut_to_dense" in next(c for c in artifact.checks if c["name"].endswith(":op_set"))["detail"]


@pytest.mark.slow
def test_dynamic_batch_onnx(models, tmp_path):
    import onnxruntime as ort

    artifact = export(models["toy"], "onnx", tmp_path / "dyn", dynamic_batch=True)
    session = ort.InferenceSession(str(Path(artifact.directory) / artifact.path))
    config = load_export_config(models["toy"])
    for batch in (1, 3):
        inputs = {k: v.numpy() for k, v in config.random_inputs(seed=5, batch=batch).items()}
        assert session.run(None, inputs)[0].shape[0] == batch
