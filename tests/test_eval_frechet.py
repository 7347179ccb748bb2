import numpy as np
import pytest
import torch

from compress.evaluate import frechet_distance, kernel_distance


def gaussian_with_exact_stats(mean: np.ndarray, variances: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, D) samples whose sample mean and (ddof=1) covariance are exactly `mean` and diag(`variances`)."""
    rng = np.random.default_rng(seed)
    centred = rng.standard_normal((n, len(mean)))
    centred -= centred.mean(axis=0)
    q, _ = np.linalg.qr(centred)  # orthonormal, still centred columns
    return mean + q * np.sqrt((n - 1) * variances)


def test_identical_sets_are_at_distance_zero():
    x = np.random.default_rng(0).standard_normal((300, 16))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)


def test_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    s1, s2 = rng.uniform(0.1, 3.0, 8), rng.uniform(0.1, 3.0, 8)
    x1, x2 = gaussian_with_exact_stats(mu1, s1, 200, 2), gaussian_with_exact_stats(mu2, s2, 300, 3)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert frechet_distance(x1, x2) == pytest.approx(expected, rel=1e-6)


def test_is_symmetric_and_accepts_tensors():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((100, 10))
    b = rng.standard_normal((150, 10)) @ rng.standard_normal((10, 10)) + 1.0
    forward = frechet_distance(a, b)
    assert forward == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert forward == pytest.approx(frechet_distance(torch.from_numpy(a).float(), torch.from_numpy(b)), rel=1e-5)


def test_matches_scipy_sqrtm_for_full_covariances():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(5)
    a = rng.standard_normal((400, 12)) @ rng.standard_normal((12, 12))
    b = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12)) + 0.5
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(c1 @ c2).real
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(c1 + c2 - 2 * covmean)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_rank_deficient_features_give_a_finite_distance():
    x = np.random.default_rng(6).standard_normal((50, 4))
    padded = np.hstack([x, np.zeros((50, 60))])  # dead units, as a ReLU layer has
    assert np.isfinite(frechet_distance(padded, padded + 0.1))


def test_rejects_mismatched_feature_sizes():
    with pytest.raises(ValueError, match="feature sizes differ"):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))


def kid_by_loops(x: np.ndarray, y: np.ndarray) -> float:
    """KID written out term by term from Binkowski et al.'s unbiased MMD^2 estimator (eq. 3)."""
    d = x.shape[1]

    def k(a, b):
        return (float(a @ b) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kernel_distance_matches_the_estimator_written_out():
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((30, 6)), rng.standard_normal((25, 6)) * 1.3 + 0.2
    assert kernel_distance(x, y) == pytest.approx(kid_by_loops(x, y), rel=1e-9)
    assert kernel_distance(torch.from_numpy(x), y) == pytest.approx(kernel_distance(x, y), rel=1e-9)


def test_kernel_distance_is_unbiased_where_the_frechet_distance_is_not():
    """Two small sets from one distribution: KID averages to 0 within its error, FD stays well above 0 and
    falls as the sets grow (its small-sample bias, the reason KID is reported beside it)."""
    rng = np.random.default_rng(6)
    kids = [kernel_distance(rng.standard_normal((20, 8)), rng.standard_normal((20, 8))) for _ in range(400)]
    assert abs(np.mean(kids)) < 3 * np.std(kids) / np.sqrt(len(kids))
    small = np.mean([frechet_distance(rng.standard_normal((20, 8)), rng.standard_normal((20, 8))) for _ in range(50)])
    large = np.mean([frechet_distance(rng.standard_normal((400, 8)), rng.standard_normal((400, 8)))
                     for _ in range(50)])
    assert small > 5 * large > 0


def test_kernel_distance_grows_with_the_shift():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((200, 8))
    shifts = [kernel_distance(x, rng.standard_normal((200, 8)) + s) for s in (0.0, 0.5, 1.0)]
    assert shifts[0] < shifts[1] < shifts[2]
