"""`recover()`: knowledge distillation of a pruned student from its teacher (BK-SDM recipe).

loss = task * MSE(eps_s, eps) + kd_out * MSE(eps_s, eps_t) + kd_feat * sum_stages MSE(f_s, f_t)

With `feat_norm` each feature term is divided by the teacher feature's mean square
(LAPTOP-Diff's normalisation), so deep stages with large activations do not swamp the rest.
The loop runs unchanged on one CPU process or under `accelerate launch` on several GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from compress.data.training import read_captions, training_data
from compress.errors import CompressError
from compress.io import write_json
from compress.models.loading import DiffusionModel, scheduler_from_config
from compress.models.pruned import read_prune_report, save_like
from compress.models.resolve import load_diffusion_model
from compress.recover.features import feature_pairs, record_outputs
from compress.recover.settings import RecoverSettings, check_recover
from compress.training import EMA, TrainingRun
from compress.types import PruneReport, Record

STRUCTURE_KEYS = ("in_channels", "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
                  "up_block_types", "cross_attention_dim", "attention_head_dim", "mid_block_type", "sample_size")


@dataclass
class RecoverResult(Record):
    out: str
    steps: int
    final_loss: float
    feature_pairs: list[str]
    eval: dict[str, Any] | None = None


def _check_derived(report: PruneReport, teacher: DiffusionModel) -> None:
    """The student's prune report must describe the teacher's architecture."""
    before, config = report.unet_config_before, dict(teacher.unet.config)
    for key in STRUCTURE_KEYS:
        a, b = before.get(key), config.get(key)
        if (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
            raise CompressError(f"the student was not pruned from this teacher: {key} differs "
                                f"({a!r} in the student's prune report, {b!r} in the teacher)")


def recover(
    teacher: str | os.PathLike,
    student: str | os.PathLike,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    settings: RecoverSettings | None = None,
    resume: bool = False,
    overwrite: bool = False,
    evaluate_after: bool = True,
    progress: bool = True,
) -> RecoverResult:
    """Distil `teacher` into the pruned `student` folder; write `out/unet`, the log, its plot and an eval."""
    s = settings or RecoverSettings()
    check_recover(out, s, resume=resume, overwrite=overwrite)
    out, student_dir = Path(out), Path(student)
    run = TrainingRun(out, name="recover", steps=s.steps, checkpoint_every=s.checkpoint_every, seed=s.seed,
                      resume=resume, overwrite=overwrite, mixed_precision=s.mixed_precision,
                      grad_accum=s.grad_accum, progress=progress)
    report = read_prune_report(student_dir)
    if report is None:
        raise CompressError(f"{student_dir} has no prune_report.json: give a folder written by `compress prune`")
    if data is not None:
        read_captions(Path(data))  # a bad data folder fails before any model is loaded
    teacher_model = load_diffusion_model(teacher)
    _check_derived(report, teacher_model)
    student_model = load_diffusion_model(student_dir)
    run.create_folder()
    with run.main_process_first():
        samples = training_data(teacher_model, data, out)

    unet_s, unet_t = student_model.unet.train(), teacher_model.unet.eval().requires_grad_(False)
    if s.gradient_checkpointing:
        unet_s.enable_gradient_checkpointing()
    pairs = feature_pairs(report.removed, unet_t, unet_s, report.width.get("stage_output_channels"))
    optimizer = torch.optim.AdamW(unet_s.parameters(), lr=s.lr)
    unet_s, optimizer = run.prepare(unet_s, optimizer)
    unet_t.to(run.device)
    ema = EMA(run.unwrap(unet_s), s.ema) if s.ema else None  # after placement: it averages where the weights are
    run.track(student=unet_s, optimizer=optimizer, **({"ema": ema} if ema else {}))
    run.restore()
    scheduler = scheduler_from_config(DDPMScheduler, teacher_model.scheduler_config)
    accelerator, generator, batch = run.accelerator, run.generator, run.global_batch(s.batch_size)
    loss = loss_task = loss_out = loss_feat = torch.full((), float("nan"))
    for _step in run.loop("recover"):
        for _ in range(s.grad_accum):
            x0, cond = samples.batch(batch, generator, s.cfg_dropout)
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=generator)
            xt, cond, noise, t = run.local(scheduler.add_noise(x0, noise, t), cond, noise, t)
            with accelerator.accumulate(unet_s):
                with torch.no_grad(), record_outputs(unet_t, [p.teacher for p in pairs]) as feats_t:
                    eps_t = unet_t(xt, t, cond).sample
                with accelerator.autocast(), record_outputs(run.unwrap(unet_s), [p.student for p in pairs]) as feats_s:
                    eps_s = unet_s(xt, t, cond).sample
                loss_task = F.mse_loss(eps_s.float(), noise)
                loss_out = F.mse_loss(eps_s.float(), eps_t.float())
                loss_feat = sum(_feature_loss(feats_s[p.student].float(), p.teacher_feature(feats_t[p.teacher]).float(),
                                              s.feat_norm)
                                for p in pairs) if pairs else torch.zeros(())
                loss = s.task * loss_task + s.kd_out * loss_out + s.kd_feat * loss_feat
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(unet_s.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(run.unwrap(unet_s))
        run.log(loss=loss.item(), loss_task=loss_task.item(), loss_kd_out=loss_out.item(),
                loss_kd_feat=loss_feat.item(), lr=optimizer.param_groups[0]["lr"])
    run.finish(f"recovery of {student_dir.name}")
    final = run.unwrap(unet_s).eval()
    if ema is not None:
        ema.copy_to(final)
    result = RecoverResult(str(out), s.steps, loss.item(), [p.name for p in pairs])
    if run.is_main:
        save_like(final, out, student_dir, report=report)
        if evaluate_after and teacher_model.family == "toy":
            from compress.evaluate import evaluate

            result.eval = evaluate(out, json_path=out / "eval.json").to_dict()
        write_json(out / "recover_result.json", result.to_dict())
    return result


def _feature_loss(student: torch.Tensor, teacher: torch.Tensor, normalise: bool) -> torch.Tensor:
    if student.shape != teacher.shape:
        raise CompressError(f"feature shapes differ: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}")
    loss = F.mse_loss(student, teacher)
    return loss / teacher.pow(2).mean().clamp_min(1e-8) if normalise else loss
