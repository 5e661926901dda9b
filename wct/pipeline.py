"""Coarse-to-fine WCT stylisation: encode, transform with the style's statistics, decode, repeat."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from . import controls
from .checks import (
    check_alpha,
    check_levels,
    check_precision,
    check_seed,
    check_texture_pixels,
    texture_size,
    whole,
)
from .controls import as_labels, fit_labels, is_preset, load_style_stats, pad_labels, resize_labels
from .decoder import ENV_VAR as DECODERS_VAR
from .decoder import Decoder, load_decoder
from .encoder import ENV_VAR as WEIGHTS_VAR
from .encoder import LEVELS, Encoder, load_encoder, low_precision, precision_dtype, relu, resolve_device
from .errors import InputError
from .images import (
    MIN_SIDE,
    ImageLike,
    alpha_channel,
    load_image,
    pil_to_tensor,
    resize,
    stretch_small,
    tensor_to_pil,
    warn_caller,
    with_alpha,
)
from .transform import FeatureStats, check_weights, feature_stats, region_stats, transform

MULTIPLE = MIN_SIDE  # sides are padded to multiples of it, so decoders give back the same size
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


@dataclass(frozen=True, eq=False)
class Style:
    """Feature statistics of one style image at every level, from one encoder pass; reusable.
    Compared and hashed by identity, so a Style can key a dict or be looked up in a list."""

    stats: dict[int, FeatureStats]

    def __getitem__(self, level: int) -> FeatureStats:
        return self.stats[level]

    def __repr__(self) -> str:  # the dataclass repr prints every tensor: 45,000 characters
        counts = ", ".join(f"relu{k}_1: {s.count} px" for k, s in sorted(self.stats.items()))
        return f"Style({counts})"


def once(weights: Sequence[float] | None) -> Sequence[float] | None:
    """Style weights as a list if they are an iterator (a generator), which the checks and each
    image's transforms would otherwise read only once; anything else as it is."""
    return list(weights) if isinstance(weights, Iterator) else weights


