"""Image I/O: load anything Pillow reads as RGB tensors in [0, 1], and write outputs atomically."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from .errors import ImageError, InputError, OutputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
ImageLike = str | os.PathLike | Image.Image | Tensor


def open_image(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open, decode and orient an image file as RGB; any failure is an ImageError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path} is a directory, not an image")
    if not path.exists():
        raise ImageError(f"{path} does not exist")
    limit = max_pixels or Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if limit and im.width * im.height > limit:
                    raise ImageError(
                        f"{path} has {im.width}x{im.height} pixels, more than the limit of {limit}"
                    )
                if getattr(im, "n_frames", 1) > 1:
                    warnings.warn(f"{path} is animated: using its first frame", stacklevel=2)
                im.seek(0)
                im = ImageOps.exif_transpose(im)
                return to_rgb(im)
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path} is not a readable image ({e.__class__.__name__})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"{path} is corrupt or truncated ({e})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK, 16-bit and alpha images as 8-bit RGB (alpha composited on white)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        im = Image.fromarray((a / max(a.max(), 1) * 255).round().astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im.convert("RGBA"))
    im = im.convert("RGB")
    im.load()
    return im


def pil_to_tensor(im: Image.Image) -> Tensor:
    """PIL RGB -> (1, 3, H, W) float in [0, 1]."""
    a = np.array(to_rgb(im), dtype=np.uint8)
    return torch.from_numpy(a).permute(2, 0, 1)[None].float().div_(255)


def tensor_to_pil(x: Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] -> PIL RGB (rounded, clamped)."""
    x = x.detach()
    if x.ndim == 4:
        x = x[0]
    a = x.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(a, "RGB")


def scaled_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(w, h) with the longer side at `size` (None keeps it), aspect ratio kept, at least 1 px."""
    if size is None:
        return width, height
    if size < 1:
        raise InputError(f"size must be a positive number of pixels, got {size}")
    s = size / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def load_image(image: ImageLike, size: int | None = None, max_pixels: int | None = None) -> Tensor:
    """A path, PIL image or tensor as a (1, 3, H, W) tensor in [0, 1], longer side scaled to `size`."""
    if isinstance(image, Tensor):
        x = image[None] if image.ndim == 3 else image
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[0] != 1:
            raise InputError(f"image tensors must be (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
        if not torch.isfinite(x).all():
            raise InputError("image tensor contains NaN or Inf")
        if x.min() < 0 or x.max() > 1:
            raise InputError("image tensor values must be in [0, 1]")
        w, h = scaled_size(x.shape[3], x.shape[2], size)
        x = x.float()
        if (w, h) != (x.shape[3], x.shape[2]):
            x = F.interpolate(x, (h, w), mode="bicubic", antialias=True, align_corners=False)
        return x.clamp(0, 1)
    if isinstance(image, Image.Image):
        im = to_rgb(image)
    elif isinstance(image, (str, os.PathLike)):
        im = open_image(image, max_pixels)
    else:
        raise InputError(f"expected a path, PIL image or tensor, got {type(image).__name__}")
    w, h = scaled_size(im.width, im.height, size)
    if (w, h) != im.size:
        im = im.resize((w, h), Image.Resampling.LANCZOS)
    return pil_to_tensor(im)


def atomic_save(im: Image.Image, path: str | os.PathLike, overwrite: bool = False,
                protect: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Save via a temporary file and rename, so `path` is either absent or complete.

    Refuses to replace an input (`protect`), and an existing file unless `overwrite`.
    """
    path = Path(path)
    if any(path.resolve() == Path(p).resolve() for p in protect):
        raise OutputError(f"refusing to write over the input {path}")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists: pass --overwrite to replace it")
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"unknown image format for {path}: use .png, .jpg or .webp")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            im.save(f, format=fmt)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files under `directory`, recursively, sorted."""
    d = Path(directory)
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
