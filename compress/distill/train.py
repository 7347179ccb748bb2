"""`distill()`: consistency distillation of a teacher into a 1-4 step student.

lcm (latent consistency distillation): x_t -> one teacher DDIM step with guidance w to x_{t-k}
    (the skipping-step solver over 50 DDIM timesteps); the student at (x_t, t, w) regresses onto
    the EMA target student at (x_{t-k}, t-k, w).
direct (Direct CM): the student regresses straight onto the teacher's full guided DDIM solution
    from the same x_t (more teacher calls per step; solves the ODE more accurately).

The student is the teacher (or a pruned/recovered student) with a guidance-scale embedding
(`time_cond_proj_dim`), whose projection starts at zero so the student starts as its source.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, LCMScheduler, UNet2DConditionModel

from compress.data.training import read_captions, training_data
from compress.distill.consistency import consistency_output, ddim_step, huber
from compress.distill.settings import DistillSettings, check_distill
from compress.errors import CompressError
from compress.io import write_json
from compress.models.guidance import W_EMBEDDING_DIM, guidance_embedding
from compress.models.loading import DiffusionModel, public_config, scheduler_from_config
from compress.models.pruned import build_unet, save_like
from compress.models.resolve import load_diffusion_model
from compress.training import EMA, TrainingRun
from compress.types import Record


@dataclass
class DistillResult(Record):
    out: str
    method: str
    steps: int
    final_loss: float


def with_guidance_embedding(unet: UNet2DConditionModel, source: DiffusionModel | None = None) -> UNet2DConditionModel:
    """The same UNet plus `time_cond_proj_dim` (zero-initialised), keeping the source's block plan if it has one."""
    if unet.config.get("time_cond_proj_dim"):
        return unet
    config = public_config(unet.config)
    config["time_cond_proj_dim"] = W_EMBEDDING_DIM
    student = build_unet(config, source.plan if source is not None else None)
    missing, unexpected = student.load_state_dict(unet.state_dict(), strict=False)
    if unexpected or any("cond_proj" not in key for key in missing):
        raise CompressError(f"cannot add a guidance embedding to this UNet (unexpected {unexpected[:1]})")
    torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
    return student


