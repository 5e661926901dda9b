"""Artists' controls: style specs with weights, region masks, colour preservation, style presets.

Everything here is a small pure function on tensors or a file reader/writer; the pipeline and the
command line only wire them together.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .encoder import LEVELS, channels, read_signed, relu, write_signed
from .errors import InputError, WeightsError
from .images import INT_GREY, ImageBytes, alpha_of, decode, has_alpha, scaled_size, to_rgb, warn_caller
from .paths import check_preset_path, parse_style_spec
from .transform import FeatureStats, normalise_weights

# ---------------------------------------------------------------- style specs: PATH[:WEIGHT]


def parse_styles(
    positional: Path | None, options: Sequence[str], mask: Path | None = None, alpha: bool = True
) -> tuple[list[Path], list[float] | None]:
    """The styles of `wct stylize` or `wct texture` (the positional STYLE, or every --style) and
    their normalised weights; weights are None for a single style or with a mask (each region takes
    one style). `alpha`: whether the command has --alpha, which a lone weight's warning names."""
    if positional is not None and options:
        raise InputError("give STYLE or --style, not both")
    if positional is None and not options:
        raise InputError("give a STYLE, or one or more --style")
    specs = [(positional, None)] if positional is not None else [parse_style_spec(t) for t in options]
    if mask is not None and any(w is not None for _, w in specs):
        raise InputError("--style PATH:WEIGHT and --mask do not combine: a mask gives each region one style")
    weights = normalise_weights([1.0 if w is None else w for _, w in specs])
    if len(specs) == 1 and specs[0][1] is not None:
        warnings.warn(
            f"--style {options[0]}: a weight blends several styles, so one style's does nothing"
            + (" (--alpha sets the style's strength)" if alpha else ""),
            stacklevel=2,
        )
    paths = [p for p, _ in specs]
    if len(paths) > 1 or mask is not None:
        for p in paths:
            if not p.is_file():
                kind = "is a directory" if p.is_dir() else "does not exist"
                raise InputError(f"{p} {kind}: with several styles or --mask, each style must be a file")
    return paths, weights if len(paths) > 1 and mask is None else None


# ---------------------------------------------------------------- masks


def read_mask(
    image: str | os.PathLike | ImageBytes | IO[bytes] | Image.Image, styles: int | None = None
) -> Tensor:
    """A mask image (a path, its bytes, a binary file object or a PIL image) as (H, W) int64 region
    labels 0..k-1, its distinct values sorted ascending.

    Grey levels and colours both work (colours sort by (R, G, B)); 16- and 32-bit grey masks keep
    their own values (labels 0, 1, 2 saved from an integer array). Fully transparent pixels are a
    region of their own, sorted first (shapes painted on a transparent layer). With `styles`, a
    mask with more regions than styles is an InputError, and one with fewer a warning.
    """
    im = image if isinstance(image, Image.Image) else decode(image)
    if im.mode in INT_GREY:
        codes = np.asarray(im, dtype=np.int64)  # 8-bit conversion would merge small labels
    else:
        a = np.asarray(to_rgb(im), dtype=np.int64)
        codes = (a[..., 0] << 16) | (a[..., 1] << 8) | a[..., 2]
    if has_alpha(im):
        codes[np.asarray(alpha_of(im)) == 0] = np.iinfo(np.int64).min  # below any value, 32-bit too
    values, labels = np.unique(codes, return_inverse=True)
    if styles is not None and len(values) > styles:
        suffix = Path(image).suffix.lower() if isinstance(image, str | os.PathLike) else ""
        jpeg = "JPEG" in (im.format, Image.registered_extensions().get(suffix))  # even a few extra values
        hint = "; save masks as PNG, JPEG adds values" if jpeg else ""
        if not jpeg and len(values) > 16:  # a PNG with soft edges, or a JPEG read without its name
            hint = "; paint masks with hard edges, as PNG: anti-aliasing, smoothing and JPEG add values"
        raise InputError(
            f"the mask has {len(values)} regions (distinct values) but only {styles} style(s) were given"
            + hint
        )
    if styles is not None and len(values) < styles:
        first = len(values) + 1
        unused = f"style {first} is" if first == styles else f"styles {first}..{styles} are"
        warn_caller(f"the mask has {len(values)} region(s) but {styles} styles were given: {unused} not used")
    return torch.from_numpy(labels.reshape(codes.shape))


