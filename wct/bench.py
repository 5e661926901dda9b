"""WCT against the Gatys optimisation, side by side: time, peak memory and the same losses.

Both outputs are scored by one encoder with the objective Gatys minimises (`score`, the weighted
losses of `gatys.objective`): content = relu4_2 MSE against the content image, style = the
1e3 / C**2-weighted Gram MSE summed over relu1_1..relu5_1 against the style image, on the
normalised VGG19, plus total variation. "Time to match" is when the Gatys run's image first has a
total at or below that of WCT's output, counted as WCT's time is, from the inputs: Gatys's setup
(its style Grams and content features, `setup_seconds`) plus its optimisation up to that image
(`optimisation_seconds_to_match_wct`); 0 when the content photo it starts from already has.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

import torch
from PIL import Image
from torch import Tensor

from . import gatys as g
from .encoder import Encoder
from .errors import InputError, OutputError
from .images import list_images, load_image, tensor_to_pil, write_atomic
from .paths import check_target, write_error
from .pipeline import Stylizer
from .signals import signals_held

T = TypeVar("T")


def peak_rss_reset() -> None:
    """Reset the kernel's peak-RSS counter of this process (Linux); elsewhere a no-op."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB since the last reset (Linux), else since start."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, but bytes on macOS
    return rss / (1024**2 if sys.platform == "darwin" else 1024)


def score(encoder: Encoder, image: Tensor, content: Tensor, style: Tensor, options: g.Options) -> dict:
    """The weighted Gatys losses of `image` (all (1, 3, H, W) in [0, 1]), as a Gatys history
    entry holds them: content, style, tv, total."""
    return scored(gatys_setup(encoder, content, style, options), image)


def gatys_setup(encoder: Encoder, content: Tensor, style: Tensor, options: g.Options) -> Callable:
    """Gatys's objective for `options`, its targets (style Grams, content features) computed: the
    work a Gatys run does before its first step."""
    o = options.checked()
    return g.objective(encoder, content, style, o, g.means_for(encoder, o.normalise))


@torch.no_grad()
def scored(objective: Callable, image: Tensor) -> dict:
    """`objective`'s losses of `image` as numbers: content, style, tv, total."""
    return {k: v.item() for k, v in objective(image).items()}


