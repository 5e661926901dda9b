"""The Gatys et al. (2016) optimisation baseline: pure loss functions plus one driver, `gatys`.

Losses follow the authors' PyTorch reference (leongatys/PytorchNeuralStyleTransfer): Gram matrices
divided by H*W, MSE between Grams weighted 1e3 / C**2 per style layer, MSE on relu4_2 for content,
on their *normalised* VGG19, in which every channel's mean activation over photos is 1. Here that is
the Caffe VGG19 with each ReLU channel divided by its mean over 256 training photos
(`channel_means`, the same network with rescaled weights). Without it the layers' activations
differ up to 30-fold and relu4_1 alone made ~95% of the style loss. The image is optimised directly
in RGB pixels and clamped to [0, 1] after every step, so every intermediate image is valid; L-BFGS
is then told the step it actually took (see `_match_lbfgs_step`), without which clamping made it
diverge.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import (  # the options are checked without torch, for the CLI
    ADAM_MAX_LR,  # noqa: F401  wct.gatys's too
    CONTENT_LAYER,
    GRAMS,
    STYLE_LAYERS,
    Options,
    check_choice,
    check_layer,
    check_texture_pixels,
    min_side,
    named,
    whole,
)
from .encoder import NAMES, Encoder, read_signed
from .errors import InputError
from .images import load_image, resize

MEANS_FILE = Path(__file__).with_name("vgg19_channel_means.safetensors")
STYLE_LAYER_WEIGHT = 1e3  # per layer: STYLE_LAYER_WEIGHT / C**2, as in the authors' reference
LOSS_KEYS = ("content", "style", "tv", "total")
BACKTRACK_RISE = 2.0  # an L-BFGS step to an image above twice the lowest loss so far is undone

Callback = Callable[[int, "Tensor | None", dict[str, float]], None]


@dataclass
class GatysResult:
    """The optimised image (1, 3, H, W) in [0, 1], its loss history and the step it comes from.

    Entry k (k = 0..steps) holds step k, the weighted losses content, style, tv and their total of
    the image after k steps (entry 0: the starting image), and the seconds of optimisation after
    which that image existed (0 for the start; time spent in the callback is not counted).
    `image` is the one with the lowest total, history[best_step]: usually the last.
    """

    image: Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    best_step: int = -1

    @property
    def best(self) -> dict[str, float]:
        """The history entry of `image`."""
        return self.history[self.best_step]


@lru_cache(maxsize=1)
def _stored_means() -> tuple[dict[str, Tensor], str]:
    with torch.inference_mode(False):  # cached for gatys's autograd, even if first read under inference mode
        tensors, meta = read_signed(MEANS_FILE, "VGG19 channel means")
    return tensors, meta.get("encoder_md5", "")


def channel_means(encoder: Encoder) -> dict[str, Tensor] | None:
    """Each ReLU layer's per-channel mean activation over 256 training photos (scripts/
    vgg_channel_means.py): dividing by it gives Gatys et al.'s normalised VGG. None for an encoder
    whose weights are not the ones the constants were measured on."""
    means, md5 = _stored_means()
    return means if encoder.weights_id == md5 else None


def extract(
    encoder: Encoder, x: Tensor, layers: Sequence[str], means: Mapping[str, Tensor] | None
) -> dict[str, Tensor]:
    """encoder.extract(x, layers), each channel divided by its mean activation when `means` is given."""
    feats = encoder.extract(x, layers, check_range=False)  # the image optimised may leave [0, 1]
    if means is None:
        return feats
    return {k: v / means[k].to(v).view(1, -1, 1, 1) for k, v in feats.items()}


def gram(features: Tensor, centered: bool = False) -> Tensor:
    """Gram matrices (N, C, C) of features (N, C, H, W), divided by H*W.

    Dividing by the number of positions makes Grams of different image sizes comparable (a style
    image need not match the output size). `centered` subtracts each channel's mean first, giving
    the (biased) covariance: it matches second-order statistics without the mean's dominance.
    """
    if features.ndim != 4:
        raise InputError(f"features must be (N, C, H, W), got shape {tuple(features.shape)}")
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    if centered:
        f = f - f.mean(dim=2, keepdim=True)
    return f @ f.transpose(1, 2) / (h * w)


def style_targets(feats: Mapping[str, Tensor], grams: str = "plain") -> dict[str, tuple[Tensor, ...]]:
    """Per layer, the Grams the style loss compares: (plain,), (centred,) or (plain, centred)."""
    kinds = check_choice(grams, GRAMS, "gram")
    centered = {"plain": (False,), "centered": (True,), "both": (False, True)}[kinds]
    return {layer: tuple(gram(f, c) for c in centered) for layer, f in feats.items()}


def content_loss(f: Tensor, target: Tensor) -> Tensor:
    """Mean squared error between features and the content's features."""
    return F.mse_loss(f, target)