def resize_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """(H, W) labels resized to `size` (h, w) by nearest neighbour: no new labels appear. Each
    cell takes the label at its centre ("nearest" takes its top-left pixel: at relu5_1 a region
    would spill up to 15 px right and down)."""
    if tuple(labels.shape) == tuple(size):
        return labels
    x = F.interpolate(labels[None, None].float(), size=tuple(size), mode="nearest-exact")
    return x[0, 0].round().long()


def pad_labels(labels: Tensor, size: tuple[int, int]) -> Tensor:
    """(H, W) labels padded at the bottom and right to `size` (h, w) by repeating the edge."""
    ph, pw = size[0] - labels.shape[0], size[1] - labels.shape[1]
    if not ph and not pw:
        return labels
    x = F.pad(labels[None, None].float(), (0, pw, 0, ph), mode="replicate")
    return x[0, 0].round().long()


def check_mask(mask: Tensor | np.ndarray) -> Tensor:
    """A mask tensor or array as (H, W) int64 labels on the CPU; fractions (a soft mask) are an
    InputError."""
    if isinstance(mask, np.ndarray):
        if mask.dtype.kind not in "biuf":  # not complex, text or objects
            raise InputError(f"a mask array holds whole-number region labels 0..k-1, got dtype {mask.dtype}")
        mask = torch.from_numpy(np.ascontiguousarray(mask, dtype=mask.dtype.newbyteorder("=")))
    if not isinstance(mask, Tensor):
        raise InputError(f"a mask is an image, a path to one, or (H, W) labels, got {type(mask).__name__}")
    got = f"{mask.dtype} {tuple(mask.shape)}"
    if mask.is_complex():  # .long() would drop the imaginary part with only a torch warning
        raise InputError(f"a mask tensor is (H, W) whole-number region labels 0..k-1, got {got}")
    if mask.is_floating_point() and mask.dtype.itemsize == 1:
        mask = mask.float()  # float8: round is not implemented for it
    whole = not mask.is_floating_point() or torch.equal(mask, mask.round())
    if mask.ndim != 2 or 0 in mask.shape or not whole:
        raise InputError(f"a mask tensor is (H, W) whole-number region labels 0..k-1, got {got}")
    return mask.long().cpu()


def as_labels(mask: object, styles: int | None = None) -> Tensor:
    """A mask as (H, W) int64 labels: an image, a path to one, its bytes or a binary file object
    (`read_mask`, checked against `styles`), or a tensor or array of labels (`check_mask`)."""
    if isinstance(mask, str | os.PathLike | ImageBytes | Image.Image) or hasattr(mask, "read"):
        return read_mask(mask, styles)
    return check_mask(mask)  # type: ignore[arg-type]


def fit_labels(labels: Tensor, size: tuple[int, int], scale: int | None = None) -> Tensor:
    """Labels for a content image of `size` (h, w) that was scaled to longer side `scale`.

    The mask is scaled like the content; if it still differs (another aspect ratio, or another
    size with scale None), it is the wrong size: it is resized anyway, with a warning.
    """
    labels = check_mask(labels)  # every mask tensor passes here, whoever made it
    h, w = size
    mw, mh = scaled_size(labels.shape[1], labels.shape[0], scale)
    if (mh, mw) != (h, w):
        mask_size = f"{labels.shape[1]}x{labels.shape[0]}"
        scaled = f" ({mw}x{mh} scaled like the content)" if (mh, mw) != tuple(labels.shape) else ""
        warn_caller(f"the mask is {mask_size}{scaled} but the content is {w}x{h}: resizing it")
    return resize_labels(labels, (h, w))


# ---------------------------------------------------------------- colour preservation

