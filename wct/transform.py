"""The whitening-colouring transform as pure tensor functions.

Features are (C, H, W) or (C, N). Statistics are float64 and can be accumulated over tiles
(sums of x and x xᵀ), so a covariance never needs the whole feature map in memory at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


def wct_affine(content: FeatureStats, style: FeatureStats, alpha: float) -> tuple[Tensor, Tensor]:
    """(T, b), float64, such that T x + b = alpha * WCT(x) + (1 - alpha) * x for the content's x."""
    t, b = wct_matrix(content, style)
    # Fold blend and mean handling into one affine map applied in the feature dtype.
    eye = torch.eye(t.shape[0], dtype=t.dtype)
    t = alpha * t + (1 - alpha) * eye
    b = alpha * b + (1 - alpha) * content.mean - t @ content.mean
    return t, b


def _style_stats(content: Tensor, style: FeatureStats | Tensor) -> FeatureStats:
    """The style's statistics, checked to have as many channels as `content` (C, ...)."""
    if not isinstance(style, FeatureStats):
        style = feature_stats(style)
    if content.shape[0] != style.total.shape[0]:
        raise InputError(f"content has {content.shape[0]} channels but the style has {style.total.shape[0]}")
    return style


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
    f = flatten(content)
    style = _style_stats(f, style)
    if alpha == 0:
        return content
    stats = content_stats if content_stats is not None else feature_stats(f)
    t, b = wct_affine(stats, style, alpha)
    out = t.to(f) @ f + b.to(f)[:, None]
    return out.reshape(content.shape)


def normalise_weights(weights: Sequence[float]) -> list[float]:
    """Non-negative, finite weights scaled to sum to 1; InputError otherwise (all zero included)."""
    w = [float(v) for v in weights]
    if not w or any(not math.isfinite(v) or v < 0 for v in w):
        raise InputError(f"style weights must be non-negative numbers, got {w}")
    if sum(w) <= 0:
        raise InputError(f"style weights must not all be zero, got {w}")
    return [v / sum(w) for v in w]


def wct_mix(
    content: Tensor,
    styles: Sequence[FeatureStats | Tensor],
    weights: Sequence[float] | None = None,
    alpha: float = 1.0,
) -> Tensor:
    """Style interpolation (WCT paper, sec. 4): sum_k w_k WCT_k(content), blended with alpha.

    Weights (default equal) are normalised; the weighted maps are folded into one affine map,
    so a weight of 1 reproduces that style's `wct` and a weight of 0 has no effect.
    """
    alpha = check_alpha(alpha)
    weights = normalise_weights([1.0] * len(styles) if weights is None else weights)
    if len(weights) != len(styles):
        raise InputError(f"{len(styles)} styles but {len(weights)} weights")
    f = flatten(content)
    stats = [_style_stats(f, s) for s in styles]
    if alpha == 0:
        return content
    own = feature_stats(f)
    maps = [wct_affine(own, s, alpha) for s in stats]
    t = sum(w * m[0] for w, m in zip(weights, maps, strict=True))
    b = sum(w * m[1] for w, m in zip(weights, maps, strict=True))
    out = t.to(f) @ f + b.to(f)[:, None]
    return out.reshape(content.shape)


def wct_masked(
    content: Tensor, labels: Tensor, styles: Sequence[FeatureStats | Tensor], alpha: float = 1.0
) -> Tensor:
    """Spatial control: the features where `labels` (H, W) is i get `styles[i]`.

    Each region is whitened with its own content statistics and coloured with its style's.
    Labels must lie in 0..len(styles)-1; a style whose region is empty is unused.
    """
    alpha = check_alpha(alpha)
    f = flatten(content)
    stats = [_style_stats(f, s) for s in styles]
    lab = labels.reshape(-1).to(f.device)
    if lab.numel() != f.shape[1]:
        raise InputError(f"labels {tuple(labels.shape)} do not match features {tuple(content.shape)}")
    if lab.numel() and (lab.min() < 0 or lab.max() >= len(stats)):
        raise InputError(f"labels must lie in 0..{len(stats) - 1}, one per style")
    out = f.clone()
    for i, s in enumerate(stats):
        idx = (lab == i).nonzero().squeeze(1)
        if idx.numel():
            out[:, idx] = wct(f[:, idx], s, alpha)
    return out.reshape(content.shape)