def style_loss(
    feats: Mapping[str, Tensor], targets: Mapping[str, tuple[Tensor, ...]], grams: str = "plain"
) -> Tensor:
    """Sum over the layers of `targets` of 1e3 / C**2 * MSE between Grams.

    `targets` comes from `style_targets(style_features, grams)`, computed once per style image;
    with grams='both' the plain and centred terms are added.
    """
    mine = style_targets({layer: feats[layer] for layer in targets}, grams)
    total = None
    for layer, target in targets.items():
        if len(target) != len(mine[layer]):
            raise InputError(f"style targets of {layer} were not computed with grams={grams!r}")
        c = feats[layer].shape[1]
        term = sum(F.mse_loss(a, b) for a, b in zip(mine[layer], target, strict=True))
        term = STYLE_LAYER_WEIGHT / c**2 * term
        total = term if total is None else total + term
    if total is None:
        raise InputError("style targets name no layer")
    return total


def tv_loss(x: Tensor) -> Tensor:
    """Squared total variation: mean squared difference of vertical plus horizontal neighbours
    (a term without neighbours, as the vertical one of a single row, is 0)."""
    dy = x[..., 1:, :] - x[..., :-1, :]
    dx = x[..., :, 1:] - x[..., :, :-1]
    return sum((d.square().mean() for d in (dy, dx) if d.numel()), x.new_zeros(()))


def objective(
    encoder: Encoder,
    content: Tensor | None,
    style: Tensor,
    options: Options,
    means: Mapping[str, Tensor] | None,
) -> Callable[[Tensor], dict[str, Tensor]]:
    """The weighted losses of an image, as a function: content (MSE at options.content_layer; 0
    without a content image), style (over options.style_layers), tv and their total. The targets
    are computed once, here."""
    o = options
    layers = list(o.style_layers) + ([o.content_layer] if content is not None else [])
    with torch.no_grad():
        targets = style_targets(extract(encoder, style, o.style_layers, means), o.gram)
        target = None
        if content is not None:
            target = extract(encoder, content, [o.content_layer], means)[o.content_layer]

    def losses(x: Tensor) -> dict[str, Tensor]:
        feats = extract(encoder, x, layers, means)
        c = x.new_zeros(()) if target is None else content_loss(feats[o.content_layer], target)
        c = o.content_weight * c
        s = o.style_weight * style_loss(feats, targets, o.gram)
        t = o.tv_weight * tv_loss(x)
        return {"content": c, "style": s, "tv": t, "total": c + s + t}

    return losses


def means_for(encoder: Encoder, normalise: bool) -> dict[str, Tensor] | None:
    """The channel means `normalise` asks for; InputError when the encoder has no stored ones."""
    if not normalise:
        return None
    means = channel_means(encoder)
    if means is None:
        raise InputError(
            "the normalised VGG's channel means were measured on the Caffe VGG19 weights "
            f"(md5 {_stored_means()[1]}), not this encoder's: pass normalise=False"
        )
    return means