_RGB_TO_YCBCR = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=torch.float64
)
_CHROMA_OFFSET = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> full-range YCbCr (BT.601, as in JPEG), Cb and Cr centred on 0.5."""
    m = _RGB_TO_YCBCR.to(x)
    return torch.einsum("ij,njhw->nihw", m, x) + _CHROMA_OFFSET.to(x)[:, None, None]


def ycbcr_to_rgb(y: Tensor) -> Tensor:
    """Inverse of `rgb_to_ycbcr` (not clamped)."""
    m = torch.linalg.inv(_RGB_TO_YCBCR).to(y)
    return torch.einsum("ij,njhw->nihw", m, y - _CHROMA_OFFSET.to(y)[:, None, None])


def preserve_color(content: Tensor, stylized: Tensor, weight: Tensor | None = None) -> Tensor:
    """Luminance-only transfer: the stylised luma with the content's chroma, in YCbCr.

    The stylised luma is first shifted and scaled to the content's luma mean and standard
    deviation (Gatys et al. 2016, "Preserving color in neural artistic style transfer", match
    the style's luminance to the content's the same way), so the photo keeps its hues, its
    saturation and its overall brightness, and takes only the style's texture and strokes.
    Both images are (N, 3, H, W) or (3, H, W) in [0, 1] of the same size; returns that, clamped,
    in the stylised image's dtype (bf16 and fp16 are computed in fp32). `weight`, (H, W) in [0, 1]
    (a transparent content's alpha), weighs each pixel in the means and spreads, so that what the
    alpha hides (composited on white) does not wash out what it shows.
    """
    if not isinstance(content, Tensor) or not isinstance(stylized, Tensor):
        got = f"{type(content).__name__}, {type(stylized).__name__}"
        raise InputError(f"colour preservation takes two image tensors, got {got}")
    if content.shape != stylized.shape:
        raise InputError(f"content {tuple(content.shape)} and stylised {tuple(stylized.shape)} differ")
    if content.ndim not in (3, 4) or content.shape[-3] != 3 or 0 in content.shape:
        raise InputError(
            f"colour preservation needs (N, 3, H, W) or (3, H, W) RGB images, got {tuple(content.shape)}"
        )
    for name, t in (("content", content), ("stylised image", stylized)):
        if not t.is_floating_point() or not torch.isfinite(t).all() or t.min() < -1e-3 or t.max() > 1 + 1e-3:
            raise InputError(
                f"the {name} must be finite floats in [0, 1] (uint8: divide by 255), got {t.dtype}"
            )
    if weight is not None:
        ok = isinstance(weight, Tensor) and weight.shape == content.shape[-2:] and weight.is_floating_point()
        if not ok or not bool(((weight >= 0) & (weight <= 1)).all()):  # NaN fails too
            got = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
            raise InputError(f"the weight must be an (H, W) tensor of floats in [0, 1], got {got}")
    if content.ndim == 3:
        return preserve_color(content[None], stylized[None], weight)[0]
    work = torch.promote_types(stylized.dtype, torch.float32)  # in bf16/fp16: 4x the rounding error
    c = rgb_to_ycbcr(content.to(stylized.device, work))
    s = rgb_to_ycbcr(stylized.to(work))
    ys, yc = s[:, :1], c[:, :1]
    w = torch.ones_like(ys) if weight is None or not bool(weight.any()) else weight.to(ys).expand_as(ys)
    ys_mean, ys_std = weighted_moments(ys, w)
    yc_mean, yc_std = weighted_moments(yc, w)
    luma = (ys - ys_mean) * (yc_std / ys_std.clamp_min(1e-6)) + yc_mean
    return ycbcr_to_rgb(torch.cat([luma, c[:, 1:]], 1)).clamp(0, 1).to(stylized.dtype)


def weighted_moments(y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """The mean and standard deviation of each image of `y` (N, 1, H, W), pixels weighted by `w`."""
    dims, total = (1, 2, 3), w.sum((1, 2, 3), keepdim=True)
    mean = (y * w).sum(dims, keepdim=True) / total
    return mean, (((y - mean) ** 2 * w).sum(dims, keepdim=True) / total).sqrt()


# ---------------------------------------------------------------- style presets

PRESET_FORMAT = "wct-style-stats"
PRESET_VERSION = "1"
_FIELDS = ("count", "total", "outer", "shift")


def is_preset(image: object) -> bool:
    """A style given as a path to a .safetensors statistics file rather than an image."""
    return isinstance(image, (str, os.PathLike)) and Path(image).suffix.lower() == ".safetensors"


def stats_problem(stats: dict[int, FeatureStats]) -> str | None:
    """What makes `stats` unusable as a style (no level, a level's channel count, no pixels,
    non-finite sums), or None: checked when a preset is written and when it is read."""
    if not stats:
        return "it holds no level"
    for level, s in sorted(stats.items()):
        if level not in LEVELS:
            return f"it has a level {level!r}: levels are 1 to 5"
        c = channels(level)
        if (s.total.shape, s.shift.shape, s.outer.shape) != ((c,), (c,), (c, c)):
            return f"its {relu(level)} sums are not those of {c} channels"
        if s.count < 1:
            return f"its {relu(level)} statistics count no pixels"
        if not all(torch.isfinite(x).all() for x in (s.total, s.shift, s.outer)):
            return f"its {relu(level)} statistics are not finite"
    return None


def save_style_stats(
    stats: dict[int, FeatureStats],
    path: str | os.PathLike,
    encoder_id: str,
    metadata: dict[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write every level's FeatureStats (float64) atomically as safetensors, with the format,
    its version, the encoder weights' id and the levels (plus `metadata`, e.g. the source). An
    existing file is replaced only with `overwrite`."""
    path = check_preset_path(path, overwrite, "overwrite=True")  # the CLI checks --overwrite first
    if (problem := stats_problem(stats)) is not None:
        raise InputError(f"cannot save these style statistics: {problem}")
    if metadata is not None and not (
        isinstance(metadata, Mapping) and all(isinstance(v, str) for kv in metadata.items() for v in kv)
    ):
        raise InputError(f"metadata must map str keys to str values, got {metadata!r}")
    tensors: dict[str, Tensor] = {}
    for level, s in sorted(stats.items()):
        tensors[f"{relu(level)}.count"] = torch.tensor([s.count], dtype=torch.int64)
        for name in _FIELDS[1:]:
            tensors[f"{relu(level)}.{name}"] = getattr(s, name).detach().cpu().double().contiguous()
    meta = {
        **(metadata or {}),
        "format": PRESET_FORMAT,
        "version": PRESET_VERSION,
        "encoder": encoder_id,
        "levels": ",".join(str(v) for v in sorted(stats)),
    }
    return write_signed(tensors, meta, path)


def load_style_stats(path: str | os.PathLike, encoder_id: str) -> dict[int, FeatureStats]:
    """Read a preset written by `save_style_stats`; refuse a corrupt one or one for another encoder."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} {'is a directory' if path.is_dir() else 'does not exist'}")
    tensors, meta = read_signed(path, "style preset")
    if meta.get("format") == PRESET_FORMAT and meta.get("version") != PRESET_VERSION:
        raise WeightsError(
            f"style preset {path} has format version {meta.get('version')!r}, but this wct reads "
            f"version {PRESET_VERSION}: recompute it with `wct style-stats`"
        )
    if meta.get("format") != PRESET_FORMAT:
        raise WeightsError(
            f"{path} is not a style preset of format {PRESET_FORMAT} v{PRESET_VERSION} "
            "(make one with `wct style-stats`)"
        )
    if meta.get("encoder") != encoder_id:
        raise WeightsError(
            f"style preset {path} was made with encoder weights {meta.get('encoder')!r}, "
            f"but the encoder loaded is {encoder_id!r}: recompute it with `wct style-stats`"
        )
    out = {}
    try:
        for level in (int(v) for v in meta["levels"].split(",") if v):
            count, total, outer, shift = (tensors[f"{relu(level)}.{name}"] for name in _FIELDS)
            out[level] = FeatureStats(int(count.item()), total, outer, shift)
    except (KeyError, ValueError, RuntimeError, OverflowError):  # the digest covers the tensors, not
        # the metadata; RuntimeError, OverflowError: a count that is not one finite number
        raise WeightsError(
            f"style preset {path} is corrupt: its levels {meta.get('levels')!r} do not match its tensors"
        ) from None
    if (problem := stats_problem(out)) is not None:
        raise WeightsError(f"style preset {path} is unusable: {problem}")
    return out
