"""The whitening-colouring transform as pure tensor functions.

Features are (C, H, W) or (C, N). Statistics are float64 and can be accumulated over tiles
(sums of x and x xᵀ), so a covariance never needs the whole feature map in memory at once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from .checks import as_number, check_alpha
from .errors import InputError

# Eigenvalues below REL_EPS * (largest eigenvalue) are dropped: scale-free, unlike the usual
# absolute 1e-5, because Caffe VGG features are in the hundreds. Flat inputs keep no direction.
REL_EPS = 1e-5
ABS_EPS = 1e-12
_THREADS = threading.Lock()  # guards the thread count that `eigh` sets and restores
OUTER_CHUNK = 1 << 16


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Running sums of one feature map about `shift` (C,): count N, Σ(x−shift) (C,) and
    Σ(x−shift)(x−shift)ᵀ (C, C).

    The whitening and colouring matrices are computed once per object, so a style's statistics
    reused for many contents (batches, video, the studio's slider) cost one eigendecomposition.
    Compared and hashed by identity, as tensors are (field-wise `==` would compare tensors).
    """

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

    @cached_property
    def whitening(self) -> Tensor:
        return whitening_matrix(self.cov)

    @cached_property
    def coloring(self) -> Tensor:
        return coloring_matrix(self.cov)

    def __repr__(self) -> str:  # the dataclass repr prints every tensor: 12,600 characters at 512
        return f"FeatureStats({self.total.shape[0]} channels, {self.count} px, {self.total.dtype})"

    def __add__(self, other: FeatureStats) -> FeatureStats:
        if not isinstance(other, FeatureStats):
            return NotImplemented
        if other.total.shape != self.total.shape:
            raise InputError(
                f"cannot add statistics of {other.total.shape[0]} and {self.total.shape[0]} channels"
            )
        delta = other.shift - self.shift
        outer = other.outer + torch.outer(delta, other.total) + torch.outer(other.total, delta)
        outer = outer + other.count * torch.outer(delta, delta)
        total = other.total + other.count * delta
        return FeatureStats(self.count + other.count, self.total + total, self.outer + outer, self.shift)


def all_finite(x: Tensor) -> bool:
    """Whether `x` holds no NaN or Inf, in one pass without temporaries (`isfinite(x).all()` makes
    full-size ones: 10-20x slower on a relu1_1 map). aminmax propagates NaN."""
    if not x.numel():
        return True
    if x.dtype.itemsize == 1:  # float8: aminmax is not implemented for it
        x = x.float()
    lo, hi = torch.aminmax(x)
    return bool(torch.isfinite(lo) & torch.isfinite(hi))


def flatten(features: Tensor) -> Tensor:
    """(C, H, W) or (C, N) floating-point features (16 bits or more) -> (C, N)."""
    if not isinstance(features, Tensor) or not features.is_floating_point() or features.dtype.itemsize < 2:
        kind = features.dtype if isinstance(features, Tensor) else type(features).__name__
        raise InputError(f"features must be a floating-point tensor of 16 bits or more, got {kind}")
    if features.ndim not in (2, 3) or features.shape[0] == 0:
        raise InputError(f"features must be (C, H, W) or (C, N), got shape {tuple(features.shape)}")
    return features.reshape(features.shape[0], -1)


