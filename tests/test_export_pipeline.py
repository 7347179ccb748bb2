"""Whole-pipeline export (issue 20): a tiny SD-v1.4-topology pipeline, pruned by `compress prune`, exported by
`compress export PIPELINE_DIR`, then loaded by optimum's own pipeline classes (in the second virtual environment,
.venv-optimum: optimum-onnx and optimum-intel do not co-install with our diffusers) and compared with the torch
pipeline of diffusers, guidance 7.5, 3 steps, fixed latents."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from compress.prune import ScoreSettings, prune
from helpers import run_console, tiny_sd_pipeline

ROOT = Path(__file__).resolve().parents[1]
OPTIMUM_PYTHON = Path(os.environ.get("COMPRESS_OPTIMUM_PYTHON", ROOT / ".venv-optimum" / "bin" / "python"))
PROMPT = "a photo of an astronaut riding a horse"  # exporters.pipeline.E2E_PROMPT, as a user would type it
STEPS, GUIDANCE = 3, 7.5


@pytest.fixture(scope="module")
def pruned_pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    source = tiny_sd_pipeline(root / "source")
    prune(source, root / "pruned", ratio=0.3, budget="params", score=ScoreSettings(samples=4, steps=2),
          progress=False)
    return root / "pruned"


def _export(monkeypatch, capsys, source, out, *args):
    code, stdout, stderr = run_console(monkeypatch, capsys, "export", source, "--out", out, *args)
    assert code in (0, None), stderr
    return json.loads((Path(out) / "export_report.json").read_text()), stdout


def _torch_reference(pipeline_dir: Path, pipeline_class, out: Path) -> Path:
    """The torch pipeline's image (diffusers as installed here) and the latents it started from."""
    pipe = pipeline_class.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    size = pipe.unet.config.sample_size
    latents = torch.randn((1, pipe.unet.config.in_channels, size, size), generator=torch.Generator().manual_seed(0))
    image = pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=latents,
                 generator=torch.Generator().manual_seed(1),  # an LCM step's noise
                 height=size * pipe.vae_scale_factor, width=size * pipe.vae_scale_factor, output_type="np").images
    np.savez(out, latents=latents.numpy(), image=np.asarray(image))
    return out


