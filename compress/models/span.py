"""SPAN, the Swift Parameter-free Attention Network (Wan et al., CVPR 2024 workshops; NTIRE 2024 ESR winner).

Module names and the forward pass follow the authors' code (github.com/hongyuanyu/SPAN,
`basicsr/archs/span_arch.py`), so official checkpoints load key for key:

- The [0, 1] RGB input is normalised as `(x - rgb_mean) * 255`. The upsampler output is returned as it is: there is
  no de-normalisation and no bicubic skip, so the network is trained to output the [0, 1] image directly.
- `conv_cat` sees [conv_1 out, conv_2 out, block-1 out, SiLU(block 6's first conv output)]: the official block
  activates that tensor in place before returning it (../shared/DESIGN.md section 6). Models written by compress
  before this was fixed fed the raw output; `compress.models.span_checkpoint` refuses them.
- Every 3x3 convolution is a `Conv3XC`: while training, a 1x1 skip plus a 1x1 -> 3x3 -> 1x1 chain at twice the width;
  `SPAN.fuse()` collapses each one exactly into a single 3x3 convolution, the deploy form that is counted, benchmarked
  and exported.

One deliberate difference: the official module silently re-fuses on every forward pass in eval mode. Here an unfused
model always runs its branches and fusing is an explicit, one-way step, so both forms can be compared and timed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from compress.errors import CompressError

RGB_MEAN = (0.4488, 0.4371, 0.4040)  # DIV2K mean, as in the official code
IMG_RANGE = 255.0
NUM_BLOCKS = 6
SCALES = (2, 3, 4)


class Conv3XC(nn.Module):
    """Re-parameterisable 3x3 convolution: extra width and a skip help training, and cost nothing after `fuse()`.

    The chain's first 1x1 runs on the zero-padded input (the 3x3 itself is unpadded), so that padding becomes the
    fused convolution's zero padding and fusion is exact at the borders too.
    """

    def __init__(self, in_channels: int, out_channels: int, gain: int = 2):
        super().__init__()
        self.sk = nn.Conv2d(in_channels, out_channels, kernel_size=1)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, in_channels * gain, kernel_size=1),
            nn.Conv2d(in_channels * gain, out_channels * gain, kernel_size=3),
            nn.Conv2d(out_channels * gain, out_channels, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (1, 1, 1, 1))) + self.sk(x)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """The single 3x3 convolution computing the same function (composed in float64 for accuracy)."""
        expand, spatial, project = self.conv
        w1, b1 = expand.weight.double()[:, :, 0, 0], expand.bias.double()
        w2, b2 = spatial.weight.double(), spatial.bias.double()
        w3, b3 = project.weight.double()[:, :, 0, 0], project.bias.double()
        weight = torch.einsum("om,mnhw,nc->ochw", w3, w2, w1)
        bias = w3 @ (b2 + w2.sum((2, 3)) @ b1) + b3
        weight[:, :, 1, 1] += self.sk.weight.double()[:, :, 0, 0]
        bias += self.sk.bias.double()

        fused = nn.Conv2d(w1.shape[1], w3.shape[0], kernel_size=3, padding=1, device=weight.device, dtype=weight.dtype)
        fused.weight.copy_(weight)
        fused.bias.copy_(bias)
        return fused.to(self.sk.weight.dtype)


class SPAB(nn.Module):
    """Swift parameter-free attention block: three convolutions, then `sigmoid(out) - 0.5` gates the residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.c1_r = Conv3XC(channels, channels)
        self.c2_r = Conv3XC(channels, channels)
        self.c3_r = Conv3XC(channels, channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the block output and SiLU of the first convolution's output (SPAN feeds the last block's to
        `conv_cat`). The official block applies `SiLU(inplace=True)` and returns that same tensor, so the
        activated value is what official checkpoints were trained with."""
        out1 = self.act(self.c1_r(x))
        out3 = self.c3_r(self.act(self.c2_r(out1)))
        attention = torch.sigmoid(out3) - 0.5
        return (out3 + x) * attention, out1


class SPAN(nn.Module):
    """SPAN super-resolution network: `channels` features, six SPAB blocks, pixel-shuffle upsampling by `scale`.

    `channels=48, scale=4` is the paper's model (0.426 M parameters fused); the NTIRE 2024 entry used 28 channels.
    """

    def __init__(self, channels: int = 48, scale: int = 4):
        super().__init__()
        if scale not in SCALES:
            raise CompressError(f"SPAN scale must be one of {', '.join(map(str, SCALES))}, not {scale}")
        if channels < 1:
            raise CompressError(f"SPAN channels must be positive, not {channels}")
        self.channels = channels
        self.scale = scale
        self.register_buffer("mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)

        self.conv_1 = Conv3XC(3, channels)
        for index in range(1, NUM_BLOCKS + 1):
            self.add_module(f"block_{index}", SPAB(channels))
        self.conv_cat = nn.Conv2d(channels * 4, channels, kernel_size=1)
        self.conv_2 = Conv3XC(channels, channels)
        self.upsampler = nn.Sequential(
            nn.Conv2d(channels, 3 * scale**2, kernel_size=3, padding=1),
            nn.PixelShuffle(scale),
        )

    @property
    def blocks(self) -> list[SPAB]:
        return [getattr(self, f"block_{index}") for index in range(1, NUM_BLOCKS + 1)]

    @property
    def is_fused(self) -> bool:
        return not any(isinstance(module, Conv3XC) for module in self.modules())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map a [0, 1] RGB batch (N, 3, H, W) to (N, 3, H * scale, W * scale); the output is not clamped."""
        features = self.conv_1((x - self.mean) * IMG_RANGE)
        out_b1, _ = self.block_1(features)
        out = out_b1
        for block in self.blocks[1:]:
            out, out1 = block(out)
        out = self.conv_cat(torch.cat([features, self.conv_2(out), out_b1, out1], dim=1))
        return self.upsampler(out)

    def fuse(self) -> SPAN:
        """Replace every `Conv3XC` by its single 3x3 convolution, in place; returns `self` (no-op if fused)."""
        for parent in list(self.modules()):
            for name, child in parent.named_children():
                if isinstance(child, Conv3XC):
                    setattr(parent, name, child.fuse())
        return self
