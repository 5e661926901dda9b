"""Checks of user values that need no torch: the CLI runs them before torch loads (seconds), so a
bad option is the first error, and the library runs the same ones."""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence

from .errors import InputError

PRECISIONS = ("fp32", "bf16", "fp16")  # wct.encoder.PRECISIONS maps them to autocast dtypes


def as_number(value: object, what: str) -> float:
    """`value` as a float: numbers, numpy scalars and one-element tensors; an InputError
    naming `what` for anything else, bools and text included."""
    if not isinstance(value, bool | str | bytes):
        try:
            return float(value)
        except (TypeError, ValueError, RuntimeError):
            pass
    raise InputError(f"{what} must be a number, got {value!r}")


def whole(value: object) -> bool:
    """Whether `value` is an integer (numpy's included), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_alpha(alpha: float) -> float:
    value = as_number(alpha, "alpha")
    if not 0.0 <= value <= 1.0:
        raise InputError(f"alpha must be between 0 and 1, got {alpha}")
    return value


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
