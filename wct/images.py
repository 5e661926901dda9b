"""Image I/O: load anything Pillow reads as RGB tensors in [0, 1], and write outputs atomically.

One behaviour per kind of input (tests/test_reliability.py, docs/reliability.md):

- unreadable, empty, truncated, SVG, a directory, or more pixels than the limit: `ImageError`
  naming the file (the limit: `max_pixels` where given, below or up to twice Pillow's
  decompression-bomb limit of 89.5M, checked from the header before decoding; Pillow's otherwise);
- grayscale, palette, CMYK, 16-bit, float and alpha images: converted to 8-bit RGB (alpha
  composited on white for the network, and put back on the output by `alpha_channel` / `with_alpha`);
- EXIF orientation: applied to files (paths, bytes, binary file objects), so the pixels are
  upright; a PIL image is taken as it is (`load_image`);
- embedded ICC profiles (Display P3, Adobe RGB, CMYK...): converted to sRGB (`to_srgb`); masks,
  whose values are labels, keep them (`to_rgb`);
- animated GIF/WebP/PNG: the first frame, with a warning;
- sides under 16 px: stretched to 16 with a warning (`stretch_small`), results resized back.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageChops, ImageCms, ImageOps, PngImagePlugin, UnidentifiedImageError
from torch import Tensor

from .checks import MIN_SIDE, as_number, made_pixel_limit
from .errors import ImageError, InputError, OutputError
from .paths import VIDEO_SUFFIXES, check_target, write_error

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
ALPHA_FORMATS = {"PNG", "WEBP", "TIFF", "ICO", "TGA", "JPEG2000", "AVIF"}  # output formats with alpha
SIZED_FORMATS = {"ICO", "ICNS"}  # output formats that may store another size (ICO <= 256 px)
SRGB = ImageCms.createProfile("sRGB")
ImageBytes = bytes | bytearray | memoryview  # an image file's bytes, read as the file would be
ImageLike = str | os.PathLike | ImageBytes | IO[bytes] | Image.Image | Tensor | np.ndarray

# What Pillow's decoders raise on malformed data (found by scripts/fuzz_images.py).
DECODE_ERRORS = (
    OSError,
    ValueError,
    TypeError,
    SyntaxError,
    EOFError,
    IndexError,
    KeyError,
    ZeroDivisionError,
    OverflowError,
    MemoryError,
    struct.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


# Warning filters are process-wide: catch_warnings blocks of two threads that interleave leave each
# other's filter behind (after two studio requests, every warning was ignored). So they take turns.
FILTERS = threading.RLock()


@contextmanager
def warnings_as(action: str, category: type[Warning] = Warning) -> Iterator[None]:
    """`warnings.catch_warnings` with one filter, one thread at a time (see FILTERS)."""
    with FILTERS, warnings.catch_warnings():
        warnings.simplefilter(action, category)
        yield


# wct's command lines and studio call the library as user code does: warnings point at them
CALLERS = {"wct.cli", "wct.cli_decoders", "wct.cli_gatys", "wct.serve"}


def warn_caller(message: str) -> None:
    """A UserWarning pointing at the code that called wct, however deep inside wct it is raised:
    past wct's library frames and torch.no_grad's wrapper (a fixed stacklevel points inside wct
    on some paths). The studio shows warnings from wct's modules (`serve.noted`), itself included."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None:
        module = frame.f_globals.get("__name__", "")
        inside = module.startswith("wct.") and module not in CALLERS or module == "torch.utils._contextlib"
        if not inside:
            break
        frame, level = frame.f_back, level + 1
    warnings.warn(message, stacklevel=level)


def reason(e: BaseException) -> str:
    """An exception as 'Class: message' on one line."""
    return f"{e.__class__.__name__}: {' '.join(str(e).split())}"