def distill(
    teacher: str | os.PathLike,
    out: str | os.PathLike,
    student: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    settings: DistillSettings | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> DistillResult:
    """Distil `teacher` (or continue from `student`) into a few-step consistency model in `out`."""
    s = settings or DistillSettings()
    check_distill(out, s, resume=resume, overwrite=overwrite)
    out = Path(out)
    run = TrainingRun(out, name="distill", steps=s.steps, checkpoint_every=s.checkpoint_every, seed=s.seed,
                      resume=resume, overwrite=overwrite, mixed_precision=s.mixed_precision, progress=progress)
    if data is not None:
        read_captions(Path(data))
    teacher_model = load_diffusion_model(teacher)
    source = load_diffusion_model(student) if student is not None else teacher_model
    if source.family != teacher_model.family:
        raise CompressError(f"--student is a {source.family}-family model but the teacher is {teacher_model.family}")
    w_min, w_max = s.guidance_range(teacher_model.family)
    run.create_folder()
    with run.main_process_first():
        samples = training_data(teacher_model, data, out)

    online = with_guidance_embedding(copy.deepcopy(source.unet), source).train()
    unet_t = teacher_model.unet.eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(online.parameters(), lr=s.lr, weight_decay=0.0)
    online, optimizer = run.prepare(online, optimizer)
    unet_t.to(run.device)
    target = EMA(run.unwrap(online), s.ema)  # the target network: an EMA of the student, made on its device
    target.average.eval()
    run.track(student=online, optimizer=optimizer, target=target)
    run.restore()
    noise_schedule = scheduler_from_config(DDPMScheduler, teacher_model.scheduler_config)
    alphas = noise_schedule.alphas_cumprod.to(run.device)
    skip = noise_schedule.config.num_train_timesteps // s.solver_steps
    solver = torch.arange(1, s.solver_steps + 1) * skip - 1  # 19, 39, ..., 999 for 50 steps
    uncond = samples.uncond.to(run.device)
    accelerator, generator, batch = run.accelerator, run.generator, run.global_batch(s.batch_size)
    loss_value = float("nan")
    for _step in run.loop(f"distill ({s.method})"):
        x0, cond = samples.batch(batch, generator, s.cfg_dropout)
        noise = torch.randn(x0.shape, generator=generator)
        index = torch.randint(0, s.solver_steps, (len(x0),), generator=generator)
        w = w_min + (w_max - w_min) * torch.rand(len(x0), generator=generator)
        t = solver[index]
        x_t, cond, t, index, w = run.local(noise_schedule.add_noise(x0, noise, t), cond, t, index, w)
        w_emb = guidance_embedding(w, W_EMBEDDING_DIM)
        with accelerator.autocast():
            eps = online(x_t, t, cond, timestep_cond=w_emb).sample
        prediction = consistency_output(eps.float(), x_t, t, alphas)
        with torch.no_grad(), accelerator.autocast():
            teacher_step = _TeacherSolver(unet_t, cond, uncond.expand(len(x_t), -1, -1), w, alphas, solver)
            if s.method == "lcm":
                x_prev, t_prev = teacher_step(x_t, index)
                eps_target = target.average(x_prev, t_prev, cond, timestep_cond=w_emb).sample
                goal = consistency_output(eps_target.float(), x_prev, t_prev, alphas)
            else:
                goal = teacher_step.solve(x_t, index)
        loss = huber(prediction, goal, s.huber_c) if s.loss == "huber" else torch.nn.functional.mse_loss(
            prediction.float(), goal.float())
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(online.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        target.update(run.unwrap(online))
        loss_value = loss.item()
        run.log(loss=loss_value, lr=optimizer.param_groups[0]["lr"])
    run.finish(f"{s.method} distillation")
    result = DistillResult(str(out), s.method, s.steps, loss_value)
    if run.is_main:
        scheduler = scheduler_from_config(LCMScheduler, teacher_model.scheduler_config,
                                          original_inference_steps=s.solver_steps)
        save_like(target.average, out, source.source_dir, plan=source.plan, scheduler=scheduler,
                  conditioner=source.conditioner)
        write_json(out / "distill_settings.json", {**s.__dict__, "teacher": teacher_model.name})
        write_json(out / "distill_result.json", result.to_dict())
    return result


class _TeacherSolver:
    """Guided DDIM steps of the teacher along the solver's timesteps."""

    def __init__(self, unet: Any, cond: torch.Tensor, uncond: torch.Tensor, w: torch.Tensor, alphas: torch.Tensor,
                 solver: torch.Tensor):
        self.unet, self.cond, self.uncond, self.w, self.alphas = unet, cond, uncond, w, alphas
        self.solver = solver.to(cond.device)

    def eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond = self.unet(x, t, self.cond).sample
        uncond = self.unet(x, t, self.uncond).sample
        w = self.w.reshape(-1, *([1] * (x.ndim - 1)))
        return uncond + w * (cond - uncond)

    def __call__(self, x: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One solver step: (x at the previous solver timestep, that timestep; 0 after the first)."""
        t = self.solver[index]
        t_prev = torch.where(index > 0, self.solver[(index - 1).clamp_min(0)], torch.zeros_like(t))
        return ddim_step(self.eps(x, t), x, t, t_prev, self.alphas), t_prev

    def solve(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The full guided DDIM solution to the clean sample; finished items stay fixed."""
        index = index.clone()
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        while not done.all():
            t = self.solver[index]
            t_prev = torch.where(index > 0, self.solver[(index - 1).clamp_min(0)], torch.full_like(t, -1))
            stepped = ddim_step(self.eps(x, t), x, t, t_prev, self.alphas)
            x = torch.where(done.reshape(-1, *([1] * (x.ndim - 1))), x, stepped)
            done = done | (index == 0)
            index = (index - 1).clamp_min(0)
        return x
