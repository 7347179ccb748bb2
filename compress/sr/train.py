"""Train SPAN with L1 loss on random crops of a folder of high-resolution images (`compress sr train`).

Low-resolution inputs are made on the fly (antialiased bicubic, stored in 8 bits as at evaluation); crops get one of
the eight flips/rotations. Adam with cosine decay. All randomness after the seeded initialisation comes from one
generator whose state is checkpointed with the model and optimiser, so a resumed run ends with exactly the weights an
uninterrupted one would have.

By default the network starts as bilinear upscaling (`init_bilinear_`): the published SPAN has no image skip, so from
PyTorch's default initialisation it spends its first thousands of steps learning to copy the input, which a short CPU
run cannot afford. `init="default"` keeps the authors' initialisation; the architecture is the same either way.
"""

from __future__ import annotations

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
from compress.io import atomic_file, atomic_output_dir, load_torch_checkpoint, write_json
from compress.sr.evaluate import degrade, score_image, summarize
from compress.sr.files import list_images, read_image
from compress.sr.loading import save_span
from compress.sr.span import IMG_RANGE, SPAN

CHECKPOINT_FILE = "last.pt"
VAL_CROP = 256  # validation scores centre crops of at most this side, to keep it quick


@dataclass
class TrainConfig:
    """Everything that determines the trained weights (with the data); a resumed run must use the same."""

    scale: int
    channels: int
    iters: int
    batch_size: int = 16
    patch_size: int = 48  # low-resolution crop side
    lr: float = 5e-4
    min_lr: float = 1e-6
    seed: int = 0
    val_every: int = 500
    ckpt_every: int = 500
    init: str = "bilinear"  # or "default" (PyTorch's, as the official code)


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
    """Random high-resolution crops in one of the 8 flips/rotations, paired with their low-resolution inputs."""

    def __init__(self, images: dict[str, torch.Tensor], scale: int, patch_size: int, generator: torch.Generator):
        self.hr_size = patch_size * scale
        for name, image in images.items():
            if min(image.shape[-2:]) < self.hr_size:
                raise CompressError(f"image {name} ({image.shape[-1]}x{image.shape[-2]}) is smaller than the "
                                    f"{self.hr_size}-pixel training crop (lower --patch-size)")
        self.images = list(images.values())
        self.scale = scale
        self.generator = generator

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def __call__(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        patches = []
        for _ in range(batch_size):
            image = self.images[self._randint(len(self.images))]
            top = self._randint(image.shape[1] - self.hr_size + 1)
            left = self._randint(image.shape[2] - self.hr_size + 1)
            patch = image[:, top : top + self.hr_size, left : left + self.hr_size]
            patch = torch.rot90(patch, self._randint(4), dims=(1, 2))
            patches.append(patch.flip(2) if self._randint(2) else patch)
        hr = torch.stack(patches)
        return degrade(hr, self.scale), hr


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


def _train_step(model: SPAN, optimizer: torch.optim.Optimizer, sampler: PatchSampler, batch_size: int) -> float:
    lr, hr = sampler(batch_size)
    loss = F.l1_loss(model(lr), hr)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _check_config(config: TrainConfig) -> None:
    for name in ("iters", "batch_size", "patch_size", "val_every", "ckpt_every"):
        if getattr(config, name) < 1:
            raise CompressError(f"--{name.replace('_', '-')} must be positive, not {getattr(config, name)}")
    if config.init not in ("bilinear", "default"):
        raise CompressError(f"--init must be 'bilinear' or 'default', not {config.init!r}")
    if config.init == "bilinear" and config.channels < 3:
        raise CompressError("--init bilinear needs at least 3 channels (it carries the RGB input in 3 of them)")


def _check_resumable(checkpoint: dict[str, Any], config: TrainConfig, train_images: list[str], path: Path) -> None:
    for key, value in dataclasses.asdict(config).items():
        if checkpoint["config"].get(key) != value:
            raise CompressError(f"cannot resume {path}: it was made with {key}={checkpoint['config'].get(key)}, "
                                f"not {value}")
    if checkpoint["train_images"] != train_images:
        raise CompressError(f"cannot resume {path}: it was made with other training images")


def train_span(
    data: str | os.PathLike,
    out: str | os.PathLike,
    config: TrainConfig,
    val_data: str | os.PathLike | None = None,
    ckpt_dir: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    command: str | None = None,
) -> TrainReport:
    """Train SPAN on the images in `data` and write it with `training.json` to the folder `out`.

    Checkpoints go to `ckpt_dir` (default: `OUT.ckpt`) every `config.ckpt_every` steps; `resume=True` continues from
    the last one. Validation scores centre crops of `val_data` (default: the training images).
    """
    _check_config(config)
    out = Path(out)
    checkpoint_path = Path(ckpt_dir or f"{out}.ckpt") / CHECKPOINT_FILE
    if checkpoint_path.exists() and not (resume or overwrite):
        raise CompressError(f"checkpoint {checkpoint_path} exists: pass --resume to continue it or --overwrite")
    if resume and not checkpoint_path.is_file():
        raise CompressError(f"nothing to resume: {checkpoint_path} not found")
    train_images = _read_folder(data)
    val_images = _read_folder(val_data) if val_data is not None else train_images

    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        torch.manual_seed(config.seed)
        model = SPAN(channels=config.channels, scale=config.scale).train()
        if config.init == "bilinear":
            init_bilinear_(model)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.99))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.iters, eta_min=config.min_lr)
        generator = torch.Generator().manual_seed(config.seed)
        sampler = PatchSampler(train_images, config.scale, config.patch_size, generator)
        report = TrainReport(config, command, list(train_images), list(val_images), train_seconds=0.0)
        start, loss_sum, loss_count = 0, 0.0, 0
        if resume:
            checkpoint = load_torch_checkpoint(checkpoint_path)
            _check_resumable(checkpoint, config, report.train_images, checkpoint_path)
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
            generator.set_state(checkpoint["generator"])
            report.history = [ValidationPoint(**point) for point in checkpoint["history"]]
            start, loss_sum, loss_count = checkpoint["step"], checkpoint["loss_sum"], checkpoint["loss_count"]
            report.train_seconds = checkpoint["train_seconds"]

        def save_checkpoint(step: int) -> None:
            state = {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(), "step": step, "config": dataclasses.asdict(config),
                "train_images": report.train_images, "history": [dataclasses.asdict(p) for p in report.history],
                "loss_sum": loss_sum, "loss_count": loss_count, "train_seconds": report.train_seconds,
            }
            checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(checkpoint_path) as tmp_path:
                torch.save(state, tmp_path)

        progress = tqdm(total=config.iters, initial=start, desc=f"SPAN x{config.scale} C={config.channels}")
        for step in range(start + 1, config.iters + 1):
            began = time.perf_counter()
            loss = _train_step(model, optimizer, sampler, config.batch_size)
            scheduler.step()
            report.train_seconds += time.perf_counter() - began
            loss_sum, loss_count = loss_sum + loss, loss_count + 1
            progress.update()
            progress.set_postfix(l1=f"{loss:.4f}", refresh=False)
            if step % config.val_every == 0 or step == config.iters:
                psnr, bicubic_psnr = validate(model, val_images)
                report.history.append(ValidationPoint(step, loss_sum / loss_count, psnr, bicubic_psnr))
                loss_sum, loss_count = 0.0, 0
                progress.write(f"step {step}: val Y-PSNR {psnr:.2f} dB (bicubic {bicubic_psnr:.2f} dB)")
            if step % config.ckpt_every == 0 or step == config.iters:
                save_checkpoint(step)
        progress.close()

        save_span(model.eval(), tmp)
        write_json(tmp / "training.json", report)
    return report
