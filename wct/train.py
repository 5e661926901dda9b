"""Train a decoder that inverts relu{X}_1 of the frozen encoder.

Loss: pixel MSE, plus `feature_weight` x MSE of the normalised relu{X}_1 features, switched on
after `feature_from` of the steps (from the start it slows learning badly); `loss="psnr"` averages
each image's log of it instead, the validation metric. Adam with warm-up and cosine decay. Every
random choice (order, scales, crops, flips, turns) is a function of (seed, step), so a resumed run
continues exactly as if it had never stopped. Runs alone or under torchrun (DDP).

    python -m wct.train --level 2 --data DIR --val DIR --steps 4000
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from rich.progress import Progress, TaskID
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms.functional import pil_to_tensor

from . import __version__, errors
from .checks import as_number, whole
from .decoder import Decoder, check_encoder, fill, load_decoder, read_decoder, save_decoder
from .encoder import (
    Encoder,
    fast_precisions,
    load_encoder,
    relu,
    resolve_device,
    tensors_sha256,
    warn_if_slow,
)
from .errors import ImageError, InputError, TrainingError, WCTError, WeightsError
from .evaluate import load_val_images, reconstruction_scores
from .images import list_images, open_image, write_atomic
from .progress import progress_bar

LOSSES = ("mse", "psnr")
PATH_OPTIONS = ("val", "export", "init_from", "vgg_weights")


@dataclass
class Config:
    level: int = 1
    data: str = "../shared/data/train"
    val: str | None = None
    crop: int = 256
    scale: float = 1.0  # each crop is taken from the photo shrunk by a random factor in [scale, 1]
    rotate: bool = False  # each crop also turned by a random multiple of 90 degrees
    batch: int = 8
    steps: int = 10000
    lr: float = 1e-3
    warmup: int = 100
    feature_weight: float = 0.01  # the shipped decoders' recipe: at 1 the feature term decides the run
    feature_from: float = 0.8
    loss: str = "mse"  # "psnr": mean over images of -PSNR, the validation metric itself
    out: str = "runs"
    export: str | None = None
    resume: bool = False
    init_from: str | None = None
    device: str = "auto"
    amp: bool | None = None  # bf16 autocast; default: on for CUDA and CPUs with fast bf16 kernels
    seed: int = 0
    workers: int = 2
    val_every: int = 500
    val_images: int | None = None
    ckpt_every: int = 100
    log_every: int = 25
    stats_images: int = 64
    vgg_weights: str | None = None
    stop_at: int | None = None  # checkpoint and stop early at this step (train in chunks)
    minutes: float | None = None  # wall-time budget: the schedule follows time, `steps` caps it


# ---------------------------------------------------------------- data


class Crop(NamedTuple):
    pixels: Tensor | None  # (3, crop, crop) uint8; None when no file of the folder can be read
    unreadable: tuple[str, ...]  # files skipped on the way (paths under the data folder)


class Crops(Dataset):
    """Random crops of any folder of images. An unreadable file is skipped, and the next readable
    one stands in, so every batch is full (steps stay aligned with the data order for --resume,
    and DDP ranks never wait on an empty batch); the skipped files are reported with the crop.

    With `scale` < 1 each photo is first shrunk by a factor drawn log-uniformly from [scale, 1]
    (never below the crop), so each epoch gives the deep levels crops they have not seen before.
    With `rotate` each crop is also turned by 0, 90, 180 or 270 degrees: with the mirroring, all
    eight orientations (the super-resolution recipe; for data with no "up", or scarce data).
    """

    def __init__(self, root: str | Path, crop: int, scale: float = 1.0, rotate: bool = False):
        self.root = Path(root)
        self.files = list_images(root)
        if not self.files:
            raise InputError(f"no images (jpg, png, webp...) found under {root}")
        self.crop, self.scale, self.rotate = crop, scale, rotate

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> Crop:
        index, seed = key
        skipped = []
        for k in range(len(self.files)):
            path = self.files[(index + k) % len(self.files)]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    im = open_image(path, Image.MAX_IMAGE_PIXELS)  # Pillow's limit, named as a number
            except ImageError:
                skipped.append(path.relative_to(self.root).as_posix())
                continue
            return Crop(self.cut(im, random.Random(seed)), tuple(skipped))
        return Crop(None, tuple(skipped))

    def none_readable(self, data: str, more: str = "") -> InputError:
        """The error for a folder none of whose files can be read (`more`: " any more"), with
        the reason for its first file."""
        why = why_unreadable(self.files[0])
        return InputError(
            f"--data (Config.data) {data}: none of its {len(self)} image files can be read{more}"
            + (f": {why}" if why else "")
        )

    def cut(self, im: Image.Image, rng: random.Random) -> Tensor:
        short = min(im.size)
        s = self.scale ** rng.random() if self.scale < 1 else 1.0
        s = max(s, self.crop / short)
        size = (max(self.crop, round(im.width * s)), max(self.crop, round(im.height * s)))
        x0 = rng.randint(0, size[0] - self.crop)
        y0 = rng.randint(0, size[1] - self.crop)
        if s != 1.0:  # only the crop's part of the photo is resized: a 1 x 3000 px strip was 1.5 GB
            sx, sy = size[0] / im.width, size[1] / im.height
            box = (x0 / sx, y0 / sy, (x0 + self.crop) / sx, (y0 + self.crop) / sy)
            resample = Image.Resampling.LANCZOS if s < 1 else Image.Resampling.BICUBIC
            im = im.resize((self.crop, self.crop), resample, box=box)
        else:
            im = im.crop((x0, y0, x0 + self.crop, y0 + self.crop))
        x = pil_to_tensor(im)
        x = x.flip(2) if rng.random() < 0.5 else x
        return x.rot90(rng.randrange(4), (1, 2)) if self.rotate else x


def why_unreadable(path: Path) -> str:
    """Why training skips the image file `path`, as its ImageError says ('' if it reads now)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            open_image(path, Image.MAX_IMAGE_PIXELS)
    except ImageError as e:
        return str(e)
    return ""


class StepSampler(Sampler):
    """Endless (index, seed) stream from `start` on; epoch e is a permutation seeded by (seed, e).

    Rank r of w takes items r, r + w, ... of each global batch, so ranks see disjoint data.
    """

    def __init__(self, n: int, batch: int, seed: int, start_step: int, rank: int = 0, world: int = 1):
        self.n, self.batch, self.seed = n, batch, seed
        self.start, self.rank, self.world = start_step, rank, world

    def __iter__(self):
        per_step = self.batch * self.world
        i = self.start * per_step
        while True:
            epoch, j = divmod(i, self.n)
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            perm = torch.randperm(self.n, generator=g).tolist()
            while j < self.n:
                if (i % per_step) % self.world == self.rank:
                    yield perm[j], hash((self.seed, i)) & 0x7FFFFFFF
                i, j = i + 1, j + 1


