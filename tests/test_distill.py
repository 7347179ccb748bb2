"""Consistency distillation: the maths, the student's start, and short LCM / Direct-CM runs."""

import json

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.pipelines.latent_consistency_models.pipeline_latent_consistency_text2img import (
    LatentConsistencyModelPipeline,
)

from compress.distill import DistillSettings, distill, with_guidance_embedding
from compress.distill.consistency import boundary_coefficients, consistency_output, ddim_step
from compress.models.guidance import guidance_embedding
from compress.models.pruned import load_unet
from compress.models.resolve import load_diffusion_model
from compress.models.sd import SD_SCHEDULER_CONFIG
from helpers import caption_folder, make_tiny_unet, tiny_inputs, tiny_sd_pipeline

ALPHAS = DDPMScheduler(**{k: v for k, v in SD_SCHEDULER_CONFIG.items() if k != "set_alpha_to_one"}).alphas_cumprod


def test_boundary_condition_makes_the_model_the_identity_at_t0():
    c_skip, c_out = boundary_coefficients(torch.tensor([0, 999]))
    assert c_skip[0] == 1.0 and c_out[0] == 0.0
    assert c_skip[1] < 1e-6 and c_out[1] == pytest.approx(1.0, abs=1e-6)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(consistency_output(torch.randn_like(x), x, torch.tensor([0, 0]), ALPHAS), x)


def test_guidance_embedding_matches_the_diffusers_lcm_pipeline():
    w = torch.tensor([1.5, 3.0, 8.0])
    reference = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w - 1, embedding_dim=256)
    torch.testing.assert_close(guidance_embedding(w, 256), reference)


def test_ddim_step_to_the_clean_sample_recovers_x0_from_the_true_noise():
    x0, eps = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = torch.tensor([500, 900])
    a = ALPHAS[t].reshape(-1, 1, 1, 1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
    torch.testing.assert_close(ddim_step(eps, xt, t, torch.tensor([-1, -1]), ALPHAS), x0, rtol=1e-4, atol=1e-4)


def test_student_with_guidance_embedding_starts_as_its_source():
    source = make_tiny_unet()
    student = with_guidance_embedding(source, None)
    sample, t, hidden = tiny_inputs()
    with torch.no_grad():
        expected = source(sample, t, hidden).sample
        got = student(sample, t, hidden, timestep_cond=guidance_embedding(torch.tensor([2.0, 7.0]), 256)).sample
    torch.testing.assert_close(got, expected)
    assert student.config.time_cond_proj_dim == 256


@pytest.fixture(scope="module")
def toy_teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "teacher"
    teacher = load_diffusion_model("toy", init="random")
    teacher.unet.save_pretrained(root / "unet")
    teacher.conditioner.save(root / "conditioner")
    return root


@pytest.mark.parametrize("method", ["lcm", "direct"])
def test_distill_writes_a_student_with_an_lcm_scheduler(toy_teacher, tmp_path, method):
    settings = DistillSettings(method=method, steps=2, batch_size=2, solver_steps=5)
    result = distill(toy_teacher, tmp_path / "run", settings=settings, progress=False)
    assert result.steps == 2 and result.final_loss > 0
    student = load_diffusion_model(tmp_path / "run")
    assert student.scheduler_config["_class_name"] == "LCMScheduler"
    assert student.scheduler_config["original_inference_steps"] == 5
    assert student.unet.config.time_cond_proj_dim == 256 and student.conditioner is not None
    log = [json.loads(line) for line in (tmp_path / "run" / "distill_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]


def test_resumed_distillation_matches_the_uninterrupted_run(toy_teacher, tmp_path):
    full = DistillSettings(steps=4, batch_size=2, solver_steps=5, checkpoint_every=2)
    distill(toy_teacher, tmp_path / "full", settings=full, progress=False)
    distill(toy_teacher, tmp_path / "split", settings=DistillSettings(steps=2, batch_size=2, solver_steps=5,
                                                                      checkpoint_every=2), progress=False)
    distill(toy_teacher, tmp_path / "split", settings=full, resume=True, progress=False)
    a, b = load_unet(tmp_path / "full").state_dict(), load_unet(tmp_path / "split").state_dict()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)


def test_sd_topology_student_with_text_conditioning_distils(tmp_path):
    pipeline = tiny_sd_pipeline(tmp_path / "pipe")
    data = caption_folder(tmp_path / "captions")
    distill(pipeline, tmp_path / "run", data=data, settings=DistillSettings(steps=2, batch_size=2, solver_steps=10),
            progress=False)
    student = load_diffusion_model(tmp_path / "run")
    assert student.family == "sd" and student.unet.config.time_cond_proj_dim == 256


def test_sample_uses_the_saved_lcm_scheduler_for_toy_and_sd_students(toy_teacher, tmp_path):
    from click.testing import CliRunner

    from compress.cli import main

    distill(toy_teacher, tmp_path / "toy-lcm", settings=DistillSettings(steps=1, batch_size=2, solver_steps=5),
            progress=False)
    result = CliRunner().invoke(main, ["sample", "--model", str(tmp_path / "toy-lcm"), "--steps", "2", "--class", "3",
                                       "--out", str(tmp_path / "three.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "three.png").read_bytes()[:4] == b"\x89PNG"
    pipeline = tiny_sd_pipeline(tmp_path / "pipe")
    distill(pipeline, tmp_path / "sd-lcm", data=caption_folder(tmp_path / "captions"),
            settings=DistillSettings(steps=1, batch_size=2, solver_steps=10), progress=False)
    result = CliRunner().invoke(main, ["sample", "--model", str(tmp_path / "sd-lcm"), "--pipeline", str(pipeline),
                                       "--prompt", "a cat", "--steps", "2", "--out", str(tmp_path / "cat.png")])
    assert result.exit_code == 0, result.output
    from PIL import Image

    assert Image.open(tmp_path / "cat.png").size == (32, 32)
    bad = CliRunner().invoke(main, ["sample", "--model", str(tmp_path / "sd-lcm"), "--class", "3", "--out",
                                    str(tmp_path / "x.png")])
    assert bad.exit_code == 2 and "error: SD-family models need --prompt" in bad.output


@pytest.mark.parametrize("args, message", [(["--ema", "2.0"], "--ema must be in [0, 1)"),
                                           (["--w-min", "9", "--w-max", "2"], "--w-min <= --w-max")])
def test_bad_settings_are_refused_before_anything_is_written(toy_teacher, tmp_path, args, message):
    from click.testing import CliRunner

    from compress.cli import main

    out = tmp_path / "student"
    result = CliRunner().invoke(main, ["distill", "--teacher", str(toy_teacher), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert sorted(tmp_path.iterdir()) == []
