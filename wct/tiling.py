"""Stylise images of any size with bounded memory: exact whole-image statistics, tiled transforms.

At every level the pipeline needs the whole feature map's mean and covariance. We accumulate them
tile by tile as sums of x and x xᵀ (`FeatureStats.__add__`), encoding each tile with a margin of
the encoder's receptive field, so every feature is the one an untiled pass computes. The affine
WCT map is then applied and decoded tile by tile, each decoded tile again carrying the decoder's
receptive-field margin, and neighbouring tiles are cross-faded over a band of `blend` pixels with
linear weights that sum to one. Feature maps that fit `cache_bytes` are kept between the two
passes; larger ones (the shallow levels at 8K) are cheaply re-encoded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .checks import check_alpha, whole
from .controls import as_labels, resize_labels
from .decoder import Decoder
from .encoder import cfg, relu
from .errors import InputError
from .images import ImageLike, load_image
from .pipeline import (
    MULTIPLE,
    Style,
    Stylizer,
    check_levels,
    once,
    per_image,
    prepare_inputs,
    unpad,
    valid_cells,
)
from .transform import FeatureStats, affine_maps, apply_maps, feature_stats, region_stats

StatsHook = Callable[[int, list[FeatureStats]], list[FeatureStats]]
AUTO_TILE = 1280  # longest tile side (px) when tiling kicks in: ~1.4 MP of working memory per tile
BLEND = 16  # cross-fade band (px) on each side of a tile border
CACHE_BYTES = 1_250_000_000  # keep a level's feature map between passes when it is at most this


def _round_up(v: float, multiple: int) -> int:
    return int(math.ceil(v / multiple) * multiple)


def encoder_margin(level: int) -> int:
    """Pixels of context an encoder feature at relu{level}_1 depends on, on each side (VGG19:
    3x3 convs add one step of the current stride, 2x2 pools one more), rounded up to 16."""
    margin, stride = 0, 1
    for v in cfg(level):
        margin += stride  # a conv's one cell of context, or a pool's extra cell
        if v == "M":
            stride *= 2
    return _round_up(margin, MULTIPLE)


def decoder_margin(decoder: Decoder) -> int:
    """Output image pixels of context one output pixel of `decoder` depends on, on each side,
    rounded up to 16."""
    stride = 2 ** sum(isinstance(m, nn.Upsample) for m in decoder.net)
    margin = 0
    for m in decoder.net:
        if isinstance(m, nn.Upsample):
            stride //= 2
        elif isinstance(m, nn.Conv2d):
            margin += (m.kernel_size[0] // 2) * stride
    return _round_up(margin + stride, MULTIPLE)


def splits(length: int, tile: int, multiple: int = MULTIPLE) -> list[tuple[int, int]]:
    """[start, end) ranges covering `length` (a multiple of `multiple`) in equal parts of at most
    `tile`, every boundary on a multiple of `multiple`."""
    n = max(1, math.ceil(length / max(tile, multiple)))
    bounds = [min(length, _round_up(length * i / n, multiple)) for i in range(n + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


def ramp(start: int, end: int, lo: int, hi: int, blend: int) -> Tensor:
    """1-D cross-fade weights for a tile whose core is [lo, hi) and decoded span [start, end):
    linear over [lo - blend, lo + blend) and [hi - blend, hi + blend) (flat at the image's edges).
    Neighbours' weights sum to one exactly."""
    i = torch.arange(start, end, dtype=torch.float32) + 0.5
    w = torch.ones_like(i)
    if start < lo:
        w = torch.minimum(w, ((i - (lo - blend)) / (2 * blend)).clamp(0, 1))
    if end > hi:
        w = torch.minimum(w, (((hi + blend) - i) / (2 * blend)).clamp(0, 1))
    return w


@dataclass(frozen=True)
class Tile:
    """A core [y0, y1) x [x0, x1) of the padded image (multiples of 16)."""

    y0: int
    y1: int
    x0: int
    x1: int

    def cells(self, stride: int) -> tuple[slice, slice]:
        """Its rows and columns in a map `stride` times smaller (features, labels)."""
        return slice(self.y0 // stride, self.y1 // stride), slice(self.x0 // stride, self.x1 // stride)

    def cells_in(self, outer: Tile, stride: int) -> tuple[slice, slice]:
        """Its rows and columns in the map of `outer` (a tile containing it), `stride` times smaller."""
        return Tile(self.y0 - outer.y0, self.y1 - outer.y0, self.x0 - outer.x0, self.x1 - outer.x0).cells(
            stride
        )

    def grow(self, m: int, h: int, w: int) -> Tile:
        return Tile(max(0, self.y0 - m), min(h, self.y1 + m), max(0, self.x0 - m), min(w, self.x1 + m))


def tiles(h: int, w: int, tile: int) -> list[Tile]:
    """The tiling of an (h, w) padded image into cores of at most `tile` px a side."""
    return [Tile(y0, y1, x0, x1) for y0, y1 in splits(h, tile) for x0, x1 in splits(w, tile)]


def check_tile(tile: object, auto: bool = True) -> int | None:
    """`tile` in px: a whole number >= 16, or, where `auto`, None (auto) or 0 (never)."""
    if auto and tile is None:
        return None
    if not whole(tile) or (tile < MULTIPLE and not (auto and tile == 0)):
        what = "0 (never), None (auto) or " if auto else ""
        raise InputError(f"the tile size must be {what}at least {MULTIPLE} whole px, got {tile!r}")
    return int(tile)


def needs_tiling(h: int, w: int, tile: int | None) -> bool:
    """Whether an image of (h, w) px is stylised in tiles: `tile` None means auto (AUTO_TILE),
    0 means never."""
    tile = check_tile(tile)
    limit = AUTO_TILE if tile is None else tile
    return limit > 0 and max(h, w) > limit


def encode_tile(stylizer: Stylizer, x: Tensor, level: int, t: Tile) -> Tensor:
    """relu{level}_1 features (C, h, w) of the region `t` of a padded image `x`, encoded with the
    encoder's margin around it, so they are exactly those of an untiled pass."""
    g = t.grow(encoder_margin(level), *x.shape[-2:])
    f = stylizer.encoder(x[..., g.y0 : g.y1, g.x0 : g.x1].to(stylizer.device), level)[0]
    return f[(slice(None), *t.cells_in(g, 2 ** (level - 1)))]


def tiled_stats(
    stylizer: Stylizer,
    x: Tensor,
    level: int,
    grid: list[Tile],
    labels: Tensor | None,
    regions: int,
    feats: Tensor | None,
    hw: tuple[int, int] | None = None,
) -> list[FeatureStats]:
    """Pass 1: exact whole-image statistics of relu{level}_1, one per region of `labels` (at the
    features' size; `regions` of them) or one without, accumulated over the tile cores' cells that
    cover the unpadded (h, w) `hw` (None: all of them); fills the cache `feats` when given."""
    stride = 2 ** (level - 1)
    rows, cols = valid_cells(hw or tuple(x.shape[-2:]), stride)
    total: list[FeatureStats] | None = None
    shift = None
    for t in grid:
        core = encode_tile(stylizer, x, level, t).float().cpu()
        if feats is not None:
            feats[(slice(None), *t.cells(stride))] = core
        kept = Tile(t.y0, min(t.y1, rows * stride), t.x0, min(t.x1, cols * stride))  # no padding
        core = core[(slice(None), *kept.cells_in(t, stride))]
        if shift is None:
            shift = core.reshape(core.shape[0], -1).double().mean(1)
        lab = labels[kept.cells(stride)] if labels is not None else None
        part = region_stats(core, lab, regions, shift)
        total = part if total is None else [a + b for a, b in zip(total, part, strict=True)]
        del core
    return total


def tiled_decode(
    stylizer: Stylizer,
    x: Tensor,
    level: int,
    grid: list[Tile],
    maps: list[tuple[Tensor, Tensor]],
    labels: Tensor | None,
    feats: Tensor | None,
    blend: int,
) -> Tensor:
    """Pass 2: transform each tile's features with `maps` and decode them with the decoder's
    margin (features from the cache `feats`, or encoded again), cross-fading tiles over `blend` px."""
    _, _, h, w = x.shape
    stride = 2 ** (level - 1)
    decoder = stylizer.decoder(level)
    margin = decoder_margin(decoder) + _round_up(blend, MULTIPLE)
    out = torch.zeros(1, 3, h, w)
    for t in grid:
        span = t.grow(margin, h, w)  # features the decoded span depends on
        if feats is not None:
            f = feats[(slice(None), *span.cells(stride))]
        else:
            f = encode_tile(stylizer, x, level, span)
        lab = labels[span.cells(stride)] if labels is not None else None
        y = decoder(apply_maps(f.to(stylizer.device), maps, lab)[None]).float().cpu()
        d = t.grow(blend, h, w)  # the decoded pixels kept, cross-faded over the blend band
        wy = ramp(d.y0, d.y1, t.y0, t.y1, blend)
        wx = ramp(d.x0, d.x1, t.x0, t.x1, blend)
        out[..., d.y0 : d.y1, d.x0 : d.x1] += y[(..., *d.cells_in(span, 1))] * (wy[:, None] * wx[None, :])
        del f, y
    return out


@torch.no_grad()
def stylize_level(
    stylizer: Stylizer,
    x: Tensor,
    level: int,
    styles: Sequence[FeatureStats],
    alpha: float,
    tile: int,
    weights: Sequence[float] | None = None,
    labels: Tensor | None = None,
    blend: int = BLEND,
    cache_bytes: int = CACHE_BYTES,
    hook: StatsHook | None = None,
    hw: tuple[int, int] | None = None,
) -> Tensor:
    """One level on a padded (1, 3, H, W) image (sides multiples of 16), tile by tile; returns the
    decoded (1, 3, H, W) image on the CPU. `labels` (H, W) masks regions, region i takes style i.
    `hook(level, stats)` may replace the content's statistics (e.g. smoothed over video frames).
    `hw`: the unpadded size, whose cells alone count in the statistics (None: the whole image)."""
    _, _, h, w = x.shape
    stride = 2 ** (level - 1)
    stylizer.decoder(level)  # loaded before any work: a missing decoder fails at once
    grid = tiles(h, w, tile)
    # Cross-fades sum to one only where the bands of a core's two borders do not meet: at most
    # half of any core that has neighbours along its axis.
    ys, xs = {(t.y0, t.y1) for t in grid}, {(t.x0, t.x1) for t in grid}
    cores = [b - a for spans in (ys, xs) if len(spans) > 1 for a, b in spans]
    blend = min([blend, *(c // 2 for c in cores)])
    c = styles[0].total.shape[0]
    cache = c * (h // stride) * (w // stride) * 4 <= cache_bytes  # keep the features between passes
    feats = torch.empty(c, h // stride, w // stride) if cache else None
    flab = resize_labels(labels, (h // stride, w // stride)) if labels is not None else None
    total = tiled_stats(stylizer, x, level, grid, flab, len(styles), feats, hw)
    if hook is not None:
        total = hook(level, total)
    maps = affine_maps(total, list(styles), alpha, weights, labels is not None)
    return tiled_decode(stylizer, x, level, grid, maps, flab, feats, blend)


@torch.no_grad()
def stylize_tiled(
    stylizer: Stylizer,
    content: ImageLike,
    style: Style | ImageLike | Sequence[Style | ImageLike],
    alpha: float = 0.6,
    levels: Sequence[int] = (5, 4, 3, 2, 1),
    tile: int = AUTO_TILE,
    weights: Sequence[float] | None = None,
    mask: Tensor | ImageLike | None = None,
    blend: int = BLEND,
    cache_bytes: int = CACHE_BYTES,
    hook: StatsHook | None = None,
) -> Tensor:
    """`Stylizer.stylize` in tiles of at most `tile` px a side: the same result (to float rounding)
    with memory bounded by the tile size, not the image size. Same arguments as `Stylizer.stylize`;
    the content stays on the CPU and only tiles visit the device. `hook`: see `stylize_level`."""
    alpha = check_alpha(alpha)
    levels = check_levels(levels)
    tile = check_tile(tile, auto=False)
    if not whole(blend) or blend < 0:
        raise InputError(f"blend must be a whole number of pixels >= 0, got {blend!r}")
    style = stylizer.styles(style, levels)
    weights = once(weights)
    if mask is not None:  # a mask image is read (and warns) once, not for every image of a batch
        mask = as_labels(mask, len(style))

    def one(image: Tensor) -> Tensor:
        styles, x, hw, labels = prepare_inputs(image.cpu(), style, levels, weights, mask)
        for level in levels:
            stats = [st[level] for st in styles]
            x = stylize_level(
                stylizer, x, level, stats, alpha, tile, weights, labels, blend, cache_bytes, hook, hw
            )
            x = x.clamp_(0, 1)
        return unpad(x, hw, tuple(image.shape[-2:]))

    return per_image(content, one)


@torch.no_grad()
def style_tiled(stylizer: Stylizer, x: Tensor, levels: Sequence[int], tile: int = AUTO_TILE) -> Style:
    """A style image's statistics at `levels` from tiles of at most `tile` px, each encoded once
    with the deepest level's receptive-field margin: the statistics of one whole-image pass (to
    float rounding; the image is not padded, so tile cores start on the 16-px grid and the last
    ones end at its edges), with memory bounded by the tile size, not the painting's."""
    levels = check_levels(levels)
    tile = check_tile(tile, auto=False)
    _, _, h, w = x.shape
    margin, names = encoder_margin(max(levels)), [relu(v) for v in levels]
    rows = [(a, min(b, h)) for a, b in splits(_round_up(h, MULTIPLE), tile)]
    cols = [(a, min(b, w)) for a, b in splits(_round_up(w, MULTIPLE), tile)]
    total: dict[int, FeatureStats] = {}
    for t in (Tile(y0, y1, x0, x1) for y0, y1 in rows for x0, x1 in cols):
        g = t.grow(margin, h, w)
        feats = stylizer.encoder.extract(x[..., g.y0 : g.y1, g.x0 : g.x1].to(stylizer.device), names)
        for v, name in zip(levels, names, strict=True):
            core = feats[name][(0, slice(None), *t.cells_in(g, 2 ** (v - 1)))]
            part = feature_stats(core.float().cpu(), total[v].shift if v in total else None)
            total[v] = total[v] + part if v in total else part
        del feats
    return Style(total)


def stylize_any(
    stylizer: Stylizer,
    content: ImageLike,
    style: Style | ImageLike | Sequence[Style | ImageLike],
    alpha: float = 0.6,
    levels: Sequence[int] = (5, 4, 3, 2, 1),
    tile: int | None = None,
    weights: Sequence[float] | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """Untiled when the image is small enough, tiled otherwise (`tile`: None auto, 0 never, N px)."""
    check_tile(tile)
    if not isinstance(content, Tensor):
        content = load_image(content)
    h, w = content.shape[-2:]
    if needs_tiling(h, w, tile):
        return stylize_tiled(stylizer, content, style, alpha, levels, tile or AUTO_TILE, weights, mask)
    return stylizer.stylize(content, style, alpha, levels, weights, mask)


def seam_metric(image: Tensor, tile: int) -> tuple[float, float]:
    """(across, within): the mean absolute difference between neighbouring pixels that straddle a
    tile border of `tiles(H, W, tile)`, and between neighbours straddling every other multiple of
    16 inside the tiles. Tile borders lie on multiples of 16, where the decoders' x2 upsampling
    (and JPEG's 8x8 blocks) already leave a faint grid, so the fair comparison is with the same
    grid lines inside the tiles. A visible seam makes `across` larger than `within`."""
    y = image.reshape(-1, *image.shape[-2:]).float()
    h, w = y.shape[-2:]
    across, within = [], []
    for axis, n in ((-2, h), (-1, w)):
        d = y.diff(dim=axis).abs().movedim(axis, 0)  # d[i] compares pixels i and i + 1
        borders = {b for _, b in splits(_round_up(n, MULTIPLE), tile)[:-1] if b < n}
        lines = set(range(MULTIPLE, n, MULTIPLE))
        across += [d[b - 1].reshape(-1) for b in sorted(borders)]
        within += [d[b - 1].reshape(-1) for b in sorted(lines - borders)]
    a = torch.cat(across) if across else torch.zeros(0)
    b = torch.cat(within) if within else torch.zeros(0)
    return (a.mean().item() if a.numel() else 0.0), (b.mean().item() if b.numel() else 0.0)