def collate(batch: list[Crop]) -> tuple[Tensor | None, set[str]]:
    """The crops stacked (None if no file could be read: the training loop says so, not a worker),
    and the files skipped as unreadable."""
    pixels = None if any(c.pixels is None for c in batch) else torch.stack([c.pixels for c in batch])
    return pixels, {f for c in batch for f in c.unreadable}


def own_session(worker: int) -> None:
    """A data-loading worker leaves the process group, so that a signal sent to the group (a
    terminal's Ctrl-C, torchrun's SIGTERM) does not kill it while the training process finishes its
    step and checkpoints it; it ends with that process. A signal sent to every process (a cluster's
    pre-emption, pkill) does not kill it either: it ignores Ctrl-C, and SIGTERM ends it cleanly
    (exit 0), which the training process does not take for a crash."""
    if hasattr(os, "setsid"):  # not on Windows
        os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, leave)


def leave(signum: int, frame: object) -> None:
    """A worker's SIGTERM handler: exit 0 (multiprocessing also ends workers with SIGTERM)."""
    raise SystemExit(0)


def loader(cfg: Config, start_step: int, rank: int, world: int) -> tuple[DataLoader, int]:
    data = Crops(cfg.data, cfg.crop, cfg.scale, cfg.rotate)
    if data[(0, 0)].pixels is None:  # checked here too when resuming, which skips input_whitening
        raise data.none_readable(cfg.data)
    sampler = StepSampler(len(data), cfg.batch, cfg.seed, start_step, rank, world)
    dl = DataLoader(
        data,
        batch_size=cfg.batch,
        sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        prefetch_factor=4 if cfg.workers else None,
        worker_init_fn=own_session,
    )
    return dl, len(data)


# ---------------------------------------------------------------- model pieces


@torch.no_grad()
def input_whitening(encoder: Encoder, cfg: Config, device: torch.device) -> tuple[Tensor, Tensor]:
    """Mean and ZCA whitening matrix of relu{X}_1 over `stats_images` training crops.

    Eigenvalues are floored at 1e-4 of the largest: dead or redundant channels stay bounded.
    """
    from .transform import feature_stats

    data = Crops(cfg.data, cfg.crop)
    g = torch.Generator().manual_seed(cfg.seed)
    stats, used = None, 0
    for i in torch.randperm(len(data), generator=g).tolist():
        x = data[(i, i)].pixels
        if x is None:
            break
        s = feature_stats(encoder(x[None].float().div(255).to(device), cfg.level)[0])
        stats, used = (s if stats is None else stats + s), used + 1
        if used == cfg.stats_images:
            break
    if stats is None:
        raise data.none_readable(cfg.data)
    cov = stats.cov
    values, vectors = torch.linalg.eigh((cov + cov.T) / 2)
    values = values.clamp_min(values.max() * 1e-4)
    return stats.mean.float(), ((vectors * values.rsqrt()) @ vectors.T).float()


@torch.no_grad()
def fit_linear(
    encoder: Encoder,
    decoder: Decoder,
    cfg: Config,
    device: torch.device,
    images: int = 256,
    ridge: float = 1e-6,
) -> None:
    """Solve a one-conv decoder (level 1) exactly: least squares of pixels on 3x3 feature patches.

    Adam needs thousands of steps to approach this optimum, because VGG features are strongly
    correlated; the normal equations reach it at once (about 43 dB on val).
    """
    conv = decoder.net[0]
    k = conv.in_channels * 9 + 1
    a = torch.zeros(k, k, dtype=torch.float64, device=device)
    b = torch.zeros(k, 3, dtype=torch.float64, device=device)
    data = Crops(cfg.data, cfg.crop)
    for i in torch.linspace(0, len(data) - 1, min(images, len(data))).long().tolist():
        x = data[(i, i + cfg.seed)].pixels
        if x is None:
            break
        x = x[None].float().div(255).to(device)
        f = decoder.normalise(encoder(x, decoder.level))
        p = F.unfold(F.pad(f, (1, 1, 1, 1), mode="replicate"), 3)[0].T.double()
        p = torch.cat([p, torch.ones_like(p[:, :1])], 1)
        a += p.T @ p
        b += p.T @ x[0].reshape(3, -1).T.double()
    w = torch.linalg.solve(a + ridge * a.diagonal().mean() * torch.eye(k, dtype=a.dtype, device=device), b)
    conv.weight.copy_(w[:-1].T.reshape(conv.weight.shape).float())
    conv.bias.copy_(w[-1].float())


def progress(step: int, seconds: float, cfg: Config) -> float:
    """Fraction of the run done: by steps, or by wall time when a `minutes` budget is set."""
    p = step / cfg.steps
    return max(p, seconds / (60 * cfg.minutes)) if cfg.minutes else p


def expected_steps(step: int, done: float, cfg: Config) -> int:
    """The steps the run will have taken when it ends: `steps`, or in a timed run the pace so far
    carried to the end of the budget, so that the progress bar's count and time left follow the clock."""
    if not cfg.minutes or done <= 0:
        return cfg.steps
    return min(cfg.steps, max(step, round(step / done)))


def reconstruction_loss(
    encoder: Encoder,
    decoder: Decoder,
    net: torch.nn.Module,
    x: Tensor,
    feature_weight: float,
    feature_var: float,
    loss: str = "mse",
) -> Tensor:
    """Pixel MSE of net(normalised relu{X}_1(x)) against x, plus `feature_weight` x the MSE of the
    output's relu{X}_1 against the input's, divided by the mean feature variance (`net` is
    `decoder.net`, or its DDP wrapper). Each image's loss is averaged over the batch ("mse"), or
    its 10 log10 is ("psnr": minus the mean PSNR, which weighs every image alike where the MSE
    lets the hardest images dominate)."""
    with torch.no_grad():
        f = encoder(x, decoder.level)
    y = net(decoder.normalise(f))
    per_image = (y.float() - x).pow(2).mean((1, 2, 3))
    if feature_weight:
        fy = encoder(y, decoder.level, check_range=False)  # a decoder in training may overshoot
        per_image = per_image + feature_weight * (fy.float() - f.float()).pow(2).mean((1, 2, 3)) / feature_var
    if loss == "psnr":
        return 10 * per_image.clamp_min(1e-10).log10().mean()
    return per_image.mean()


def feature_variance(decoder: Decoder) -> float:
    """The mean variance of relu{X}_1's channels over the training data (from the decoder's
    whitening): the feature loss is divided by it, so its weight does not depend on the level."""
    return decoder.whiten.inverse().pow(2).sum(1).mean().item()


