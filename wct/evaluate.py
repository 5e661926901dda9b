"""Reconstruction quality of decoders, with the protocol of shared/README.md."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from .decoder import Decoder
from .encoder import Encoder
from .errors import ImageError, InputError
from .images import list_images, open_image, pil_to_tensor, scaled_size

# Reconstruction PSNR (dB) on the val protocol per level: the published WCT decoders' (None: not
# published) and the targets ours are held to (`wct eval-decoders`, decoders/README.md).
PUBLISHED = {1: 27.2, 2: 32.1, 3: 27.1, 4: None, 5: None}
TARGETS = {1: 35.0, 2: 33.0, 3: 28.5, 4: 23.0, 5: 20.0}


def load_val_images(directory: str | Path, max_side: int = 384, limit: int | None = None) -> list[Tensor]:
    """Each image's longer side scaled to `max_side` (Lanczos), cropped top-left to multiples of 16.

    InputError if `directory` is not a folder or `max_side` is under 16; unreadable files, and
    images so narrow that a side would crop to nothing, are skipped with a warning."""
    if not Path(directory).is_dir():
        raise InputError(f"{directory} is not a directory")
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 16:
        raise InputError(f"max_side must be at least 16 px, got {max_side!r}")
    out = []
    for p in list_images(directory):
        if limit is not None and len(out) == limit:  # the first `limit` readable images
            break
        try:
            im = open_image(p)
        except ImageError as e:
            warnings.warn(f"skipped {e}", stacklevel=2)
            continue
        size = scaled_size(im.width, im.height, max_side)
        w, h = size[0] // 16 * 16, size[1] // 16 * 16
        if not (w and h):  # every level needs 16 px a side
            warnings.warn(
                f"skipped {p}: {im.width}x{im.height} px is {size[0]}x{size[1]} at a longer side of "
                f"{max_side}, under the 16 px a side that every level needs",
                stacklevel=2,
            )
            continue
        im = im.resize(size, Image.Resampling.LANCZOS)
        out.append(pil_to_tensor(im.crop((0, 0, w, h))))
    return out


def _float_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Both images as float32, if they are float images of one shape (uint8 would score nonsense)."""
    if a.shape != b.shape:
        raise InputError(f"images of different shapes: {tuple(a.shape)} and {tuple(b.shape)}")
    if not (a.is_floating_point() and b.is_floating_point()):
        raise InputError(
            f"images must be floats in [0, 1], got {a.dtype} and {b.dtype} (uint8: divide by 255)"
        )
    return a.float(), b.float()


def psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of images in [0, 1] (100 for identical images)."""
    a, b = _float_pair(a, b)
    mse = torch.mean((a - b) ** 2).item()
    return 100.0 if mse == 0 else 10 * math.log10(1.0 / mse)


def ssim(a: Tensor, b: Tensor) -> float:
    """Mean SSIM over RGB channels (Gaussian window 11, sigma 1.5, as in Wang et al. 2004) of
    (N, 3, H, W) images of at least 11 px a side."""
    import torch.nn.functional as F

    a, b = _float_pair(a, b)
    if a.ndim != 4 or a.shape[1] != 3 or min(a.shape[-2:]) < 11:
        raise InputError(f"SSIM needs (N, 3, H, W) images of at least 11 px a side, got {tuple(a.shape)}")

    g = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g = (g / g.sum())[:, None] @ (g / g.sum())[None, :]
    w = g.expand(3, 1, 11, 11).to(a)
    mu_a, mu_b = F.conv2d(a, w, groups=3), F.conv2d(b, w, groups=3)
    var_a = F.conv2d(a * a, w, groups=3) - mu_a**2
    var_b = F.conv2d(b * b, w, groups=3) - mu_b**2
    cov = F.conv2d(a * b, w, groups=3) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean().item()


@torch.no_grad()
def reconstruction_scores(encoder: Encoder, decoder: Decoder, images: list[Tensor]) -> dict[str, float]:
    """Mean PSNR and SSIM of decoder(encoder(x)) clamped to [0, 1] against x."""
    if not images:
        raise InputError("no images to score")
    p, s = [], []
    device = next(decoder.parameters()).device
    for x in images:
        x = x.to(device)
        y = decoder(encoder(x, decoder.level))
        p.append(psnr(y, x))
        s.append(ssim(y, x))
    return {"psnr": sum(p) / len(p), "ssim": sum(s) / len(s), "images": len(p)}
