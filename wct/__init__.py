"""wct: universal neural style transfer (Li et al. 2017) with trained decoders.

import wct
image = wct.stylize("photo.jpg", "painting.jpg", alpha=0.6)
"""

from . import errors
from .decoder import Decoder, load_decoder
from .encoder import Encoder, load_encoder
from .pipeline import Style, Stylizer, stylize, texture
from .transform import FeatureStats, feature_stats, wct

__all__ = [
    "Decoder",
    "Encoder",
    "FeatureStats",
    "Style",
    "Stylizer",
    "errors",
    "feature_stats",
    "load_decoder",
    "load_encoder",
    "stylize",
    "texture",
    "wct",
]
__version__ = "0.1.0"