def check_max_pixels(max_pixels: int | None, name: str = "max_pixels") -> int | None:
    """None (Pillow's limit) or a whole positive number of pixels (which replaces it): 1e6 and
    numpy's or torch's numbers too, not 1e6 + 0.5."""
    if max_pixels is None:
        return None
    value = as_number(max_pixels, name)
    if not (1 <= value < math.inf and value.is_integer()):
        raise InputError(f"{name} must be a whole positive number of pixels, got {max_pixels!r}")
    return int(value)


def check_pixels(path: str | os.PathLike, max_pixels: int | None) -> None:
    """ImageError if the image at `path` has more than `max_pixels` pixels (reads the header only).

    Files Pillow cannot open pass: whatever loads them reports the problem.
    """
    if check_max_pixels(max_pixels) is None:
        return
    try:
        with warnings_as("ignore"), Image.open(path) as im:
            w, h = im.size
    except DECODE_ERRORS:
        return
    if w * h > max_pixels:
        raise ImageError(too_large(str(path), f"{w}x{h} = {w * h}", max_pixels))


def too_large(name: str, pixels: str, max_pixels: int | None) -> str:
    """The error for an image of `pixels` over `max_pixels`, or over Pillow's limit (None), with
    how to allow it."""
    if max_pixels is not None:
        return f"{name} is too large to open safely: {pixels} pixels, more than the limit of {max_pixels}"
    limit = Image.MAX_IMAGE_PIXELS or 0
    return (
        f"{name} is too large to open safely: {pixels} pixels, more than the default limit of "
        f"{limit / 1e6:.1f}M (a guard against decompression bombs); to allow it, pass a larger "
        f"max_pixels (--max-pixels on the command line), up to {2 * limit / 1e6:.1f}M"
    )


def pixel_limit(max_pixels: int | None) -> int | None:
    """`max_pixels`, or Pillow's decompression-bomb limit if it is None (None: no limit)."""
    return check_max_pixels(max_pixels) or Image.MAX_IMAGE_PIXELS


def decode(
    source: str | os.PathLike | ImageBytes | IO[bytes],
    max_pixels: int | None = None,
    formats: Sequence[str] | None = None,
    name: str | None = None,
) -> Image.Image:
    """The first frame of an image file (a path, its bytes, or a binary file object such as an
    upload), upright, in its own mode; any failure is an ImageError naming it as `name` (the path,
    or "the file"). `formats`: the Pillow formats accepted (None: all it reads). `max_pixels`
    replaces Pillow's limit (None keeps it) up to twice it, which Pillow refuses to open."""
    path = Path(source) if isinstance(source, (str, os.PathLike)) else None
    name = name or (str(path) if path else "the file")
    if isinstance(source, ImageBytes):
        if not memoryview(source).nbytes:
            raise ImageError(f"{name} is empty (0 bytes)")
        source = io.BytesIO(bytes(source))  # bytes: no copy; a memoryview of any layout
    elif isinstance(source, io.TextIOBase):  # Pillow would compare its text with byte signatures
        raise InputError(f"{name} is open in text mode: open image files with 'rb'")
    elif getattr(source, "closed", False):
        raise ImageError(f"{name} is closed: it cannot be read")
    if path is not None:
        if not os.fspath(source):  # Path("") is "." ("is a directory")
            raise ImageError("the image path is empty: give the path of an image file")
        if path.is_dir():
            raise ImageError(f"{name} is a directory, not an image")
        if not path.exists():
            raise ImageError(f"{name} does not exist")
        if path.stat().st_size == 0:
            raise ImageError(f"{name} is empty (0 bytes)")
    limit = pixel_limit(max_pixels)
    try:
        with (  # the limit is checked here, from the header; Pillow refuses twice its own at open
            warnings_as("ignore", Image.DecompressionBombWarning),
            Image.open(source, formats=formats) as im,
        ):
            w, h = im.size
            if limit and w * h > limit:
                raise ImageError(too_large(name, f"{w}x{h} = {w * h}", max_pixels))
            frames = getattr(im, "n_frames", 1)
            im.seek(0)
            fmt = im.format
            im = ImageOps.exif_transpose(im)
            im.load()
            im.format = fmt  # the copy forgets it: a JPEG's bytes are still named one (masks)
    except ImageError:
        raise
    except PermissionError:
        raise ImageError(f"{name} cannot be read: permission denied") from None
    except UnidentifiedImageError:
        if path is not None and path.suffix.lower() == ".svg":
            raise ImageError(f"{name} is an SVG (vector) image: convert it to PNG first") from None
        if path is not None and path.suffix.lower() in VIDEO_SUFFIXES:
            raise ImageError(
                f"{name} is a video, not an image: stylise its frames with `wct video`"
            ) from None
        if formats:
            raise ImageError(f"{name} is not an image in an accepted format ({', '.join(formats)})") from None
        raise ImageError(f"{name} is not an image in a format Pillow reads") from None
    except Image.DecompressionBombError as e:  # over twice Pillow's limit, whatever `max_pixels`
        raise ImageError(f"{name} is too large to open ({reason(e)})") from None
    except DECODE_ERRORS as e:
        raise ImageError(f"{name} is corrupt or truncated ({reason(e)})") from None
    if im.width < 1 or im.height < 1:
        raise ImageError(f"{name} has no pixels")
    if frames > 1:
        warn_caller(f"{name} is animated ({frames} frames): using its first frame")
    return im


