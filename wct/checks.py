"""Checks of user values that need no torch: the CLI runs them before torch loads (seconds), so a
bad option is the first error, and the library runs the same ones."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Sequence

from .errors import InputError

PRECISIONS = ("fp32", "bf16", "fp16")  # wct.encoder.PRECISIONS maps them to autocast dtypes
LEVELS = (1, 2, 3, 4, 5)  # WCT's levels: relu1_1..relu5_1
MIN_SIDE = 16  # relu5_1 is 1/16 of the input: images are padded to multiples of it


def as_number(value: object, what: str) -> float:
    """`value` as a float: numbers, numpy scalars and one-element tensors; an InputError
    naming `what` for anything else, bools and text included."""
    if not isinstance(value, bool | str | bytes):
        try:
            return float(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise InputError(f"{what} must be a number, got {value!r}")


def check_level(level: object) -> int:
    """One level, 1 to 5 (an integer, not a bool)."""
    if isinstance(level, bool) or not isinstance(level, numbers.Integral) or level not in LEVELS:
        raise InputError(f"unknown level {level!r}: levels are 1 to 5 (relu1_1..relu5_1)")
    return int(level)


def check_levels(levels: Sequence[int] | int) -> tuple[int, ...]:
    """Levels as a tuple of ints in 1..5; a single int is one level."""
    if getattr(levels, "ndim", None) == 0:  # a 0-d array or tensor
        levels = levels.item()
    if isinstance(levels, numbers.Integral):
        levels = (levels,)
    if isinstance(levels, str | bytes) or not isinstance(levels, Iterable):
        raise InputError(f"levels must be a sequence of levels 1..5, such as (5, 4, 3, 2, 1), got {levels!r}")
    levels = tuple(v.item() if getattr(v, "ndim", None) == 0 else v for v in levels)  # tensor elements
    if not levels:
        raise InputError("at least one level is needed")
    for v in levels:
        check_level(v)
    if len(set(levels)) < len(levels):
        raise InputError(f"each level runs at most once, got {levels}")
    return tuple(int(v) for v in levels)


def whole(value: object) -> bool:
    """Whether `value` is an integer (numpy's included), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_alpha(alpha: float) -> float:
    value = as_number(alpha, "alpha")
    if not 0.0 <= value <= 1.0:
        raise InputError(f"alpha must be between 0 and 1, got {alpha}")
    return value


def check_style_weights(weights: Sequence[float | None], masked: bool = False) -> None:
    """The weights of `--style PATH:WEIGHT` (None where none is given: it counts 1), refused as
    controls.parse_styles refuses them, before torch loads: with a mask, negative, not finite, or
    all zero."""
    if masked and any(v is not None for v in weights):
        raise InputError("--style PATH:WEIGHT and --mask do not combine: a mask gives each region one style")
    w = [1.0 if v is None else v for v in weights]
    if any(not math.isfinite(v) or v < 0 for v in w):
        raise InputError(f"style weights must be finite, non-negative numbers, got {w}")
    if w and sum(w) <= 0:
        raise InputError(f"style weights must not all be zero, got {w}")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def check_device_name(device: str) -> str:
    """auto, cpu, cuda or cuda:N (whether that GPU exists is torch's to say)."""
    kind, colon, index = device.partition(":")
    if device != "auto" and (kind not in ("cpu", "cuda") or colon and not index.isdigit()):
        raise InputError(f"unknown device {device!r}: use cpu, cuda or auto")
    return device


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """'768x512' -> (768, 512) as (width, height); '512' -> (512, 512)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if m is None or int(m[1]) < 1 or int(m[2] or m[1]) < 1:
        raise InputError(f"{option} must be WIDTHxHEIGHT in pixels (e.g. 768x512) or N, got {text!r}")
    return int(m[1]), int(m[2] or m[1])


def check_seed(seed: object, name: str = "seed") -> int:
    """`seed` if torch.Generator.manual_seed takes it (a whole number from -2**63 to 2**64 - 1)."""
    if not whole(seed) or not -(2**63) <= seed < 2**64:
        raise InputError(f"{name} must be a whole number from -2**63 to 2**64 - 1, got {seed!r}")
    return int(seed)


def texture_size(size: int | Sequence[int]) -> tuple[int, int]:
    """(width, height) in pixels from a pair or one int (a square)."""
    pair = (size, size) if isinstance(size, numbers.Integral) else size
    if (
        isinstance(pair, str | bytes)
        or not isinstance(pair, Sequence)
        or len(pair) != 2
        or not all(whole(v) for v in pair)
    ):
        raise InputError(f"size must be (width, height) in whole pixels, got {size!r}")
    return int(pair[0]), int(pair[1])


def made_pixel_limit() -> int | None:
    """The most pixels of an image wct makes (a texture, an upscaled photo): twice Pillow's
    decompression-bomb limit, the size Pillow refuses to open (None if that is off)."""
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS and 2 * Image.MAX_IMAGE_PIXELS


def check_texture_pixels(width: int, height: int) -> None:
    """InputError for a texture over `made_pixel_limit`."""
    limit = made_pixel_limit()
    if limit and width * height > limit:
        raise InputError(f"a {width}x{height} texture is over the limit of {limit:,} pixels")