def lr_at(step: int, cfg: Config, done: float | None = None) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 2% over the rest of the run (a
    warm-up as long as the run is cut to its first quarter, or the lr would never peak nor decay).
    In a timed run (`done`: the fraction of its time spent) the decay follows the clock, and the
    warm-up ends a quarter of the way in at the latest: slow steps could all fall within it."""
    warmup = cfg.warmup if cfg.warmup < cfg.steps else cfg.steps // 4
    if done is not None:
        ramp = 1.0 if step >= warmup else max((step + 1) / warmup, done / 0.25)
        return min(1.0, ramp) * cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    t = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def changed_settings(before: dict, now: dict) -> str:
    """The settings that change what a resumed run computes or how its best step is picked, as
    'lr 0.001 -> 0.05; ...'."""
    keys = ("level", "data", "crop", "scale", "rotate", "batch", "steps", "minutes", "lr", "warmup")
    keys += ("feature_weight", "feature_from", "loss", "seed", "amp", "processes", "val", "val_images")
    keys += ("init_from",)  # ignored once a checkpoint exists

    def differs(k: str) -> bool:  # paths compared resolved: older checkpoints recorded them as typed
        if k in ("data", "val", "init_from"):
            return absolute(before[k]) != absolute(now[k])
        return before[k] != now[k]

    return "; ".join(f"{k} {before[k]} -> {now[k]}" for k in keys if k in before and differs(k))


def absolute(path: str | os.PathLike | None) -> str | None:
    """`path` resolved, as runs record it (a relative one against the current folder); None stays None."""
    return None if path is None else str(Path(path).resolve())


def recorded(cfg: Config) -> dict:
    """`cfg` as checkpoints and decoder metadata record it: its paths resolved, so that they say
    where the files were, whatever folder the run was started from."""
    return {**asdict(cfg), **{f: absolute(getattr(cfg, f)) for f in ("data", "out", *PATH_OPTIONS)}}


def warm_start(decoder: Decoder, path: str | Path, encoder_id: str | None = None) -> int:
    """Start from a decoder file: all of it if it has the same level (fine-tuning), or the layers
    decoder X shares with decoder X - 1 (its tail) from a decoder of the level below. With
    `encoder_id`, one trained for other encoder weights is a WeightsError (it inverts other features)."""
    try:
        tensors, meta = read_decoder(path)
    except WeightsError as e:
        raise WeightsError(f"--init-from (Config.init_from): {e}") from None
    if encoder_id is not None:
        check_encoder(meta, path, encoder_id, "--init-from (Config.init_from)")
    if meta.get("level") == str(decoder.level):
        fill(decoder, tensors, path)
        return len(tensors)
    if meta.get("level") != str(decoder.level - 1):
        raise InputError(
            f"--init-from (Config.init_from) {path} is a relu{meta.get('level')}_1 decoder: give one "
            f"of level {decoder.level} (fine-tuning) or {decoder.level - 1} (its layers become the tail)"
        )
    fill(Decoder(decoder.level - 1), tensors, path)  # a WeightsError if not finite or not of that level
    donor = {k: v for k, v in tensors.items() if k.startswith("net.")}
    n_donor = 1 + max(int(k.split(".")[1]) for k in donor)
    offset = len(decoder.net) - n_donor
    own = decoder.state_dict()
    copied = 0
    for k, v in donor.items():
        _, i, kind = k.split(".")
        key = f"net.{int(i) + offset}.{kind}"
        if key in own and own[key].shape == v.shape:
            own[key] = v.float()
            copied += 1
    decoder.load_state_dict(own)
    return copied


# ---------------------------------------------------------------- checkpoints


def adopt_best(state: dict, best: Path) -> None:
    """Take the score of a best decoder saved after the checkpoint `state` is from (the run was killed
    between the two), so the resumed run replaces that file only with a better one."""
    try:
        meta = read_decoder(best)[1] if best.exists() else {}
        step, psnr = int(meta.get("steps", -1)), float(meta.get("val_psnr", "nan"))
        on = {"val": meta.get("val_data"), "images": int(meta.get("val_images", -1))}
    except (WCTError, ValueError):
        return  # unreadable: replaced at the next validation, as before
    if step > state["step"] and psnr > state["best_psnr"]:
        state.update(best_psnr=psnr, best_step=step, best_on=on)


def atomic_torch_save(obj: object, path: Path) -> None:
    """torch.save via a temporary file and rename, wrapped with the sha256 of the inner bytes."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    sealed = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8),
    }

    write_atomic(path, lambda tmp: torch.save(sealed, tmp))  # it syncs the file before the rename


def load_checkpoint(path: Path) -> dict:
    """A checkpoint of `atomic_torch_save`, its digest checked; only tensors and plain data load.

    Checkpoints from before the digest (no "sha256" key) still load, unchecked.
    """
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(ck, dict) and "sha256" in ck and "payload" in ck:
            data = ck["payload"].numpy().tobytes()
            if hashlib.sha256(data).hexdigest() != ck["sha256"]:
                raise WCTError(f"checkpoint {path} is corrupt: its contents do not match their digest")
            ck = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except WCTError:
        raise
    except Exception as e:
        raise WCTError(
            f"checkpoint {path} is corrupt or not a wct checkpoint ({e.__class__.__name__})"
        ) from None
    if not isinstance(ck, dict) or not {"decoder", "optimizer", "state"} <= ck.keys():
        raise WCTError(f"checkpoint {path} is not a wct checkpoint")
    return ck


