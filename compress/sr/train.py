"""Train SPAN with L1 loss on random crops of a folder of high-resolution images (`compress sr train`).

Low-resolution inputs are made on the fly (antialiased bicubic, stored in 8 bits as at evaluation); crops get one of
the eight flips/rotations. Adam with cosine decay. All randomness after the seeded initialisation comes from one
generator whose state is checkpointed with the model and optimiser, so a resumed run ends with exactly the weights an
uninterrupted one would have. The loop runs through the toolkit's training harness (`compress.training`), like
`compress recover` and `compress distill`: the run folder (OUT, or `ckpt_dir`) holds `checkpoint.pt` and
`sr_train_log.jsonl`, and `--resume` continues it.

By default the network starts as bilinear upscaling (`init_bilinear_`): the published SPAN has no image skip, so from
PyTorch's default initialisation it spends its first thousands of steps learning to copy the input, which a short CPU
run cannot afford. `init="default"` keeps the authors' initialisation; the architecture is the same either way.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from compress.errors import CompressError
from compress.io import atomic_output_dir, write_json
from compress.models.span import IMG_RANGE, SPAN
from compress.models.span_checkpoint import save_span
from compress.sr.evaluate import degrade, score_image, summarize
from compress.sr.files import list_images, read_image
from compress.sr.settings import TrainConfig, check_sr_train, run_folder
from compress.training import TrainingRun

VAL_CROP = 256  # validation scores centre crops of at most this side, to keep it quick


@dataclass
class ValidationPoint:
    step: int
    train_l1: float  # mean training loss since the previous point
    psnr: float  # Y-PSNR on the validation crops
    bicubic_psnr: float


@dataclass
class TrainReport:
    """What `training.json` records next to the trained weights."""

    config: TrainConfig
    command: str | None
    train_images: list[str]
    val_images: list[str]
    train_seconds: float  # time spent in training steps (validation and checkpoints excluded)
    history: list[ValidationPoint] = field(default_factory=list)


def _bilinear_taps(phase: int, scale: int) -> torch.Tensor:
    """3-tap weights producing output sub-pixel `phase` of an input pixel (align_corners=False geometry)."""
    offset = (phase + 0.5) / scale - 0.5
    return torch.tensor([max(0.0, -offset), 1 - abs(offset), max(0.0, offset)])


@torch.no_grad()
def init_bilinear_(model: SPAN) -> SPAN:
    """Make an unfused SPAN compute bilinear upscaling, with every learned path into the output zeroed.

    Feature channels 0-2 carry `x - mean` (conv_1's skip), `conv_cat` passes them on unchanged, and the upsampler
    interpolates them per sub-pixel and adds the mean back. The upsampler's other inputs start at zero (as in
    zero-initialised residual branches), so the attention blocks learn a correction on top of interpolation.
    """
    s = model.scale
    eye = torch.eye(3).view(3, 3, 1, 1)
    model.conv_1.sk.weight[:3] = eye / IMG_RANGE
    model.conv_1.sk.bias[:3] = 0
    model.conv_1.conv[2].weight[:3] = 0
    model.conv_1.conv[2].bias[:3] = 0
    model.conv_cat.weight[:3] = 0
    model.conv_cat.weight[:3, :3] = eye
    model.conv_cat.bias[:3] = 0
    upsampler = model.upsampler[0]
    upsampler.weight.zero_()
    for channel in range(3):
        for row in range(s):
            for col in range(s):
                taps = torch.outer(_bilinear_taps(row, s), _bilinear_taps(col, s))
                upsampler.weight[(channel * s + row) * s + col, channel] = taps
    upsampler.bias.copy_(model.mean.flatten().repeat_interleave(s * s))
    return model


class PatchSampler:
    """Random high-resolution crops in one of the 8 flips/rotations (their low-resolution inputs are made after)."""

    def __init__(self, images: dict[str, torch.Tensor], scale: int, patch_size: int, generator: torch.Generator):
        self.hr_size = patch_size * scale  # train_span has checked that every image holds such a crop
        self.images = list(images.values())
        self.generator = generator

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def __call__(self, batch_size: int) -> torch.Tensor:
        patches = []
        for _ in range(batch_size):
            image = self.images[self._randint(len(self.images))]
            top = self._randint(image.shape[1] - self.hr_size + 1)
            left = self._randint(image.shape[2] - self.hr_size + 1)
            patch = image[:, top : top + self.hr_size, left : left + self.hr_size]
            patch = torch.rot90(patch, self._randint(4), dims=(1, 2))
            patches.append(patch.flip(2) if self._randint(2) else patch)
        return torch.stack(patches)


def check_crop_fits(images: dict[str, torch.Tensor], hr_size: int) -> None:
    for name, image in images.items():
        if min(image.shape[-2:]) < hr_size:
            raise CompressError(f"image {name} ({image.shape[-1]}x{image.shape[-2]}) is smaller than the "
                                f"{hr_size}-pixel training crop (lower --patch-size)")


def _read_folder(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    return {path.name: read_image(path) for path in list_images(folder)}


def _centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return image[:, top : top + size, left : left + size]


def validate(model: SPAN, images: dict[str, torch.Tensor]) -> tuple[float, float]:
    """Mean Y-PSNR of the model and of bicubic on centre crops; `model` is left untouched."""
    deployed = copy.deepcopy(model).fuse().eval()
    scores = [score_image(deployed, _centre_crop(image, VAL_CROP), name) for name, image in images.items()]
    result = summarize("SPAN", model.scale, scores)
    return result.psnr, result.bicubic_psnr


def _train_step(run: TrainingRun, model: Any, optimizer: Any, sampler: PatchSampler, batch_size: int) -> float:
    """One step on this rank's share of a global batch of crops; the loss as a number."""
    (hr,) = run.local(sampler(run.global_batch(batch_size)))
    loss = F.l1_loss(model(degrade(hr, run.unwrap(model).scale)), hr)
    optimizer.zero_grad(set_to_none=True)
    run.accelerator.backward(loss)
    optimizer.step()
    return loss.item()


