"""The decoder commands of `wct`: eval-decoders, average-decoders, train."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer
from rich.table import Column, Table

from .cli import (
    SHARED_DATA,
    DeviceOpt,
    VggOpt,
    app,
    must_exist_as,
    numbers,
    out_console,
    out_option,
    parse_levels,
)
from .errors import InputError, OutputError
from .paths import check_json_target, check_target


@app.command("eval-decoders")
def eval_decoders(
    data: Path = typer.Option(SHARED_DATA / "val", help="Folder of validation images."),
    max_side: int = typer.Option(384, help="Longer side the images are scaled to."),
    levels: str = typer.Option("1,2,3,4,5", help="Levels to evaluate."),
    decoder_files: list[Path] | None = typer.Option(
        None, "--decoder", help="Score this decoder file instead (repeatable; --levels is then ignored)."
    ),
    limit: int | None = typer.Option(None, help="Only the first N images, by name (e.g. of a training set)."),
    json_out: Path | None = out_option(None, "Also write the numbers here.", "--json"),
    overwrite: bool = typer.Option(False, help="Replace the --json file if it exists."),
    device: str = DeviceOpt,
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Mean reconstruction PSNR and SSIM per level (protocol of shared/README.md)."""
    must_exist_as(("--data", data), *(("--decoder", f) for f in decoder_files or ()))
    decoder_files = decoder_args(decoder_files or [], "--decoder")
    from .decoder import decoder_path, load_decoder
    from .encoder import load_encoder
    from .evaluate import PUBLISHED, TARGETS, load_val_images, reconstruction_scores
    from .images import list_images, write_json

    if not data.is_dir():
        raise InputError(f"--data {data} is not a directory of images")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, not {limit}")
    if max_side < 16:  # every level needs 16 px a side; 0 does not keep the size here
        raise InputError(f"--max-side must be at least 16 px, got {max_side}")
    sources = decoder_files or parse_levels(levels)  # before the images load (seconds)
    if json_out:
        scored = decoder_files or [decoder_path(level) for level in sources]
        check_json_target(json_out, "--json", overwrite, (*scored, *list_images(data)))
    images = load_val_images(data, max_side, limit)
    if not images:
        raise InputError(f"--data {data} holds no readable image")
    encoder = load_encoder(device, vgg_weights)
    level_column = Column("level", overflow="fold")  # a --decoder path wraps whole rather than cut short
    table = Table(level_column, "PSNR (dB)", "SSIM", "target (dB)", "published WCT (dB)")
    results = {}
    for source in sources:
        file = source if isinstance(source, Path) else None
        decoder = load_decoder(None if file else source, encoder.mean.device, encoder.weights_id, path=file)
        level = decoder.level
        name = f"relu{level}_1" + (f" ({file})" if file else "")  # the path: runs share file names
        r = reconstruction_scores(encoder, decoder, images)
        results[name] = r
        pub = PUBLISHED[level]
        table.add_row(
            name,
            f"{r['psnr']:.2f}",
            f"{r['ssim']:.4f}",
            f">= {TARGETS[level]}",
            "n/a" if pub is None else f"{pub}",
        )
    out_console.print(f"{len(images)} images from {data}, longer side {max_side}", soft_wrap=True)
    out_console.print(table)
    if json_out:
        write_json({"data": str(data), "max_side": max_side, "levels": results}, json_out)


def decoder_args(files: list[Path], option: str | None = None) -> list[Path]:
    """`files`, or an InputError naming a directory among them or, with `option` (such as
    --decoder, or "decoder file" for arguments), a file given twice."""
    for i, f in enumerate(files):
        if f.is_dir():
            raise InputError(
                f"{option or 'decoder file'} {f} is a directory: give a decoder file (.safetensors)"
            )
        if option and any(f.resolve() == g.resolve() for g in files[:i]):
            raise InputError(f"{option} {f} is given twice")
    return files