def feature_stats(features: Tensor, shift: Tensor | None = None) -> FeatureStats:
    """Sums of one feature map, taken about `shift` (default: its own mean).

    The products are summed about the map's own mean, in float32 at least (float16 overflows on VGG
    features), and in float64 where float32 would overflow; chunks of OUTER_CHUNK pixels are added
    in float64, so a whole 3000 px image sums as accurately as its tiles do. A given `shift` is
    applied afterwards, in float64: float32 products about a far shift (another tile's mean) cancel
    in `cov`, giving a low-contrast mask region rounding noise as spurious directions of variance.
    """
    f = flatten(features)
    if not all_finite(f):
        raise InputError("features contain NaN or Inf")
    if shift is not None:
        if not isinstance(shift, Tensor) or not torch.isfinite(shift).all():
            raise InputError(f"shift must be a tensor of finite numbers, one per channel, got {shift!r}")
        if shift.shape != f.shape[:1]:
            raise InputError(f"shift has shape {tuple(shift.shape)}, features have {f.shape[0]} channels")
        zero = torch.zeros(f.shape[0], dtype=torch.float64)
        return FeatureStats(0, zero, torch.outer(zero, zero), shift.double().cpu()) + feature_stats(f)
    mean = f.mean(1, dtype=torch.float64) if f.shape[1] else torch.zeros(f.shape[0], dtype=torch.float64)
    dtype = torch.promote_types(f.dtype, torch.float32)
    s = mean.to(f.device, dtype)  # the shift kept is the one subtracted, rounded to x's dtype
    x = f.to(dtype) - s[:, None]
    total = x.sum(1, dtype=torch.float64)  # not finite only if x overflowed its dtype
    if not torch.isfinite(total).all():
        s = mean.to(f.device)
        x = f.double() - s[:, None]
        total = x.sum(1)
    outer = torch.zeros(f.shape[0], f.shape[0], dtype=torch.float64, device=f.device)
    for part in x.split(OUTER_CHUNK, dim=1):
        product = part @ part.T
        if not torch.isfinite(product).all():
            product = part.double() @ part.double().T
        outer += product.double()
    return FeatureStats(f.shape[1], total.cpu(), outer.cpu(), s.double().cpu())


def eigh(cov: Tensor) -> tuple[Tensor, Tensor]:
    """`torch.linalg.eigh`, on one thread on the CPU: a 512x512 one takes 0.03 s there either way,
    but 0.4-2.5 s on two threads while another process keeps a core busy (they wait on each other)."""
    if cov.device.type != "cpu":
        return torch.linalg.eigh(cov)
    with _THREADS:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return torch.linalg.eigh(cov)
        finally:
            torch.set_num_threads(threads)


