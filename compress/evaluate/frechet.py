"""Distances between two feature sets: the Frechet distance (FID's formula) and the kernel distance (KID's).

    FD = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1^1/2 S2 S1^1/2)^1/2)

The trace term uses the symmetric form, whose eigenvalues are those of S1 S2 but real and
non-negative, so numpy's `eigh` suffices and the runtime needs no scipy. FD fits a Gaussian to each set, so it
is biased at small N (it falls as N grows); the kernel distance is an unbiased estimate of MMD^2 and so does not
depend on N in expectation (Binkowski et al., "Demystifying MMD GANs"; Jayasumana et al., "Rethinking FID").
"""

from __future__ import annotations

import numpy as np
import torch


def _as_array(features: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D), got shape {features.shape}")
    return features


def _pair(features1: torch.Tensor | np.ndarray, features2: torch.Tensor | np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    x1, x2 = _as_array(features1), _as_array(features2)
    if x1.shape[1] != x2.shape[1]:
        raise ValueError(f"feature sizes differ: {x1.shape[1]} vs {x2.shape[1]}")
    return x1, x2


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues from rounding -> 0)."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def frechet_distance(features1: torch.Tensor | np.ndarray, features2: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets (sample covariance, ddof=1)."""
    x1, x2 = _pair(features1, features2)
    mu1, mu2 = x1.mean(axis=0), x2.mean(axis=0)
    cov1, cov2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    root1 = _sqrtm_psd(cov1)
    cross = np.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace_covmean = np.sqrt(np.clip(cross, 0.0, None)).sum()
    distance = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_covmean
    return float(max(distance, 0.0))


def kernel_distance(features1: torch.Tensor | np.ndarray, features2: torch.Tensor | np.ndarray) -> float:
    """KID: the unbiased estimate of MMD^2 with KID's cubic polynomial kernel k(x, y) = (x.y / D + 1)^3.

    Within-set means leave out the diagonal (i == j), which is what makes the estimate unbiased; it can
    therefore be slightly negative when the two sets come from one distribution.
    """
    x1, x2 = _pair(features1, features2)
    dim = x1.shape[1]
    k11, k22, k12 = ((a @ b.T / dim + 1.0) ** 3 for a, b in ((x1, x1), (x2, x2), (x1, x2)))
    n1, n2 = len(x1), len(x2)
    within1 = (k11.sum() - np.trace(k11)) / (n1 * (n1 - 1))
    within2 = (k22.sum() - np.trace(k22)) / (n2 * (n2 - 1))
    return float(within1 + within2 - 2.0 * k12.mean())