def pad_to_multiple(x: Tensor, multiple: int = MULTIPLE) -> tuple[Tensor, tuple[int, int]]:
    """Pad the bottom and right so both sides are multiples of `multiple` (at least one multiple)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


def valid_cells(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    """Rows and columns of a feature map `stride` times smaller than the padded image that cover
    the unpadded (h, w) `hw`: only these count in the content's statistics."""
    return -(-hw[0] // stride), -(-hw[1] // stride)


def prepare_inputs(
    content: Tensor,
    style: Style | Sequence[Style],
    levels: Sequence[int],
    weights: Sequence[float] | None,
    mask: Tensor | ImageLike | None,
) -> tuple[list[Style], Tensor, tuple[int, int], Tensor | None]:
    """Check a stylisation's inputs; returns the styles, the content stretched (sides >= 16) and
    padded to multiples of 16, its unpadded (h, w), and the mask as padded region labels."""
    styles = [style] if isinstance(style, Style) else list(style)
    if not styles:
        raise InputError("at least one style is needed")
    for st in styles:
        missing = [v for v in levels if v not in st.stats]
        if missing:
            raise InputError(f"the style has no statistics for level(s) {missing}")
    check_weights(weights, len(styles), mask is not None)
    if mask is not None:
        mask = as_labels(mask, len(styles))
    h0, w0 = content.shape[-2:]
    content = stretch_small(content, "content")
    if mask is not None and tuple(content.shape[-2:]) != (h0, w0):
        mask = resize_labels(fit_labels(mask, (h0, w0)), tuple(content.shape[-2:]))
    x, (h, w) = pad_to_multiple(content)
    labels = None
    if mask is not None:
        labels = fit_labels(mask, (h, w))
        if labels.max() >= len(styles):
            raise InputError(
                f"the mask has label {int(labels.max())}, but labels pick styles 0..{len(styles) - 1} "
                f"and {len(styles)} style(s) were given"
            )
        labels = pad_labels(labels, tuple(x.shape[-2:]))
    return styles, x, (h, w), labels


def fit_mask(mask: object, styles: int, size: tuple[int, int], scale: int | None) -> Tensor | None:
    """`mask` (see `controls.as_labels`, checked against the number of `styles`) as labels for a
    content of `size` (h, w) scaled to longer side `scale` (`controls.fit_labels`); None stays None."""
    return None if mask is None else fit_labels(as_labels(mask, styles), size, scale)


def unpad(y: Tensor, hw: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """A cascade's result on `prepare_inputs`' content, cut to its unpadded `hw` and resized to
    the content's own `size` (h, w), undoing the stretch of a small side."""
    h, w = hw
    return resize(y[..., :h, :w], size)


def finish(
    content: Tensor, y: Tensor, preserve_color: bool, source: ImageLike, max_pixels: int | None = None
) -> Image.Image:
    """The stylised `y` as a PIL image, with `content`'s colours if `preserve_color` (see
    `controls.preserve_color`) and the alpha channel of `source`, the image `content` was read
    from (with `max_pixels` as it was read), if it has one."""
    alpha = alpha_channel(source, tuple(y.shape[-1:-3:-1]), max_pixels)
    if preserve_color:  # matched where the alpha shows the photo, not on the white it hides
        weight = None if alpha is None else pil_to_tensor(alpha)[0, 0]
        y = controls.preserve_color(content, y, weight)
    return with_alpha(tensor_to_pil(y), alpha)


def split_batch(content: ImageLike) -> list[Tensor]:
    """A content as checked (1, 3, H, W) images in [0, 1]: each image of an (N, 3, H, W) batch, or
    the one image of a path, a PIL image or a (3, H, W) tensor (`load_image` does the checks)."""
    if isinstance(content, Tensor) and content.ndim == 4 and content.shape[0] > 1:
        return [load_image(x) for x in content.split(1)]
    return [load_image(content)]


def per_image(content: ImageLike, one: Callable[[Tensor], Tensor]) -> Tensor:
    """`one` applied to each (1, 3, H, W) image of `content` (see `split_batch`), concatenated;
    a (3, H, W) tensor gives (3, H, W) back."""
    y = torch.cat([one(x) for x in split_batch(content)])
    return y[0] if isinstance(content, Tensor) and content.ndim == 3 else y


def keep_freed_memory(largest: int = 128 << 20, kept: int = 1 << 30) -> None:
    """Have glibc reuse freed blocks of up to `largest` bytes, keeping up to `kept` bytes free, instead
    of handing them back to the kernel: by default every block over 32 MB is unmapped when freed, and
    the next feature map faults in its pages afresh (0.9 M page faults, a third of a 512-px
    stylisation's time on our 2-core VM). Larger blocks are still handed back: keeping them let a
    1280-px image's maps fragment the heap (peak RSS 4.3 GiB with 256 MB kept, 3.4 with 128 MB, 3.1
    untuned). Process-wide; a no-op without glibc."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # no glibc-like malloc: nothing to tune
        return
    mallopt(M_MMAP_THRESHOLD, largest)
    mallopt(M_TRIM_THRESHOLD, kept)


class Stylizer:
    """Holds the encoder and decoders on one device; style statistics are computed once per style.

    `precision` "bf16" or "fp16" runs the encoder and decoders under autocast, for speed on GPUs
    and on CPUs with AVX-512 BF16 or AMX (elsewhere bf16 is slower, and warns); the whitening and
    colouring never run under autocast (statistics and eigensolves in float64, see `transform`).
    """

    def __init__(
        self,
        device: str | torch.device | None = None,
        vgg_weights: str | Path | None = None,
        precision: str = "fp32",
    ):
        if vgg_weights is not None and not isinstance(vgg_weights, str | os.PathLike):
            raise InputError(
                f"vgg_weights must be a path to the VGG19 weights, got {type(vgg_weights).__name__}"
            )
        self.device = resolve_device(device)
        self.amp = precision_dtype(precision, self.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        self.encoder: Encoder = low_precision(load_encoder(self.device, vgg_weights), self.amp)
        self._decoders: dict[int, Decoder] = {}

    def decoder(self, level: int) -> Decoder:
        if level not in self._decoders:
            decoder = load_decoder(level, self.device, self.encoder.weights_id)
            # relu1_1's decoder is one least-squares conv whose terms cancel finely: in bf16 it
            # loses 6 dB (37.6 -> 31.5), for 0.1% of the FLOPs, so it stays fp32.
            self._decoders[level] = low_precision(decoder, self.amp if level > 1 else None)
        return self._decoders[level]

    @torch.no_grad()
    def style(
        self,
        image: ImageLike,
        size: int | None = None,
        levels: Sequence[int] = LEVELS,
        tile: int | None = None,
        max_pixels: int | None = None,
    ) -> Style:
        """Statistics of a style image at `levels`, all from ONE encoder pass; a large image in
        tiles with the same result (`tile`: None auto, 0 never, N px; see `tiling.style_tiled`).
        `max_pixels`: the most pixels the image file may have (see `load_image`).

        A path ending in .safetensors is a preset saved by `save_style` (`size` does not apply).
        """
        from .tiling import AUTO_TILE, needs_tiling, style_tiled

        levels = check_levels(levels)
        if is_preset(image):
            if size is not None:
                warn_caller(
                    f"{image} is a preset: its statistics were taken when it was saved, so the style "
                    "size does not apply"
                )
            stats = load_style_stats(image, self.encoder.weights_id)  # type: ignore[arg-type]
            missing = [v for v in levels if v not in stats]
            if missing:
                raise InputError(f"the style preset {image} has no statistics for level(s) {missing}")
            return Style({v: stats[v] for v in levels})
        if isinstance(image, Tensor) and image.ndim == 4 and image.shape[0] > 1:
            raise InputError(
                f"a style is one image, got a batch of {image.shape[0]}: make one Style per image"
            )
        x = stretch_small(load_image(image, size, max_pixels), "style")
        if needs_tiling(*x.shape[-2:], tile):
            return style_tiled(self, x, levels, tile or AUTO_TILE)
        feats = self.encoder.extract(x.to(self.device), [relu(v) for v in levels])
        return Style({v: feature_stats(feats[relu(v)][0]) for v in levels})

    def styles(
        self,
        style: Style | ImageLike | Sequence[Style | ImageLike],
        levels: Sequence[int],
        size: int | None = None,
        tile: int | None = None,
    ) -> list[Style]:
        """One style or several as a list of `Style`s; images (anything `style` takes) are encoded."""
        items = list(style) if isinstance(style, (list, tuple)) else [style]
        if size is not None and any(isinstance(st, Style) for st in items):
            warn_caller("a Style's statistics are computed already: the style size does not apply")
        return [st if isinstance(st, Style) else self.style(st, size, levels, tile) for st in items]

    def save_style(
        self, style: Style, path: str | Path, metadata: dict[str, str] | None = None, overwrite: bool = False
    ) -> Path:
        """Save a style's statistics as a .safetensors preset tied to this encoder's weights (an
        existing file is an OutputError unless `overwrite`)."""
        if not isinstance(style, Style):
            raise InputError(f"save_style takes a Style (from Stylizer.style), got {type(style).__name__}")
        if not isinstance(path, str | os.PathLike):
            raise InputError(
                f"save_style's path must be a path to a .safetensors file, got {type(path).__name__}"
            )
        return controls.save_style_stats(style.stats, path, self.encoder.weights_id, metadata, overwrite)

    @torch.no_grad()
    def stylize(
        self,
        content: ImageLike,
        style: Style | ImageLike | Sequence[Style | ImageLike],
        alpha: float = 0.6,
        levels: Sequence[int] = (5, 4, 3, 2, 1),
        weights: Sequence[float] | None = None,
        mask: Tensor | ImageLike | None = None,
    ) -> Tensor:
        """Stylise an (N, 3, H, W) batch in [0, 1] (uint8: 0..255), each image with its own
        statistics; returns the same shape, in [0, 1], as float32 on this Stylizer's device and
        without gradients (any input dtype). A path, PIL image or numpy array is read as a batch of
        one, at its own size, without its alpha channel (`wct.stylize` puts it back).

        A style is a `Style` from `style` (computed once, for reuse) or anything `style` takes.
        Several styles are interpolated with `weights` (default equal), or, with `mask` (H, W)
        region labels 0..k-1 or a mask image (`controls.read_mask`), region i takes style i (a
        mask of another size is resized, with a warning). A side under 16 px is stretched to 16
        and the result resized back.
        """
        alpha = check_alpha(alpha)
        levels = check_levels(levels)
        style = self.styles(style, levels)
        weights = once(weights)
        if mask is not None:  # a mask image is read (and warns) once, not for every image of a batch
            mask = as_labels(mask, len(style))

        def one(image: Tensor) -> Tensor:
            styles, x, hw, labels = prepare_inputs(image.to(self.device), style, levels, weights, mask)
            y = self.cascade(x, styles, alpha, levels, weights, labels, hw=hw)
            return unpad(y, hw, tuple(image.shape[-2:]))

        return per_image(content, one)

    @torch.no_grad()
    def cascade(
        self,
        x: Tensor,
        styles: Sequence[Style],
        alpha: float,
        levels: Sequence[int],
        weights: Sequence[float] | None = None,
        labels: Tensor | None = None,
        first: dict | None = None,
        progress: Callable[[float], None] | None = None,
        hw: tuple[int, int] | None = None,
    ) -> Tensor:
        """The coarse-to-fine loop on inputs checked by `prepare_inputs`: encode, transform, decode,
        re-encode the result at the next level. `hw`, `prepare_inputs`' unpadded size, keeps the
        padding out of the content's statistics (None: the whole map counts); every cell is
        transformed. `first`, when given, keeps the first level's features and statistics (with
        their whitening) across calls on the same `x`: a caller that only changes alpha, such as
        the studio's slider, skips that encoder pass and eigensolve."""
        for i, level in enumerate(levels):
            memo = first if first is not None and i == 0 else {}
            if level not in memo:
                f = self.encoder(x.to(self.device), level)[0]
                lab = None if labels is None else resize_labels(labels, tuple(f.shape[-2:]))
                r, c = f.shape[-2:] if hw is None else valid_cells(hw, 2 ** (level - 1))
                own = region_stats(f[:, :r, :c], None if lab is None else lab[:r, :c], len(styles))
                memo[level] = (f, lab, own)
            f, lab, own = memo[level]
            f = transform(f, [st[level] for st in styles], alpha, weights, lab, own)
            x = self.decoder(level)(f[None])
            if progress is not None:
                progress((i + 1) / len(levels))
        return x

    @torch.no_grad()
    def texture(
        self,
        style: Style | ImageLike | Sequence[Style | ImageLike],
        size: tuple[int, int] = (512, 512),
        seed: int = 0,
        passes: int = 3,
        levels: Sequence[int] = (5, 4, 3, 2, 1),
        weights: Sequence[float] | None = None,
        tile: int | None = None,
    ) -> Tensor:
        """Texture synthesis (WCT paper, sec. 4): uniform noise of `size` (width, height), made on
        the CPU from `seed` so every device starts alike, stylised with alpha 1 `passes` times.
        Large textures are made in tiles, as `stylize_any` does (`tile`: None auto, 0 never, N px);
        the size is capped at `checks.made_pixel_limit` (twice Pillow's decompression-bomb limit).
        A side under 16 px is made at 16 and the texture scaled down, with a warning."""
        from .tiling import stylize_any

        width, height = texture_size(size)
        if not whole(passes) or passes < 1 or width < 1 or height < 1:
            raise InputError(f"passes and size must be positive, got passes={passes!r}, size={size}")
        check_seed(seed)
        made = (max(width, MIN_SIDE), max(height, MIN_SIDE))  # relu5_1 is 1/16 of its input
        check_texture_pixels(*made)
        if made != (width, height):
            warn_caller(
                f"the texture is only {width}x{height} px: made at {made[0]}x{made[1]} and scaled down"
            )
        levels, weights = check_levels(levels), once(weights)  # a generator serves every pass
        styles = self.styles(style, levels, tile=tile)  # an image is encoded once, not at every pass
        g = torch.Generator().manual_seed(int(seed))
        x = torch.rand(1, 3, made[1], made[0], generator=g)
        for _ in range(passes):
            x = stylize_any(self, x, styles, 1.0, levels, tile, weights)
        return resize(x, (height, width))

    @torch.no_grad()
    def reconstruct(self, image: ImageLike, level: int) -> Tensor:
        """decoder(encoder(image)) at one level, any size in, the same size and shape out
        ((3, H, W) or an (N, 3, H, W) batch; a path or PIL image gives (1, 3, H, W))."""
        decoder = self.decoder(level)
        x, (h, w) = pad_to_multiple(torch.cat(split_batch(image)).to(self.device))
        y = decoder(self.encoder(x, level))[..., :h, :w]
        return y[0] if isinstance(image, Tensor) and image.ndim == 3 else y


_STYLIZERS: dict[tuple[str | None, ...], Stylizer] = {}
_STYLIZERS_LOCK = threading.Lock()  # threads calling stylize at once share one load


def device_key(dev: torch.device) -> str:
    """`dev` as the cached Stylizer's key: a CUDA device without an index is the current one, so
    "cuda" and "cuda:0" share one copy of the weights on one GPU."""
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return str(dev)


def stylizer(device: str | torch.device | None = None, precision: str = "fp32") -> Stylizer:
    """A cached Stylizer per device, precision, and files $WCT_DECODERS and $WCT_VGG19_WEIGHTS name
    (loading weights costs more than a small stylisation). A relative variable is resolved against
    the working directory, so it names other files from another one; no other change of directory
    loads the weights again (each copy held ~120 MB for the life of the process)."""
    dev = resolve_device(device)
    check_precision(precision)  # a key: a list was a TypeError (unhashable)
    files = (os.environ.get(DECODERS_VAR), os.environ.get(WEIGHTS_VAR))
    key = (device_key(dev), precision, *(v and os.path.abspath(os.path.expanduser(v)) for v in files))
    with _STYLIZERS_LOCK:
        if key not in _STYLIZERS:
            _STYLIZERS[key] = Stylizer(dev, precision=precision)
        return _STYLIZERS[key]


def stylize(
    content: ImageLike,
    style: ImageLike | Style | Sequence[ImageLike | Style],
    alpha: float = 0.6,
    levels: Sequence[int] = (5, 4, 3, 2, 1),
    size: int | None = 512,
    style_size: int | None = None,
    device: str | torch.device | None = None,
    weights: Sequence[float] | None = None,
    mask: ImageLike | None = None,
    preserve_color: bool = False,
    tile: int | None = None,
    precision: str = "fp32",
) -> Image.Image:
    """Repaint `content` in the style of `style`; paths, an image file's bytes or binary file
    objects, PIL images, (3, H, W) tensors in [0, 1] (uint8: 0..255) or (H, W, 3) numpy arrays
    (see `images.load_image`).

    `size` scales the content's longer side (None keeps it); `style_size` likewise for the style.
    A style may also be a .safetensors preset. With a list of styles: `weights` interpolates them,
    or `mask` (an image whose distinct values label regions, or (H, W) integer labels) gives
    region i style i. `preserve_color` keeps the content's colours (see `controls.preserve_color`).
    A content with transparency (a file, its bytes, or a PIL image) gives an RGBA result with its
    alpha. Large images are stylised in tiles with exact whole-image statistics (`tile`: None
    auto, 0 never, N px).
    `precision` "bf16"/"fp16" runs the networks under autocast (see `Stylizer`).
    """
    from .tiling import stylize_any

    check_alpha(alpha)
    levels = check_levels(levels)
    weights = once(weights)
    s = stylizer(device, precision)
    x = load_image(content, size)
    styles = s.styles(style, levels, style_size, tile)
    labels = fit_mask(mask, len(styles), tuple(x.shape[-2:]), size)
    y = stylize_any(s, x, styles, alpha, levels, tile, weights, labels)
    return finish(x, y, preserve_color, content)


def texture(
    style: ImageLike | Style | Sequence[ImageLike | Style],
    size: tuple[int, int] = (512, 512),
    seed: int = 0,
    passes: int = 3,
    levels: Sequence[int] = (5, 4, 3, 2, 1),
    style_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    tile: int | None = None,
    weights: Sequence[float] | None = None,
) -> Image.Image:
    """A texture of `size` (width, height) in the style of `style`, from seeded noise; large ones
    in tiles (`tile` as for `stylize`). Several styles are interpolated with `weights` (default
    equal)."""
    levels = check_levels(levels)
    s = stylizer(device, precision)
    styles = s.styles(style, levels, style_size, tile)
    return tensor_to_pil(s.texture(styles, size, seed, passes, levels, weights, tile))
