"""Read and write SPAN weights: a folder we wrote, or a checkpoint file in either layout.

Layouts accepted (each possibly under a `params_ema`, `params` or `model` key, and with a `module.` prefix):

- training form, as the official code saves it: `conv_1.sk.weight`, `block_1.c1_r.conv.0.weight`, ... The official
  `*.eval_conv.*` tensors are derived from the branches and are dropped when present.
- fused form: `conv_1.weight`, `block_1.c1_r.weight`, ... (ours) or `conv_1.eval_conv.weight`, ... (official only).

Channels and scale are read from the tensor shapes, so no config is needed.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from compress.errors import CompressError
from compress.io import load_state_file
from compress.models.span import SPAN

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_WRAPPER_KEYS = ("params_ema", "params", "model")  # BasicSR (EMA weights preferred), then our training checkpoints
_EVAL_CONV = ".eval_conv."


def save_span(model: SPAN, folder: str | os.PathLike) -> None:
    """Write `model` in our format: `model.safetensors` plus a `config.json` describing it for people."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS_FILE))
    config = {"architecture": "span", "channels": model.channels, "scale": model.scale, "fused": model.is_fused}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def _unwrap(state: dict, source: str) -> dict[str, torch.Tensor]:
    for key in _WRAPPER_KEYS:
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    if not state or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CompressError(f"{source} does not hold a SPAN state dict (keys: {', '.join(list(state)[:5])})")
    return {key.removeprefix("module."): value for key, value in state.items()}


def _canonical_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """Return the state with our key names, and whether it is the fused form."""
    if "conv_1.sk.weight" in state:
        return {key: value for key, value in state.items() if _EVAL_CONV not in key}, False
    return {key.replace(_EVAL_CONV, "."): value for key, value in state.items()}, True


def _infer_hyperparameters(state: dict[str, torch.Tensor], fused: bool, source: str) -> tuple[int, int]:
    stem_key = "conv_1.weight" if fused else "conv_1.sk.weight"
    for key in (stem_key, "upsampler.0.weight"):
        if key not in state:
            raise CompressError(f"{source} is not a SPAN checkpoint: missing key {key}")
    channels = state[stem_key].shape[0]
    upsampler_out = state["upsampler.0.weight"].shape[0]
    scale = math.isqrt(upsampler_out // 3)
    if 3 * scale**2 != upsampler_out:
        raise CompressError(f"{source}: upsampler.0.weight has {upsampler_out} outputs, not 3 * scale**2")
    return channels, scale


def span_from_state_dict(state: dict, source: str = "checkpoint") -> SPAN:
    """Build the SPAN that `state` (any accepted layout) describes and load it; mismatches name the key."""
    state, fused = _canonical_keys(_unwrap(state, source))
    channels, scale = _infer_hyperparameters(state, fused, source)
    model = SPAN(channels=channels, scale=scale)
    if fused:
        model.fuse()
    expected = model.state_dict()
    where = f"{source} (SPAN channels={channels}, scale={scale}, {'fused' if fused else 'training'} form)"
    for key in expected:
        if key not in state:
            raise CompressError(f"{where}: missing key {key}")
        if state[key].shape != expected[key].shape:
            raise CompressError(
                f"{where}: key {key} has shape {tuple(state[key].shape)}, expected {tuple(expected[key].shape)}"
            )
    for key in state:
        if key not in expected:
            raise CompressError(f"{where}: unexpected key {key}")
    model.load_state_dict({key: value.float() for key, value in state.items()})
    return model.eval()


def load_span_path(path: str | os.PathLike) -> SPAN:
    """Load SPAN in eval mode from a folder we wrote (`model.safetensors`) or a checkpoint file in any layout."""
    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file():
            raise CompressError(f"{path} is not a SPAN model folder (no {WEIGHTS_FILE})")
        path = path / WEIGHTS_FILE
    return span_from_state_dict(load_state_file(path), source=str(path))
