"""Decoders: mirrors of the encoder that invert relu{X}_1, stored as safetensors with metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .encoder import LEVELS, autocast, cfg, channels, read_signed, relu, warn_overflow, write_signed
from .errors import InputError, WeightsError
from .transform import all_finite, normalise_weights


def shipped_dir() -> Path:
    """The shipped decoders: wct/decoders/ in an installed wheel, decoders/ beside the package in
    a source checkout (or an editable install)."""
    here = Path(__file__).resolve().parent
    installed = here / "decoders"
    return installed if installed.is_dir() else here.parent / "decoders"


DECODER_DIR = shipped_dir()
ENV_VAR = "WCT_DECODERS"


def decoder_layers(level: int) -> nn.Sequential:
    """Walk the encoder backwards: conv(out->in) + ReLU for each conv, x2 nearest upsampling
    for each pool, and a last conv to RGB without ReLU."""
    convs, c = [], 3
    for v in cfg(level):
        if v == "M":
            convs.append("M")
        else:
            convs.append((c, v))
            c = v
    layers: list[nn.Module] = []
    for item in reversed(convs):
        if item == "M":
            layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
        else:
            c_in, c_out = item
            layers.append(nn.Conv2d(c_out, c_in, 3, padding=1, padding_mode="replicate"))
            if c_in != 3:
                layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Decoder(nn.Module):
    """Inverts relu{level}_1. `decoder(features)` returns RGB in [0, 1]; `decode` is unclamped.

    Inputs are first whitened with constants of the training data (`mean`, `whiten`): raw Caffe
    features span 0..1e4 and are strongly correlated, which makes plain Adam crawl. Measured on
    relu2_1 after 250 steps: 19.4 dB raw-scaled by channel means, 25.5 dB whitened.
    """

    def __init__(self, level: int):
        super().__init__()
        c = channels(level)
        self.level = level
        self.register_buffer("mean", torch.zeros(c))
        self.register_buffer("whiten", torch.eye(c))
        self.net = decoder_layers(level)
        self.metadata: dict[str, str] = {}
        self.amp: torch.dtype | None = None  # inference autocast dtype, set by encoder.low_precision

    def normalise(self, features: Tensor) -> Tensor:
        w = self.whiten.to(features.dtype)
        return F.conv2d(features, w[:, :, None, None], -(w @ self.mean.to(features.dtype)))

    def decode(self, features: Tensor) -> Tensor:
        return self.net(self.normalise(features))

    def forward(self, features: Tensor) -> Tensor:
        c = self.whiten.shape[0]
        if not isinstance(features, Tensor) or features.ndim != 4 or features.shape[1] != c:
            got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise InputError(f"the relu{self.level}_1 decoder takes features (N, {c}, H, W), got {got}")
        if min(features.shape[-2:]) < 1:
            raise InputError(f"the features are empty: {tuple(features.shape)}")
        if not features.is_floating_point() or not all_finite(features):
            raise InputError("features must be finite floating-point numbers")
        features = features.to(self.whiten.device, self.whiten.dtype)
        if self.amp is None:
            return self.decode(features).clamp(0, 1).contiguous()
        with autocast(features.device, self.amp):
            y = self.decode(features.contiguous(memory_format=torch.channels_last)).float()
        if not torch.isfinite(y).all():
            warn_overflow(f"the relu{self.level}_1 decoder", self.amp)
            y = self.decode(features)
        return y.clamp(0, 1).contiguous()


def decoder_path(level: int, directory: str | Path | None = None) -> Path:
    d = directory or os.environ.get(ENV_VAR) or DECODER_DIR
    return Path(d).expanduser() / f"{relu(level)}.safetensors"


def save_decoder(decoder: Decoder, path: str | Path, metadata: dict[str, object]) -> None:
    """Write weights (fp16) and metadata atomically; the metadata carries a digest of the tensors."""
    tensors = {k: v.detach().cpu().half().contiguous() for k, v in decoder.state_dict().items()}
    for name in ("mean", "whiten"):
        tensors[name] = getattr(decoder, name).detach().cpu().float().contiguous()
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    write_signed(tensors, {**meta, "level": str(decoder.level)}, path)


def read_decoder(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a decoder file, refusing truncated or altered files."""
    return read_signed(path, "decoder file")


def load_decoder(
    level: int | None,
    device: str | torch.device | None = None,
    encoder_id: str | None = None,
    path: str | Path | None = None,
) -> Decoder:
    """Load the trained decoder for relu{level}_1 (level None: the one `path` names); refuse one
    trained on another encoder."""
    from .encoder import VGG19_MD5, resolve_device

    if level is not None and (isinstance(level, bool) or level not in LEVELS):
        raise InputError(f"level must be one of {', '.join(map(str, LEVELS))}, got {level!r}")
    level = None if level is None else int(level)  # 2.0 and numpy's 2 too
    env = os.environ.get(ENV_VAR)
    if path is None and env and not decoder_path(level).parent.is_dir():  # a typo, not missing levels
        kind = " is a file, not a folder" if decoder_path(level).parent.exists() else ": no such folder"
        raise WeightsError(
            f"{ENV_VAR}={env}{kind}; point it at a folder of relu{{X}}_1.safetensors decoders "
            "(a run's --export), or unset it to use the shipped ones"
        )
    if path is None and env and not decoder_path(level).is_file():
        held = ",".join(str(x) for x in reversed(LEVELS) if decoder_path(x).is_file())
        run = decoder_path(level).with_suffix(".best.safetensors")  # a training run's --out, not --export
        final = run.with_name(f"{relu(level)}.final.safetensors")  # a run without --val: no --export
        hint = (
            f" (it holds {run.name}: point {ENV_VAR} at the run's --export folder)"
            if run.is_file()
            else f" (it holds {final.name}, a run's last decoder: copy it there as {relu(level)}.safetensors)"
            if final.is_file()
            else ""
        )
        todo = (
            f"run only the levels it holds (--levels {held}), or add {relu(level)}.safetensors there"
            if held
            else f"it holds no relu{{X}}_1.safetensors: add {relu(level)}.safetensors there, or unset "
            "it to use the shipped ones"
        )
        raise WeightsError(f"decoder file {decoder_path(level)} not found ({ENV_VAR}={env}): {todo}{hint}")
    path = Path(path) if path else decoder_path(level)
    tensors, meta = read_decoder(path)
    check_encoder(meta, path, encoder_id or VGG19_MD5)
    level = file_level(meta, path, level)
    decoder = fill(Decoder(level), tensors, path)
    decoder.metadata = meta
    return decoder.requires_grad_(False).eval().to(resolve_device(device))