def eig(cov: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues above the cut and their eigenvectors, from a float64 symmetric eigendecomposition."""
    cov = cov.double()
    cov = (cov + cov.T) / 2
    if not torch.isfinite(cov).all():
        raise InputError("the features' covariance overflows float64: scale the features down")
    try:
        values, vectors = eigh(cov)
    except torch.linalg.LinAlgError:
        raise InputError("the features' covariance is too ill-conditioned to decompose") from None
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


def wct_affine(content: FeatureStats, style: FeatureStats, alpha: float) -> tuple[Tensor, Tensor]:
    """(T, b), float64, such that T x + b = alpha * WCT(x) + (1 - alpha) * x for the content's x,
    where WCT(x) = coloring(style) whitening(content) (x - content mean) + style mean."""
    t = style.coloring @ content.whitening
    # Fold the blend and both means into one affine map: `apply_maps` then costs one T x + b.
    eye = torch.eye(t.shape[0], dtype=t.dtype)
    t = alpha * t + (1 - alpha) * eye
    b = alpha * style.mean + (1 - alpha) * content.mean - t @ content.mean
    return t, b


def _style_stats(content: Tensor, style: FeatureStats | Tensor) -> FeatureStats:
    """The style's statistics, checked to have as many channels as `content` (C, ...)."""
    if not isinstance(style, FeatureStats):
        style = feature_stats(style)
    if style.count == 0:
        raise InputError("the style has no pixels")
    if content.shape[0] != style.total.shape[0]:
        raise InputError(f"content has {content.shape[0]} channels but the style has {style.total.shape[0]}")
    return style


def _labels(f: Tensor, labels: Tensor, regions: int) -> Tensor:
    """`labels` flattened, checked to be (H, W) for features (C, H, W), or (N,) for (C, N), and to
    lie in 0..regions-1 (`f` checked by `flatten` already)."""
    if not isinstance(labels, Tensor):
        raise InputError(f"labels must be a tensor, got {type(labels).__name__}")
    if labels.shape != f.shape[1:]:
        raise InputError(f"labels {tuple(labels.shape)} do not match features {tuple(f.shape)}")
    if labels.is_complex():
        raise InputError(f"labels must be whole numbers, got {labels.dtype}")
    lab = labels.reshape(-1).to(f.device)
    if lab.is_floating_point() and lab.dtype.itemsize == 1:
        lab = lab.float()  # float8: round, min and max are not implemented for it
    if lab.is_floating_point() and not torch.equal(lab, lab.round()):
        raise InputError("labels must be whole numbers: region i gets style i")
    if lab.numel() and (lab.min() < 0 or lab.max() >= regions):
        raise InputError(f"labels must lie in 0..{regions - 1}, one per style")
    return lab


def region_stats(
    f: Tensor, labels: Tensor | None = None, regions: int = 1, shift: Tensor | None = None
) -> list[FeatureStats]:
    """Statistics of features (C, H, W) per region of `labels` (H, W), or one for the whole map;
    about `shift` (default: each region's own mean)."""
    x = flatten(f)
    lab = None if labels is None else _labels(f, labels, regions)
    return _region_stats(x, lab, regions, shift)


def _region_stats(
    x: Tensor, lab: Tensor | None, regions: int, shift: Tensor | None = None
) -> list[FeatureStats]:
    """`region_stats` of checked features (C, N) and labels (N,)."""
    if lab is None:
        return [feature_stats(x, shift)]
    return [feature_stats(x[:, (lab == i).nonzero().squeeze(1)], shift) for i in range(regions)]


def affine_maps(
    content: Sequence[FeatureStats],
    styles: Sequence[FeatureStats],
    alpha: float,
    weights: Sequence[float] | None = None,
    masked: bool = False,
) -> list[tuple[Tensor, Tensor]]:
    """Float64 affine maps (T, b): one per region when `masked` (region i whitened with its own
    statistics `content[i]` and coloured with `styles[i]`; an empty region keeps its features), or
    one folding every style with `weights` (default equal) for the whole map `content[0]`."""
    alpha = check_alpha(alpha)
    if masked:
        eye = torch.eye(styles[0].total.shape[0], dtype=torch.float64)
        zero = torch.zeros(eye.shape[0], dtype=torch.float64)
        return [
            wct_affine(c, s, alpha) if c.count else (eye, zero) for c, s in zip(content, styles, strict=True)
        ]
    w = check_weights([1.0] * len(styles) if weights is None else weights, len(styles))
    maps = [wct_affine(content[0], s, alpha) for s in styles]
    t = sum(wi * m[0] for wi, m in zip(w, maps, strict=True))
    b = sum(wi * m[1] for wi, m in zip(w, maps, strict=True))
    return [(t, b)]  # type: ignore[list-item]


def apply_maps(f: Tensor, maps: Sequence[tuple[Tensor, Tensor]], labels: Tensor | None = None) -> Tensor:
    """Apply affine maps to features (C, H, W), in float32 at least (T x + b cancels finely: bf16
    lost 12% of a low-contrast photo's relu1_1), in float64 where a map overflows float32 (a
    faint content coloured by a huge style); the result has the features' dtype (an InputError
    where it overflows that dtype: float16 features coloured by a high-contrast style). `labels`
    (H, W) picks a map per pixel."""
    x = flatten(f)
    dtype = torch.promote_types(x.dtype, torch.float32)
    if not all(torch.isfinite(m.to(dtype)).all() for tb in maps for m in tb):
        dtype = torch.float64
    x = x.to(dtype)
    if labels is None:
        t, b = maps[0]
        out = t.to(x) @ x + b.to(x)[:, None]
    else:
        out = x.clone()
        lab = labels.reshape(-1).to(x.device)
        for i, (t, b) in enumerate(maps):
            idx = (lab == i).nonzero().squeeze(1)
            if idx.numel():
                out[:, idx] = t.to(x) @ x[:, idx] + b.to(x)[:, None]
    out = out.reshape(f.shape).to(f.dtype)
    if not all_finite(out):
        raise InputError(f"the stylised features overflow {f.dtype}: use a wider dtype, or scale them down")
    return out


def transform(
    f: Tensor,
    styles: Sequence[FeatureStats | Tensor],
    alpha: float,
    weights: Sequence[float] | None = None,
    labels: Tensor | None = None,
    own: Sequence[FeatureStats] | None = None,
) -> Tensor:
    """One level of stylisation of features (C, H, W): WCT with one style, the weighted mix of
    several, or region i of `labels` with style i. `own` is `region_stats(f, labels, len(styles))`
    when the caller keeps it (its whitening is then computed once for many alphas)."""
    alpha = check_alpha(alpha)
    masked = labels is not None
    x = flatten(f)
    weights = check_weights(weights, len(styles), masked)  # a list: a generator is read once
    lab = _labels(f, labels, len(styles)) if masked else None
    styles = [_style_stats(f, s) for s in styles]
    if own is None and alpha > 0:
        own = _region_stats(x, lab, len(styles))  # feature_stats checks that x is finite
    elif not all_finite(x):
        raise InputError("features contain NaN or Inf")
    if alpha == 0:
        return f.clone()
    if not all(isinstance(o, FeatureStats) for o in own):
        raise InputError("content statistics are FeatureStats (feature_stats(features)), not tensors")
    if any(o.total.shape[0] != f.shape[0] for o in own):
        raise InputError(f"the content statistics do not have the features' {f.shape[0]} channels")
    if len(own) != (len(styles) if masked else 1):
        raise InputError(f"{len(own)} content statistics: one per region of the labels, or one without")
    return apply_maps(f, affine_maps(own, styles, alpha, weights, masked), labels)


def wct(
    content: Tensor,
    style: FeatureStats | Tensor,
    alpha: float = 1.0,
    content_stats: FeatureStats | None = None,
) -> Tensor:
    """Whiten `content` (C, H, W) and colour it with the style's covariance and mean; blend by alpha.

    `style` is a feature map or its precomputed statistics. Returns the same shape and dtype,
    always finite: flat styles, constant content and single-pixel maps included (a result that
    overflows the dtype is an InputError).
    """
    return transform(content, [style], alpha, own=None if content_stats is None else [content_stats])


def normalise_weights(weights: Sequence[float], what: str = "style weights") -> list[float]:
    """Non-negative, finite weights scaled to sum to 1; an InputError naming `what` otherwise
    (all zero included)."""
    scalar = isinstance(weights, str | bytes) or getattr(weights, "ndim", 1) == 0  # 0-d arrays too
    if scalar or isinstance(weights, Mapping | Set) or not isinstance(weights, Iterable):  # a dict: its keys
        raise InputError(f"{what} are a sequence of numbers, got {weights!r}")
    w = [as_number(v, f"each of the {what}") for v in weights]
    if not w:
        raise InputError(f"{what} must not be empty")
    if any(not math.isfinite(v) or v < 0 for v in w):
        raise InputError(f"{what} must be finite, non-negative numbers, got {w}")
    if sum(w) <= 0:
        raise InputError(f"{what} must not all be zero, got {w}")
    w = [v / max(w) for v in w]  # first, so that huge weights do not sum to inf
    return [v / sum(w) for v in w]


def check_weights(weights: Sequence[float] | None, styles: int, masked: bool = False) -> list[float] | None:
    """`normalise_weights`, one per style (None stays None); a mask takes no weights."""
    if weights is None:
        return None
    if masked:
        raise InputError("style weights and a mask do not combine: a mask gives each region one style")
    w = normalise_weights(weights)
    if len(w) != styles:
        raise InputError(f"{styles} styles but {len(w)} weights")
    return w
