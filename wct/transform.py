"""The whitening-colouring transform as pure tensor functions.

Features are (C, H, W) or (C, N). Statistics are float64 and can be accumulated over tiles
(sums of x and x xᵀ), so a covariance never needs the whole feature map in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import InputError

# Eigenvalues below REL_EPS * (largest eigenvalue) are dropped: scale-free, unlike the usual
# absolute 1e-5, because Caffe VGG features are in the hundreds. Flat inputs keep no direction.
REL_EPS = 1e-5
ABS_EPS = 1e-12


@dataclass(frozen=True)
class FeatureStats:
    """Running sums of one feature map: count N, sum of x (C,), sum of x xᵀ about `shift` (C, C)."""

    count: int
    total: Tensor
    outer: Tensor
    shift: Tensor

    @property
    def mean(self) -> Tensor:
        return self.shift + self.total / max(self.count, 1)

    @property
    def cov(self) -> Tensor:
        """Unbiased covariance (divides by N - 1; a single sample has zero covariance)."""
        n = max(self.count, 1)
        d = self.total / n
        return (self.outer - n * torch.outer(d, d)) / max(self.count - 1, 1)

    def __add__(self, other: FeatureStats) -> FeatureStats:
        delta = other.shift - self.shift
        outer = other.outer + torch.outer(delta, other.total) + torch.outer(other.total, delta)
        outer = outer + other.count * torch.outer(delta, delta)
        total = other.total + other.count * delta
        return FeatureStats(self.count + other.count, self.total + total, self.outer + outer, self.shift)


def flatten(features: Tensor) -> Tensor:
    """(C, H, W) or (C, N) -> (C, N)."""
    if features.ndim not in (2, 3):
        raise InputError(f"features must be (C, H, W) or (C, N), got shape {tuple(features.shape)}")
    return features.reshape(features.shape[0], -1)


def feature_stats(features: Tensor, shift: Tensor | None = None) -> FeatureStats:
    """Sums of one feature map, taken about `shift` (default: its own mean) for accuracy."""
    f = flatten(features)
    if not torch.isfinite(f).all():
        raise InputError("features contain NaN or Inf")
    if shift is None:
        shift = f.double().mean(1) if f.shape[1] else torch.zeros(f.shape[0], dtype=torch.float64)
    x = f - shift.to(f.device, f.dtype)[:, None]
    outer = (x @ x.T).double()
    return FeatureStats(f.shape[1], x.double().sum(1).cpu(), outer.cpu(), shift.double().cpu())


def eig(cov: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues above the cut and their eigenvectors, from a float64 symmetric eigendecomposition."""
    cov = cov.double()
    cov = (cov + cov.T) / 2
    values, vectors = torch.linalg.eigh(cov)
    keep = values > max(values.max().item() * REL_EPS, ABS_EPS)
    return values[keep], vectors[:, keep]


def whitening_matrix(cov: Tensor) -> Tensor:
    """E D^-1/2 Eᵀ over the kept eigenvalues: maps features to identity covariance."""
    values, vectors = eig(cov)
    return (vectors * values.rsqrt()) @ vectors.T


def coloring_matrix(cov: Tensor) -> Tensor:
    """E D^1/2 Eᵀ over the kept eigenvalues: maps identity covariance to `cov`."""
    values, vectors = eig(cov)
    return (vectors * values.sqrt()) @ vectors.T


def check_alpha(alpha: float) -> float:
    if not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"alpha must be between 0 and 1, got {alpha}")
    return float(alpha)


def wct_matrix(content: FeatureStats, style: FeatureStats) -> tuple[Tensor, Tensor]:
    """(T, b) such that T (x - content mean) + b whitens and colours; T is float64 (C, C)."""
    return coloring_matrix(style.cov) @ whitening_matrix(content.cov), style.mean


def wct(
    content: Tensor,
    style: FeatureStats | Tensor,
    alpha: float = 1.0,
    content_stats: FeatureStats | None = None,
) -> Tensor:
    """Whiten `content` (C, H, W) and colour it with the style's covariance and mean; blend by alpha.

    `style` is a feature map or its precomputed statistics. Returns the same shape and dtype,
    always finite: flat styles, constant content and single-pixel maps included.
    """
    alpha = check_alpha(alpha)
    if not isinstance(style, FeatureStats):
        style = feature_stats(style)
    f = flatten(content)
    if f.shape[0] != style.total.shape[0]:
        raise InputError(f"content has {f.shape[0]} channels but the style has {style.total.shape[0]}")
    if alpha == 0:
        return content
    stats = content_stats if content_stats is not None else feature_stats(f)
    t, b = wct_matrix(stats, style)
    # Fold blend and mean handling into one affine map applied in the feature dtype.
    eye = torch.eye(t.shape[0], dtype=t.dtype)
    t = alpha * t + (1 - alpha) * eye
    b = alpha * b + (1 - alpha) * stats.mean - t @ stats.mean
    out = t.to(f) @ f + b.to(f)[:, None]
    return out.reshape(content.shape)