def plot_history(history: list[dict], path: Path) -> None:
    """The training loss and validation PSNR curves as a PNG (no pyplot: the caller's matplotlib
    backend and figures are left alone)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.5))
    ax = fig.subplots(1, 2)
    tr = [h for h in history if "loss" in h]
    va = [h for h in history if "psnr" in h]
    ax[0].plot([h["step"] for h in tr], [h["loss"] for h in tr], "o" if len(tr) == 1 else "-")
    scale = "log" if all(h["loss"] > 0 for h in tr) else "linear"  # the psnr loss is negative
    ax[0].set(yscale=scale, xlabel="step", title="training loss")
    ax[1].plot([h["step"] for h in va], [h["psnr"] for h in va], "o-")
    ax[1].set(xlabel="step", ylabel="dB", title="validation PSNR")
    fig.tight_layout()
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=80, format="png"))


# ---------------------------------------------------------------- training


def _whole(least: int, also=lambda v: True, none: bool = False):
    """A check that a setting is an integer (numpy's too) >= least (or None, if allowed) passing `also`."""
    return lambda v: (none and v is None) or (whole(v) and v >= least and also(v))


def _real(also, none: bool = False):
    """A check that a setting is a finite number (numpy's too, as `as_number` takes it) or None,
    if allowed, passing `also`."""

    def ok(v: object) -> bool:
        if none and v is None:
            return True
        try:
            x = as_number(v, "")
        except InputError:
            return False
        return math.isfinite(x) and also(x)

    return ok


def creatable(path: Path) -> bool:
    """Whether `path` is a folder, or could be made one: its nearest existing parent is a
    writable folder."""
    while not path.exists():
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK)


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies in it where `list_images` looks (not in a hidden folder)."""
    try:
        parts = path.resolve().relative_to(folder.resolve()).parts
    except ValueError:
        return False
    return not any(p.startswith(".") for p in parts)


def check_config(cfg: Config) -> None:
    """An InputError naming the first bad setting (as its CLI option and Config field), before any
    work: the API and both CLIs share these checks."""
    if not _whole(1, lambda v: v <= 5)(cfg.level):
        raise InputError(f"--level (Config.level) must be 1, 2, 3, 4 or 5, not {cfg.level!r}")
    grid = 2 ** (cfg.level - 1)  # the decoder returns crops of a multiple of this size
    multiple = f", a multiple of {grid}" if grid > 1 else ""
    rules = [
        ("crop", _whole(16, lambda v: v % grid == 0), f"at least 16{multiple}"),
        ("batch", _whole(1), "at least 1"),
        ("steps", _whole(1), "at least 1"),
        ("lr", _real(lambda v: v > 0), "a positive number"),
        ("warmup", _whole(0), "0 or more"),
        ("feature_weight", _real(lambda v: v >= 0), "0 or more"),
        ("feature_from", _real(lambda v: 0 <= v <= 1), "in [0, 1]"),
        ("scale", _real(lambda v: 0 < v <= 1), "in (0, 1]"),
        ("loss", lambda v: v in LOSSES, f"one of {', '.join(LOSSES)}"),
        ("minutes", _real(lambda v: v > 0, none=True), "positive"),
        ("workers", _whole(0), "0 or more"),
        ("val_every", _whole(1), "at least 1"),
        ("val_images", _whole(1, none=True), "at least 1"),
        ("ckpt_every", _whole(1), "at least 1"),
        ("log_every", _whole(1), "at least 1"),
        ("stats_images", _whole(1), "at least 1"),
        # the data order seeds torch.Generator with seed * 100003 + epoch, which must stay below 2**64
        ("seed", _whole(0, lambda v: v < 2**32), "a whole number from 0 to 4294967295"),
        ("stop_at", _whole(1, none=True), "at least 1"),
    ]
    path_like = lambda v: isinstance(v, str | os.PathLike)  # noqa: E731
    rules += [(f, path_like, "a path") for f in ("data", "out")]
    rules += [(f, lambda v: v is None or path_like(v), "a path or None") for f in PATH_OPTIONS]
    rules += [
        ("amp", lambda v: v is None or isinstance(v, bool), "True, False or None (the device's default)"),
        (
            "device",
            lambda v: v is None or isinstance(v, str | torch.device),
            "'auto', 'cpu', 'cuda' or 'cuda:N'",
        ),
        ("resume", lambda v: isinstance(v, bool), "True or False"),
        ("rotate", lambda v: isinstance(v, bool), "True or False"),
    ]
    for field, ok, want in rules:
        value = getattr(cfg, field)
        if not ok(value):
            raise InputError(f"--{field.replace('_', '-')} (Config.{field}) must be {want}, not {value!r}")
    for field in ("data", "val"):  # read: must exist
        path = getattr(cfg, field)
        if path is not None and not Path(path).is_dir():
            raise InputError(f"--{field} (Config.{field}) {path} is not a directory")
    if not list_images(cfg.data):
        raise InputError(f"--data (Config.data) {cfg.data} holds no images (jpg, png, webp...)")
    for field in ("out", "export"):  # written: created if missing, so checked before hours of work
        path = getattr(cfg, field)
        if path is not None and Path(path).exists() and not Path(path).is_dir():
            raise InputError(f"--{field} (Config.{field}) {path} is a file, not a directory")
        if path is not None and not creatable(Path(path)):
            raise InputError(f"--{field} (Config.{field}) {path} cannot be created here")
    for field in ("data", "val"):  # the curves plot in --out would be read as a photo by later runs
        path = getattr(cfg, field)
        if path is not None and inside(Path(cfg.out), Path(path)):
            raise InputError(
                f"--out (Config.out) {cfg.out} is inside --{field} (Config.{field}) {path}: its curves "
                f"plot would be read as one of the images there; give an --out outside it (to resume a "
                f"run kept there, move its folder out first)"
            )
    if cfg.export is not None and cfg.val is None:
        raise InputError("--export (Config.export) needs --val: it exports the best decoder on validation")
    target = f"{relu(cfg.level)}.safetensors"  # written at the end of the run: refused now, not then
    if cfg.export is not None and (Path(cfg.export) / target).is_dir():
        raise InputError(f"--export (Config.export) {cfg.export} holds a folder {target}: move it away")
    if cfg.init_from is not None and not Path(cfg.init_from).is_file():
        raise InputError(f"--init-from (Config.init_from) {cfg.init_from} is not a decoder file")


def plain(cfg: Config) -> Config:
    """`cfg` with its paths and device as strings, its integers as ints and its other numbers as
    floats (numpy's too): its checkpoints and metadata record them."""
    paths = {
        f: os.fspath(getattr(cfg, f)) for f in ("data", "out", *PATH_OPTIONS) if getattr(cfg, f) is not None
    }
    ints = {f.name: int(getattr(cfg, f.name)) for f in fields(cfg) if whole(getattr(cfg, f.name))}
    reals = {
        f.name: float(v)
        for f in fields(cfg)
        if f.type in ("float", "float | None") and (v := getattr(cfg, f.name)) is not None and not whole(v)
    }
    return replace(cfg, **paths, **ints, **reals, device=None if cfg.device is None else str(cfg.device))


class RunFiles(NamedTuple):
    """The files a run writes under --out (besides the curves plot)."""

    last: Path  # the checkpoint
    best: Path  # the best decoder on validation
    final: Path  # the last step's decoder, written by a run without --val


def join_processes(cfg: Config, world: int) -> dist.ProcessGroup | None:
    """Under torchrun (`world` > 1) start the process group (NCCL for a CUDA device, else gloo)
    before anything is checked, so a process refused by its checks cannot leave the others
    waiting to join; returns the gloo group that `agree` uses (None: the default one, or alone)."""
    if world == 1:
        return None
    if not dist.is_initialized():
        device = str(cfg.device)
        cuda = device in ("auto", "None") or device.startswith("cuda")
        dist.init_process_group("nccl" if cuda and torch.cuda.is_available() else "gloo")
    return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


def agree(error: Exception | None, world: int, group: dist.ProcessGroup | None, stop: bool = False) -> bool:
    """Raise `error`, and under torchrun an error naming it in every other process, so that none
    waits forever in a collective for a process that stopped. All processes call it at the same
    points of a run; the first failed process is named, with its error's first line. Returns
    whether any process asked to `stop` (Ctrl-C), in the same exchange."""
    flags = torch.tensor([int(error is not None), int(stop)])
    notes: list = [None] * world
    if world > 1:
        try:
            dist.all_reduce(flags, dist.ReduceOp.MAX, group=group)
            if flags[0].item():
                note = None if error is None else (type(error).__name__, one_line(error))
                dist.all_gather_object(notes, note, group=group)
                dist.destroy_process_group()
        except RuntimeError:  # the connection to a process is lost: it crashed or was killed
            if error is None:
                raise WCTError("another process of this run stopped (its own error says why)") from None
    if error is not None:
        raise error
    if flags[0].item():
        rank, (name, text) = next((r, n) for r, n in enumerate(notes) if n is not None)
        kind = getattr(errors, name, None)  # the same type, if it is one of wct.errors
        kind = kind if isinstance(kind, type) and issubclass(kind, WCTError) else WCTError
        raise kind(f"process {rank} of {world} stopped: {text}")
    return bool(flags[1].item())


def one_line(error: Exception) -> str:
    """A WCTError's message, or the first line of another error's, after its type."""
    if isinstance(error, WCTError):
        return str(error)
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def setup_processes(cfg: Config) -> tuple[torch.device, int, int]:
    """This process's device, rank and the number of processes; under torchrun (WORLD_SIZE > 1)
    each CUDA process takes the GPU of its LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device, rank, world


def check_out(cfg: Config, rank: int) -> RunFiles:
    """The run's files under --out; an InputError when --out holds a run this one would write over
    (a checkpoint without --resume, or kept decoders without their checkpoint)."""
    out, name = Path(cfg.out), relu(cfg.level)
    files = RunFiles(
        out / f"{name}.last.pt", out / f"{name}.best.safetensors", out / f"{name}.final.safetensors"
    )
    last = files.last
    if last.exists() and not cfg.resume:
        raise InputError(
            f"--out (Config.out) {out} holds a {name} run ({last.name}): pass --resume to continue it, "
            "or give another --out"
        )
    kept = [f.name for f in (files.best, files.final) if f.exists()]
    if kept and not last.exists():  # a new run would write over them
        raise InputError(
            f"--out (Config.out) {out} holds {' and '.join(kept)} of an earlier {name} run but no "
            f"checkpoint ({last.name}) to resume: give another --out, or move them away"
        )
    if cfg.resume and not last.exists() and rank == 0:
        others = sorted(p.name for p in out.glob("relu?_1.last.pt"))  # another --level's run?
        held = f" (it holds {', '.join(others)}: check --level)" if others else ""
        print(f"no {last.name} in {out}{held}: starting a new run", flush=True)
    return files


def sweep_temps(out: Path, name: str) -> None:
    """Remove the temporary files that a killed run (SIGKILL, out of memory) left beside its
    outputs, such as .relu5_1.last.pt.x8k2.tmp: a checkpoint's can be hundreds of MB each. Only
    a run's own files, untouched for a minute (not those of another process writing there now)."""
    ours = (f"{name}.{kind}" for kind in ("last.pt", "best.safetensors", "final.safetensors", "curves.png"))
    found = [p for own in ours for p in out.glob(f".{own}.*.tmp") if p.is_file()]
    stale = [p for p in found if time.time() - p.stat().st_mtime > 60]
    if stale:
        mb = sum(p.stat().st_size for p in stale) / 1e6
        for p in stale:
            p.unlink(missing_ok=True)
        print(
            f"removed {len(stale)} temporary file(s) of an interrupted write from {out} ({mb:.1f} MB)",
            flush=True,
        )


def resume(
    cfg: Config, files: RunFiles, decoder: Decoder, opt: torch.optim.Optimizer, rank: int, world: int
) -> dict:
    """The state of the run checkpointed in `files.last`, its decoder and optimiser loaded; warns
    of settings that differ from the checkpoint's."""
    ck = load_checkpoint(files.last)
    level = ck.get("config", {}).get("level", cfg.level)
    if level != cfg.level:
        raise InputError(
            f"--resume (Config.resume): {files.last} is a checkpoint of a {relu(level)} run, not "
            f"{relu(cfg.level)}: give the --level it was trained at, or another --out"
        )
    decoder.load_state_dict(ck["decoder"])
    opt.load_state_dict(ck["optimizer"])
    state = ck["state"]
    adopt_best(state, files.best)
    if rank == 0:
        print(f"resuming {files.last} at step {state['step']}", flush=True)
        changed = changed_settings(ck.get("config", {}), {**recorded(cfg), "processes": world})
        if changed:
            warnings.warn(
                f"resuming with changed settings ({changed}): the run no longer matches an uninterrupted one",
                stacklevel=1,
            )
    return state


def start(cfg: Config, encoder: Encoder, decoder: Decoder, device: torch.device, rank: int) -> dict:
    """The state of a new run, its decoder prepared: the input whitening measured on the data, then
    the weights from --init-from, or at level 1 solved by least squares."""
    state = {"step": 0, "history": [], "best_psnr": -1.0, "bad_files": [], "seconds": 0.0}
    mean, whiten = input_whitening(encoder, cfg, device)
    decoder.mean.copy_(mean)
    decoder.whiten.copy_(whiten)
    if cfg.init_from:
        n = warm_start(decoder, cfg.init_from, encoder.weights_id)
        if rank == 0:
            print(f"started from {cfg.init_from}: {n} of {len(decoder.state_dict())} tensors", flush=True)
        donor = read_decoder(cfg.init_from)[1]
        if donor.get("level") == str(cfg.level):  # fine-tuning: carry the earlier training along
            state["prior"] = {
                "steps": int(donor.get("steps", 0)) + int(donor.get("prior_steps", 0)),
                "seconds": float(donor.get("train_seconds", 0)) + float(donor.get("prior_train_seconds", 0)),
            }
    elif len(decoder.net) == 1:
        fit_linear(encoder, decoder, cfg, device)
    return state


def finish(
    cfg: Config,
    files: RunFiles,
    encoder: Encoder,
    decoder: Decoder,
    state: dict,
    step: int,
    bad: set[str],
    n_files: int,
    rank: int,
    world: int,
    *,
    ended: bool,
    val: list[Tensor] | None = None,
) -> dict:
    """The run's summary, once the processes have pooled the unreadable files they skipped and
    stopped. Rank 0 warns of those files, writes the last step's decoder of a run without --val,
    and exports the best one with --export when the run `ended` (not after a chunk), comparing it on
    `val` (the --val images) with one there scored on other images."""
    if world > 1:
        every = [None] * world
        dist.all_gather_object(every, sorted(bad))  # each rank skipped the files it drew
        bad = set().union(*every)
        dist.barrier()
        dist.destroy_process_group()
    summary = {
        "step": step,
        "best_psnr": state["best_psnr"] if state["best_psnr"] >= 0 else None,  # None: never validated
        "best_step": state.get("best_step"),
        "bad_files": len(bad),
        "files": n_files,
        "rank": rank,
        "amp": cfg.amp,
        "weights_sha256": tensors_sha256(decoder.state_dict()),
    }
    if rank == 0 and bad:
        more = ", ..." if len(bad) > 3 else ""
        why = why_unreadable(Path(cfg.data) / sorted(bad)[0])
        warnings.warn(
            f"{len(bad)} unreadable training images were skipped: {', '.join(sorted(bad)[:3])}{more}"
            + (f" ({why})" if why else ""),
            stacklevel=1,
        )
    if rank == 0 and not cfg.val:  # nothing validated: the decoder of the last step, unscored
        meta = metadata(cfg, state, step, {}, encoder, world, (n_files, len(bad)))
        save_decoder(decoder, files.final, meta)
        summary["decoder"] = str(files.final)
    elif rank == 0 and files.best.exists():
        summary["decoder"] = str(files.best)
    if rank == 0 and cfg.export and files.best.exists() and ended:
        target = Path(cfg.export) / f"{relu(cfg.level)}.safetensors"
        summary["exported"] = export(files.best, target, encoder, val)
    return summary


@dataclass
class Run:
    """What a training run works with, built by `setup`; the steps update `state`, `bad`, `t0`
    and `seen`."""

    cfg: Config  # as it runs: `amp` resolved
    files: RunFiles
    group: dist.ProcessGroup | None  # what the processes `agree` through
    device: torch.device
    rank: int
    world: int
    encoder: Encoder
    decoder: Decoder
    net: torch.nn.Module  # decoder.net, or its DDP wrapper
    opt: torch.optim.Optimizer
    amp: torch.autocast
    feature_var: float
    state: dict
    val_all: list
    loader: DataLoader
    n_files: int
    bad: set[str]  # unreadable training files skipped so far
    t0: float  # since when time is not yet counted in state["seconds"]
    seen: int = 0  # images trained on since t0
    made: tuple[Path, ...] = ()  # the folders of --out this process created, deepest first


def build_models(cfg: Config, device: torch.device) -> tuple[Encoder, Decoder]:
    """The frozen encoder and a new decoder on `device` (channels-last on CUDA, where it is faster)."""
    encoder = load_encoder(device, cfg.vgg_weights)
    decoder = Decoder(cfg.level).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        decoder = decoder.to(memory_format=torch.channels_last)
        encoder = encoder.to(memory_format=torch.channels_last)
    return encoder, decoder


def setup(cfg: Config) -> Run:
    """Start the processes, then check the settings, build the models and start or resume the
    run's state; --out is created last, so a run refused during setup leaves nothing. Under
    torchrun a process refused here stops the others too."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    group = join_processes(cfg, world)
    run, error = None, None
    try:
        run = prepare(cfg, group)
    except Exception as e:
        error = e
    agree(error, world, group)
    if world > 1:
        run.net = torch.nn.parallel.DistributedDataParallel(run.net)
    out = Path(run.cfg.out)
    run.made = tuple(p for p in (out, *out.parents) if not p.exists())
    out.mkdir(parents=True, exist_ok=True)  # only now: a run refused in setup leaves nothing
    return run


@contextmanager
def removed_if_empty(folders: tuple[Path, ...]) -> Iterator[None]:
    """If the block fails, remove those of `folders` (deepest first) that are still empty: a run
    that stops before it saves anything (diverged, Ctrl-C before its first step) leaves no --out."""
    try:
        yield
    except BaseException:
        for folder in folders:
            try:
                folder.rmdir()  # only an empty one
            except OSError:
                break
        raise


def prepare(cfg: Config, group: dist.ProcessGroup | None) -> Run:
    """The run of this process, its net not yet wrapped for DDP (`setup` does both)."""
    check_config(cfg)
    cfg = plain(cfg)
    device, rank, world = setup_processes(cfg)
    val_all = load_val_images(cfg.val) if cfg.val and rank == 0 else []
    if cfg.val and rank == 0 and not val_all:
        raise InputError(f"--val (Config.val) {cfg.val} holds no readable image")
    torch.manual_seed(cfg.seed)
    files = check_out(cfg, rank)
    if rank == 0:
        sweep_temps(Path(cfg.out), relu(cfg.level))

    encoder, decoder = build_models(cfg, device)
    opt = torch.optim.Adam(decoder.parameters(), lr=cfg.lr)
    use_amp = cfg.amp if cfg.amp is not None else "bf16" in fast_precisions(device)
    cfg = replace(cfg, amp=use_amp)  # the metadata and checkpoints record what ran
    if cfg.resume and files.last.exists():
        state = resume(cfg, files, decoder, opt, rank, world)
    else:
        state = start(cfg, encoder, decoder, device, rank)
    if use_amp and rank == 0:
        warn_if_slow("bf16", device, "--amp", "drop --amp")
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp)
    feature_var = feature_variance(decoder)
    dl, n_files = loader(cfg, state["step"], rank, world)
    known = state["bad_files"] if isinstance(state["bad_files"], list) else []  # (a count, once)
    bad = {f for f in known if isinstance(f, str)}
    return Run(
        cfg=cfg,
        files=files,
        group=group,
        device=device,
        rank=rank,
        world=world,
        encoder=encoder,
        decoder=decoder,
        net=decoder.net,
        opt=opt,
        amp=amp,
        feature_var=feature_var,
        state=state,
        val_all=val_all,
        loader=dl,
        n_files=n_files,
        bad=bad,
        t0=time.time(),
    )


def next_batch(run: Run, batches: Iterator, caught: list[int]) -> tuple[Tensor, set[str], bool]:
    """The next batch, the files skipped for it, and whether this process or under torchrun any
    was asked to stop (`caught`: the signals received), so that all stop after the same step;
    every process stops if one cannot load its batch."""
    error, batch, unreadable = None, None, set()
    try:
        if not caught:  # else none is needed, and the workers may be ending too
            batch, unreadable = next(batches)
            if batch is None:
                raise run.loader.dataset.none_readable(run.cfg.data, " any more")
    except Exception as e:
        error = e
    stop = agree(error, run.world, run.group, bool(caught))
    return batch, unreadable, stop


def train_step(run: Run, batch: Tensor, unreadable: set[str], step: int, done: float) -> Tensor:
    """One optimiser step on `batch` at `step`, `done` of the way through the run (which sets the
    lr and switches on the feature term); returns the loss."""
    cfg = run.cfg
    run.bad.update(unreadable)
    x = batch.to(run.device, non_blocking=True).float().div_(255)
    if run.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    for g in run.opt.param_groups:
        g["lr"] = lr_at(step, cfg, done if cfg.minutes else None)
    use_feat = cfg.feature_weight > 0 and done >= cfg.feature_from
    weight = cfg.feature_weight if use_feat else 0.0
    with run.amp:
        loss = reconstruction_loss(run.encoder, run.decoder, run.net, x, weight, run.feature_var, cfg.loss)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    run.seen += x.shape[0] * run.world
    return loss


def done_after(run: Run, step: int) -> float:
    """`progress` once `step` steps are done; under torchrun the ranks of a timed run take the
    furthest, so they agree on when it ends."""
    done = progress(step, run.state["seconds"] + time.time() - run.t0, run.cfg)
    if run.world > 1 and run.cfg.minutes:
        t = torch.tensor([done], device=run.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        done = t.item()
    return done


def log_step(run: Run, step: int, loss: Tensor, bar: Progress, task: TaskID) -> None:
    """Record the loss in the history and show it with the lr and speed, on the progress bar or
    as a line where there is none."""
    rate = run.seen / (time.time() - run.t0)
    run.state["history"].append({"step": step, "loss": loss.item()})
    info = f"loss {loss.item():.5f} lr {run.opt.param_groups[0]['lr']:.2e} {rate:.1f} img/s"
    bar.update(task, completed=step, info=info)
    if not bar.live.is_started:
        total = next(t.total for t in bar.tasks if t.id == task)
        print(f"step {step}/{'~' if run.cfg.minutes else ''}{total:.0f} {info}", flush=True)


def rescore_best(run: Run, val: list[Tensor]) -> float:
    """The kept decoder scored on `val`, the images the decoder of this step is scored on (it may
    have been scored on others: the first `val_images` of --val, or at the end of the run all of
    it); scored on all of --val, its file records the new scores."""
    best = run.files.best
    kept = load_decoder(run.cfg.level, run.device, run.encoder.weights_id, path=best)
    scores = reconstruction_scores(run.encoder, kept, val)
    if len(val) == len(run.val_all):
        update = {"val_psnr": round(scores["psnr"], 3), "val_ssim": round(scores["ssim"], 4)}
        update.update(val_data=absolute(run.cfg.val), val_images=scores["images"])
        save_decoder(kept, best, {**kept.metadata, **update})
    return scores["psnr"]


def validate_and_save(run: Run, step: int, final: bool) -> None:
    """Score the decoder on --val (its first `val_images` until the `final` step) and keep it if it
    beats the best so far, scored on the same images (state["best_on"] records which)."""
    cfg, state, decoder, best = run.cfg, run.state, run.decoder, run.files.best
    entry = {"step": step}
    val = run.val_all if final else run.val_all[: cfg.val_images]
    if val:
        decoder.eval()
        entry.update(reconstruction_scores(run.encoder, decoder, val))
        decoder.train()
        scored_on = {"val": absolute(cfg.val), "images": entry["images"]}
        if best.exists() and state.get("best_on") != scored_on:
            state["best_on"] = scored_on
            try:
                state["best_psnr"] = rescore_best(run, val)
            except WeightsError as e:  # unreadable (killed mid-write before checkpoints said where): replaced
                state["best_psnr"] = -math.inf
                print(f"best so far not rescored, replaced by this step's: {e}", flush=True)
            else:
                which = "all" if len(val) == len(run.val_all) else "the first"
                print(
                    f"best so far (step {state.get('best_step')}) rescored on {which} {len(val)} --val "
                    f"images: {state['best_psnr']:.2f} dB",
                    flush=True,
                )
        if entry["psnr"] > state["best_psnr"]:  # the best decoder on validation is kept
            state.update(best_psnr=entry["psnr"], best_step=step, best_on=scored_on)
            seconds = state["seconds"] + time.time() - run.t0
            files = (run.n_files, len(run.bad))
            meta = metadata(cfg, {**state, "seconds": seconds}, step, entry, run.encoder, run.world, files)
            save_decoder(decoder, best, meta)
        print(f"step {step}: val PSNR {entry['psnr']:.2f} dB, SSIM {entry['ssim']:.4f}", flush=True)
        state["history"].append(entry)


def save_checkpoint(run: Run, step: int) -> None:
    """Write the checkpoint of `step` (the time and skipped files so far go into its state), and
    the curves plot."""
    state = run.state
    state.update(step=step, bad_files=sorted(run.bad), seconds=state["seconds"] + time.time() - run.t0)
    run.t0, run.seen = time.time(), 0
    atomic_torch_save(
        {
            "decoder": run.decoder.state_dict(),
            "optimizer": run.opt.state_dict(),
            "state": state,
            "config": {**recorded(run.cfg), "processes": run.world},
        },
        run.files.last,
    )
    if state["history"]:
        plot_history(state["history"], Path(run.cfg.out) / f"{relu(run.cfg.level)}.curves.png")


def save(run: Run, step: int, validate: bool, checkpoint: bool, final: bool) -> None:
    """Rank 0 validates the decoder and checkpoints the run, as asked; under torchrun, every
    process stops if that fails (a full disk, say). A checkpoint records the unreadable files
    that every process skipped so far."""
    if checkpoint and run.world > 1:
        every: list = [None] * run.world
        dist.all_gather_object(every, sorted(run.bad), group=run.group)
        run.bad = set().union(*every)
    error = None
    if run.rank == 0:
        try:
            if validate:
                validate_and_save(run, step, final)
            if checkpoint:
                save_checkpoint(run, step)
        except Exception as e:
            error = e
    agree(error, run.world, run.group)


@contextmanager
def stop_requests() -> Iterator[list[int]]:
    """While the block runs, Ctrl-C and SIGTERM only ask the run to stop: yields the list of those
    received. A second Ctrl-C stops it at once (KeyboardInterrupt); a repeated SIGTERM does not (a
    launcher and a scheduler may both send one). Main thread only (elsewhere Python runs no signal
    handlers); an ignored signal stays ignored."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def request(signum: int, frame: object) -> None:
        if caught and signum == signal.SIGINT:
            raise KeyboardInterrupt
        caught.append(signum)

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    before = {s: h for s, h in before.items() if h is not signal.SIG_IGN}
    for s in before:
        signal.signal(s, request)
    try:
        yield caught
    finally:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def stop(caught: list[int]) -> None:
    """Deliver the first stop signal received to the handler it had before training (Ctrl-C:
    KeyboardInterrupt; the CLI's SIGTERM: exit 143); KeyboardInterrupt if that one returns, or
    if this process got none (another process of the run did)."""
    if caught:
        signal.raise_signal(caught[0])
    raise KeyboardInterrupt


def train(cfg: Config) -> dict:
    """Run (or resume) training; returns the final summary. Rank 0 writes all files. Ctrl-C or
    SIGTERM stops the run after the step in progress, checkpointed, then raises KeyboardInterrupt
    (see `stop`). A run that fails or stops before it saves anything leaves no --out folder."""
    run = setup(cfg)
    with removed_if_empty(run.made if run.rank == 0 else ()):
        return train_run(run)


def train_run(run: Run) -> dict:
    """The steps of the run `setup` prepared, and its summary (see `train`)."""
    cfg, state, rank, world = run.cfg, run.state, run.rank, run.world
    run.decoder.train()
    step = saved = first = state["step"]  # saved: the step of the checkpoint in --out
    end = cfg.steps if cfg.stop_at is None else min(cfg.steps, cfg.stop_at)
    done = progress(step, state["seconds"], cfg)  # updated after every step; drives lr and the end
    bar = progress_bar(rank == 0 and sys.stdout.isatty())
    task = bar.add_task(relu(cfg.level), total=expected_steps(step, done, cfg), completed=step, info="")
    bar.start()
    batches = iter(run.loader)
    with stop_requests() as caught:  # checked between steps: a checkpoint never holds half a step
        try:
            stopped = False
            if step == 0 and end > 0 and cfg.val is not None and not state["history"]:
                # the start is a candidate too (fine-tuning never keeps worse), checkpointed with it so
                # a run that fails (or is stopped) before its first step can be resumed, not left with
                # a lone best file
                save(run, 0, validate=True, checkpoint=True, final=False)
            while step < end and done < 1:
                batch, unreadable, stopped = next_batch(run, batches, caught)
                if stopped:
                    break
                loss = train_step(run, batch, unreadable, step, done)
                step += 1
                done = done_after(run, step)
                final = step == cfg.steps or done >= 1
                if cfg.minutes and (final or step % cfg.log_every == 0):  # not every step: a new
                    bar.update(task, total=expected_steps(step, done, cfg))  # total resets the ETA
                bar.update(task, completed=step)
                due = (cfg.log_every, cfg.val_every, cfg.ckpt_every)
                if (final or step == end or any(step % k == 0 for k in due)) and not finite(run.decoder):
                    raise TrainingError(diverged(step, loss.item(), cfg, run.files.last))
                if step % cfg.log_every == 0 and rank == 0:
                    log_step(run, step, loss, bar, task)
                validate = step % cfg.val_every == 0 or final
                checkpoint = step % cfg.ckpt_every == 0 or step == end or final
                if validate or checkpoint:
                    save(run, step, validate, checkpoint, final)
                    saved = step if checkpoint else saved
            if stopped and step > saved:
                if not finite(run.decoder):
                    raise TrainingError(diverged(step, loss.item(), cfg, run.files.last))
                save(run, step, validate=False, checkpoint=True, final=False)
            if stopped and step > first and rank == 0:
                print(
                    f"interrupted: saved the checkpoint at step {step}; --resume continues from there",
                    flush=True,
                )
        finally:
            bar.stop()
    if stopped:
        stop(caught)
    ended = step >= cfg.steps or done >= 1  # not just a chunk of the run
    return finish(
        cfg,
        run.files,
        run.encoder,
        run.decoder,
        state,
        step,
        run.bad,
        run.n_files,
        rank,
        world,
        ended=ended,
        val=run.val_all,
    )


def finite(decoder: Decoder) -> bool:
    """Whether all the decoder's weights are finite (checked before anything is logged or saved)."""
    return bool(torch.stack([torch.isfinite(p).all() for p in decoder.parameters()]).all())


def diverged(step: int, loss: float, cfg: Config, checkpoint: Path) -> str:
    """The message of a run whose weights are no longer finite (with --val, step 0 is checkpointed)."""
    kept = f"{checkpoint} is kept as it was: --resume it with a lower --lr"
    if not checkpoint.exists():
        kept = "Nothing was saved"
    return (
        f"training diverged by step {step}: the decoder's weights are no longer finite (loss {loss:.3g}); "
        f"lower --lr (Config.lr, now {cfg.lr:g}). {kept}"
    )


def hardware(device: torch.device) -> str:
    """Where a decoder was trained, for its metadata and the model card."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def metadata(
    cfg: Config,
    state: dict,
    step: int,
    scores: dict,
    encoder: Encoder,
    processes: int = 1,
    files: tuple[int, int] | None = None,
) -> dict:
    """What a saved decoder records of its run, its paths resolved (`processes`: under torchrun, each
    took --batch images a step; `files`: the training files found and those skipped as unreadable
    so far)."""
    return {
        "encoder": encoder.weights_id,
        "hardware": hardware(next(encoder.parameters()).device),
        "training_data": absolute(cfg.data),
        **({"training_files": files[0], "unreadable_files": files[1]} if files else {}),
        "steps": step,
        **(
            {
                "val_psnr": round(scores["psnr"], 3),
                "val_ssim": round(scores["ssim"], 4),
                "val_data": absolute(cfg.val),
                "val_images": scores["images"],
            }
            if scores
            else {}
        ),
        "train_seconds": round(state["seconds"], 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wct_version": __version__,
        "torch_version": torch.__version__,
        "config": {**{k: v for k, v in recorded(cfg).items() if k != "stop_at"}, "processes": processes},
        **(
            {"prior_steps": state["prior"]["steps"], "prior_train_seconds": state["prior"]["seconds"]}
            if "prior" in state
            else {}
        ),
    }


def same_images(old: dict[str, str], new: dict[str, str]) -> bool:
    """Whether two decoders' metadata record scores on the same validation images: the same folder
    (resolved: older files recorded it as typed) and, where both record it, the same image count."""
    where = [absolute(d.get("val_data")) for d in (old, new)]
    if None in where or where[0] != where[1]:
        return False
    return "val_images" not in old or "val_images" not in new or old["val_images"] == new["val_images"]


def export(
    best: Path, target: Path, encoder: Encoder | None = None, images: list[Tensor] | None = None
) -> bool:
    """Copy the best decoder to `target` unless the one there scores higher on validation, or
    records no score to compare (an unreadable file there is replaced). With `encoder` and the
    `images` the best one was scored on, one there that records a score on other images is scored
    on these first (as the run's validation scores), and kept if it cannot be."""
    new, replaced = read_decoder(best)[1], ""
    if target.exists():
        try:
            old = read_decoder(target)[1]
        except WCTError:
            old, replaced = None, ", replacing an unreadable decoder file there"
        if old is not None and "val_psnr" not in old:
            print(f"kept {target}: it records no val PSNR to beat; move it away to export {best}", flush=True)
            return False
        if old is not None:
            score, where = old["val_psnr"], ""
            if not same_images(old, new) and encoder is not None and images:
                try:
                    there = load_decoder(int(new["level"]), encoder.mean.device, encoder.weights_id, target)
                except WCTError as e:
                    print(
                        f"kept {target}: it cannot be scored on --val ({e}); move it away to export {best}",
                        flush=True,
                    )
                    return False
                score = round(reconstruction_scores(encoder, there, images)["psnr"], 3)
                where = (
                    f" on the same {len(images)} images of {new.get('val_data')} (it records "
                    f"{old['val_psnr']} dB on {old.get('val_data')})"
                )
            elif not same_images(old, new):
                where = f" scored on {old.get('val_data')} (this one on {new.get('val_data')})"
            if float(score) >= float(new["val_psnr"]):
                print(f"kept {target}: {score} dB >= {new['val_psnr']} dB{where}", flush=True)
                return False
            replaced = f", replacing one of {score} dB{where}"  # said, as the file is gone once replaced
    write_atomic(target, lambda tmp: shutil.copyfile(best, tmp))
    load_decoder(int(new["level"]), "cpu", path=target)
    print(f"exported {target} ({new['val_psnr']} dB){replaced}", flush=True)
    return True


if __name__ == "__main__":
    from .cli import train_main

    train_main()
