"""torch eager, on the CPU or a CUDA GPU; GPU calls are timed with CUDA events between device synchronisations."""

from __future__ import annotations

import copy

import torch

from compress.bench.backends import Session


def unavailable(device: str) -> str | None:
    if device == "cpu":
        return None
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA device is visible to torch"
    return None


class TorchSession(Session):
    def __init__(self, module: torch.nn.Module, example: dict[str, torch.Tensor], device: str):
        self.cuda = device == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            module = copy.deepcopy(module)  # the caller's model stays on the CPU
        self.module = module.to(device).eval()
        self.args = tuple(t.to(device) for t in example.values())
        name = torch.cuda.get_device_name() if self.cuda else "cpu"
        self.detail = {"runtime": f"torch {torch.__version__}", "device": name}

    def call(self) -> None:
        with torch.inference_mode():
            self.module(*self.args)
        if self.cuda:
            torch.cuda.synchronize()

    def timed_call(self) -> float:
        if not self.cuda:
            return super().timed_call()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()  # nothing queued before the start event
        start.record()
        with torch.inference_mode():
            self.module(*self.args)
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    def device_peak_mb(self) -> float | None:
        return round(torch.cuda.max_memory_allocated() / 2**20, 1) if self.cuda else None

    def close(self) -> None:
        del self.module, self.args
        if self.cuda:
            torch.cuda.empty_cache()


def load(target, device: str, threads: int) -> TorchSession:
    """Threads are set by the caller (torch's pool is process-wide)."""
    return TorchSession(target.module, target.example, device)
