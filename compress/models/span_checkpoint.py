"""Read and write SPAN weights in the official layout, so the SR ecosystem and compress read each other's files.

Layouts read (each possibly under a `params_ema`, `params` or `model` key, and with a `module.` prefix):

- training form, as the official code saves it: `conv_1.sk.weight`, `block_1.c1_r.conv.0.weight`, ... plus the
  derived `*.eval_conv.*` tensors, which are dropped on load (the branches define the function).
- fused form: `conv_1.eval_conv.weight`, `block_1.c1_r.eval_conv.weight`, ... (the official module's deploy tensors).

What we write (`save_span`, `official_state_dict`) is that same official layout, `eval_conv` filled by the exact fuse,
so spandrel (chaiNNer, ComfyUI), which detects SPAN by its `eval_conv` keys, opens it. Channels and scale are read
from the tensor shapes. Models written by compress before its SPAN computed the official function have no
`eval_conv` keys and a `config.json` without `"function": "official"`; they are refused (their weights compute
another function under the official network).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from compress.errors import CompressError
from compress.io import load_state_file, read_json
from compress.models.registry import SPAN_WEIGHTS_FILE
from compress.models.span import NUM_BLOCKS, SPAN, Conv3XC

CONFIG_FILE = "config.json"
FUNCTION = "official"  # config.json marker: the weights were trained with (and compute) the official SPAN
_WRAPPER_KEYS = ("params_ema", "params", "model")  # BasicSR (EMA weights preferred), then our training checkpoints
_EVAL_CONV = ".eval_conv."
REPARAM_CONVS = ("conv_1", *(f"block_{b}.c{i}_r" for b in range(1, NUM_BLOCKS + 1) for i in (1, 2, 3)), "conv_2")
LEGACY = ("was written by an earlier compress whose SPAN fed conv_cat the raw output of block 6's first convolution "
          "(the official network feeds its SiLU), so its weights compute another function here; retrain it with "
          "`compress sr train` (the shipped span-x2 and span-x4 were retrained)")


def _branches_of_fused(conv: nn.Conv2d, gain: int = 2) -> dict[str, torch.Tensor]:
    """Training-branch tensors that compute exactly the fused 3x3 `conv`: the skip is zero, the first 1x1 copies
    the input into the first `in` channels, the 3x3 holds the fused kernel, the last 1x1 keeps the first `out`."""
    weight, bias = conv.weight.detach(), conv.bias.detach()
    out_c, in_c = weight.shape[:2]
    zeros = weight.new_zeros
    expand = zeros(in_c * gain, in_c, 1, 1)
    expand[:in_c, :, 0, 0] = torch.eye(in_c)
    spatial = zeros(out_c * gain, in_c * gain, 3, 3)
    spatial[:out_c, :in_c] = weight
    project = zeros(out_c, out_c * gain, 1, 1)
    project[:, :out_c, 0, 0] = torch.eye(out_c)
    return {"sk.weight": zeros(out_c, in_c, 1, 1), "sk.bias": zeros(out_c),
            "conv.0.weight": expand, "conv.0.bias": zeros(in_c * gain),
            "conv.1.weight": spatial, "conv.1.bias": torch.cat([bias, zeros(out_c * (gain - 1))]),
            "conv.2.weight": project, "conv.2.bias": zeros(out_c)}


def official_state_dict(model: SPAN, branches: bool = True) -> dict[str, torch.Tensor]:
    """The state dict of the official architecture computing `model`'s function: for every re-parameterisable
    conv its training branches (`sk`, `conv.0..2`; exact stand-ins when `model` is fused) and `eval_conv` (the
    exact fuse), then `conv_cat` and `upsampler.0`. `branches=False` keeps only the deploy tensors."""
    state: dict[str, torch.Tensor] = {}
    for name in REPARAM_CONVS:
        module = model.get_submodule(name)
        fused = module.fuse() if isinstance(module, Conv3XC) else module
        if branches:
            parts = ({k: v.detach() for k, v in module.state_dict().items()} if isinstance(module, Conv3XC)
                     else _branches_of_fused(module))
            state.update({f"{name}.{key}": value for key, value in parts.items()})
        state[f"{name}.eval_conv.weight"] = fused.weight.detach()
        state[f"{name}.eval_conv.bias"] = fused.bias.detach()
    for key, value in model.state_dict().items():
        if key.startswith(("conv_cat.", "upsampler.")):
            state[key] = value.detach()
    return {key: value.contiguous().cpu() for key, value in state.items()}


def save_span(model: SPAN, folder: str | os.PathLike) -> None:
    """Write `model` as `model.safetensors` in the official layout (training branches unless fused) plus a
    `config.json` for people and for the `function` marker."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(official_state_dict(model, branches=not model.is_fused), str(folder / SPAN_WEIGHTS_FILE))
    config = {"architecture": "span", "channels": model.channels, "scale": model.scale, "fused": model.is_fused,
              "function": FUNCTION}
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def export_official(model: SPAN, path: str | os.PathLike, wrapper: str | None = "params") -> Path:
    """Write the official training layout (`eval_conv` included) to a `.pth` (under `wrapper`, BasicSR's `params`
    by default) or a `.safetensors` file, for spandrel, chaiNNer, ComfyUI and BasicSR."""
    path = Path(path)
    state = official_state_dict(model)
    if path.suffix == ".safetensors":
        if wrapper is not None:
            raise CompressError("a .safetensors file holds tensors only: use a .pth file for a `params` wrapper")
        save_file(state, str(path))
    elif path.suffix in (".pth", ".pt"):
        torch.save(state if wrapper is None else {wrapper: state}, path)
    else:
        raise CompressError(f"the official layout is written as .pth or .safetensors, not {path.name}")
    return path


def _unwrap(state: dict, source: str) -> dict[str, torch.Tensor]:
    for key in _WRAPPER_KEYS:
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    if not state or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CompressError(f"{source} does not hold a SPAN state dict (keys: {', '.join(list(state)[:5])})")
    return {key.removeprefix("module."): value for key, value in state.items()}


def _canonical_keys(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], bool]:
    """Return the state with our module's key names, and whether it is the fused form."""
    if "upsampler.0.weight" in state and not any(_EVAL_CONV in key for key in state):
        raise CompressError(f"{source} {LEGACY} (an official checkpoint always holds *.eval_conv.* tensors)")
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
    state, fused = _canonical_keys(_unwrap(state, source), source)
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
        config = path / CONFIG_FILE
        if config.is_file() and read_json(config).get("function") != FUNCTION:  # create() checked "architecture"
            raise CompressError(f"{path} {LEGACY}")
        if not (path / SPAN_WEIGHTS_FILE).is_file():
            raise CompressError(f"{path} is not a SPAN model folder (no {SPAN_WEIGHTS_FILE})")
        path = path / SPAN_WEIGHTS_FILE
    return span_from_state_dict(load_state_file(path), source=str(path))
