"""The optimisation commands of `wct`: gatys and invert (Gatys et al. 2016), and bench (WCT
against Gatys)."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .checks import CONTENT_LAYER, VGG19_NAMES, Options, check_layer, min_side
from .cli import (
    SHARED_DATA,
    DeviceOpt,
    VggOpt,
    app,
    check_options,
    check_output,
    console,
    in_arg,
    must_exist,
    must_exist_as,
    numbers,
    out_console,
    out_option,
    size_arg,
)
from .errors import InputError, OutputError, WCTError
from .paths import check_json_target, check_target, stopped_paths
from .progress import progress_bar

if TYPE_CHECKING:
    from PIL import Image
    from torch import Tensor

    from .gatys import GatysResult


def snapshot_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_step{step:04d}{output.suffix}")


def snapshots_to_check(output: Path, steps: int, save_every: int) -> list[Path]:
    """The snapshots OUT_stepN of a run to check before it: the first (its folder and format stand
    for all) and those already there, found by listing the folder: making every name took minutes
    with --steps 100000000 --save-every 1."""
    if not save_every or save_every > steps:
        return []
    name = re.compile(rf"{re.escape(output.stem)}_step(\d+){re.escape(output.suffix)}", re.IGNORECASE)
    try:
        there = {int(m[1]) for n in os.listdir(output.parent) if (m := name.fullmatch(n))}
    except OSError:  # no folder yet: check_target says whether one can be made
        there = set()
    return [
        snapshot_path(output, k)
        for k in sorted({save_every, *there})
        if 0 < k <= steps and k % save_every == 0
    ]


def optimise_outputs(
    output: Path, history: Path | None, steps: int, save_every: int, overwrite: bool, inputs: tuple[Path, ...]
) -> None:
    """Fail before any work (and torch) if the image, a snapshot OUT_stepN or the history could not
    be written; --steps and --save-every are checked (Options.checked) before."""
    check_output(output, overwrite, inputs)
    snapshots = snapshots_to_check(output, steps, save_every)
    for p in snapshots:
        check_target(p, overwrite, inputs)
    if history:
        check_json_target(history, "--history", overwrite, inputs, (output, *snapshots))


def run_optimisation(
    optimise,
    output: Path,
    history: Path | None,
    steps: int,
    save_every: int,
    overwrite: bool,
    inputs: tuple[Path, ...],
    settings: dict,
    alpha_of: Path | None = None,
    terms: dict[str, str] | None = None,
):
    """Run `optimise(callback)` (gatys or invert) under a loss bar showing `terms` (label: entry
    key; default content, style, tv, total); write the image (the one with the lowest loss) with
    its settings and step in its PNG text, snapshots every `save_every` steps (with theirs), and the
    history (settings, the image's step, entries) as JSON. A failed or interrupted run still writes
    the history it has, and why it stopped ("error"), beside its image (`stopped_paths`). Images
    keep the alpha channel of `alpha_of`, as stylize's do."""
    import functools

    from .gatys import Diverged, Interrupted
    from .images import alpha_channel, atomic_save, tensor_to_pil, with_alpha, write_json

    if save_every > steps:
        warnings.warn(
            f"--save-every {save_every} is more than --steps {steps}: no snapshot is written", stacklevel=2
        )
    alpha_at = functools.cache(lambda size: alpha_channel(alpha_of, size) if alpha_of else None)

    def to_pil(image):  # the photo is read for its alpha once, not at every snapshot
        out = tensor_to_pil(image)
        return with_alpha(out, alpha_at(out.size))

    entries: list[dict] = []
    bar = progress_bar(True, console)
    task = bar.add_task("optimising", total=steps, info="")
    every = max(1, steps // 10)  # plain lines where no live bar shows (logs, pipes)
    terms = terms or {k: k for k in ("content", "style", "tv", "total")}

    def callback(step: int, image, entry: dict) -> None:
        entries.append(entry)
        info = " ".join(f"{label} {entry[k]:.4g}" for label, k in terms.items())
        bar.update(task, completed=step, info=info)
        if not console.is_terminal and (step % every == 0 or step == steps):
            console.print(f"step {step}/{steps}: {info}", highlight=False)
        if image is not None:
            atomic_save(
                to_pil(image),
                snapshot_path(output, step),
                overwrite=overwrite,
                protect=inputs,
                text={"wct:settings": json.dumps(settings), "wct:step": str(step)},
                option="--overwrite",
            )

    try:
        with bar:
            result = optimise(callback)
    except BaseException as e:
        kept = e.result if isinstance(e, (Interrupted, Diverged)) else None  # the best of the steps done
        kept_out = os.path.lexists(output)  # an existing OUT is kept with its history; else both replaced
        image_to, history_to = stopped_paths([output, history]) if kept_out else (output, history)
        if history_to and entries:
            record = {"settings": settings, "finished": False, "error": stop_reason(e)}
            record |= {"best_step": kept.best_step} if kept else {}
            if keep_history(record | {"history": entries}, history_to):
                console.print(f"wrote the history up to step {entries[-1]['step']} to {history_to}")
        if kept is not None and (isinstance(e, Interrupted) or kept.best_step > 0):  # not just the start
            save_interrupted(kept, image_to, settings, to_pil, inputs, steps)
        raise
    record = {"settings": settings, "finished": True, "best_step": result.best["step"]}
    text = {"wct:settings": json.dumps(settings), "wct:step": str(result.best["step"])}
    try:  # the image first: a failed history must not lose it, nor a failed image the history
        atomic_save(
            to_pil(result.image), output, overwrite=overwrite, protect=inputs, text=text, option="--overwrite"
        )
    except BaseException:
        if history:
            keep_history(record | {"history": result.history}, history)
        raise
    if history:
        write_json(record | {"history": result.history}, history)
    return result


def keep_history(record: dict, history: Path) -> bool:
    """Write the history of a run that failed, saying so if it cannot be, never hiding the error
    that stopped the run; whether it was written."""
    from .images import write_json

    try:
        write_json(record, history)
    except (OSError, WCTError) as err:
        console.print(f"could not write the history: {err}", markup=False)
        return False
    return True


def stop_reason(e: BaseException) -> str:
    """Why a run stopped, in one line, as its history records it: "interrupted" (Ctrl-C or SIGTERM),
    the message of a WCTError (Diverged...) as the CLI prints it, else the exception's kind too."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted"
    why = str(e) if isinstance(e, WCTError) else f"{type(e).__name__}: {e}"
    return why.strip().splitlines()[0] if why.strip() else type(e).__name__


def save_interrupted(
    result: GatysResult,
    output: Path,
    settings: dict,
    to_pil: Callable[[Tensor], Image.Image],
    inputs: tuple[Path, ...],
    steps: int,
) -> None:
    """On Ctrl-C or divergence, write the image with the lowest loss among the steps done (its PNG
    text says so) to `output` (from `stopped_paths`), so that a long run is not lost; never hide
    the error if it cannot be written."""
    from .images import atomic_save

    step, done = result.best["step"], result.history[-1]["step"]
    text = {"wct:settings": json.dumps(settings), "wct:step": str(step), "wct:interrupted": str(done)}
    try:
        atomic_save(
            to_pil(result.image), output, overwrite=False, protect=inputs, text=text, option="--overwrite"
        )
    except (OSError, WCTError) as e:
        console.print(f"could not write the image so far: {e}", markup=False)
        return
    console.print(f"wrote {output}: the lowest loss after {done} of {steps} steps, at step {step}")


def wrote(output: Path, best: dict, steps: int, also: str = "") -> None:
    """'wrote OUT (total loss L[, the lowest, at step N] of S steps`also`)': the best step's image."""
    when = "" if best["step"] == steps else f", the lowest, at step {best['step']}"
    console.print(f"wrote {output} (total loss {best['total']:.4g}{when} of {steps} steps{also})")


def check_sides(x, path: Path | None, layers: tuple[str, ...], option: str = "--size") -> None:
    """InputError, before the run and its progress bar, if an image loaded at `option` (the size
    it names) is too small for the deepest of `layers`."""
    deepest = max(layers, key=VGG19_NAMES.index)
    if x is not None and min(x.shape[-2:]) < min_side(deepest):
        h, w = x.shape[-2:]
        raise InputError(
            f"{path} is {w}x{h} px at this {option}: {deepest} needs at least {min_side(deepest)} px a side"
        )


LrOpt = typer.Option(None, help="Step size (default 1 for L-BFGS, 0.05 for Adam).")
SaveEveryOpt = typer.Option(0, help="Also write a snapshot every N steps: out.png -> out_step0100.png.")
HistoryOpt = out_option(None, "Write the settings and loss history here as JSON.", "--history")


def texture_arg(text: str | None) -> tuple[int, int] | None:
    """--texture-size 'WxH' or 'N' as (width, height)."""
    from .checks import parse_size

    return None if text is None else parse_size(text, "--texture-size")


@app.command("gatys")
def gatys_command(
    content: Path | None = typer.Argument(
        None, parser=in_arg("CONTENT"), metavar="content", help="Content photo (omit with --no-content)."
    ),
    style: Path | None = typer.Argument(None, parser=in_arg("STYLE"), metavar="style", help="Style image."),
    output: Path = out_option(..., "Output image."),
    no_content: bool = typer.Option(False, "--no-content", help="Texture synthesis: STYLE only, from noise."),
    texture_size: str | None = typer.Option(
        None, help="With --no-content: the texture's WIDTHxHEIGHT or N (default: the style's size)."
    ),
    init: str | None = typer.Option(None, help="content, noise or style (default: content, or noise)."),
    optimizer: str = typer.Option("lbfgs", help="lbfgs or adam."),
    steps: int = typer.Option(500, help="Optimiser steps."),
    content_weight: float = typer.Option(1.0, help="Weight of the content loss (at --content-layer)."),
    style_weight: float | None = typer.Option(None, help="Default 100 (0.05 with --no-normalise)."),
    tv_weight: float | None = typer.Option(None, help="Default 10 (1e6 with --no-normalise)."),
    normalise: bool = typer.Option(
        True,
        "--normalise/--no-normalise",
        help="Gatys's normalised VGG: each channel divided by its mean activation over photos. "
        "--no-normalise: raw Caffe features (relu4_1 then makes most of the style loss).",
    ),
    gram: str = typer.Option("plain", help="plain, centered or both."),
    style_layers: str = typer.Option(
        "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1", help="ReLU layers whose Gram matrices are matched."
    ),
    content_layer: str = typer.Option("relu4_2", help="ReLU layer whose features are matched."),
    lr: float | None = LrOpt,
    size: int = typer.Option(512, help="Longer side in pixels (0 keeps it)."),
    seed: int = typer.Option(0, help="Seed of --init noise."),
    save_every: int = SaveEveryOpt,
    history: Path | None = HistoryOpt,
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """The Gatys et al. (2016) baseline: optimise the pixels (slow; for comparison)."""
    must_exist(content, style)
    for p in (content, style):
        if p is not None and p.suffix.lower() == ".safetensors":
            raise InputError(
                f"{p} is a style preset: gatys matches an image's Gram matrices, so give the image"
            )
    check_options(device)
    if no_content:
        if style is not None:
            raise InputError("with --no-content give only STYLE")
        content, style = None, content
    if style is None:
        raise InputError("give CONTENT and STYLE, or --no-content STYLE")
    wh = texture_arg(texture_size)
    if wh is not None and content is not None:
        raise InputError("--texture-size is for --no-content: the output has the content's size")
    inputs = tuple(p for p in (content, style) if p is not None)
    size_ = size_arg(size, "--size")
    layers = tuple(v.strip() for v in style_layers.split(",") if v.strip())
    weights = (content_weight, style_weight, tv_weight)
    o = Options(
        steps, optimizer, init, *weights, gram, seed, lr, save_every, normalise, layers, content_layer.strip()
    ).checked(content is not None)  # before a taken output and torch: a bad option is the first error
    deepest = max((*o.style_layers, o.content_layer) if content else o.style_layers, key=VGG19_NAMES.index)
    for name, value in (("--size", size_), ("--texture-size", min(wh) if wh else None)):
        if value is not None and value < min_side(deepest):
            raise InputError(
                f"{name} must be at least {min_side(deepest)} px ({deepest} needs it), got {value}"
            )
    optimise_outputs(output, history, steps, save_every, overwrite, inputs)
    from dataclasses import asdict

    from .encoder import load_encoder
    from .gatys import gatys
    from .images import load_image

    if content is None and content_weight != 1.0:
        warnings.warn("--content-weight has no effect with --no-content", stacklevel=1)
    if content is None and o.content_layer != CONTENT_LAYER:
        warnings.warn("--content-layer has no effect with --no-content", stacklevel=1)
    if o.init != "noise" and seed != 0:
        warnings.warn(f"--seed only seeds --init noise; --init {o.init} ignores it", stacklevel=1)
    x_content = load_image(content, size_) if content is not None else None
    x_style = load_image(style, size_)
    check_sides(x_content, content, (*o.style_layers, o.content_layer))
    check_sides(x_style, style, o.style_layers)
    encoder = load_encoder(device, vgg_weights)
    settings = {
        "method": "gatys",
        "content": None if content is None else content.name,
        "style": style.name,
        "size": size_,
        "texture_size": texture_size,
        **asdict(o),
    }

    def optimise(callback):
        return gatys(encoder, x_content, x_style, **asdict(o), callback=callback, size=wh)

    result = run_optimisation(
        optimise, output, history, steps, save_every, overwrite, inputs, settings, content
    )
    wrote(output, result.best, steps)


@app.command()
def invert(
    image: Path = typer.Argument(
        ..., parser=in_arg("IMAGE"), metavar="image", help="Image whose features are inverted."
    ),
    output: Path = out_option(..., "Output image."),
    layer: str = typer.Option("relu3_1", help="VGG19 layer, e.g. relu1_1, relu3_1, relu4_2, relu5_1."),
    steps: int = typer.Option(300, help="Optimiser steps."),
    optimizer: str = typer.Option("lbfgs", help="lbfgs or adam."),
    tv_weight: float = typer.Option(1e4, help="Weight of the total-variation (smoothness) loss."),
    lr: float | None = LrOpt,
    size: int = typer.Option(256, help="Longer side in pixels (0 keeps it)."),
    seed: int = typer.Option(0, help="Seed of the noise it starts from."),
    save_every: int = SaveEveryOpt,
    history: Path | None = HistoryOpt,
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Reconstruct IMAGE from one layer's features alone, from noise: what does the layer keep?"""
    must_exist(image)
    check_options(device)
    check_layer(layer)  # before a taken output and torch: a bad option is the first error
    o = Options(steps, optimizer, tv_weight=tv_weight, seed=seed, lr=lr, save_every=save_every).checked()
    size_ = size_arg(size, "--size")
    optimise_outputs(output, history, steps, save_every, overwrite, (image,))
    from .encoder import load_encoder
    from .gatys import invert as invert_fn
    from .images import load_image

    x = load_image(image, size_)
    check_sides(x, image, (layer,))
    encoder = load_encoder(device, vgg_weights)
    settings = {
        "method": "invert",
        "image": image.name,
        "layer": layer,
        "size": size_,
        "steps": steps,
        "optimizer": o.optimizer,
        "tv_weight": tv_weight,
        "lr": o.lr,
        "seed": seed,
    }

    def optimise(callback):
        return invert_fn(
            encoder,
            x,
            layer,
            steps,
            seed,
            optimizer=optimizer,
            tv_weight=tv_weight,
            lr=lr,
            save_every=save_every,
            callback=callback,
        )

    terms = {"feature": "content", "tv": "tv", "total": "total"}  # invert has no style term
    result = run_optimisation(
        optimise, output, history, steps, save_every, overwrite, (image,), settings, image, terms
    )
    wrote(output, result.best, steps, f"; feature loss {result.best['content']:.4g}")


def parse_pairs(texts: Sequence[str]) -> list[tuple[Path, Path]]:
    """--pair 'content,style' texts as existing file pairs."""
    out = []
    for t in texts:
        names = [v.strip() for v in t.split(",")]
        if len(names) != 2 or not all(names):  # not '' as the current folder
            raise InputError(f"--pair takes CONTENT,STYLE, got {t!r}")
        parts = [Path(v) for v in names]
        for p in parts:
            if not p.is_file():
                raise InputError(f"{p} does not exist")
        if (parts[0], parts[1]) in out:  # it would run, and count, twice
            raise InputError(f"--pair {t!r} is given twice")
        out.append((parts[0], parts[1]))
    return out


QUICK_STEPS = 5  # the most Gatys steps of `wct bench --quick`


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option `name` (the parameter's name), not its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


@app.command()
def bench(
    ctx: typer.Context,
    contents: Path = typer.Option(
        SHARED_DATA / "content",
        parser=in_arg("--contents"),
        metavar="<path>",
        help="Folder of content photos.",
    ),
    styles: Path = typer.Option(
        SHARED_DATA / "styles", parser=in_arg("--styles"), metavar="<path>", help="Folder of style images."
    ),
    pairs: int = typer.Option(4, help="Number of content x style pairs."),
    pair: list[str] = typer.Option(
        [], "--pair", help="CONTENT,STYLE files (repeatable); in place of --contents, --styles and --pairs."
    ),
    sizes: str = typer.Option("256,512", help="Longer sides to measure."),
    steps: int = typer.Option(500, help="Gatys L-BFGS steps."),
    repeats: int = typer.Option(3, help="WCT runs per pair (median)."),
    out: Path = out_option(Path("bench"), "Directory for JSON, table and sheet.", "-o", "--out", folder=True),
    quick: bool = typer.Option(
        False,
        help="Check the machinery: one generated pair at 64 px, one WCT run, at most 5 Gatys steps "
        "(--contents, --styles, --pairs, --pair, --sizes and --repeats are refused).",
    ),
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace an earlier report in --out."),
) -> None:
    """WCT against Gatys in one run: time, peak memory, style and content loss, time to match."""
    import tempfile

    files = [out / n for n in ("bench.json", "bench.md", "sheet.png")]
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file: -o/--out names the folder for the report")
    if not overwrite and any(f.exists() for f in files):  # before torch loads, as are the inputs
        raise OutputError(f"{out} already holds a report: pass --overwrite to replace it")
    if repeats < 1:
        raise InputError(f"--repeats must be at least 1, got {repeats}")
    if quick:  # its pair is made below
        ignored = ("contents", "styles", "pairs", "pair", "sizes", "repeats")
        refused = [f"--{n}" for n in ignored if given(ctx, n)]
        refused += [f"--steps {steps}"] if given(ctx, "steps") and steps > QUICK_STEPS else []
        if refused:
            raise InputError(
                f"--quick runs one generated pair at 64 px, one WCT run and at most {QUICK_STEPS} Gatys "
                f"steps: drop {', '.join(refused)}"
            )
        todo, size_list, steps, repeats = [], [64], min(steps, QUICK_STEPS), 1
    else:
        want = "numbers of pixels of at least 16, comma-separated"  # relu5_1 needs 16 px a side
        size_list = numbers(sizes, "--sizes", want, least=16)
        if len(set(size_list)) != len(size_list):  # a repeated size would run, and count, every pair twice
            raise InputError(f"--sizes must be distinct {want}, got {sizes!r}")
        replaced = [f"--{n}" for n in ("contents", "styles", "pairs") if pair and given(ctx, n)]
        if replaced:
            raise InputError(f"--pair replaces {', '.join(replaced)}: give one or the other")
        if not pair:
            must_exist_as(("--contents", contents), ("--styles", styles))
        todo = parse_pairs(pair)
    from . import bench as b
    from .images import load_image, missing_parents, remove_made
    from .pipeline import Stylizer

    Options(steps=steps).checked()
    stopped: BaseException | None = None
    with tempfile.TemporaryDirectory() as tmp:
        todo = b.quick_pair(Path(tmp)) if quick else todo or b.pick_pairs(contents, styles, pairs)
        o = Options()
        for path in dict.fromkeys(p for both in todo for p in both):  # Gatys needs 16 px a side
            x = load_image(path, min(size_list))
            check_sides(x, path, (*o.style_layers, o.content_layer), "--sizes")
        made = missing_parents(files[0])
        try:  # now, not after the run; after the inputs are checked
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot write the report to {out}: {e.strerror or e}") from None
        records: list[dict] = []
        sheet_rows: dict[int, list] = {}  # by size: the sheet shows the largest one measured
        try:  # Ctrl-C, SIGTERM or a failure: the report of the pairs done, if any
            stylizer = Stylizer(device)
            with progress_bar(True, console) as bar:
                task = bar.add_task("benchmark", total=len(todo) * len(size_list), info="")
                for size in size_list:
                    for c, s in todo:
                        bar.update(task, description=f"{size}px {c.name} + {s.name}")
                        rec, images = b.run_pair(stylizer, c, s, size, steps, repeats)
                        records.append(rec)
                        if rec["gatys"]["diverged"]:
                            console.print(
                                f"{size}px {c.name} + {s.name}: Gatys {rec['gatys']['diverged']}; "
                                "left out of the medians",
                                markup=False,
                            )
                        sheet_rows.setdefault(size, []).append(
                            tuple(None if x is None else x.cpu() for x in images)
                        )
                        bar.advance(task)
        except BaseException as e:
            if not records:  # nothing to report: no folder of ours left behind
                remove_made(made)
                raise
            stopped = e
    rows = b.summarise(records)
    machine = b.machine(stylizer.device)
    report: dict = {"machine": machine, "finished": stopped is None}
    partial = None
    if stopped is not None:
        report["error"] = stop_reason(stopped)
        partial = (
            f"the benchmark stopped ({report['error']}) after {len(records)} of "
            f"{len(todo) * len(size_list)} measurements (pairs x sizes): the table holds those only"
        )
        files = stopped_paths(files)  # earlier reports are kept, as gatys keeps OUT
    text = b.markdown(rows, machine, records, partial)
    report |= {"summary": rows, "pairs": records}
    sheet = b.contact_sheet(sheet_rows[max(sheet_rows)])
    writes = [
        (files[0], lambda tmp: Path(tmp).write_text(json.dumps(report, indent=1))),
        (files[1], lambda tmp: Path(tmp).write_text(text)),
        (files[2], lambda tmp: sheet.save(tmp, format="PNG")),
    ]
    try:
        b.write_set(writes)
    except BaseException as err:
        remove_made(made)  # those of our folders left empty
        if stopped is None or not isinstance(err, WCTError):
            raise
        console.print(f"could not write the report so far: {err}", markup=False)  # never hide why it stopped
        raise stopped from None
    if stopped is not None:
        console.print(f"wrote {', '.join(map(str, files))}: {partial}", markup=False)
        raise stopped
    out_console.print(text, soft_wrap=True)  # table rows on one line each
    console.print(f"wrote {', '.join(map(str, files))}")