def _optimum(reference: Path, **exports: Path) -> dict:
    if not OPTIMUM_PYTHON.is_file():
        pytest.skip(f"no optimum environment at {OPTIMUM_PYTHON} (.ci/run builds it: see README, 'optimum')")
    args = [str(OPTIMUM_PYTHON), str(ROOT / "tests" / "optimum_check.py"), str(reference),
            "--steps", str(STEPS), "--guidance", str(GUIDANCE)]
    for format, folder in exports.items():
        args += [f"--{format}", str(folder)]
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_tiny_pipeline_reloads_its_text_encoder_exactly(tmp_path):
    """The fixture is saved by the transformers installed here; reloading it restores the text encoder."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel

    folder = tiny_sd_pipeline(tmp_path / "pipe")
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    reloaded = CLIPTextModel.from_pretrained(folder / "text_encoder").eval()
    ids = pipe.tokenizer([PROMPT], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert pipe.text_encoder.state_dict().keys() == reloaded.state_dict().keys()
    for key, value in pipe.text_encoder.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids)[0], pipe.text_encoder(ids)[0], rtol=0, atol=0)


@pytest.mark.optimum
def test_pruned_pipeline_export_runs_in_optimums_pipelines(pruned_pipeline, tmp_path, monkeypatch, capsys):
    from diffusers import StableDiffusionPipeline

    onnx_report, stdout = _export(monkeypatch, capsys, pruned_pipeline, tmp_path / "onnx", "--format", "onnx")
    assert "loads as StableDiffusionPipeline" in stdout
    ov_report, _ = _export(monkeypatch, capsys, pruned_pipeline, tmp_path / "ov", "--format", "openvino")
    for report, folder in ((onnx_report, "onnx"), (ov_report, "ov")):
        assert report["validated"] is True, report
        assert set(report["components"]) == {"text_encoder", "unet", "vae_decoder", "vae_encoder"}
        assert {c["name"] for c in report["checks"]} >= {"max_abs_pixel", "psnr"}
        for name in ("model_index.json", "tokenizer/vocab.json", "scheduler/scheduler_config.json",
                     "unet/config.json", "vae_decoder/config.json", "text_encoder/config.json"):
            assert (tmp_path / folder / name).is_file(), name
    # optimum's UNet signatures: a float scalar timestep for ONNX, int64 [batch] for OpenVINO; dynamic shapes
    onnx_unet, ov_unet = onnx_report["components"]["unet"], ov_report["components"]["unet"]
    assert onnx_unet["input_shapes"] == [[-1, 4, -1, -1], [], [-1, -1, 16]]
    assert onnx_unet["input_dtypes"] == ["float32", "float32", "float32"]
    assert ov_unet["input_shapes"][1] == [-1] and ov_unet["input_dtypes"][1] == "int64"
    assert onnx_unet["output_names"] == ["out_sample"]
    reference = _torch_reference(pruned_pipeline, StableDiffusionPipeline, tmp_path / "reference.npz")
    result = _optimum(reference, onnx=tmp_path / "onnx", openvino=tmp_path / "ov")
    assert result["onnx"]["pipeline"] == "ORTStableDiffusionPipeline"
    assert result["openvino"]["pipeline"] == "OVStableDiffusionPipeline"
    assert result["onnx"]["max_abs_255"] <= 2.0, result
    assert result["openvino"]["max_abs_255"] <= 2.0, result


@pytest.mark.optimum
def test_distilled_student_exports_as_an_lcm_pipeline(tmp_path, monkeypatch, capsys):
    from diffusers import LatentConsistencyModelPipeline

    from compress.distill import DistillSettings, distill

    source = tiny_sd_pipeline(tmp_path / "source")
    data = tmp_path / "captions"
    from helpers import caption_folder

    caption_folder(data)
    distill(source, tmp_path / "student", data=data, settings=DistillSettings(steps=1, batch_size=2, solver_steps=10),
            progress=False)
    report, stdout = _export(monkeypatch, capsys, tmp_path / "student", tmp_path / "onnx", "--format", "onnx")
    assert report["validated"] is True and "LatentConsistencyModelPipeline" in stdout
    assert report["components"]["unet"]["input_names"][-1] == "timestep_cond"
    reference = _torch_reference(tmp_path / "student", LatentConsistencyModelPipeline, tmp_path / "reference.npz")
    result = _optimum(reference, onnx=tmp_path / "onnx")
    assert result["onnx"]["pipeline"] == "ORTLatentConsistencyModelPipeline"
    assert result["onnx"]["max_abs_255"] <= 2.0, result


def test_coreml_pipeline_writes_apples_names(pruned_pipeline, tmp_path, monkeypatch, capsys):
    report, _ = _export(monkeypatch, capsys, pruned_pipeline, tmp_path / "coreml", "--format", "coreml")
    names = {"TextEncoder.mlpackage", "Unet.mlpackage", "VAEDecoder.mlpackage", "VAEEncoder.mlpackage",
             "vocab.json", "merges.txt", "export_report.json"}
    assert {p.name for p in (tmp_path / "coreml").iterdir()} == names
    assert report["precision"] == {"text_encoder": "fp16", "unet": "fp16", "vae_decoder": "fp32", "vae_encoder": "fp32"}
    unet = report["components"]["unet"]
    # Apple's Swift pipeline: batch 2 (guidance), encoder_hidden_states as (B, D, 1, T), float timestep
    assert unet["input_names"] == ["sample", "timestep", "encoder_hidden_states"]
    assert unet["input_shapes"] == [[2, 4, 16, 16], [2], [2, 16, 1, 77]]
    assert report["components"]["text_encoder"]["output_names"][0] == "last_hidden_state"
    assert report["components"]["vae_decoder"]["input_names"] == ["z"]
    assert report["components"]["vae_encoder"]["input_names"] == [
        "sample", "diagonal_noise", "noise", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod"]
    if sys.platform != "darwin":
        assert report["validated"] == "structural-only"
        assert all(c["validated"] == "structural-only" for c in report["components"].values())
        assert report["checks"][0]["passed"] is None and "macOS" in report["checks"][0]["detail"]


def _refused(monkeypatch, capsys, source, out, *args, message=""):
    code, _, stderr = run_console(monkeypatch, capsys, "export", source, "--out", out, *args)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], stderr
    assert not Path(out).exists()


def test_bad_pipeline_folders_are_refused_before_any_work(pruned_pipeline, tmp_path, monkeypatch, capsys):
    broken = tmp_path / "no-vae"
    shutil.copytree(pruned_pipeline, broken)
    shutil.rmtree(broken / "vae")
    _refused(monkeypatch, capsys, broken, tmp_path / "o1", "--format", "onnx", message="vae")
    foreign = tmp_path / "t5"
    shutil.copytree(pruned_pipeline, foreign)
    index = json.loads((foreign / "model_index.json").read_text())
    index["text_encoder"] = ["transformers", "T5EncoderModel"]
    (foreign / "model_index.json").write_text(json.dumps(index))
    _refused(monkeypatch, capsys, foreign, tmp_path / "o2", "--format", "openvino", message="T5EncoderModel")
    _refused(monkeypatch, capsys, pruned_pipeline, tmp_path / "o3", "--format", "onnx", "--batch", "2",
             message="--unet-only")


def test_coreml_refuses_a_consistency_students_unet(pruned_pipeline, tmp_path, monkeypatch, capsys):
    student = tmp_path / "student"
    shutil.copytree(pruned_pipeline, student)
    config = json.loads((student / "unet" / "config.json").read_text())
    (student / "unet" / "config.json").write_text(json.dumps({**config, "time_cond_proj_dim": 256}))
    _refused(monkeypatch, capsys, student, tmp_path / "o", "--format", "coreml", message="timestep_cond")


def test_unet_only_keeps_the_single_model_export(pruned_pipeline, tmp_path, monkeypatch, capsys):
    report, _ = _export(monkeypatch, capsys, pruned_pipeline, tmp_path / "unet", "--format", "onnx", "--unet-only")
    assert report["family"] == "unet" and report["path"] == "unet/model.onnx" and report["validated"] is True
    assert report["input_shapes"][1] == [1]  # the single-model contract: timestep (batch,), static shapes
