"""The one training harness: `compress recover`, `compress distill` and `compress sr train` all run through it.

`TrainingRun` owns what every loop must get right on one CPU and on several GPUs under `accelerate launch`:

* devices: `prepare` hands models and optimizers to accelerate (DDP across processes, autocast for mixed
  precision); an `EMA` is created after that, so its copy lives where the weights it averages live;
* data: every rank draws the same *global* batch from one seeded generator and keeps its own slice
  (`local`), so N ranks train on N different shares that together are the batch one process would draw;
  the first log record holds a checksum of each rank's share (`rank_batch_sums`) to show it, and every
  logged loss is the mean over the ranks;
* the run folder: every rank checks it, only the main process deletes, creates or writes in it, and the
  others wait at a barrier (`create_folder`, `main_process_first`, `finish`);
* `checkpoint.pt` every `checkpoint_every` steps and at the last, `--resume` from it, and `NAME_log.jsonl`
  with its plot. Checkpoints hold only tensors, numbers and dicts of them, so they load with
  `torch.load(weights_only=True)`; a resumed run continues bit-for-bit like the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from compress.errors import CompressError
from compress.io import atomic_file, load_torch_checkpoint
from compress.runs import CHECKPOINT, check_run


class EMA:
    """Exponential moving average of a module, held in a module of its own (`average`).

    `average` is a deep copy made when the EMA is created, so `.to()` on it moves real tensors, and `update`
    reads the source's tensors afresh each time: the average follows any later change of device or dtype
    of either module instead of updating tensors that `.to()` has replaced.
    """

    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise CompressError(f"an EMA decay must be in [0, 1), not {decay}")
        self.decay = decay
        self.average = copy.deepcopy(module).requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        source = module.state_dict()
        for key, value in self.average.state_dict().items():
            new = source[key].to(device=value.device, dtype=value.dtype)
            if value.dtype.is_floating_point:
                value.lerp_(new, 1 - self.decay)
            else:
                value.copy_(new)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.average.state_dict())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.average.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.average.load_state_dict(state)


class JsonlLog:
    """Append-only training log; on resume, lines past the checkpoint's step are dropped."""

    def __init__(self, path: Path, resume_step: int = 0):
        self.path = path
        kept = []
        if resume_step and path.exists():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= resume_step]
        path.write_text("".join(line + "\n" for line in kept))
        self.started = time.time()
        self.offset = json.loads(kept[-1])["seconds"] if kept else 0.0

    def write(self, step: int, **values: Any) -> None:
        record = {"step": step, **values, "seconds": round(self.offset + time.time() - self.started, 2)}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def plot_log(log_path: Path, png_path: Path, title: str) -> None:
    """One line per loss term against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    keys = [k for k in records[0] if k.startswith("loss")] if records else []
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        ax.plot([r["step"] for r in records], [r[key] for r in records], label=key, linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if keys:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


class TrainingRun:
    """One resumable training run in the folder `out` (see the module docstring for what it owns).

    Use: construct (checks only), load models, `create_folder()`, `prepare(...)`, make `EMA`s, `track(...)`
    what a checkpoint holds, `restore()`, then `for step in run.loop(): ...; run.log(loss=...)`, then
    `finish()`; write outputs only where `run.is_main`.
    """

    def __init__(self, out: str | os.PathLike, *, name: str, steps: int, checkpoint_every: int, seed: int = 0,
                 resume: bool = False, overwrite: bool = False, mixed_precision: str = "no", grad_accum: int = 1,
                 progress: bool = True):
        check_run(out, steps=steps, checkpoint_every=checkpoint_every, grad_accum=grad_accum,
                  mixed_precision=mixed_precision, resume=resume, overwrite=overwrite)
        self.out, self.name, self.steps, self.checkpoint_every = Path(out), name, steps, checkpoint_every
        self.resume, self.overwrite, self.progress = resume, overwrite, progress
        import accelerate  # on first use, as before: only training runs pay for this import
        # accelerate makes CPU processes one distributed group (MULTI_CPU over gloo) only when told `cpu=True`;
        # without it, `accelerate launch --num_processes 2` on a machine without GPUs runs two unrelated jobs.
        cpu = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.accelerator.is_available()
        try:  # under `accelerate launch` this joins the other ranks, so all have checked the folder before
            self.accelerator = accelerate.Accelerator(mixed_precision=mixed_precision, cpu=cpu,
                                                      gradient_accumulation_steps=grad_accum)
        except ValueError as exc:  # e.g. fp16 asked for where the device cannot do it
            raise CompressError(f"--mixed-precision {mixed_precision}: {str(exc).splitlines()[0]}") from None
        self.generator = torch.Generator().manual_seed(seed)  # the same on every rank: global batches
        self.start = 0
        self._tracked: dict[str, Any] = {}
        self._terms: dict[str, Any] = {}
        self._batch_sum: float | None = None
        self._log: JsonlLog | None = None

    # -- processes -------------------------------------------------------------------------------------------
    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    def main_process_first(self) -> contextlib.AbstractContextManager:
        """Run the block on the main process first (it writes a cache), then on the others (they read it)."""
        return self.accelerator.main_process_first()

    def create_folder(self) -> None:
        """Start over (`--overwrite`) or create the run folder, on the main process only; others wait.

        A run killed while writing its checkpoint leaves a temporary file beside it; resuming removes it."""
        if self.is_main:
            if self.overwrite and not self.resume and self.out.exists():
                shutil.rmtree(self.out)
            self.out.mkdir(parents=True, exist_ok=True)
            for stale in self.out.glob(f".{Path(CHECKPOINT).stem}.tmp-*"):
                stale.unlink()
        self.accelerator.wait_for_everyone()

    # -- models and data -------------------------------------------------------------------------------------
    def prepare(self, *objects: Any) -> Any:
        """accelerate's `prepare` (device placement, DDP, mixed precision) for models and optimizers."""
        return self.accelerator.prepare(*objects)

    def unwrap(self, model: nn.Module) -> nn.Module:
        return self.accelerator.unwrap_model(model)

    def global_batch(self, per_process: int) -> int:
        """Items drawn per micro-batch by every rank: the batch of all processes together."""
        return per_process * self.world

    def local(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's slice of global-batch tensors, moved to its device."""
        rank, n = self.accelerator.process_index, len(tensors[0]) // self.world
        share = tuple(t[rank * n:(rank + 1) * n].to(self.device) for t in tensors)
        if self._batch_sum is None:
            self._batch_sum = float(share[0].double().sum())
        return share

    # -- checkpoints, log, loop ------------------------------------------------------------------------------
    def track(self, **objects: Any) -> None:
        """Objects with `state_dict`/`load_state_dict` that a checkpoint holds (models are stored unwrapped)."""
        self._tracked.update(objects)

    def restore(self) -> int:
        """Load the tracked objects and the generator from `checkpoint.pt` when resuming; the step to start at."""
        if self.resume:
            path = self.out / CHECKPOINT
            state = load_torch_checkpoint(path)
            if not isinstance(state, dict) or "step" not in state:
                raise CompressError(f"checkpoint {path} is not a training checkpoint of this toolkit")
            for key, obj in self._tracked.items():
                if key not in state:
                    raise CompressError(f"checkpoint {path} was not written by this command (it has no {key!r})")
                self._unwrapped(obj).load_state_dict(state[key])
            self.generator.set_state(state["generator"])
            self.start = state["step"]
        if self.is_main:
            self._log = JsonlLog(self.out / f"{self.name}_log.jsonl", resume_step=self.start)
        return self.start

    def _unwrapped(self, obj: Any) -> Any:
        return self.unwrap(obj) if isinstance(obj, nn.Module) else obj

    def save_checkpoint(self, step: int) -> None:
        """Write `checkpoint.pt` atomically (a crash mid-write leaves the previous one); main process only."""
        if not self.is_main:
            return
        state = {key: self._unwrapped(obj).state_dict() for key, obj in self._tracked.items()}
        state.update(generator=self.generator.get_state(), step=step)
        with atomic_file(self.out / CHECKPOINT) as tmp:
            torch.save(state, tmp)

    def log(self, **terms: Any) -> None:
        """Values to log for the current step (written once the step's body is done)."""
        self._terms.update(terms)

    def loop(self, desc: str) -> Iterator[int]:
        """Yield the step numbers start+1 .. steps; after each: log, progress bar, checkpoint when due."""
        bar = tqdm(range(self.start + 1, self.steps + 1), initial=self.start, total=self.steps, desc=desc,
                   disable=not (self.progress and self.is_main))
        for step in bar:
            self._terms = {}
            yield step
            if step == self.start + 1 and self._batch_sum is not None:
                sums = self.accelerator.gather(torch.tensor([self._batch_sum], device=self.device))
                self._terms["rank_batch_sums"] = [round(float(s), 6) for s in sums.cpu()]
            self._average_losses()
            if "loss" in self._terms:
                bar.set_postfix(loss=f"{self._terms['loss']:.5f}", refresh=False)
            if self._log is not None and self._terms:
                self._log.write(step, **self._terms)
            if step % self.checkpoint_every == 0 or step == self.steps:
                self.save_checkpoint(step)
        bar.close()

    def _average_losses(self) -> None:
        """Log each `loss*` term as its mean over the ranks (each rank computed it on its own share)."""
        keys = sorted(k for k, v in self._terms.items() if k.startswith("loss") and isinstance(v, float))
        if self.world > 1 and keys:
            values = torch.tensor([self._terms[k] for k in keys], dtype=torch.float64, device=self.device)
            for key, value in zip(keys, self.accelerator.reduce(values, "mean").tolist(), strict=True):
                self._terms[key] = value

    def finish(self, title: str) -> None:
        """Wait for every rank; the main process plots the log."""
        self.accelerator.wait_for_everyone()
        if self.is_main and self._log is not None and self._log.path.read_text():
            plot_log(self._log.path, self.out / f"{self.name}_loss.png", title)
