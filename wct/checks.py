"""Checks of user values that need no torch: the CLI runs them before torch loads (seconds), so a
bad option is the first error, and the library runs the same ones."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import InputError

PRECISIONS = ("fp32", "bf16", "fp16")  # wct.encoder.PRECISIONS maps them to autocast dtypes
LEVELS = (1, 2, 3, 4, 5)  # WCT's levels: relu1_1..relu5_1
MIN_SIDE = 16  # relu5_1 is 1/16 of the input: images are padded to multiples of it


def _vgg19_names() -> tuple[str, ...]:
    """The encoder's layers as wct.encoder.NAMES names them, known here without torch: VGG19's
    blocks of 2, 2, 4 and 4 convs (each a conv then its ReLU) and a pool after each, then conv5_1."""
    names = []
    for block, convs in enumerate((2, 2, 4, 4, 1), 1):
        names += [f"{kind}{block}_{k}" for k in range(1, convs + 1) for kind in ("conv", "relu")]
        names += [f"pool{block}"] if block < 5 else []
    return tuple(names)


VGG19_NAMES = _vgg19_names()
RELUS = tuple(n for n in VGG19_NAMES if n.startswith("relu"))


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


def check_layer(name: str) -> str:
    if name not in VGG19_NAMES:
        raise InputError(f"unknown VGG19 layer {name!r}; known: {', '.join(VGG19_NAMES)}")
    return name


def min_side(layer: str) -> int:
    """The smallest input side that leaves `layer` at least 1x1: 2 ** (pools up to it, itself included)."""
    return 2 ** sum(n.startswith("pool") for n in VGG19_NAMES[: VGG19_NAMES.index(check_layer(layer)) + 1])


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


# The options of the Gatys et al. (2016) baseline (wct.gatys), checked without torch.
CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
TV_NORMALISED = 10.0  # 2-6% of the final loss at the default weights: removes pixel noise
OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style")
GRAMS = ("plain", "centered", "both")
ADAM_MAX_LR = 1e3  # Adam moves a pixel (in [0, 1]) by up to about lr a step; torch's overflows near 3e37


# Default weights per feature scale. Normalised: style 100 (at 1, the value of the authors'
# reference, 500 L-BFGS steps left photos barely changed), plus a light total-variation prior;
# raw Caffe VGG19: this package's earlier weights.
DEFAULT_WEIGHTS = {
    True: {"style_weight": 100.0, "tv_weight": TV_NORMALISED},
    False: {"style_weight": 0.05, "tv_weight": 1e6},
}


@dataclass(frozen=True)
class Options:
    """The settings of `gatys`; `invert` uses steps, optimizer, tv_weight, seed, lr and save_every.

    style_weight and tv_weight default (None) to DEFAULT_WEIGHTS[normalise]. A style weight of 0
    needs a content weight above 0, and content (with neither, the images would not count)."""

    steps: int = 500
    optimizer: str = "lbfgs"
    init: str | None = None
    content_weight: float = 1.0
    style_weight: float | None = None
    tv_weight: float | None = None
    gram: str = "plain"
    seed: int = 0
    lr: float | None = None
    save_every: int = 0
    normalise: bool = True
    style_layers: tuple[str, ...] = STYLE_LAYERS
    content_layer: str = CONTENT_LAYER

    def checked(self, has_content: bool = True) -> Options:
        """The options validated, with the defaults that depend on others filled in (init, lr,
        weights). Cheap: the CLI calls it before loading anything. InputError names the bad one."""
        opt = check_choice(self.optimizer, OPTIMIZERS, "optimizer")
        init = check_choice(self.init or ("content" if has_content else "noise"), INITS, "init")
        if init == "content" and not has_content:
            raise InputError(f"{named('init')} 'content' needs a content image: use 'noise' or 'style'")
        if not isinstance(self.normalise, bool):
            raise InputError(f"normalise must be True or False, got {self.normalise!r}")
        defaults = DEFAULT_WEIGHTS[self.normalise]
        style_weight = defaults["style_weight"] if self.style_weight is None else self.style_weight
        tv_weight = defaults["tv_weight"] if self.tv_weight is None else self.tv_weight
        content_weight = _weight(self.content_weight, "content_weight")
        if _weight(style_weight, "style_weight") == 0 and (content_weight == 0 or not has_content):
            what = f"and {named('content_weight')} are both 0" if has_content else "is 0 without content"
            raise InputError(f"{named('style_weight')} {what}: the result would ignore the images")
        return Options(
            steps=_count(self.steps, "steps", 1),
            optimizer=opt,
            init=init,
            content_weight=content_weight,
            style_weight=_weight(style_weight, "style_weight"),
            tv_weight=_weight(tv_weight, "tv_weight"),
            gram=check_choice(self.gram, GRAMS, "gram"),
            seed=check_seed(self.seed, named("seed")),
            lr=_lr(self.lr, opt),
            save_every=_count(self.save_every, "save_every"),
            normalise=self.normalise,
            style_layers=_layers(self.style_layers, "style_layers"),
            content_layer=_layer(self.content_layer, "content_layer"),
        )


def named(name: str) -> str:
    """An option as both the API and the CLI spell it: 'style_weight (--style-weight)'."""
    return f"{name} (--{name.replace('_', '-')})"


def check_choice(value: object, options: tuple[str, ...], name: str) -> str:
    if not isinstance(value, str) or value.lower() not in options:
        raise InputError(f"unknown {named(name)} {value!r}: use one of {', '.join(options)}")
    return value.lower()


def _count(value: object, name: str, least: int = 0) -> int:
    """An integer (numpy's too, as for sizes) >= least, as a Python int."""
    if not whole(value) or value < least:
        raise InputError(f"{named(name)} must be an integer >= {least}, got {value!r}")
    return int(value)


def _weight(value: object, name: str) -> float:
    try:
        v = as_number(value, name)  # numpy's scalars too
    except InputError:
        v = math.nan
    if not (math.isfinite(v) and v >= 0):
        raise InputError(f"{named(name)} must be a finite number >= 0, got {value!r}")
    return v


def _layers(value: object, name: str) -> tuple[str, ...]:
    """ReLU layer names (the normalised VGG's constants are per ReLU channel), without repeats."""
    if (
        not isinstance(value, tuple)
        or not value
        or not all(isinstance(v, str) and v in RELUS for v in value)
        or len(set(value)) != len(value)
    ):
        raise InputError(f"{named(name)} takes distinct ReLU layers ({', '.join(RELUS)}), got {value!r}")
    return value


def _layer(value: object, name: str) -> str:
    """One ReLU layer name, as `_layers` checks it."""
    try:
        return _layers((value,), name)[0]
    except InputError:
        raise InputError(f"{named(name)} takes one ReLU layer ({', '.join(RELUS)}), got {value!r}") from None


def _lr(value: float | None, opt: str) -> float:
    if value is None:
        return 1.0 if opt == "lbfgs" else 0.05
    v = _weight(value, "lr")
    if v == 0:
        raise InputError(f"{named('lr')} must be > 0")
    if opt == "adam" and v > ADAM_MAX_LR:
        raise InputError(
            f"{named('lr')} must be at most {ADAM_MAX_LR:g} with adam, which moves each pixel (0 to 1) "
            f"by up to about lr a step, got {v:g}: try 0.05"
        )
    return v