@app.command("average-decoders")
def average_decoders_command(
    files: list[Path] = typer.Argument(..., help="Decoder files of one level, fine-tuned from one another."),
    out: Path = out_option(..., "The averaged decoder file (.safetensors).", "-o", "--out"),
    weights: str | None = typer.Option(None, help="Comma-separated weights, one per file (default: equal)."),
    val: Path | None = typer.Option(None, help="Score the result on these images and record it."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
    device: str = DeviceOpt,
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Average the weights of decoder runs (a model soup): often better than each run alone."""
    must_exist_as(*(("decoder file", f) for f in files), ("--val", val))
    if out.suffix != ".safetensors":
        raise OutputError(f"--out {out} must end in .safetensors")
    check_target(out, overwrite, tuple(files))  # before torch loads
    decoder_args(files, "decoder file")  # a file given twice would weigh double (--weights does that)
    w = numbers(weights, "--weights", "comma-separated numbers", float) if weights else None
    if w and (len(w) != len(files) or not all(math.isfinite(v) and v >= 0 for v in w) or not any(w)):
        raise InputError(f"--weights needs one finite weight >= 0 per file, not all 0: got {weights!r}")
    from .decoder import average_decoders, load_decoder, save_decoder, soup_metadata
    from .encoder import load_encoder
    from .evaluate import load_val_images, reconstruction_scores

    images = None
    if val:
        if not val.is_dir():
            raise InputError(f"--val {val} is not a directory of images")
        images = load_val_images(val)
        if not images:
            raise InputError(f"--val {val} holds no readable image")
    encoder = load_encoder(device, vgg_weights)
    decoders = [load_decoder(None, encoder.mean.device, encoder.weights_id, f) for f in files]
    w = w or [1.0] * len(files)
    mean = average_decoders(decoders, w)
    meta = soup_metadata(files, decoders, w)
    line = f"averaged {len(files)} relu{mean.level}_1 decoders"
    if images:
        s = reconstruction_scores(encoder, mean, images)
        meta.update(val_psnr=f"{s['psnr']:.3f}", val_ssim=f"{s['ssim']:.4f}", val_images=str(s["images"]))
        meta["val_data"] = str(val.resolve())  # as runs record it: where, from any folder
        line += f": val PSNR {s['psnr']:.2f} dB, SSIM {s['ssim']:.4f} on {s['images']} images"
    save_decoder(mean, out, meta)
    out_console.print(f"{line} -> {out}", soft_wrap=True)  # the file name on one line


def train_command(
    level: int = typer.Option(..., help="Which decoder: 1..5 (relu{level}_1)."),
    data: Path = typer.Option(..., help="Folder of training images (searched recursively)."),
    val: Path | None = typer.Option(None, help="Folder of validation images."),
    crop: int = typer.Option(256, help="Random crop size."),
    scale: float = typer.Option(
        1.0, help="Shrink each photo by a random factor in [SCALE, 1] before cropping (augmentation)."
    ),
    rotate: bool = typer.Option(
        False,
        help="Also turn each crop by a random multiple of 90 degrees (with the flips: all 8 orientations).",
    ),
    batch: int = typer.Option(8, help="Batch size per process."),
    steps: int = typer.Option(10000, help="Total optimiser steps."),
    minutes: float | None = typer.Option(
        None, help="Wall-time budget: the schedule follows time; --steps becomes a cap."
    ),
    lr: float = typer.Option(1e-3, help="Peak learning rate (warm-up, then cosine decay)."),
    warmup: int = typer.Option(100, help="Steps of linear warm-up to --lr (fine-tuning needs fewer)."),
    feature_weight: float = typer.Option(0.01, help="Weight of the relu{level}_1 feature loss."),
    feature_from: float = typer.Option(0.8, help="Fraction of steps after which the feature loss is on."),
    loss: str = typer.Option(
        "mse", help="mse (mean squared error over the batch) or psnr (minus the mean per-image PSNR)."
    ),
    out: Path = out_option(Path("runs"), "Checkpoint directory.", "--out", folder=True),
    export: Path | None = out_option(
        None,
        "Copy the best decoder on --val here (e.g. decoders/) if it beats the one there.",
        "--export",
        folder=True,
    ),
    resume: bool = typer.Option(False, help="Continue from the last checkpoint in --out."),
    init_from: Path | None = typer.Option(
        None, help="Start from a decoder of this level (fine-tuning) or the level below (its tail)."
    ),
    device: str = DeviceOpt,
    amp: bool | None = typer.Option(
        None,
        "--amp/--no-amp",
        help="bf16 autocast (default: on for CUDA and for CPUs with AVX-512 BF16 or AMX).",
    ),
    seed: int = typer.Option(0, help="Seeds the weights' start, the crops and their order."),
    workers: int = typer.Option(2, help="Data-loading worker processes."),
    val_every: int = typer.Option(500, help="Validate (and keep the best decoder) every N steps."),
    val_images: int | None = typer.Option(None, help="Validate on the first N images (all at the end)."),
    ckpt_every: int = typer.Option(100, help="Write the checkpoint every N steps."),
    log_every: int = typer.Option(25, help="Print the loss and record it for the curves every N steps."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Train the decoder that inverts relu{LEVEL}_1 (resumable; runs under torchrun too)."""
    options = dict(locals())  # the parameters alone, named as Config's fields
    must_exist_as(("--data", data), ("--val", val), ("--init-from", init_from))  # before torch loads
    from .train import Config, train

    cfg = Config(**{k: str(v) if isinstance(v, Path) else v for k, v in options.items()})
    summary = train(cfg)
    if summary["rank"] != 0:  # under torchrun, process 0 reports the run
        return
    if "decoder" in summary:
        psnr = summary["best_psnr"] if val else None  # without --val: the last step's, unscored
        score = f"val PSNR {psnr:.2f} dB" if psnr is not None else "not scored: no --val"
        kept = summary["best_step"] if psnr is not None else summary["step"]  # the step the decoder is of
        out_console.print(f"step {kept}: {summary['decoder']} ({score})", soft_wrap=True)
    out_console.print(json.dumps(summary), soft_wrap=True, markup=False, highlight=False)


app.command("train")(train_command)
