"""Image-set metrics for lesson 09: a Fréchet distance on CLIP image embeddings, and confusion matrices.

FID (Heusel et al. 2017) fits a Gaussian to the features of real and of generated images and reports
the Fréchet (2-Wasserstein) distance between the two:

    d^2 = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1^1/2 S_2 S_1^1/2)^1/2)

FID's features come from an Inception network trained on photographs; the course's pictures are 32-pixel
shapes, so the features here are the course's own CLIP image embeddings (lesson 08) — the same formula on
the encoder that fits this world. Numbers are therefore comparable within the course, not with published
FIDs. The distance is biased upward for small samples: compare sets of the same size, and read the
real-vs-real distance between two halves of the test split as the floor.
"""
from __future__ import annotations

from typing import Sequence

import torch


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [d] and unbiased covariance [d, d] of features [n, d], in float64 (n >= 2)."""
    if features.dim() != 2 or features.shape[0] < 2:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise ValueError(f"features must be [n >= 2, d], got {shape}")
    x = features.double()
    return x.mean(0), torch.cov(x.T)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clamped at 0)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Tr((S1 S2)^1/2) is computed as the trace of the square root of the symmetric matrix
    S1^1/2 S2 S1^1/2 (same eigenvalues as S1 S2), so only symmetric eigendecompositions are needed.
    """
    root1 = _psd_sqrt(sigma1.double())
    cross = torch.linalg.eigvalsh(root1 @ sigma2.double() @ root1).clamp(min=0).sqrt().sum()
    mean_term = (mu1.double() - mu2.double()).pow(2).sum()
    return float(mean_term + sigma1.double().trace() + sigma2.double().trace() - 2 * cross)


def feature_frechet(features_a: torch.Tensor, features_b: torch.Tensor) -> float:
    """Squared Fréchet distance between the Gaussians fitted to two feature sets [n, d] and [m, d]."""
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def clip_frechet(clip, images_a: torch.Tensor, images_b: torch.Tensor) -> float:
    """Fréchet distance between two image sets [n, 3, H, W] (uint8, or float in [0, 1]) in CLIP's
    unit image-embedding space, scaled by 100 so the numbers read like FID's (ours are not FIDs)."""
    from .clip_eval import embed_images
    return 100 * feature_frechet(embed_images(clip, images_a), embed_images(clip, images_b))


def confusion_matrix(asked: Sequence, drawn: Sequence, labels: Sequence) -> torch.Tensor:
    """Counts [len(labels), len(labels) + 1]: row = the asked label, column = the drawn one; the last
    column counts drawn values outside `labels` (an object not found, or an unreadable attribute)."""
    if len(asked) != len(drawn):
        raise ValueError(f"asked and drawn must pair up, got {len(asked)} and {len(drawn)} values")
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({a for a in asked if a not in index}, key=str)
    if unknown:
        raise ValueError(f"asked values {unknown} are not among the labels {list(labels)}")
    counts = torch.zeros(len(labels), len(labels) + 1, dtype=torch.long)
    for a, d in zip(asked, drawn):
        counts[index[a], index.get(d, len(labels))] += 1
    return counts
