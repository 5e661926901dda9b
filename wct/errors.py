"""Typed exceptions of the public API: every failure a user can cause is one of these."""


class WCTError(Exception):
    """Base class: the CLI prints its message on one line and exits non-zero."""


class WeightsError(WCTError):
    """Encoder or decoder weights are missing, corrupt, or do not belong together."""


class ImageError(WCTError):
    """An input image cannot be read, or is not an image this package accepts."""


class InputError(WCTError, ValueError):
    """An argument or tensor is out of range (alpha, level, size, NaN values...)."""


class OutputError(WCTError):
    """An output cannot be written without losing something the user has."""


class TrainingError(WCTError):
    """Decoder training diverged: its weights are no longer finite (a learning rate too high)."""
