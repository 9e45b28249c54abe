"""`metrics`: the Fréchet distance (closed forms, invariances, sanity on real images) and confusion matrices."""
import math

import pytest
import torch

from dalle_lessons.evaluate import degrade
from dalle_lessons.metrics import (clip_frechet, confusion_matrix, feature_frechet, frechet_distance,
                                   gaussian_stats)


def random_spd(d: int, seed: int) -> torch.Tensor:
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_identical_gaussians_are_at_distance_zero():
    mu, sigma = torch.randn(6, dtype=torch.float64), random_spd(6, 0)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9


def test_diagonal_covariances_match_the_closed_form():
    """For commuting (diagonal) covariances the trace term is sum (sqrt(a) - sqrt(b))^2."""
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 0.25])
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    expected = 1 + 0 + 4 + sum((math.sqrt(x) - math.sqrt(y)) ** 2 for x, y in zip(a.tolist(), b.tolist()))
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, abs=1e-9)


def test_one_dimension_is_the_wasserstein_distance_of_two_normals():
    value = frechet_distance(torch.tensor([2.0]), torch.tensor([[9.0]]), torch.tensor([-1.0]), torch.tensor([[1.0]]))
    assert value == pytest.approx(3.0 ** 2 + (3.0 - 1.0) ** 2)


def test_distance_is_symmetric_and_rotation_invariant():
    mu1, mu2 = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    s1, s2 = random_spd(5, 1), random_spd(5, 2)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    d = frechet_distance(mu1, s1, mu2, s2)
    assert d == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-8)
    assert d == pytest.approx(frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s2 @ q.T), rel=1e-8)
    assert d > 0


def test_the_trace_term_matches_a_matrix_square_root_by_power_series_check():
    """Tr((S1 S2)^1/2) computed another way: the eigenvalues of S1 S2 (real and positive)."""
    s1, s2 = random_spd(4, 4), random_spd(4, 5)
    eig = torch.linalg.eigvals(s1 @ s2).real.clamp(min=0).sqrt().sum()
    zero = torch.zeros(4, dtype=torch.float64)
    expected = float(s1.trace() + s2.trace() - 2 * eig)
    assert frechet_distance(zero, s1, zero, s2) == pytest.approx(expected, rel=1e-8)


def test_gaussian_stats_checks_its_input():
    mu, sigma = gaussian_stats(torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]]))
    assert torch.allclose(mu, torch.tensor([2.0, 4.0], dtype=torch.float64))
    assert sigma.shape == (2, 2) and sigma.dtype == torch.float64
    with pytest.raises(ValueError, match="n >= 2"):
        gaussian_stats(torch.zeros(1, 3))
    assert feature_frechet(torch.randn(50, 3), torch.randn(50, 3) + 5) > 50


def test_confusion_matrix_counts_and_the_unreadable_column():
    counts = confusion_matrix(["red", "red", "blue", "blue"], ["red", "blue", "blue", None], ["red", "blue"])
    assert counts.tolist() == [[1, 1, 0], [0, 1, 1]]
    with pytest.raises(ValueError, match="not among the labels"):
        confusion_matrix(["pink"], ["red"], ["red", "blue"])
    with pytest.raises(ValueError, match="pair up"):
        confusion_matrix(["red"], [], ["red"])


@pytest.fixture(scope="module")
def clip_and_images():
    from dalle_lessons.clip_eval import load_clip
    from dalle_lessons.shapes import ShapesDataset
    clip, _ = load_clip()
    images = ShapesDataset("test", 1000, seed=0).images_uint8().float() / 255
    return clip, images


def test_real_images_sit_near_the_floor_and_degradation_raises_the_distance(clip_and_images):
    """Two halves of the test split are close; blur and noise move a half away, monotonically.
    (Measured with 500 + 500 images: floor 1.5; blur 0.7 / 1 / 1.5 / 2 px: 2.1 / 3.3 / 5.7 / 8.1;
    noise 0.05 / 0.1 / 0.2: 1.9 / 3.7 / 13.2. A 0.5 px blur, 1.6, is within the floor's noise.)"""
    clip, images = clip_and_images
    first, second = images[:500], images[500:]
    floor = clip_frechet(clip, first, second)
    blurred = [clip_frechet(clip, first, degrade(second, blur=b, seed=1)) for b in (0.7, 1.0, 1.5, 2.0)]
    noisy = [clip_frechet(clip, first, degrade(second, noise=n, seed=1)) for n in (0.05, 0.1, 0.2)]
    assert floor < blurred[0] < blurred[1] < blurred[2] < blurred[3]
    assert floor < noisy[0] < noisy[1] < noisy[2]
    assert blurred[-1] > 3 * floor and noisy[-1] > 3 * floor
