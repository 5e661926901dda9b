"""wct: universal neural style transfer (Li et al. 2017) with trained decoders.

import wct
image = wct.stylize("photo.jpg", "painting.jpg", alpha=0.6)

The names below load on first use, so `wct --help` and the CLI's usage errors (an unknown option,
a missing argument) answer without waiting for torch (seconds).
"""

from importlib import import_module

from . import errors

_EXPORTS = {
    "Decoder": "decoder",
    "load_decoder": "decoder",
    "Encoder": "encoder",
    "load_encoder": "encoder",
    "Style": "pipeline",
    "Stylizer": "pipeline",
    "stylize": "pipeline",
    "texture": "pipeline",
    "FeatureStats": "transform",
    "feature_stats": "transform",
    "wct": "transform",
}

__all__ = ["errors", *_EXPORTS]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):  # never import for a probe such as __main__ (that runs the CLI)
        try:
            return import_module(f".{name}", __name__)  # a submodule, e.g. wct.images
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":  # a dependency of the submodule is missing: say so
                raise
    raise AttributeError(f"module 'wct' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