def pick_pairs(contents: Path, styles: Path, n: int) -> list[tuple[Path, Path]]:
    """n distinct (content, style) pairs spread evenly over the two sorted folders (deterministic):
    a pair given twice would run, and count in the medians, twice."""
    cs, ss = list_images(contents), list_images(styles)
    if not cs or not ss:
        raise InputError(f"no images found in {contents if not cs else styles}")
    if not 1 <= n <= len(cs) * len(ss):
        most = f"{len(cs) * len(ss)} ({len(cs)} contents x {len(ss)} styles)"
        raise InputError(f"the number of pairs must be 1 to {most}, got {n}")
    taken: list[int] = []  # pairs as indices content * len(ss) + style
    for i in range(n):
        k = i * len(cs) // n % len(cs) * len(ss) + (i * len(ss) // n + i) % len(ss)
        while k in taken:  # the spread met a pair again: the next one not taken
            k = (k + 1) % (len(cs) * len(ss))
        taken.append(k)
    return [(cs[k // len(ss)], ss[k % len(ss)]) for k in taken]


def quick_pair(folder: Path) -> list[tuple[Path, Path]]:
    """The one pair of `wct bench --quick`: a generated landscape and painting, saved in `folder`."""
    from .demo import landscape, painting

    content, style = folder / "landscape.png", folder / "painting.png"
    landscape(96, 64).save(content)
    painting(64, 64).save(style)
    return [(content, style)]


def first_match(history: list[dict], target: float) -> dict | None:
    """The first Gatys history entry (step 0: the starting image) whose total is at or below
    `target`; None if none is."""
    return next((h for h in history if h["total"] <= target), None)


def run_pair(
    stylizer: Stylizer,
    content_path: Path,
    style_path: Path,
    size: int,
    steps: int,
    repeats: int = 3,
) -> tuple[dict, tuple[Tensor, Tensor, Tensor, Tensor | None]]:
    """Measure one pair at one size (WCT at alpha 1, the median of `repeats` runs after an untimed
    warm-up, none for a single run as --quick's; Gatys with its defaults and `steps`); returns the
    record and the images: content, style, WCT's output and Gatys's. A Gatys run that diverges is
    recorded as such (gatys.diverged: why, its history; no image), not raised."""
    o = g.Options(steps=steps).checked()
    enc = stylizer.encoder
    content = load_image(content_path, size).to(stylizer.device)
    style = load_image(style_path, size).to(stylizer.device)
    for level in (5, 4, 3, 2, 1):
        stylizer.decoder(level)  # load weights outside the timed region
    run_wct = lambda: stylizer.stylize(content, stylizer.style(style), 1.0)  # noqa: E731
    if repeats > 1 or stylizer.device.type == "cuda":
        run_wct()  # one-time costs of a first run (CUDA's setup, kernels' first calls) are not WCT's time
    peak_rss_reset()
    times = []
    for _ in range(repeats):  # only the last output is kept, so the peak is not inflated
        seconds, y_wct = timed(run_wct)
        times.append(seconds)
    wct_rss = peak_rss_mb()
    setup_seconds, objective = timed(lambda: gatys_setup(enc, content, style, o))  # as in Gatys's run
    wct_score = scored(objective, y_wct)
    wct_time = statistics.median(times)
    record = {
        "content": content_path.name,
        "style": style_path.name,
        "size": size,
        "shape": list(content.shape[-2:]),
        "wct": {"seconds": wct_time, "all_seconds": times, "peak_rss_mb": wct_rss, **wct_score},
    }

    peak_rss_reset()
    try:
        gatys_time, result = timed(lambda: g.gatys(enc, content, style, **asdict(o)))
    except g.Diverged as e:  # this pair has no Gatys figures; the other pairs still do
        history = e.result.history if e.result else []
        gatys = {"settings": asdict(o), "steps": o.steps, "diverged": str(e), "history": history}
        none = dict.fromkeys(("speedup", "speedup_500_steps", "time_to_match_ratio"))
        return record | {"gatys": gatys, **none}, (content, style, y_wct, None)
    gatys_rss = peak_rss_mb()
    gatys_score = scored(objective, result.image)
    match = first_match(result.history, wct_score["total"])
    # the image exists after the setup and the optimisation up to it; the content photo, before either
    to_match = None if match is None else match["seconds"] + setup_seconds * (match["step"] > 0)
    per_step = result.history[-1]["seconds"] / o.steps  # optimisation only
    seconds_500 = gatys_time + (500 - o.steps) * per_step  # setup (targets, final scoring) once
    record |= {
        "gatys": {
            "settings": asdict(o),
            "seconds": gatys_time,
            "steps": o.steps,
            "seconds_per_step": per_step,
            "setup_seconds": setup_seconds,
            "seconds_500_steps": seconds_500,
            "peak_rss_mb": gatys_rss,
            **gatys_score,  # of the image with the lowest loss, at best_step
            "best_step": result.best["step"],
            "time_to_match_wct": to_match,  # setup included
            "optimisation_seconds_to_match_wct": None if match is None else match["seconds"],
            "steps_to_match_wct": None if match is None else match["step"],
            "diverged": None,
            "history": result.history,
        },
        "speedup": gatys_time / wct_time,
        "speedup_500_steps": seconds_500 / wct_time,
        "time_to_match_ratio": None if to_match is None else to_match / wct_time,
    }
    return record, (content, style, y_wct, result.image)


def summarise(records: list[dict]) -> list[dict]:
    """Medians per size over the pairs; those whose Gatys run diverged are left out of every one
    (WCT's included, so that both columns stand for the same pairs) and counted apart."""
    rows = []
    for size in sorted({r["size"] for r in records}):
        measured = [r for r in records if r["size"] == size]
        rs = [r for r in measured if not r["gatys"].get("diverged")]

        def med(fn: Callable[[dict], float | None], rs: list[dict] = rs) -> float | None:
            vals = [v for v in map(fn, rs) if v is not None]
            return statistics.median(vals) if vals else None

        rows.append(
            {
                "size": size,
                "pairs": len(rs),
                "diverged": len(measured) - len(rs),
                "gatys_steps": measured[0]["gatys"]["steps"],
                "wct_seconds": med(lambda r: r["wct"]["seconds"]),
                "gatys_seconds": med(lambda r: r["gatys"]["seconds"]),
                "gatys_seconds_500": med(lambda r: r["gatys"]["seconds_500_steps"]),
                "gatys_setup_seconds": med(lambda r: r["gatys"].get("setup_seconds")),
                "wct_rss_mb": med(lambda r: r["wct"]["peak_rss_mb"]),
                "gatys_rss_mb": med(lambda r: r["gatys"]["peak_rss_mb"]),
                "wct_style": med(lambda r: r["wct"]["style"]),
                "gatys_style": med(lambda r: r["gatys"]["style"]),
                "wct_content": med(lambda r: r["wct"]["content"]),
                "gatys_content": med(lambda r: r["gatys"]["content"]),
                "speedup_500_steps": med(lambda r: r["speedup_500_steps"]),
                "time_to_match_ratio": med(lambda r: r["time_to_match_ratio"]),
                "matched": sum(r["gatys"]["steps_to_match_wct"] is not None for r in rs),
                "matched_at_start": sum(r["gatys"]["steps_to_match_wct"] == 0 for r in rs),
            }
        )
    return rows


def markdown(rows: list[dict], machine: str, records: Sequence[dict] = (), partial: str | None = None) -> str:
    """The table of `summarise`'s rows, each diverged Gatys run of `records` named under it, and
    `partial` (why the benchmark stopped, how far it got) at the top of a report of a stopped run."""

    def f(v: float | None, fmt: str = ".3g") -> str:
        return "n/a" if v is None else format(v, fmt)

    lines = [f"**Partial report**: {partial}.", ""] if partial else []
    lines += [
        f"Measured on {machine}; medians over the pairs. Losses are the weighted terms Gatys minimises "
        "(style and content weights included: `wct.bench.score`), so the two columns compare alike.",
        "",
        "| size | pairs | WCT s | Gatys s (steps run) | Gatys s for 500 steps | speed-up at 500 steps "
        "| time to match WCT (Gatys setup included) / WCT time | WCT MiB | Gatys MiB "
        "| style loss WCT / Gatys | content loss WCT / Gatys |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        at_start = f", {r['matched_at_start']} by the content photo itself" if r["matched_at_start"] else ""
        match = f(r["time_to_match_ratio"]) + f" ({r['matched']}/{r['pairs']} matched{at_start})"
        pairs = f"{r['pairs']} (+{r['diverged']} diverged)" if r.get("diverged") else str(r["pairs"])
        speedup = f(r["speedup_500_steps"], ".0f") + ("x" if r["speedup_500_steps"] is not None else "")
        lines.append(
            f"| {r['size']} | {pairs} | {f(r['wct_seconds'])} | {f(r['gatys_seconds'])} "
            f"({r['gatys_steps']}) | {f(r['gatys_seconds_500'])} | {speedup} "
            f"| {match} | {f(r['wct_rss_mb'], '.0f')} | {f(r['gatys_rss_mb'], '.0f')} "
            f"| {f(r['wct_style'])} / {f(r['gatys_style'])} "
            f"| {f(r['wct_content'])} / {f(r['gatys_content'])} |"
        )
    diverged = [r for r in records if r["gatys"].get("diverged")]
    if diverged:
        lines += ["", "Gatys diverged on these pairs, left out of the medians (WCT's too):", ""]
        lines += [
            f"- {r['content']} + {r['style']}, {r['size']} px: {r['gatys']['diverged']}" for r in diverged
        ]
    return "\n".join(lines) + "\n"


def contact_sheet(rows: Sequence[tuple[Tensor | None, ...]], cell: int = 256) -> Image.Image:
    """One row per pair: content | style | WCT | Gatys, each fitted into a cell x cell square (left
    blank where an image is None: a diverged Gatys run)."""
    sheet = Image.new("RGB", (cell * 4, cell * len(rows)), "white")
    for i, images in enumerate(rows):
        for j, x in enumerate(images):
            if x is None:
                continue
            im = tensor_to_pil(x)
            im.thumbnail((cell, cell), Image.Resampling.LANCZOS)
            sheet.paste(im, (j * cell + (cell - im.width) // 2, i * cell + (cell - im.height) // 2))
    return sheet


def machine(device: str | torch.device | None = None) -> str:
    """The CPU (its kernels' instruction set, cores, torch threads), or the GPU when `device` is
    CUDA (None: whenever CUDA is available), and torch's version: what a benchmark ran on."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cuda = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
    if cuda:
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    isa = torch.backends.cpu.get_cpu_capability()  # AVX2, AVX512 (bf16 is fast only with the latter)
    return (
        f"{cpu} ({isa}), {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )


def report_problem(path: Path, overwrite: bool) -> str | None:
    """Why a benchmark script cannot write its report to `path` (`check_target`, before minutes of
    work), or None."""
    try:
        check_target(path, overwrite)
    except OutputError as e:
        return str(e)
    except OSError as e:  # a name too long...: as write_atomic would report it
        return str(write_error(path, e))
    return None


def write_set(writes: Sequence[tuple[Path, Callable[[str], object]]]) -> None:
    """Write a report's files as one: each `write(tmp)` (as `write_atomic` calls it) into a hidden
    folder beside the first, then all renamed over their paths, so that a reader finds the earlier
    set or the new one, never a mix; OutputError if one cannot be written (the earlier set then
    stays whole). Ctrl-C, SIGTERM and SIGHUP wait for the set (a second or so): a benchmark
    stopped as it ends keeps its report."""
    folder = writes[0][0].parent
    taken = next((path for path, _ in writes if path.is_dir()), None)
    if taken is not None:  # found now: its rename would fail after the others had been made
        raise OutputError(f"{taken} is a directory: give another -o folder")
    with signals_held():
        try:
            stage = Path(tempfile.mkdtemp(dir=folder, prefix=".report."))
        except OSError as e:
            raise write_error(writes[0][0], e) from None
        try:
            staged = [(write_atomic(stage / path.name, write), path) for path, write in writes]
            for tmp, path in staged:
                try:
                    os.replace(tmp, path)
                except OSError as e:
                    raise write_error(path, e) from None
        finally:
            shutil.rmtree(stage, ignore_errors=True)


def sync() -> None:
    """Wait for queued GPU work, so that wall time includes it (nothing to do if CUDA is unused)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Wall time of one call of `fn` (queued GPU work included) and what it returned."""
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of `runs` calls of `fn`, after one untimed warm-up call."""
    fn()
    return statistics.median(timed(fn)[0] for _ in range(runs))


def count_flops(fn: Callable[[], object]) -> int:
    """The floating-point operations torch counts in one call of `fn` (convolutions, matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@torch.no_grad()
def conv_throughput(encoder: Encoder, runs: int = 5) -> tuple[int, float]:
    """(FLOPs, median seconds) of one VGG19 forward to relu5_1 at 512x512: the machine's
    convolution throughput, against which the other timings are judged."""
    x = torch.rand(1, 3, 512, 512, device=next(encoder.parameters()).device)
    return count_flops(lambda: encoder(x, 5)), median_seconds(lambda: encoder(x, 5), runs)
