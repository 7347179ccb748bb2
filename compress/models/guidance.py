"""Classifier-free guidance: the one default scale per family, and the guidance-scale embedding of LCM students.

Scoring, sampling, evaluation and distillation all read `DEFAULT_GUIDANCE`; a consistency student (a UNet with
`time_cond_proj_dim`) gets `guidance_embedding(w)` as its `timestep_cond`, as in diffusers' LCM pipeline.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# sd: the value of the diffusers SD pipelines. toy: the scale at which fd ranks the teacher's samplers
# (25 > 10 > 4 DDIM steps) at class_accuracy 0.99; at 3.0 diversity collapse made fewer steps score better
# (benchmarks/results/teacher_steps_g1.25.md; the 3.0 table is in git history at b561025).
DEFAULT_GUIDANCE = {"sd": 7.5, "toy": 1.25}
W_EMBEDDING_DIM = 256  # `time_cond_proj_dim` of our distilled students (LCM's value)


def guidance_embedding(w: torch.Tensor, dim: int = W_EMBEDDING_DIM) -> torch.Tensor:
    """Sinusoidal embedding of the guidance scale (LCM feeds w - 1 to `timestep_cond`).

    Computed on `w`'s device, in `w`'s dtype when it is floating point (else float32), so a training loop on
    a GPU or in float64 gets its embedding where and as its other inputs are.
    """
    import torch  # here, so that reading DEFAULT_GUIDANCE (the CLI's help does) does not import torch

    dtype = w.dtype if w.dtype.is_floating_point else torch.float32
    w = (w.to(dtype) - 1.0) * 1000.0
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=dtype, device=w.device) * -(math.log(10000.0) / (half - 1)))
    angles = w[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return torch.nn.functional.pad(emb, (0, 1)) if dim % 2 else emb