def outside_inference_mode(fn: Callable) -> Callable:
    """Run `fn` outside torch.inference_mode(), where autograd works, with its tensor arguments
    cloned (tensors made in inference mode cannot be saved for backward); no_grad is lifted anyway."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        encoder = args[0] if args else kwargs.get("encoder")
        if isinstance(encoder, torch.nn.Module) and any(p.is_inference() for p in encoder.parameters()):
            raise InputError(
                "the encoder was loaded under torch.inference_mode(): load it outside (torch.no_grad() is "
                "fine) to optimise images with it"
            )
        if not torch.is_inference_mode_enabled():
            return fn(*args, **kwargs)
        with torch.inference_mode(False):
            args = tuple(a.clone() if isinstance(a, Tensor) else a for a in args)
            kwargs = {k: v.clone() if isinstance(v, Tensor) else v for k, v in kwargs.items()}
            return fn(*args, **kwargs)

    return run


@outside_inference_mode
def gatys(
    encoder: Encoder,
    content: Tensor | None,
    style: Tensor,
    steps: int = 500,
    optimizer: str = "lbfgs",
    init: str | None = None,
    content_weight: float = 1.0,
    style_weight: float | None = None,
    tv_weight: float | None = None,
    gram: str = "plain",
    seed: int = 0,
    lr: float | None = None,
    save_every: int = 0,
    callback: Callback | None = None,
    size: tuple[int, int] | None = None,
    normalise: bool = True,
    style_layers: tuple[str, ...] = STYLE_LAYERS,
    content_layer: str = CONTENT_LAYER,
) -> GatysResult:
    """Stylise `content` with `style` by optimising the image's pixels (Gatys et al. 2016).

    The loss is content_weight * MSE(relu4_2) + style_weight * sum of 1e3 / C**2 * Gram MSE over
    relu1_1..relu5_1 + tv_weight * tv_loss(pixels in [0, 1]), on the normalised VGG19 (see the
    module docstring). Defaults: content 1, style 100 (the authors' reference has style 1, which
    here barely changes the photo), TV 10 (their reference has none; here it removes pixel noise),
    L-BFGS from the content image. normalise=False uses the raw Caffe features, where relu4_1
    dominates the style loss; its defaults are style 0.05 and TV 1e6. `style_layers` and
    `content_layer` (ReLU layers) replace relu1_1..relu5_1 and relu4_2.

    content=None synthesises a texture: the content loss is off and the output has `size`
    (width, height, as for WCT textures and PIL), or the style's size (at most twice Pillow's
    MAX_IMAGE_PIXELS, as for WCT textures). `init` is 'content' (the default when there is
    content), 'noise' (uniform, from `seed`; the default without content) or 'style' (resized to
    the output size).

    One step is one L-BFGS iteration (torch.optim.LBFGS with max_iter=1, no line search, so one
    function evaluation) or one Adam update; lr defaults to 1 for L-BFGS and 0.05 for Adam.
    Without a line search, L-BFGS blew the loss of one benchmark pair up 91-fold (256 px) and
    6000-fold (512 px) mid-run, so an L-BFGS step to an image with more than BACKTRACK_RISE x the
    lowest loss so far is undone and L-BFGS restarts from the image before it with an empty memory
    (costing one step: that loss is known only at the next step's first evaluation). The result is
    the image with the lowest loss, with a warning if no step went below the start's.
    If the step L-BFGS takes from an empty memory must be undone too (a restart would repeat it),
    or the loss stops being finite, it raises `Diverged` (an InputError: lower lr) whose `result`
    holds the image with the lowest loss so far and the history.
    `callback(step, image, entry)` gets each history entry as soon as it is known (entry k during
    step k + 1, the last one after the last step), with `image` (a detached copy of the image after
    step k) when k is a positive multiple of `save_every`, else None. Runs are deterministic for a
    seed on CPU. Ctrl-C after the first step raises `Interrupted`, a KeyboardInterrupt whose
    `result` holds the image with the lowest loss so far and the history.
    """
    o = Options(
        steps,
        optimizer,
        init,
        content_weight,
        style_weight,
        tv_weight,
        gram,
        seed,
        lr,
        save_every,
        normalise,
        tuple(style_layers) if isinstance(style_layers, (list, tuple)) else style_layers,
        content_layer,
    ).checked(content is not None)
    device = encoder.mean.device
    style = _image(style, "style", o.style_layers).to(device)
    if content is None:
        shape = _size(size, style.shape[-2:], layers=o.style_layers)
        check_texture_pixels(shape[1], shape[0])  # (width, height)
    else:
        content = _image(content, "content", (o.content_layer, *o.style_layers)).to(device)
        shape = tuple(content.shape[-2:])
        if size is not None and _size(size, shape, layers=o.style_layers) != shape:
            raise InputError(
                f"size {tuple(size)} is only for texture synthesis (content=None); "
                "resize the content image instead"
            )
    _check_callback(callback)
    losses = objective(encoder, content, style, o, means_for(encoder, o.normalise))

    if o.init == "content":
        x0 = content
    elif o.init == "style":
        x0 = resize(style, shape)
    else:
        x0 = _noise(shape, o.seed, device)
    return _optimise(x0, losses, o.steps, o.optimizer, o.lr, o.save_every, callback)


@outside_inference_mode
def invert(
    encoder: Encoder,
    image: Tensor,
    layer: str = "relu3_1",
    steps: int = 300,
    seed: int = 0,
    *,
    optimizer: str = "lbfgs",
    tv_weight: float | None = 1e4,
    lr: float | None = None,
    save_every: int = 0,
    callback: Callback | None = None,
) -> GatysResult:
    """Reconstruct `image` from the features of one VGG19 layer alone, starting from noise.

    Shows what a layer keeps (Mahendran & Vedaldi 2015; Gatys et al. Fig. 1): the loss is the
    raw features' MSE (reported as 'content') plus tv_weight * tv_loss, a light smoothness prior
    that suppresses the pixel noise a layer cannot see (1e4 also reached a lower feature loss than
    0 on relu3_1). Other arguments are as in `gatys`.
    """
    check_layer(layer)
    tv_weight = 1e4 if tv_weight is None else tv_weight  # None: invert's default, not gatys's 10
    o = Options(steps, optimizer, tv_weight=tv_weight, seed=seed, lr=lr, save_every=save_every).checked()
    _check_callback(callback)
    device = encoder.mean.device
    image = _image(image, "image", (layer,)).to(device)
    with torch.no_grad():
        target = encoder.extract(image, [layer])[layer]

    def losses(x: Tensor) -> dict[str, Tensor]:
        c = content_loss(encoder.extract(x, [layer], check_range=False)[layer], target)
        t = o.tv_weight * tv_loss(x)
        return {"content": c, "style": x.new_zeros(()), "tv": t, "total": c + t}

    x0 = _noise(tuple(image.shape[-2:]), o.seed, device)
    return _optimise(x0, losses, o.steps, o.optimizer, o.lr, o.save_every, callback)


def _optimise(
    x0: Tensor,
    losses_of: Callable[[Tensor], dict[str, Tensor]],
    steps: int,
    opt: str,
    lr: float,
    save_every: int,
    callback: Callback | None,
) -> GatysResult:
    """Minimise losses_of(x)['total'] over pixels x, clamped to [0, 1] after each step; returns
    the image with the lowest loss.

    Each step's first evaluation is at the image the step starts from, so the loss of the image
    after step k is known during step k + 1 for free; only the final image is evaluated apart.
    L-BFGS: when that loss exceeds BACKTRACK_RISE x the lowest so far, the closure stops the step
    before L-BFGS stores the point, the image goes back to where the step began, and L-BFGS's
    memory is emptied, since it is what chose the step. (A ceiling relative to the lowest loss,
    not to the step's start: accepted 10% rises in a row ratcheted one 512-px run from 5.1 up to
    41. Halving the step instead kept the memory, which led the same way again: at 512 px one run
    blew up 2400-3900-fold ten times in 170 steps, each time halving its way back. Rises of
    10-87% came and went in the benchmark runs without help, and restarting after each of them
    cost one 512-px run 4% of its final loss: hence twice the lowest, not 1.1x.)"""
    x = x0.detach().float().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    lbfgs = opt == "lbfgs"
    if lbfgs:
        optim: torch.optim.Optimizer = torch.optim.LBFGS(
            [x], lr=lr, max_iter=1, history_size=100, tolerance_grad=0.0, tolerance_change=0.0
        )
    else:
        optim = torch.optim.Adam([x], lr=lr)
    evals: list[dict[str, Tensor]] = []
    history: list[dict[str, float]] = []
    best, best_step = x.detach().clone(), 0  # the image with the lowest loss so far, and its step
    anchor = x.detach().clone()  # the image the last L-BFGS step was taken from
    empty, fresh = True, False  # L-BFGS's memory is empty; x was made by a step from an empty one

    def closure() -> Tensor:
        optim.zero_grad(set_to_none=True)
        losses = losses_of(x)
        losses["total"].backward()
        evals.append({k: v.detach() for k, v in losses.items()})
        lowest = history[best_step]["total"] if history else math.inf  # undone steps are never lowest
        if lbfgs and losses["total"].item() > BACKTRACK_RISE * lowest:
            raise _Backtrack  # before L-BFGS updates its memory with this point
        return losses["total"]

    paused = 0.0  # seconds spent in the callback (saving snapshots...), not optimising

    def record(step: int, losses: dict[str, Tensor], seconds: float, image: Tensor | None) -> None:
        nonlocal paused
        entry = {"step": step, **{k: losses[k].item() for k in LOSS_KEYS}, "seconds": seconds}
        if not math.isfinite(entry["total"]):
            # at step 0 no step has been taken, so lr played no part
            fix = "lower the weights" + (f" or {named('lr')} {lr:g}" if step else "")
            raise Diverged(
                f"the loss became {entry['total']} at step {step}: {fix}",
                GatysResult(best, history, best_step) if history else None,
            )
        history.append(entry)
        if callback is not None:
            t = time.perf_counter()
            callback(step, image, entry)
            paused += time.perf_counter() - t

    start = time.perf_counter()
    made, snapshot = 0.0, None  # when the current image was made; its copy if it is to be saved
    try:
        for step in range(1, steps + 1):
            evals.clear()
            before = x.detach().clone()
            try:
                optim.step(closure)
                backtrack = False
            except _Backtrack:
                backtrack = True
            record(step - 1, evals[0], made, snapshot)
            if history[-1]["total"] < history[best_step]["total"]:
                best, best_step = before, step - 1
            if backtrack and fresh:  # a restart would take the same step again
                raise Diverged(
                    f"L-BFGS diverged at step {step - 1}: even its first step from a fresh start raised "
                    f"the loss from {history[best_step]['total']:.4g} to {history[-1]['total']:.4g}, and a "
                    f"restart would repeat it: lower {named('lr')} {lr:g}, e.g. to {lr / 10:g}",
                    GatysResult(best, history, best_step),
                )
            with torch.no_grad():
                if backtrack:
                    x.copy_(anchor)
                    optim.state.clear()  # L-BFGS starts afresh, as on its first step
                    empty, fresh = True, False
                else:
                    anchor = before
                    x.clamp_(0, 1)
                    _match_lbfgs_step(optim, x - anchor)
                    empty, fresh = False, empty
            made = time.perf_counter() - start - paused
            wanted = callback is not None and save_every and step % save_every == 0
            snapshot = x.detach().clone() if wanted else None
        with torch.no_grad():
            record(steps, losses_of(x), made, snapshot)
        if history[-1]["total"] < history[best_step]["total"]:
            best, best_step = x.detach().clone(), steps
    except KeyboardInterrupt:
        if not history:
            raise
        raise Interrupted(GatysResult(best, history, best_step)) from None
    if best_step == 0:
        still = all(h["total"] == history[0]["total"] for h in history)  # steps too small to move a pixel
        why = "too small: no step changed the loss" if still else "too large"
        warnings.warn(
            f"no step went below the starting image's loss, so the result is that image: "
            f"{named('lr')} {lr:g} may be {why} (or the start already optimal)",
            stacklevel=2,
        )
    return GatysResult(best, history, best_step)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM in the CLI) during `gatys` or `invert`: `result` holds the image with
    the lowest loss among the steps done, and their history, so a long run is not lost."""

    def __init__(self, result: GatysResult):
        super().__init__()
        self.result = result


class Diverged(InputError):
    """The optimisation cannot go on (a learning rate or weights too high): `result` holds the
    image with the lowest loss among the steps done, and their history (None before the first)."""

    def __init__(self, message: str, result: GatysResult | None):
        super().__init__(message)
        self.result = result


class _Backtrack(Exception):
    """Raised by the closure to stop an L-BFGS step at an image whose loss rose too much."""


def _match_lbfgs_step(optim: torch.optim.Optimizer, moved: Tensor) -> None:
    """Make L-BFGS's last step (s = t * d) the step actually taken after clamping.

    Otherwise its next curvature pair mixes the unclamped step with the gradient change of the
    clamped one, and the inverse-Hessian estimate can blow the loss up by orders of magnitude.
    """
    if not isinstance(optim, torch.optim.LBFGS):
        return
    state = optim.state[optim.param_groups[0]["params"][0]]
    if state.get("d") is not None and state.get("t"):
        state["d"] = moved.flatten() / state["t"]


def _check_callback(callback: object) -> None:
    if callback is not None and not callable(callback):
        raise InputError(f"callback must be callable, got {type(callback).__name__}")


def _image(x: object, name: str, layers: tuple[str, ...]) -> Tensor:
    """A (1, 3, H, W) float tensor in [0, 1], checked and converted as `load_image` does (uint8 is
    0..255), large enough for `layers`, else an InputError naming it."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a tensor, got {type(x).__name__}")
    try:
        x = load_image(x)
    except InputError as e:
        raise InputError(f"{name}: {e}") from None
    _size(tuple(x.shape[-2:])[::-1], x.shape[-2:], name, layers)
    return x


def _size(
    size: object, default: tuple[int, ...], name: str = "size", layers: tuple[str, ...] = STYLE_LAYERS
) -> tuple[int, int]:
    """`size` (width, height), or the (height, width) `default`, as a tensor's (height, width)."""
    if size is None:
        size = tuple(default)[::-1]
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(whole(v) for v in size):
        raise InputError(f"{name} must be (width, height) in pixels, got {size!r}")
    least = min_side(max(layers, key=NAMES.index))
    if min(size) < least:
        raise InputError(
            f"{name} is {size[0]}x{size[1]} pixels: {max(layers, key=NAMES.index)} "
            f"needs at least {least}x{least}"
        )
    return int(size[1]), int(size[0])


def _noise(shape: tuple[int, ...], seed: int, device: torch.device) -> Tensor:
    """Uniform noise in [0, 1], drawn on the CPU so a seed gives the same start on any device."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, *shape, generator=g).to(device)