class _RunRecord:
    """The report's running totals in the checkpoint; restoring it first refuses a run made with other settings."""

    def __init__(self, report: TrainReport, path: Path):
        self.report, self.path = report, path
        self.loss_sum, self.loss_count = 0.0, 0

    def state_dict(self) -> dict[str, Any]:
        r = self.report
        return {"config": dataclasses.asdict(r.config), "train_images": r.train_images,
                "history": [dataclasses.asdict(p) for p in r.history], "loss_sum": self.loss_sum,
                "loss_count": self.loss_count, "train_seconds": r.train_seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in dataclasses.asdict(self.report.config).items():
            if state["config"].get(key) != value:
                raise CompressError(f"cannot resume {self.path}: it was made with {key}={state['config'].get(key)}, "
                                    f"not {value}")
        if state["train_images"] != self.report.train_images:
            raise CompressError(f"cannot resume {self.path}: it was made with other training images")
        self.report.history = [ValidationPoint(**point) for point in state["history"]]
        self.loss_sum, self.loss_count = state["loss_sum"], state["loss_count"]
        self.report.train_seconds = state["train_seconds"]


def train_span(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: TrainConfig,
    val_data: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    command: str | None = None,
    progress: bool = True,
) -> TrainReport:
    """Train SPAN on the images in `data` and write it with `training.json` to the folder `out`.

    `out` is the run folder (`checkpoint.pt` every `config.checkpoint_every` steps, the log), unless `ckpt_dir`
    names another one; then `out` receives only the model, atomically, at the end. `resume=True` continues
    the run. Validation scores centre crops of `val_data` (default: the training images).
    """
    check_sr_train(out, config, ckpt_dir=ckpt_dir, resume=resume, overwrite=overwrite)
    out, run_dir = Path(out), run_folder(out, ckpt_dir)
    train_images = _read_folder(data)
    val_images = _read_folder(val_data) if val_data is not None else train_images
    check_crop_fits(train_images, config.patch_size * config.scale)
    run = TrainingRun(run_dir, name="sr_train", steps=config.steps, checkpoint_every=config.checkpoint_every,
                      seed=config.seed, resume=resume, overwrite=overwrite, progress=progress)
    run.create_folder()
    torch.manual_seed(config.seed)
    model = SPAN(channels=config.channels, scale=config.scale).train()
    if config.init == "bilinear":
        init_bilinear_(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.99))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.min_lr)
    model, optimizer = run.prepare(model, optimizer)
    sampler = PatchSampler(train_images, config.scale, config.patch_size, run.generator)
    report = TrainReport(config, command, list(train_images), list(val_images), train_seconds=0.0)
    record = _RunRecord(report, run_dir)
    run.track(record=record, model=model, optimizer=optimizer, scheduler=scheduler)
    run.restore()
    for step in run.loop(f"SPAN x{config.scale} C={config.channels}"):
        began = time.perf_counter()
        loss = _train_step(run, model, optimizer, sampler, config.batch_size)
        scheduler.step()
        report.train_seconds += time.perf_counter() - began
        record.loss_sum, record.loss_count = record.loss_sum + loss, record.loss_count + 1
        run.log(loss=loss, lr=scheduler.get_last_lr()[0])
        if step % config.val_every == 0 or step == config.steps:
            psnr, bicubic_psnr = validate(run.unwrap(model), val_images)
            report.history.append(ValidationPoint(step, record.loss_sum / record.loss_count, psnr, bicubic_psnr))
            record.loss_sum, record.loss_count = 0.0, 0
            if run.is_main and progress:
                tqdm.write(f"step {step}: val Y-PSNR {psnr:.2f} dB (bicubic {bicubic_psnr:.2f} dB)")
    run.finish(f"SPAN x{config.scale} training")
    if run.is_main:
        # in the run folder the files join its state; a separate OUT appears whole, atomically
        target = contextlib.nullcontext(out) if run_dir == out else atomic_output_dir(out, overwrite=overwrite)
        with target as folder:
            save_span(run.unwrap(model).eval(), folder)
            write_json(folder / "training.json", report)
    return report
