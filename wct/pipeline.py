"""Coarse-to-fine WCT stylisation: encode, transform with the style's statistics, decode, repeat."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .decoder import Decoder, load_decoder
from .encoder import LEVELS, Encoder, load_encoder, relu, resolve_device
from .errors import InputError
from .images import ImageLike, load_image, tensor_to_pil
from .transform import FeatureStats, check_alpha, feature_stats, wct

MULTIPLE = 16  # relu5_1 is 1/16 of the input: pad to this so decoders give back the same size


@dataclass(frozen=True)
class Style:
    """Feature statistics of one style image at every level, from one encoder pass; reusable."""

    stats: dict[int, FeatureStats]

    def __getitem__(self, level: int) -> FeatureStats:
        return self.stats[level]


def check_levels(levels: Sequence[int]) -> tuple[int, ...]:
    levels = tuple(int(v) for v in levels)
    if not levels:
        raise InputError("at least one level is needed")
    for v in levels:
        relu(v)
    return levels


def pad_to_multiple(x: Tensor, multiple: int = MULTIPLE) -> tuple[Tensor, tuple[int, int]]:
    """Pad the bottom and right so both sides are multiples of `multiple` (at least one multiple)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if ph < h and pw < w else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    return x, (h, w)


class Stylizer:
    """Holds the encoder and decoders on one device; style statistics are computed once per style."""

    def __init__(self, device: str | torch.device | None = None, vgg_weights: str | Path | None = None):
        self.device = resolve_device(device)
        self.encoder: Encoder = load_encoder(self.device, vgg_weights)
        self._decoders: dict[int, Decoder] = {}

    def decoder(self, level: int) -> Decoder:
        if level not in self._decoders:
            self._decoders[level] = load_decoder(level, self.device, self.encoder.weights_id)
        return self._decoders[level]

    @torch.no_grad()
    def style(self, image: ImageLike, size: int | None = None, levels: Sequence[int] = LEVELS) -> Style:
        """Statistics of a style image at `levels`, all from ONE encoder pass."""
        x = load_image(image, size).to(self.device)
        feats = self.encoder.extract(x, [relu(v) for v in check_levels(levels)])
        return Style({v: feature_stats(feats[relu(v)][0]) for v in levels})

    @torch.no_grad()
    def stylize(self, content: Tensor, style: Style, alpha: float = 0.6,
                levels: Sequence[int] = (5, 4, 3, 2, 1)) -> Tensor:
        """Stylise a (1, 3, H, W) image in [0, 1]; returns the same size."""
        alpha = check_alpha(alpha)
        levels = check_levels(levels)
        missing = [v for v in levels if v not in style.stats]
        if missing:
            raise InputError(f"the style has no statistics for level(s) {missing}")
        x, (h, w) = pad_to_multiple(content.to(self.device))
        for level in levels:
            f = self.encoder(x, level)
            f = wct(f[0], style[level], alpha)[None]
            x = self.decoder(level)(f)
        return x[..., :h, :w]

    @torch.no_grad()
    def reconstruct(self, image: Tensor, level: int) -> Tensor:
        """decoder(encoder(image)) at one level, any size in, the same size out."""
        x, (h, w) = pad_to_multiple(image.to(self.device))
        return self.decoder(level)(self.encoder(x, level))[..., :h, :w]


_STYLIZERS: dict[tuple[str, str], Stylizer] = {}


def stylizer(device: str | torch.device | None = None) -> Stylizer:
    """A cached Stylizer per device (loading weights costs more than a small stylisation)."""
    dev = resolve_device(device)
    key = (str(dev), str(Path.cwd()))
    if key not in _STYLIZERS:
        _STYLIZERS[key] = Stylizer(dev)
    return _STYLIZERS[key]


def stylize(
    content: ImageLike,
    style: ImageLike | Style,
    alpha: float = 0.6,
    levels: Sequence[int] = (5, 4, 3, 2, 1),
    size: int | None = 512,
    style_size: int | None = None,
    device: str | torch.device | None = None,
) -> Image.Image:
    """Repaint `content` in the style of `style`; paths, PIL images or (3, H, W) tensors in [0, 1].

    `size` scales the content's longer side (None keeps it); `style_size` likewise for the style.
    """
    check_alpha(alpha)
    levels = check_levels(levels)
    s = stylizer(device)
    x = load_image(content, size)
    st = style if isinstance(style, Style) else s.style(style, style_size, levels)
    return tensor_to_pil(s.stylize(x, st, alpha, levels))


def load_decoder_for(level: int, device: str | torch.device | None = None) -> Decoder:
    return stylizer(device).decoder(level)