def file_level(meta: dict[str, str], path: str | Path, level: int | None = None) -> int:
    """The level a decoder file's metadata names; a WeightsError if it names none, or not `level`."""
    if meta.get("level") not in {str(x) for x in LEVELS}:
        raise WeightsError(f"{path} is not a decoder file: its metadata names no level (1-5)")
    if level is not None and meta["level"] != str(level):
        raise WeightsError(f"decoder {path} is for level {meta['level']}, not {level}")
    return int(meta["level"])


def soup_metadata(
    files: Sequence[str | Path], decoders: Sequence[Decoder], weights: Sequence[float]
) -> dict[str, object]:
    """Metadata for the average of `decoders` (read from `files`): the first one's, less its scores
    and digest, which do not hold for the average, plus where each ingredient came from."""
    dropped = ("level", "sha256", "val_psnr", "val_ssim", "val_images", "val_data")
    meta: dict[str, object] = {k: v for k, v in decoders[0].metadata.items() if k not in dropped}
    meta["averaged_from"] = [
        {"file": str(f), "sha256": d.metadata.get("sha256"), "weight": w}
        for f, d, w in zip(files, decoders, weights, strict=True)
    ]
    return meta


def check_encoder(meta: dict[str, str], path: str | Path, encoder_id: str, what: str = "decoder") -> None:
    """WeightsError if a decoder file's metadata names other encoder weights than `encoder_id`."""
    if "encoder" not in meta:
        raise WeightsError(f"{what} {path} does not say which encoder weights it was trained for")
    if meta.get("encoder") != encoder_id:
        raise WeightsError(
            f"{what} {path} was trained for encoder weights {meta.get('encoder')!r}, "
            f"but the encoder loaded is {encoder_id!r}"
        )


def fill(decoder: Decoder, tensors: dict[str, Tensor], path: str | Path) -> Decoder:
    """`decoder` with a file's tensors, or a WeightsError if they do not fit its level or are not
    finite floating-point numbers (a NaN weight would make every image NaN)."""
    bad = [k for k, v in tensors.items() if not v.is_floating_point() or not torch.isfinite(v).all()]
    if bad:
        raise WeightsError(f"decoder {path} has non-finite or non-float weights ({', '.join(sorted(bad))})")
    try:
        decoder.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError:
        raise WeightsError(f"decoder {path}'s tensors do not fit a relu{decoder.level}_1 decoder") from None
    return decoder


def average_decoders(decoders: Sequence[Decoder], weights: Sequence[float] | None = None) -> Decoder:
    """The weighted mean of decoders' weights (a "model soup"). Only runs fine-tuned from one
    another share a loss basin, so all must be for one level and whiten their inputs alike (up to
    float rounding, which a file's round trip through another dtype leaves)."""
    if len(decoders) < 2:
        raise WeightsError("averaging needs at least two decoders")
    weights = normalise_weights([1.0] * len(decoders) if weights is None else weights, "decoder weights")
    if len(weights) != len(decoders):
        raise InputError(f"need one finite weight >= 0 per decoder, got {len(weights)} for {len(decoders)}")
    first = decoders[0]
    for d in decoders[1:]:
        if d.level != first.level:
            raise WeightsError(f"cannot average decoders for relu{first.level}_1 and relu{d.level}_1")
        if not all(
            torch.allclose(a, b, rtol=1e-5, atol=1e-9)
            for a, b in ((d.mean, first.mean), (d.whiten, first.whiten))
        ):
            raise WeightsError(
                "these decoders whiten their inputs differently: average only runs fine-tuned "
                "from one another"
            )
    states = [d.state_dict() for d in decoders]
    mean = Decoder(first.level)
    mean.load_state_dict(
        {k: sum(w * s[k].float() for w, s in zip(weights, states, strict=True)) for k in states[0]}
    )
    return mean.requires_grad_(False).eval().to(first.mean.device)


def available(encoder_id: str | None = None) -> dict[int, dict[str, str]]:
    """Metadata of every decoder present (for `wct info`); those that `load_decoder` would refuse
    (unreadable, for another level or other encoder weights, with weights that do not fit) report
    its error."""
    from .encoder import VGG19_MD5

    out = {}
    for level in LEVELS:
        p = decoder_path(level)
        if p.exists():
            try:
                tensors, meta = read_decoder(p)
                check_encoder(meta, p, encoder_id or VGG19_MD5)
                file_level(meta, p, level)  # else its scores are another level's
                fill(Decoder(level), tensors, p)
                out[level] = meta
            except WeightsError as e:
                out[level] = {"error": str(e)}
    return out