def open_image(
    path: str | os.PathLike | ImageBytes | IO[bytes], max_pixels: int | None = None
) -> Image.Image:
    """Open, decode and orient an image file (a path, its bytes or a binary file object) as sRGB;
    any failure is an ImageError naming the file (the path, or "the file")."""
    im = decode(path, max_pixels)
    name = str(path) if isinstance(path, str | os.PathLike) else "the file"
    try:
        return to_srgb(im, name)
    except DECODE_ERRORS as e:
        raise ImageError(f"{name} cannot be converted to RGB ({reason(e)})") from None


INT_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def eight_bit(im: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer grey scaled to 8-bit L (Pillow's own convert clips at 255), and
    32-bit float grey too: values in [0, 1] as that range, others as 0..255 (NaN and -inf as black,
    +inf as white)."""
    if im.mode in INT_GREY:
        a = np.clip(np.asarray(im, dtype=np.float64), 0, 65535) / 257  # 16-bit full scale -> 255
        return Image.fromarray(a.round().astype(np.uint8), "L")
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        finite = a[np.isfinite(a)]
        unit = finite.size > 0 and finite.max() <= 1  # the range is judged by the finite values
        a = np.nan_to_num(a, nan=0.0, posinf=1.0 if unit else 255.0, neginf=0.0)
        a = np.clip(a * 255 if unit else a, 0, 255)
        return Image.fromarray(a.round().astype(np.uint8), "L")
    return im


def to_rgb(im: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK, 16-bit and alpha images as 8-bit RGB (alpha composited on white,
    a transparent colour of an RGB, grey or 16-bit image included)."""
    if "transparency" in im.info and im.mode not in ("P", "RGBA", "LA", "PA", "RGBa", "La"):
        alpha = alpha_of(im)
        im = eight_bit(im).convert("RGBA")
        im.putalpha(alpha)
    im = eight_bit(im)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode == "La":  # premultiplied: Pillow converts it only to LA
        im = im.convert("LA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im.convert("RGBA"))
    im = im.convert("RGB")
    im.load()
    return im


def to_srgb(im: Image.Image, name: str = "the image") -> Image.Image:
    """`to_rgb` with the colours converted to sRGB from the image's embedded ICC profile (RGB, CMYK,
    or grey for a grey image). Untagged images, and those the conversion changes by at most 1 (an
    sRGB profile, whatever its name), are exactly `to_rgb`'s; an unusable profile is ignored with a
    warning naming `name`. Masks use `to_rgb`: their values are labels, not colours.
    Perceptual intent: CMYK (LUT) profiles map their gamut smoothly; matrix ones (P3) are colorimetric.
    """
    icc = im.info.get("icc_profile")
    if not icc or im.mode == "LAB":  # Pillow converts Lab to sRGB itself; its profile is Lab's
        return to_rgb(im)
    rgb = None if im.mode == "CMYK" else to_rgb(im)
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if rgb is not None and is_srgb(profile):  # most cameras' and phones' JPEGs: skip the pass
            return rgb
        src = im if rgb is None else rgb
        if rgb is not None and profile.profile.xcolor_space.strip() == "GRAY" and is_grey(rgb):
            src = rgb.getchannel("R")
        out = ImageCms.profileToProfile(
            src, profile, SRGB, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB"
        )
    except (ImageCms.PyCMSError, OSError, TypeError, ValueError) as e:
        warn_caller(
            f"{name} has a colour profile that cannot be used ({reason(e)}): its colours are read as sRGB"
        )
        rgb = to_rgb(im) if rgb is None else rgb
        rgb.info.pop("icc_profile", None)  # warned about once
        return rgb
    if rgb is not None and max(hi for _, hi in ImageChops.difference(out, rgb).getextrema()) <= 1:
        return rgb
    out.info.pop("icc_profile", None)  # untagged sRGB, like every other image
    return out


# 16 levels of each channel, every combination: a profile that maps them all to within 1 is sRGB
CUBE = Image.fromarray(
    np.stack(np.meshgrid(*[np.arange(0, 256, 17, dtype=np.uint8)] * 3), -1).reshape(64, 64, 3)
)


def is_srgb(profile: ImageCms.ImageCmsProfile) -> bool:
    """Whether an RGB profile is sRGB in effect, whatever its name: it moves no colour of `CUBE`
    by more than 1 (a 4,096-pixel conversion instead of the whole image's)."""
    if profile.profile.xcolor_space.strip() != "RGB":
        return False
    out = ImageCms.profileToProfile(CUBE, profile, SRGB, renderingIntent=ImageCms.Intent.PERCEPTUAL)
    return max(hi for _, hi in ImageChops.difference(out, CUBE).getextrema()) <= 1


def is_grey(im: Image.Image) -> bool:
    """Whether every pixel of an RGB image has R = G = B."""
    a = np.asarray(im)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def alpha_of(im: Image.Image) -> Image.Image:
    """The alpha of an image (L): its alpha channel, or where it differs from its transparent colour
    (for 16-bit grey compared on the 16-bit values: Pillow compares them clipped to 255)."""
    key = im.info.get("transparency")
    if im.mode in INT_GREY and isinstance(key, int):
        return Image.fromarray(np.where(np.asarray(im) == key, 0, 255).astype(np.uint8), "L")
    return (im.convert("LA") if im.mode == "La" else im).convert("RGBA").getchannel("A")


def has_alpha(im: Image.Image) -> bool:
    """Whether the image has an alpha channel or a transparent palette entry: a transparent colour,
    or a palette with alpha (as `convert("P")` and `quantize()` of an RGBA image make in memory)."""
    rgba_palette = im.mode == "P" and getattr(im.palette, "mode", None) == "RGBA"
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info or rgba_palette


def alpha_channel(
    image: ImageLike, size: tuple[int, int], max_pixels: int | None = None
) -> Image.Image | None:
    """The alpha channel of an image file (a path, its bytes or a binary file object) or a PIL
    image, resized to `size` (w, h); None if it has none.

    Tensors and numpy arrays carry no alpha. A fully opaque alpha channel counts as none.
    """
    if isinstance(image, Tensor | np.ndarray):
        return None
    if isinstance(image, Image.Image):
        im = image
    else:
        with warnings_as("ignore"):  # the RGB load has already warned (animated...)
            im = decode(image, max_pixels)
    if not has_alpha(im):
        return None
    alpha = alpha_of(im)
    if alpha.getextrema() == (255, 255):
        return None
    return alpha.resize(size, Image.Resampling.LANCZOS) if alpha.size != size else alpha


def with_alpha(im: Image.Image, alpha: Image.Image | None) -> Image.Image:
    """`im` as RGBA with `alpha` put back (a copy), or `im` itself when `alpha` is None."""
    if alpha is None:
        return im
    out = im.convert("RGBA")
    out.putalpha(alpha.resize(im.size) if alpha.size != im.size else alpha)
    return out


def pil_to_tensor(im: Image.Image) -> Tensor:
    """PIL RGB -> (1, 3, H, W) float in [0, 1]."""
    a = np.array(to_rgb(im), dtype=np.uint8)
    return torch.from_numpy(a).permute(2, 0, 1)[None].float().div_(255)


def tensor_to_pil(x: Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) floats in [0, 1] (rounded, clamped), or uint8 in 0..255 as
    `load_image` takes them -> PIL RGB. Another shape, a batch of several images, another dtype,
    no pixels, or NaN or Inf is an InputError (they gave a wrong, first-only or black image)."""
    if not isinstance(x, Tensor):
        raise InputError(f"tensor_to_pil takes a (3, H, W) or (1, 3, H, W) tensor, got {type(x).__name__}")
    x = x.detach()
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[0] != 3 or 0 in x.shape:
        batch = " (a batch: convert each image, y[i])" if x.ndim == 4 and x.shape[0] > 1 else ""
        got = f"{tuple(x.shape)}{batch}"
        raise InputError(f"tensor_to_pil takes a (3, H, W) or (1, 3, H, W) image, got {got}")
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise InputError(f"tensor_to_pil takes floats in [0, 1] or uint8 in 0..255, got {x.dtype}")
        x = x.float()  # bf16 would round 255 * x; float8 has no clamp
        lo, hi = torch.aminmax(x)  # propagates NaN, without a full-size temporary
        if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
            raise InputError("the image tensor contains NaN or Inf")
        x = x.clamp(0, 1).mul(255).round().byte()
    return Image.fromarray(x.permute(1, 2, 0).cpu().numpy(), "RGB")


def check_size(size: int) -> int:
    """`size` (a longer side in pixels) as an int, or an InputError if not a whole number >= 1."""
    value = as_number(size, "size (pixels, or None)")
    if not 1 <= value < math.inf or not value.is_integer():
        raise InputError(f"size must be a whole positive number of pixels, got {size}")
    return int(value)


def scaled_size(width: int, height: int, size: int | None) -> tuple[int, int]:
    """(w, h) with the longer side at `size` (None keeps it), aspect ratio kept, at least 1 px;
    an InputError if that is over `made_pixel_limit` (the most Pillow opens from a file)."""
    limit = made_pixel_limit()
    if size is None:
        if limit and width * height > limit:  # an image in memory: a file that large is refused
            raise InputError(
                f"a {width}x{height} image is over the limit of {limit:,} pixels: "
                "give a size to scale it down"
            )
        return width, height
    s = check_size(size) / max(width, height)
    w, h = max(1, round(width * s)), max(1, round(height * s))
    if limit and w * h > limit:  # before a tensor of that size is allocated
        raise InputError(
            f"size {size} makes a {width}x{height} image {w}x{h}, over the limit of {limit:,} pixels"
        )
    return w, h


def loaded(im: Image.Image) -> Image.Image:
    """A PIL image with its pixels read: one opened lazily from a file that is truncated, corrupt or
    already closed is an ImageError."""
    try:
        im.load()
    except (*DECODE_ERRORS, AssertionError) as e:  # Pillow asserts its file is open
        raise ImageError(
            "the PIL image cannot be read: its file is corrupt, truncated or closed "
            f"({reason(e).rstrip(': ')})"
        ) from None
    return im


def array_to_tensor(a: np.ndarray) -> Tensor:
    """An (H, W, 3) RGB or (H, W) grey numpy array (as imageio and Pillow give; OpenCV's are BGR)
    as a (3, H, W) tensor of its own (a copy), uint8 or float, for `load_image` to check."""
    if a.ndim not in (2, 3) or a.ndim == 3 and a.shape[2] != 3:
        first = " (channels first? use torch.from_numpy(a))" if a.ndim == 3 and a.shape[0] == 3 else ""
        raise InputError(f"numpy image arrays must be (H, W, 3) RGB or (H, W) grey, got {a.shape}{first}")
    if 0 in a.shape:
        raise InputError(f"the image array has no pixels: shape {a.shape}")
    if a.dtype != np.uint8 and a.dtype.kind != "f":
        raise InputError(f"numpy image arrays must be uint8 in 0..255 or floats in [0, 1], got {a.dtype}")
    rgb = a if a.ndim == 3 else a[..., None].repeat(3, axis=2)
    dtype = np.float64 if a.itemsize > 8 else a.dtype.newbyteorder("=")
    a = np.array(rgb, dtype)  # writable, native byte order, positive strides: what torch takes
    return torch.from_numpy(a).permute(2, 0, 1)


def unseekable(f: object) -> bool:
    """Whether `f` is an open file object that cannot go back to its start (a pipe, a socket, a
    web response): read once, it is gone."""
    with suppress(AttributeError, OSError, ValueError):  # no seekable(): Pillow tries; closed: decode says so
        return hasattr(f, "read") and not f.seekable()
    return False


def load_image(image: ImageLike, size: int | None = None, max_pixels: int | None = None) -> Tensor:
    """A path, an image file's bytes (bytes, bytearray, memoryview), a seekable binary file object
    (io.BytesIO, open(path, "rb"), an upload), a PIL image, a tensor or a numpy array as a
    (1, 3, H, W) tensor in [0, 1], longer side scaled to `size`.

    Bytes and file objects are read as a path is (`open_image`: `max_pixels`, EXIF orientation
    applied so the pixels are upright, colour profile converted to sRGB). A PIL image is taken as
    it is: its colour profile is converted, but its EXIF orientation is not applied (an
    Image.open(path) photo tagged as rotated stays as stored: use ImageOps.exif_transpose(im)).
    Tensors hold values in [0, 1], or 0..255 if uint8 (as torchvision reads images); numpy arrays
    are (H, W, 3) RGB or (H, W) grey (see `array_to_tensor`), as tensors."""
    check_max_pixels(max_pixels)
    if isinstance(image, np.ndarray):
        image = array_to_tensor(image)  # then checked as tensors are
    if isinstance(image, Tensor):
        if image.is_meta or image.layout != torch.strided:
            kind = "meta" if image.is_meta else str(image.layout)
            raise InputError(f"image tensors must be dense tensors holding their values, got a {kind} tensor")
        x = image[None] if image.ndim == 3 else image
        if x.ndim == 4 and x.shape[:2] == (1, 3) and 0 in x.shape:
            raise InputError(f"the image tensor has no pixels: shape {tuple(image.shape)}")
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[0] != 1:
            hwc = image.ndim == 3 and image.shape[2] == 3
            last = " (channels last? use x.permute(2, 0, 1))" if hwc else ""
            raise InputError(
                f"image tensors must be (3, H, W) or (1, 3, H, W) (an (N, 3, H, W) batch where the "
                f"Stylizer takes one, N >= 1), got {tuple(image.shape)}{last}"
            )
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        elif not x.is_floating_point():  # bool, complex; 0..1 or 0..255? torchvision reads uint8
            raise InputError(f"image tensors must be floats in [0, 1] or uint8 in 0..255, got {x.dtype}")
        elif x.dtype.itemsize == 1:  # float8: isfinite and min are not implemented for it
            x = x.float()
        if not torch.isfinite(x).all():
            raise InputError("image tensor contains NaN or Inf")
        if x.min() < 0 or x.max() > 1:
            raise InputError("image tensor values must be in [0, 1]")
        w, h = scaled_size(x.shape[3], x.shape[2], size)
        x = x.float()  # the tensor itself when it is float32 already: checking it copies nothing
        if (w, h) != (x.shape[3], x.shape[2]):
            x = F.interpolate(x, (h, w), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        return x
    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise ImageError(f"the image has no pixels ({image.width}x{image.height})")
        im = to_srgb(loaded(image))
    elif isinstance(image, str | os.PathLike | ImageBytes) or hasattr(image, "read"):
        if unseekable(image):  # `stylize` reads it again for its alpha channel
            raise InputError("image file objects must be seekable: pass their bytes, f.read(), instead")
        im = open_image(image, max_pixels)
    else:
        raise InputError(
            f"expected a path, an image file's bytes or binary file object, a PIL image, a tensor or "
            f"a numpy array, got {type(image).__name__}"
        )
    w, h = scaled_size(im.width, im.height, size)
    if (w, h) != im.size:
        im = im.resize((w, h), Image.Resampling.LANCZOS)
    return pil_to_tensor(im)


def stretch_small(x: Tensor, what: str = "image", min_side: int = MIN_SIDE) -> Tensor:
    """Stretch each side of a (1, 3, H, W) image shorter than `min_side` px up to it, with a warning.

    relu5_1 is 1/16 of its input, so a style under 16 px has no statistics there and a content
    under 16 px would be mostly padding. Each short side is stretched on its own (a 1 x 4000 line
    becomes 16 x 4000, not 16 x 64000); the caller resizes a content's result back with `resize`.
    """
    h, w = x.shape[-2:]
    if h >= min_side and w >= min_side:
        return x
    back = " and back" if what != "style" else ""  # a style's statistics are all that is kept of it
    warn_caller(f"the {what} is only {w}x{h} px: stretched to at least {min_side} px a side{back}")
    return F.interpolate(x, (max(h, min_side), max(w, min_side)), mode="bicubic", align_corners=False).clamp(
        0, 1
    )


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """A (N, C, H, W) image resized to `size` (h, w) with antialiasing; unchanged if already that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)


SAVE_OPTIONS = {  # Pillow's defaults (75-80, 4:2:0 chroma) blur a painting's fine strokes
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"quality": 95},
}


def atomic_save(
    im: Image.Image,
    path: str | os.PathLike,
    overwrite: bool = False,
    protect: tuple[str | os.PathLike, ...] = (),
    text: dict[str, str] | None = None,
    option: str = "overwrite=True",
) -> Path:
    """Save via a temporary file and rename, so `path` is either absent or complete.

    Refuses to replace an input (`protect`), and an existing file unless `overwrite` (the message
    says to pass `option`: the CLI's is "--overwrite"), and the rest `check_target` refuses. An
    alpha channel is dropped, with a warning, for formats without one (JPEG, BMP...). `text` goes
    into a PNG's text chunks (read back with `png_text`); other formats do not keep it.
    """
    if not isinstance(im, Image.Image):  # a tensor reached Pillow's save as an AttributeError
        hint = ": convert it with tensor_to_pil" if isinstance(im, Tensor) else ""
        raise InputError(f"atomic_save takes a PIL image, got {type(im).__name__}{hint}")
    try:
        path = check_target(path, overwrite, protect, option=option)
    except OSError as e:  # a name too long...: as write_atomic reports it
        raise write_error(path, e) from None
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"unknown image format for {path}: use .png, .jpg or .webp")
    if im.mode == "PA":  # few writers take it (not PNG's): as RGBA, its colours and alpha kept
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA") and fmt not in ALPHA_FORMATS:
        warn_caller(f"{fmt} has no alpha channel: {path} is written without transparency")
        im = im.convert("L" if im.mode == "LA" else "RGB")

    def save(tmp: str) -> None:
        extra: dict = dict(
            SAVE_OPTIONS.get(fmt, {}),
            **({"sizes": [im.size]} if fmt == "ICO" and max(im.size) <= 256 else {}),
        )
        if text and fmt == "PNG":
            extra["pnginfo"] = PngImagePlugin.PngInfo()
            for key, value in text.items():
                extra["pnginfo"].add_itxt(key, value)
        im.save(tmp, format=fmt, **extra)
        stored = stored_size(tmp) if fmt in SIZED_FORMATS else None
        if stored not in (None, im.size):
            w, h = im.size
            raise OutputError(
                f"{fmt} would store this {w}x{h} image as {stored[0]}x{stored[1]}: use .png, .jpg or .webp"
            )

    return write_atomic(path, save)


def stored_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """The (w, h) an image file says it holds; None if Pillow cannot read it back (a PDF, say)."""
    try:
        with warnings_as("ignore"), Image.open(path) as im:
            return im.size
    except DECODE_ERRORS:  # UnidentifiedImageError is an OSError
        return None


def png_text(path: str | os.PathLike, key: str) -> str | None:
    """A text chunk of a PNG file (None if it has none, or is not a readable PNG)."""
    try:
        with Image.open(path) as im:
            return getattr(im, "text", {}).get(key)
    except (OSError, ValueError, SyntaxError):
        return None


def missing_parents(path: Path) -> list[Path]:
    """The folders above `path` that do not exist yet, deepest first: those a write to `path`
    makes, for `remove_made` to take away again if it fails."""
    return [p for p in (path.parent, *path.parent.parents) if not os.path.exists(p)]


def remove_made(folders: list[Path]) -> None:
    """Remove the folders (from `missing_parents`) that are still empty, deepest first."""
    for folder in folders:
        with suppress(OSError):  # not empty (or gone): kept
            folder.rmdir()


def temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A hidden temporary file next to `path`, to be renamed over it by `publish` when complete."""
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)


def publish(tmp: str | Path, path: Path) -> None:
    """Rename a complete temporary file (or folder) over `path`, with the permissions a plain
    open() or mkdir() would give (mkstemp's, mkdtemp's and safetensors' own are 0600/0700: other
    users could not read the output)."""
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(tmp, (0o777 if os.path.isdir(tmp) else 0o666) & ~mask)
    os.replace(tmp, path)


def write_atomic(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """`write(tmp)` a temporary file beside `path`, flush it to disk, then rename it over `path`, so
    `path` is either the old file or the new; OutputError if the folder or the file cannot be
    written (what Pillow's encoders raise included). Folders it made are removed if it fails."""
    path = Path(path)
    made = missing_parents(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path)
    except (FileExistsError, NotADirectoryError):
        remove_made(made)
        raise OutputError(f"cannot write {path}: a parent of it is a file, not a directory") from None
    except OSError as e:
        remove_made(made)
        raise write_error(path, e) from None
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        publish(tmp, path)
    except (OSError, ValueError, KeyError, OverflowError) as e:  # Overflow: too wide for GIF, TGA
        raise OutputError(f"cannot write {path}: {getattr(e, 'strerror', None) or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        remove_made(made)  # those still empty: nothing was published
    return path


def write_json(report: object, path: Path) -> None:
    """Write JSON atomically (`write_atomic`)."""
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1)))


def list_images(directory: str | os.PathLike, suffixes: Collection[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Image files (or files with other `suffixes`) under `directory`, recursively, through linked
    folders too (each folder once, so a link to a parent does not loop), sorted. Hidden files and
    folders (.name) are skipped, as a shell's * does: macOS's ._photo.jpg copies are not images."""
    found, seen = [], set()
    for root, dirs, files in os.walk(directory, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # the same path wins anywhere
        found += [
            Path(root, f) for f in files if Path(f).suffix.lower() in suffixes and not f.startswith(".")
        ]
    return sorted(p for p in found if p.is_file())
