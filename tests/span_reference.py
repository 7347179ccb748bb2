"""An independent statement of the official SPAN function (../shared/DESIGN.md section 6), for tests only.

Written from the design notes, not from `compress.models.span`: random official-layout checkpoints, the
training-form forward with plain `F.conv2d` calls, and the fuse of a reparameterisable conv found by probing it.
"""

import torch
import torch.nn.functional as F

RGB_MEAN = (0.4488, 0.4371, 0.4040)
BLOCKS = 6
GAIN = 2
REPARAM = ["conv_1", *[f"block_{b}.c{i}_r" for b in range(1, BLOCKS + 1) for i in (1, 2, 3)], "conv_2"]


def official_shapes(channels: int, scale: int) -> dict[str, tuple[int, ...]]:
    """Every key of the official architecture's state dict with its shape."""
    shapes = {}
    for name in REPARAM:
        c_in, c_out = (3 if name == "conv_1" else channels), channels
        shapes |= {f"{name}.sk.weight": (c_out, c_in, 1, 1), f"{name}.sk.bias": (c_out,),
                   f"{name}.conv.0.weight": (c_in * GAIN, c_in, 1, 1), f"{name}.conv.0.bias": (c_in * GAIN,),
                   f"{name}.conv.1.weight": (c_out * GAIN, c_in * GAIN, 3, 3), f"{name}.conv.1.bias": (c_out * GAIN,),
                   f"{name}.conv.2.weight": (c_out, c_out * GAIN, 1, 1), f"{name}.conv.2.bias": (c_out,),
                   f"{name}.eval_conv.weight": (c_out, c_in, 3, 3), f"{name}.eval_conv.bias": (c_out,)}
    shapes |= {"conv_cat.weight": (channels, 4 * channels, 1, 1), "conv_cat.bias": (channels,),
               "upsampler.0.weight": (3 * scale**2, channels, 3, 3), "upsampler.0.bias": (3 * scale**2,)}
    return shapes


def conv3xc(state: dict, name: str, x: torch.Tensor) -> torch.Tensor:
    """Training form: 1x1 skip + (1x1 -> 3x3 -> 1x1) on the zero-padded input."""
    def p(key):
        return state[f"{name}.{key}"]
    y = F.conv2d(F.pad(x, (1, 1, 1, 1)), p("conv.0.weight"), p("conv.0.bias"))
    y = F.conv2d(y, p("conv.1.weight"), p("conv.1.bias"))
    y = F.conv2d(y, p("conv.2.weight"), p("conv.2.bias"))
    return y + F.conv2d(x, p("sk.weight"), p("sk.bias"))


def fuse(state: dict, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The 3x3 kernel and bias of the affine map `conv3xc`, read off its response to impulses."""
    c_in = state[f"{name}.sk.weight"].shape[1]
    dtype = state[f"{name}.sk.weight"].dtype
    bias = conv3xc(state, name, torch.zeros(1, c_in, 3, 3, dtype=dtype))[0, :, 1, 1]
    impulses = torch.zeros(c_in, c_in, 3, 3, dtype=dtype)
    impulses[torch.arange(c_in), torch.arange(c_in), 1, 1] = 1
    response = conv3xc(state, name, impulses) - bias[None, :, None, None]  # (in, out, 3, 3)
    weight = response.permute(1, 0, 2, 3).flip(2, 3)  # W[o, i, kh, kw] = y_i[o, 2 - kh, 2 - kw]
    return weight, bias


def random_official_state(channels: int, scale: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the official layout (float32 values, so a float32 loader keeps them exactly), with
    `eval_conv` filled by the fuse as the official code saves it."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_shapes(channels, scale).items():
        if ".eval_conv." in key:
            continue
        fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
        std = (1.0 / fan_in) ** 0.5 if len(shape) > 1 else 0.05
        state[key] = (torch.randn(shape, generator=generator) * std).float()
    for name in REPARAM:
        weight, bias = fuse({k: v.double() for k, v in state.items()}, name)
        state[f"{name}.eval_conv.weight"] = weight.float().contiguous()
        state[f"{name}.eval_conv.bias"] = bias.float()
    return state


def forward(state: dict, x: torch.Tensor, scale: int, raw_out1: bool = False) -> torch.Tensor:
    """The official SPAN forward in the dtype of `x`; `raw_out1=True` is the variant that feeds conv_cat the
    first conv's output before its SiLU (what compress computed before the fix)."""
    state = {k: v.to(x.dtype) for k, v in state.items()}
    mean = torch.tensor(RGB_MEAN, dtype=torch.float32).to(x.dtype)  # the official code builds it in float32
    features = conv3xc(state, "conv_1", (x - mean.view(1, 3, 1, 1)) * 255.0)
    out = features
    for b in range(1, BLOCKS + 1):
        raw1 = conv3xc(state, f"block_{b}.c1_r", out)
        out1 = F.silu(raw1)
        out3 = conv3xc(state, f"block_{b}.c3_r", F.silu(conv3xc(state, f"block_{b}.c2_r", out1)))
        out = (out3 + out) * (torch.sigmoid(out3) - 0.5)
        if b == 1:
            out_b1 = out
    last = conv3xc(state, "conv_2", out)
    cat = torch.cat([features, last, out_b1, raw1 if raw_out1 else out1], dim=1)
    out = F.conv2d(cat, state["conv_cat.weight"], state["conv_cat.bias"])
    return F.pixel_shuffle(F.conv2d(out, state["upsampler.0.weight"], state["upsampler.0.bias"], padding=1), scale)
