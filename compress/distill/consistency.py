"""The maths of latent consistency distillation (Luo et al. 2023; diffusers' LCM example).

Everything here is a pure function of tensors and the noise schedule, so the LCM and Direct-CM
objectives share it and tests can check it without a model.
"""

from __future__ import annotations

import torch

TIMESTEP_SCALING = 10.0
SIGMA_DATA = 0.5


def boundary_coefficients(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip, c_out of the consistency parameterisation: f(x, t) = c_skip x + c_out x0_pred.

    c_skip = 0.25 / ((10t)^2 + 0.25), c_out = 10t / sqrt((10t)^2 + 0.25), so at t = 0 the model is
    the identity (the consistency boundary condition).
    """
    scaled = TIMESTEP_SCALING * t.float()
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
    return c_skip, c_out


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.ndim - 1))).to(like.dtype)


def predicted_x0(eps: torch.Tensor, x: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x0 from an epsilon prediction at timestep t."""
    a = _expand(alphas_cumprod[t], x)
    return (x - (1 - a).sqrt() * eps) / a.sqrt()


def consistency_output(eps: torch.Tensor, x: torch.Tensor, t: torch.Tensor,
                       alphas_cumprod: torch.Tensor) -> torch.Tensor:
    c_skip, c_out = boundary_coefficients(t)
    return _expand(c_skip, x) * x + _expand(c_out, x) * predicted_x0(eps, x, t, alphas_cumprod)


def ddim_step(eps: torch.Tensor, x: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor,
              alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM from t to t_prev (t_prev < 0 means the clean sample)."""
    x0 = predicted_x0(eps, x, t, alphas_cumprod)
    a_prev = torch.where(t_prev >= 0, alphas_cumprod[t_prev.clamp_min(0)], torch.ones_like(t_prev, dtype=torch.float))
    a_prev = _expand(a_prev, x)
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


def huber(pred: torch.Tensor, target: torch.Tensor, c: float) -> torch.Tensor:
    """Pseudo-Huber loss sqrt(d^2 + c^2) - c, mean over elements."""
    return (torch.sqrt((pred.float() - target.float()) ** 2 + c**2) - c).mean()
