"""Video: stylise every frame of a video file (imageio + imageio-ffmpeg) or a folder of frames.

`temporal` reduces flicker in two ways:
- each level's content statistics (mean and covariance of the frame's features) are an
  exponential moving average over the frames (`Smoother`), so the whitening-colouring map drifts
  rather than jumps. Its colouring basis is stable by construction: WCT uses the symmetric (ZCA)
  square roots E D^±1/2 Eᵀ, which do not depend on the sign or order of the eigenvectors;
- the output is filtered over time where the input did not change (`TemporalFilter`): each
  pixel moves towards the previous output pixel by `strength` x exp(-|input change| / sigma), so
  static areas stop "boiling" and moving ones follow the new frame (no ghost trails).
Both restart at a scene cut (`scene_cut`), so nothing of one shot carries into the next.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import warnings
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .checks import as_number
from .errors import ImageError, InputError, OutputError
from .images import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    ImageLike,
    atomic_save,
    check_size,
    load_image,
    missing_parents,
    publish,
    remove_made,
    scaled_size,
    temp_beside,
    tensor_to_pil,
)
from .paths import check_target, write_error
from .pipeline import Style, Stylizer, check_levels
from .signals import signals_held
from .tiling import AUTO_TILE, needs_tiling, stylize_tiled
from .transform import FeatureStats

# WebM allows only VP8/VP9/AV1 (constant quality: VP9 ignores imageio's qscale); others get H.264.
# AVI stores no presentation times: B-frames would start its video two frames late (after the audio).
CODECS = {
    ".webm": {"codec": "libvpx-vp9", "quality": None, "output_params": ["-crf", "32", "-b:v", "0"]},
    ".avi": {"quality": 8, "output_params": ["-bf", "0"]},
}
# The audio encoder for a container that cannot take the source's audio stream as it is.
AUDIO_ENCODERS = {".webm": "libopus", ".avi": "libmp3lame"}  # the others: aac
DEFAULT_FPS = 24.0
MOMENTUM = 0.3  # weight of the past in the content statistics' moving average
STRENGTH = 0.6  # most an output pixel keeps of the previous one where the input is unchanged
# Mean change of 16 x 16 thumbnails above which a frame starts a new shot: of 922 pairs of our
# test photos, 99.8 % are above it; a pan of 2 % of the width per frame stays below 0.06.
CUT = 0.1


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def ema_stats(previous: FeatureStats | None, current: FeatureStats, momentum: float) -> FeatureStats:
    """momentum * previous + (1 - momentum) * current, for the mean and the covariance.

    Returned as FeatureStats about the averaged mean (count from `current`, at least 2 so the
    covariance keeps its scale)."""
    if previous is None or momentum == 0:
        return current
    mean = momentum * previous.mean + (1 - momentum) * current.mean
    cov = momentum * previous.cov + (1 - momentum) * current.cov
    n = max(current.count, 2)
    return FeatureStats(n, torch.zeros_like(mean), cov * (n - 1), mean)


@dataclass
class Smoother:
    """A `wct.tiling` statistics hook averaging each level's content statistics over frames."""

    momentum: float = MOMENTUM
    state: dict[int, FeatureStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 <= self.momentum < 1:
            raise InputError(f"the temporal momentum must be in [0, 1), got {self.momentum}")

    def __call__(self, level: int, stats: list[FeatureStats]) -> list[FeatureStats]:
        if stats[0].count < 4 * stats[0].total.shape[0]:
            # Too few samples for a full-rank covariance: averaging singular covariances whose
            # null spaces differ inflates the whitening along directions the frame barely has.
            return stats
        self.state[level] = ema_stats(self.state.get(level), stats[0], self.momentum)
        return [self.state[level], *stats[1:]]


@dataclass
class TemporalFilter:
    """Motion-gated exponential smoothing of output frames (see the module docstring)."""

    strength: float = STRENGTH
    sigma: float = 0.03
    previous: tuple[Tensor, Tensor] | None = None  # (input, output) of the previous frame

    def __post_init__(self) -> None:
        if not 0 <= self.strength < 1:
            raise InputError(f"the temporal strength must be in [0, 1), got {self.strength}")
        if not self.sigma > 0:
            raise InputError(f"the temporal sigma must be > 0, got {self.sigma}")

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        """Filter output `y` of input frame `x` (both (1, 3, H, W) or (3, H, W)); frames of a new
        size restart."""
        out = y
        if self.previous is not None and self.previous[0].shape == x.shape:
            px, py = self.previous
            change = (x - px).abs().mean(-3, keepdim=True)  # over the colour channels
            change = torch.nn.functional.avg_pool2d(change, 5, 1, 2, count_include_pad=False)
            keep = self.strength * torch.exp(-change / self.sigma)
            out = y + keep * (py - y)
        self.previous = (x, out)
        return out


def scene_cut(previous: Tensor, x: Tensor, threshold: float = CUT) -> bool:
    """Whether frame `x` starts a new shot after `previous`: another size, or 16 x 16 thumbnails
    that differ by more than `threshold` on average (cheap, and blind to noise and small motion)."""
    if previous.shape != x.shape:
        return True
    pool = torch.nn.functional.adaptive_avg_pool2d
    return (pool(x, 16) - pool(previous, 16)).abs().mean().item() > threshold


def _ffmpeg(*args: str | Path) -> subprocess.CompletedProcess:
    """Run imageio-ffmpeg's bundled ffmpeg binary; paths go through its file: protocol, so a name
    with a colon is not read as a protocol."""
    import imageio_ffmpeg

    argv = [f"file:{Path(a).resolve()}" if isinstance(a, Path) else a for a in args]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace")


def has_audio(path: str | Path) -> bool:
    """Whether ffmpeg finds an audio stream in the file `path`."""
    path = Path(path)
    return path.is_file() and "Audio" in stream_kinds(path)


def stream_kinds(path: Path) -> set[str]:
    """The kinds of stream ffmpeg finds in the file `path` ({"Video", "Audio"}, say; none if it
    cannot read it)."""
    return set(re.findall(r"Stream #\d+:\d+.*?: (\w+): ", _ffmpeg("-i", path).stderr))


def add_audio(video: Path, source: Path, out: Path, seconds: float) -> None:
    """Write the frames of `video` (copied, not re-encoded) with the audio of `source` into `out`,
    the audio cut to `seconds` (the video's length: a shorter audio must not cut the frames). The
    audio is copied as it is when `out`'s container takes it, else re-encoded (Opus for WebM, MP3
    for AVI, AAC otherwise); into an AVI, only an AVI's audio is copied. OutputError if ffmpeg fails."""
    cut = ("-t", f"{seconds:.6f}")
    args = ("-y", "-i", video, *cut, "-i", source, "-map", "0:v:0", "-map", "1:a?", "-c:v", "copy")
    avi = out.suffix.lower() == ".avi"
    if avi:  # AAC's priming starts before 0: shifted, the frames lost a slot
        args += ("-avoid_negative_ts", "disabled")
    # AVI stores no start times: a track copied from another container would play from 0, out of
    # step where it starts late or is trimmed by an edit list; decoded, it is padded to start at 0.
    copy = ("copy",) if not avi or source.suffix.lower() == ".avi" else ()
    for codec in (*copy, AUDIO_ENCODERS.get(out.suffix.lower(), "aac")):
        pad = ("-af", "aresample=async=1:first_pts=0") if avi and codec != "copy" else ()
        r = _ffmpeg("-v", "error", *args, "-c:a", codec, *pad, out)
        if r.returncode == 0:
            return
    lines = r.stderr.strip().splitlines()
    raise OutputError(f"ffmpeg could not add the audio ({lines[-1] if lines else f'exit {r.returncode}'})")


def natural_key(path: Path) -> list:
    """Sort key putting frame_2.png before frame_10.png: digit runs compare as numbers ("²", a
    digit to str.isdigit, stays text)."""
    return [int(part) if part.isdecimal() else part for part in re.split(r"(\d+)", path.name)]


def frame_files(folder: Path) -> list[Path]:
    """The images directly in `folder` (not in subfolders, where earlier outputs may sit), in
    natural order (names equal to it, 1.png and 01.png, by name); hidden files (macOS's ._frame.png
    copies) are skipped, as by `list_images`."""
    found = (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    return sorted((p for p in found if p.is_file()), key=lambda p: (natural_key(p), p.name))


def check_frame_sizes(folder: Path, size: int | None) -> None:
    """InputError, before any work, if the images of a frames folder would give frames of different
    sizes (after EXIF orientation and `size`): a video's frames share one size. Headers only."""
    from PIL import Image

    first: tuple[Path, tuple[int, int]] | None = None
    for f in frame_files(folder):
        try:
            with Image.open(f) as im:
                w, h = im.size
                if im.getexif().get(0x0112) in (5, 6, 7, 8):  # rotated a quarter turn
                    w, h = h, w
        except Exception:  # unreadable: reported by name when its turn comes
            continue
        got = scaled_size(w, h, size)
        if first is None:
            first = (f, got)
        elif got != first[1]:
            raise InputError(
                f"{f.name} gives {got[0]}x{got[1]} frames but {first[0].name} {first[1][0]}x{first[1][1]}: "
                "a video's frames share one size (write a folder of PNGs instead)"
            )


def expected_frames(nframes: object, duration: object, fps: float) -> int | None:
    """The number of frames a video's metadata promises, or None when it does not say."""

    def known(v: object) -> bool:
        return isinstance(v, (int, float)) and bool(np.isfinite(v)) and v > 0

    if known(nframes):
        return int(nframes)
    return round(duration * fps) if known(duration) else None


def avi_frames(path: Path) -> int | None:
    """The number of frames the header of an AVI file cut short (shorter than its RIFF chunk says)
    promises (OpenDML's total, for a file of several RIFF parts), or None for another file, a whole
    one or none said. ffmpeg estimates a cut AVI's duration from its size: only the frames left."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            if head[:4] != b"RIFF" or head[8:16] != b"AVI LIST" or head[20:24] != b"hdrl":
                return None
            if int.from_bytes(head[4:8], "little") + 8 <= path.stat().st_size:  # whole
                return None
            n = int.from_bytes(head[16:20], "little") - 4  # the LIST's size, less its "hdrl"
            if n <= 0:  # a header cut or garbled: nothing said
                return None
            hdrl = f.read(min(n, 1 << 20))
    except OSError:
        return None
    found: dict[bytes, int] = {}

    def walk(data: bytes) -> None:
        i = 0
        while i + 8 <= len(data):
            kind, n = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
            body = data[i + 8 : i + 8 + n]
            if kind == b"LIST":
                walk(body[4:])
            elif kind == b"avih" and len(body) >= 20:  # dwTotalFrames, after four other fields
                found[kind] = int.from_bytes(body[16:20], "little")
            elif kind == b"dmlh" and len(body) >= 4:
                found[kind] = int.from_bytes(body[:4], "little")
            i += 8 + n + n % 2

    walk(hdrl)
    return found.get(b"dmlh") or found.get(b"avih") or None


def thousands_fps(path: Path) -> float | None:
    """The frame rate of a video that ffmpeg prints in thousands ("1k fps", high-speed footage),
    which imageio reads as none."""
    video = re.search(r"Stream #\d+:\d+.*?: Video: .*", _ffmpeg("-i", path).stderr)
    rate = re.search(r" (\d+)k fps", video[0]) if video else None
    return 1000.0 * int(rate[1]) if rate else None


def stream_rate(path: Path, printed: float) -> float | None:
    """The exact frame rate of the video `path` (1/60), from the fraction ffmpeg's filters get
    (its showinfo's "frame_rate: 1/60"), if it is the rate ffmpeg `printed` with two decimals
    (0.02; four below 0.005): not a variable-rate clip's nominal rate, its mean being printed."""
    first = ("-map", "0:v:0", "-vf", "showinfo", "-frames:v", "1", "-f", "null", "-")
    info = _ffmpeg("-v", "verbose", "-i", path, *first).stderr
    rate = re.search(r"config in time_base: \S+, frame_rate: (\d+)/(\d+)", info)
    if rate is None or not int(rate[1]) or not int(rate[2]):
        return None
    exact = int(rate[1]) / int(rate[2])
    return exact if math.isclose(round(exact, 2 if round(exact * 100) else 4), printed) else None


def video_lead(path: Path) -> float:
    """Seconds the video stream of `path` starts after the file (after its audio), which the read
    fills with its first frame; 0 if ffmpeg does not say."""
    info = _ffmpeg("-i", path).stderr
    start = re.search(r"Duration: .*?, start: (-?[\d.]+)", info)
    video = re.search(r"Stream #\d+:\d+.*?: Video: .*", info)
    late = re.search(r", start (-?[\d.]+)", video[0]) if video else None
    return max(0.0, float(late[1]) - float(start[1])) if start and late else 0.0


def exact_rate(fps: float) -> float:
    """A frame rate as ffmpeg prints it (two decimals) made exact: 23.98 -> 24000/1001, the NTSC
    rates. Reading or writing at the rounded rate repeats a frame every few thousand."""
    ntsc = round(fps * 1.001)
    if abs(fps - ntsc / 1.001) < 0.006 < abs(fps - ntsc):
        return ntsc * 1000 / 1001
    return fps


def counted_frames(path: Path) -> tuple[int | None, float | None]:
    """The number of frames in a video's stream, and the seconds to the last packet of its video
    or audio: what the file holds, whatever its header promises (streams copied, not decoded: fast).
    (None, None) if ffmpeg cannot read them."""
    copy = ("-map", "0:v:0", "-map", "0:a?", "-c", "copy", "-f", "null", "-progress", "pipe:1", "-")
    out = _ffmpeg("-v", "error", "-nostats", "-i", path, *copy).stdout
    frames = re.findall(r"^frame=(\d+)$", out, re.M)
    micros = re.findall(r"^out_time_us=(\d+)$", out, re.M)
    if not frames:
        return None, None
    return int(frames[-1]), int(micros[-1]) / 1e6 if micros else None


def size_change(path: Path) -> tuple[int, str, str] | None:
    """The first frame of the video `path` of another size than its first, as (its number from 1,
    its size, the first's, both "WxH"), or None. Decodes the video (once, far faster than
    stylising it) and stops at that frame."""
    import imageio_ffmpeg

    source = ("-hide_banner", "-nostdin", "-nostats", "-i", f"file:{path.resolve()}", "-map", "0:v:0")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), *source, "-vf", "showinfo=checksum=0", "-f", "null", "-"]
    first, n = None, 0
    with subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace"
    ) as p:
        try:
            for line in p.stderr:  # a line per frame from showinfo: "n: 12 pts: ... s:64x48 ..."
                size = re.search(r"\bn: *\d+ .* s:(\d+x\d+) ", line)
                if size is not None:
                    n, first = n + 1, first or size[1]
                    if size[1] != first:
                        return n, size[1], first
        finally:
            p.kill()  # stopped early (or interrupted): ffmpeg need not decode the rest
    return None


def rotated_size(record: logging.LogRecord) -> bool:
    """False for imageio-ffmpeg's notice that a rotated (phone) clip's frames come upright, with
    height and width swapped: ffmpeg rotates them, as it should."""
    return not record.getMessage().startswith("The frame size for reading ")


@contextlib.contextmanager
def rotation_quiet() -> Iterator[None]:
    """imageio-ffmpeg's logger, without its notice about a rotated clip (`rotated_size`)."""
    logger = logging.getLogger("imageio_ffmpeg")
    logger.addFilter(rotated_size)
    try:
        yield
    finally:
        logger.removeFilter(rotated_size)


def animated(path: Path) -> bool:
    """Whether the image file `path` has several frames (an animated GIF, WebP or PNG): a clip that
    `wct stylize` would cut to its first frame."""
    from PIL import Image

    try:
        with Image.open(path) as im:  # not a phone's MPO JPEG or a multi-page TIFF: those are images
            return im.format in ("GIF", "PNG", "WEBP") and getattr(im, "is_animated", False)
    except Exception:  # not an image Pillow reads
        return False


def animation_frames(path: Path, size: int | None) -> tuple[Iterator[Tensor], float, int]:
    """The frames of an animated GIF, PNG or WebP (read by Pillow, which ffmpeg cannot do for all
    three), at their mean rate: their own durations may vary, and a video has one rate. An APNG's
    default image that is not part of its animation (a still for viewers without APNG) is skipped;
    a GIF's delays under 20 ms count as 100 ms, as browsers and ffmpeg play them."""
    from PIL import Image, ImageSequence

    def animation(im: Image.Image) -> Iterator[Image.Image]:
        skip = im.format == "PNG" and bool(im.info.get("default_image"))
        return itertools.islice(ImageSequence.Iterator(im), int(skip), None)

    try:
        ms = []
        with Image.open(path) as im:
            for frame in animation(im):
                frame.load()  # WebP gives a frame's duration once it is decoded
                ms.append(frame.info.get("duration") or 0)
            if im.format == "GIF":
                ms = [100 if d < 20 else d for d in ms]
    except Exception as e:  # a frame Pillow cannot decode: one line, as for a video
        raise ImageError(f"{path} is an animation Pillow cannot read: {e}") from None
    mean = sum(ms) / len(ms)
    fps = 1000 / mean if mean > 0 else DEFAULT_FPS

    def frames() -> Iterator[Tensor]:
        with Image.open(path) as im:
            for frame in animation(im):
                yield load_image(frame.copy(), size)  # RGBA or palette frames made RGB, as files are

    return frames(), fps, len(ms)


def read_frames(path: str | Path, size: int | None = None) -> tuple[Iterator[Tensor], float, int | None]:
    """Frames of a video file, an animated GIF, PNG or WebP, or a folder of images as (1, 3, H, W)
    tensors in [0, 1], longer side scaled to `size`; also the frame rate and, when known, the
    number of frames (for a video, the container's count (an AVI's header's) or, as most MP4s give
    none, its duration times the frame rate, or with an audio track, which may outlast the frames,
    the frames counted, unless the file's streams end well before its duration). A video that ends
    well before that count (truncated, say) warns once its frames run out; one whose frames change
    size is an ImageError (ffmpeg would stretch them)."""
    path = Path(path)
    if size is not None:
        check_size(size)  # now, not at the first frame
    if path.is_dir():
        files = frame_files(path)
        if not files:
            raise InputError(
                f"no images found directly in {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        return (load_image(f, size) for f in files), DEFAULT_FPS, len(files)
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise ImageError(f"{path} is empty (0 bytes)")
    if path.suffix.lower() in IMAGE_SUFFIXES and animated(path):
        return animation_frames(path, size)
    import imageio.v2 as imageio

    try:
        with rotation_quiet():
            reader = imageio.get_reader(path, format="FFMPEG")
        try:  # not `with`: imageio's readers close there only when no error is raised
            meta = reader.get_meta_data()
        finally:
            reader.close()
        printed = float(meta.get("fps") or 0)
        fps = exact_rate(printed or thousands_fps(path) or DEFAULT_FPS)
        if printed % 1 and fps == printed:  # two decimals (not NTSC's, made exact): 1/60 fps is 0.02
            fps = stream_rate(path, printed) or fps
    except Exception as e:  # imageio raises many kinds for a file ffmpeg cannot read
        kinds = sorted(stream_kinds(path))
        if kinds and "Video" not in kinds:  # an audio file, say
            raise ImageError(f"{path} has no video stream ({', '.join(kinds).lower()} only)") from None
        probe = _ffmpeg("-i", path).stderr if not kinds else ""
        if "moov atom not found" in probe and "misdetection possible" not in probe:  # not a web page
            raise ImageError(
                f"{path} is incomplete or truncated: its MP4 index (moov atom) is missing, as in a file "
                "whose copy, download or recording stopped early"
            ) from None
        if path.suffix.lower() in IMAGE_SUFFIXES:  # a still one: animations were read above
            raise ImageError(f"{path} is an image, not a video: stylise it with `wct stylize`") from None
        if not is_video(path):  # imageio's ffmpeg plugin turns some suffixes away (.gif, .m4v)
            raise ImageError(
                f"{path} cannot be read as a video: .avi, .mkv, .mov, .mp4, .webm files, animated GIF, "
                f"PNG or WebP images or a folder of frames can; convert it first (ffmpeg -i {path.name} "
                f"{path.stem}.mp4)"
            ) from None
        if "Video" in kinds and counted_frames(path)[0] == 0:  # a header, cut before any frame
            raise ImageError(f"{path} has no frames: its video stream is empty (cut short?)") from None
        why = re.findall(r"Error opening input files?: (.+)", probe)  # "Invalid data found ..."
        raise ImageError(
            f"{path} is not a video ffmpeg can read ({why[-1].strip() if why else e.__class__.__name__})"
        ) from None
    changed = size_change(path)
    if changed is not None:  # ffmpeg would stretch every frame to the first one's size
        n, got, first = changed
        raise ImageError(
            f"{path} changes frame size at frame {n}, from {first} to {got}: a video's frames share one "
            "size; convert it to one size first (with ffmpeg's scale and pad filters, say)"
        )
    nframes, duration = meta.get("nframes"), meta.get("duration")
    nframes = avi_frames(path) or nframes
    # ffmpeg gives the duration to 0.01 s: at 100 fps or more, half a frame or more.
    slack = 0.005 * fps if fps >= 100 else 0.0
    if expected_frames(nframes, None, fps) is None and (slack or has_audio(path)):
        # The container's duration may be its audio's: count the frames, unless the streams end
        # well before it (a truncated file), where the count would hide the frames lost.
        promised = expected_frames(None, duration, fps)
        counted, seconds = counted_frames(path)
        held = max(seconds * fps, counted) + 1 + slack if seconds is not None else None
        if promised is None or held is None or held >= 0.98 * promised:
            if counted is not None:  # a video starting after its audio is read from the audio's start
                counted += round(video_lead(path) * fps)
            # Copied, a clip trimmed without re-encoding keeps the frames its edit list hides: no
            # more than its duration holds.
            most = None if promised is None else round(duration * fps + slack)
            nframes = counted if most is None or counted is None else min(counted, most)
    count = expected_frames(nframes, duration, fps)

    # Decoded at the mean rate the output is written at: a variable-rate (phone) clip would
    # otherwise come at its nominal rate, with repeated frames, and play slow against its audio.
    # As a fraction: imageio's own `fps` rounds it to two decimals. Pixels that are not square
    # (anamorphic DV, DVD or HDV) are stretched to square ones, as players show them.
    rate = str(Fraction(fps).limit_denominator())
    square = "scale='if(gt(sar,1),round(iw*sar),iw)':'if(lt(sar,1),round(ih/sar),ih)',setsar=1"
    params = ["-r", rate, "-vf", square]

    def frames() -> Iterator[Tensor]:
        """Started here, at the first next(): an iterator never iterated holds no ffmpeg process,
        and closing it (or collecting it) stops ffmpeg."""
        from PIL import Image

        try:
            with rotation_quiet():
                reader = imageio.get_reader(path, format="FFMPEG", output_params=params)
        except Exception as e:
            raise ImageError(f"{path} is not a video ffmpeg can read ({e.__class__.__name__})") from None
        n = 0
        try:
            for a in reader:
                yield load_image(Image.fromarray(np.asarray(a)[..., :3]), size)  # as a folder's frames
                n += 1
        finally:
            reader.close()
        if count and n < 0.98 * count - 1:  # a duration-based count may be a frame off
            warnings.warn(
                f"{path} ended after {n} of about {count} frames: truncated or damaged?", stacklevel=2
            )

    return frames(), fps, count


def discard(tmp: Path, made: list[Path], writer: object = None) -> None:
    """Delete an unpublished temporary video or frames folder, and the folders made for it, after
    stopping its ffmpeg `writer` (an imageio writer, if any)."""
    if writer is not None:
        with contextlib.suppress(Exception):  # ffmpeg failed: its file goes anyway
            writer.close()
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):  # a folder made read-only keeps it
            tmp.unlink(missing_ok=True)
    remove_made(made)


class FrameWriter:
    """Writes frames to a video file or as numbered PNGs into a folder, either way into a temporary
    file or folder beside the output that `close` moves into place: an output is never left half
    written, and the frames of an earlier, longer run never mix with new ones.

    `audio`: a video whose audio track a video output gets (cut to the frames written). `self.audio`
    is None when there is none to add: no such file, no audio stream in it, or a folder output.
    `folder`: `path` is a folder for the frames whatever its suffix (a CLI output ending in a
    slash). As a context manager, it publishes the output when the block ends normally, else discards it;
    dropped unclosed (or left open at exit), it discards it. `option`: what a refusal of an existing
    output says to pass ("--overwrite" from the CLI)."""

    def __init__(
        self,
        path: str | Path,
        fps: float,
        overwrite: bool = False,
        protect: Sequence[Path] = (),
        audio: str | Path | None = None,
        folder: bool = False,
        *,
        option: str = "overwrite=True",
    ):
        path = Path(path)
        fps = as_number(fps, "fps")
        if not 0 < fps < math.inf:
            raise InputError(f"fps must be a positive, finite number, got {fps}")
        self.path, self.fps = path, fps
        self._video = is_video(path) and not folder
        self.audio = Path(audio) if audio is not None and self._video and has_audio(audio) else None
        self.count = 0
        self._closed = False
        self._writer = None
        self._size: tuple[int, int] | None = None
        # The folders made for the output, deepest first: a run that writes nothing removes them.
        self._made = missing_parents(path)
        self._checks = (overwrite, protect, folder, option)  # again at the end: see `_finish`
        try:  # an OSError (a name too long...) as write_atomic reports it
            self._check(overwrite, protect, folder, option)
            path.parent.mkdir(parents=True, exist_ok=True)
            if self._video:
                fd, tmp = temp_beside(path, path.suffix)
                os.close(fd)
            else:
                tmp = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.")
        except OSError as e:
            remove_made(self._made)
            raise write_error(path, e) from None
        self._tmp = Path(tmp)
        self._discard = weakref.finalize(self, discard, self._tmp, self._made)

    def _check(self, overwrite: bool, protect: Sequence[Path], folder: bool, option: str) -> None:
        """An OutputError if writing `self.path` would lose something the user has."""
        path = self.path
        if self._video:
            if path.is_dir():
                raise OutputError(
                    f"{path} is a folder: name a video file, or a folder without a video suffix"
                )
            check_target(path, overwrite, protect, option=option)
        elif any(path.resolve() == Path(p).resolve() for p in protect):  # a folder: its own rules
            raise OutputError(f"refusing to write over the input {path}")
        elif path.suffix and not folder and not path.is_dir():
            raise OutputError(f"{path}: give a video file ({', '.join(sorted(VIDEO_SUFFIXES))}) or a folder")
        elif path.exists():
            if not path.is_dir():
                raise OutputError(f"{path} is a file: give a folder for the frames")
            if self.old_frames() and not overwrite:
                raise OutputError(f"{path} holds frames already: pass {option} to replace them")
            inputs = {Path(p).resolve() for p in protect}
            clash = next((f for f in self.old_frames() if f.resolve() in inputs), None)
            if clash is not None:
                raise OutputError(f"refusing to replace the frames in {path}: {clash.name} is an input")

    def old_frames(self) -> list[Path]:
        """The frames an earlier run wrote here (frame_00000.png...): other files are the user's."""
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.glob("frame_*.png") if re.fullmatch(r"frame_\d{5,}\.png", p.name))

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.close(kind is None)

    def write(self, frame: Tensor) -> None:
        """Append one (3, H, W) or (1, 3, H, W) frame in [0, 1] (clamped)."""
        if (
            not isinstance(frame, Tensor)
            or frame.ndim not in (3, 4)
            or frame.shape[-3] != 3
            or (frame.ndim == 4 and frame.shape[0] != 1)
            or 0 in frame.shape
        ):
            got = tuple(frame.shape) if isinstance(frame, Tensor) else type(frame).__name__
            raise InputError(f"a frame must be a (3, H, W) or (1, 3, H, W) tensor, got {got}")
        if frame.is_complex() or not torch.isfinite(frame).all():
            raise InputError(f"frame {self.count + 1} contains NaN, Inf or complex values")
        if self._closed:
            raise OutputError(f"{self.path} is closed: no more frames can be written")
        if not self._video:
            atomic_save(tensor_to_pil(frame), self._tmp / f"frame_{self.count:05d}.png")
        else:
            import imageio.v2 as imageio

            a = np.asarray(tensor_to_pil(frame))
            h, w = a.shape[:2]
            if self._size is not None and (w, h) != self._size:
                raise InputError(
                    f"frame {self.count + 1} is {w}x{h} but the first is {self._size[0]}x{self._size[1]}: "
                    "a video's frames share one size (write a folder of PNGs instead)"
                )
            if self._writer is None:
                self._size = (w, h)
                self._writer = imageio.get_writer(
                    self._tmp,
                    format="FFMPEG",
                    fps=self.fps,
                    macro_block_size=2,
                    **CODECS.get(self.path.suffix.lower(), {"quality": 8}),
                )
                self._discard.detach()  # dropped unclosed, ffmpeg stops before its file goes
                self._discard = weakref.finalize(self, discard, self._tmp, self._made, self._writer)
            # yuv420p needs even sides: repeat the last row/column rather than let imageio rescale
            self._writer.append_data(np.pad(a, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge"))
        self.count += 1

    def close(self, ok: bool = True) -> None:
        """Move the output into place (ok: an existing one's frames are replaced, other files in
        its folder are kept) or delete the temporary one (not ok). With ok, an OutputError if
        ffmpeg failed, its video does not read back or the output appeared meanwhile (it is kept);
        without, the caller's error stands. Interrupted (Ctrl-C while ffmpeg finishes, say), it
        leaves no temporary file or folder behind. Closing again does nothing."""
        if self._closed:
            return
        self._closed = True
        self._discard.detach()
        try:
            self._finish(ok)
        except BaseException as e:
            discard(self._tmp, self._made)
            if isinstance(e, OSError):  # the folder made read-only, the disk full...
                raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
            raise

    def _finish(self, ok: bool) -> None:
        wanted, error = ok, None
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception as e:  # ffmpeg failed: what it wrote is not a video
                ok, error = False, OutputError(f"ffmpeg could not write {self.path} ({e.__class__.__name__})")
            else:
                error = self._unreadable() if ok else None
                ok = ok and error is None
        if ok and self.count and self.audio is not None:
            self._add_audio()
        if ok and self.count:
            try:  # the output may have appeared while the frames were written (another run's, say)
                self._check(*self._checks)
            except OutputError as e:
                ok, error = False, OutputError(f"{e} (found as the run ended: its frames are discarded)")
        if not (ok and self.count):
            if self._tmp.is_dir():
                shutil.rmtree(self._tmp)
            elif self._tmp.exists():
                self._tmp.unlink()
            remove_made(self._made)
        elif self._video or not self.path.exists():
            if self._video:  # on disk before the rename, as write_atomic's files (and the PNG frames)
                with open(self._tmp, "rb") as f:
                    os.fsync(f.fileno())
            publish(self._tmp, self.path)
        else:
            with signals_held():  # stopped half way, it would leave neither the old frames nor the new
                for old in self.old_frames():
                    old.unlink()
                for new in sorted(self._tmp.iterdir()):
                    os.replace(new, self.path / new.name)
                self._tmp.rmdir()
        if wanted and error is not None:
            raise error

    def _add_audio(self) -> None:
        """Replace the finished temporary video by one with the audio of `self.audio`; if ffmpeg
        cannot, warn and keep the video without it (self.audio becomes None)."""
        fd, name = temp_beside(self.path, self.path.suffix)
        os.close(fd)
        tmp = Path(name)
        try:
            add_audio(self._tmp, self.audio, tmp, self.count / self.fps)
        except BaseException as e:
            tmp.unlink(missing_ok=True)
            if not isinstance(e, OutputError):
                raise
            warnings.warn(f"{self.path} is written without the audio of {self.audio}: {e}", stacklevel=3)
            self.audio = None
        else:
            os.replace(tmp, self._tmp)

    def _unreadable(self) -> OutputError | None:
        """An OutputError if the finished temporary video does not read back with all its frames."""
        import imageio.v2 as imageio

        try:
            with imageio.get_reader(self._tmp, format="FFMPEG") as reader:
                n = reader.count_frames()
        except Exception as e:
            return OutputError(f"ffmpeg wrote {self.path} but it does not read back ({e.__class__.__name__})")
        if n == 0:
            return OutputError(f"ffmpeg wrote {self.path} without a frame")
        if n != self.count:
            warnings.warn(f"{self.path} reads back with {n} frames, {self.count} were written", stacklevel=3)
        return None


def stylize_frames(
    stylizer: Stylizer,
    frames: Iterator[Tensor],
    style: Style | ImageLike,
    alpha: float = 0.6,
    levels: Sequence[int] = (5, 4, 3, 2, 1),
    temporal: bool = False,
    momentum: float = MOMENTUM,
    strength: float = STRENGTH,
    tile: int | None = None,
) -> Iterator[Tensor]:
    """Stylise a stream of (1, 3, H, W) frames in [0, 1] (or anything `load_image` takes: uint8 tensors
    in 0..255, as torchvision reads videos, paths, PIL images). `style`: a `Style`,
    or anything `Stylizer.style` takes, encoded once. `temporal`: average the content statistics
    over frames with `momentum` and filter the output over time with `strength` (0 turns either off),
    both restarting at each scene cut."""
    # Both are built (and so checked) even when off: a bad value is an error, not ignored.
    hook: Smoother | None = Smoother(as_number(momentum, "the temporal momentum"))
    smooth: TemporalFilter | None = TemporalFilter(as_number(strength, "the temporal strength"))
    hook = hook if temporal and hook.momentum > 0 else None
    smooth = smooth if temporal and smooth.strength > 0 else None
    styles = stylizer.styles(style, check_levels(levels))
    previous: Tensor | None = None
    for frame in frames:
        x = load_image(frame)  # a float32 tensor is only checked (uint8: 0..255), not copied
        if temporal:  # kept for the next frame: a caller may refill its tensor in place
            x = x.clone()
        if temporal and previous is not None and scene_cut(previous, x):  # the last shot's state goes
            if hook is not None:
                hook.state.clear()
            if smooth is not None:
                smooth.previous = None
        previous = x
        h, w = x.shape[-2:]
        t = (tile or AUTO_TILE) if needs_tiling(h, w, tile) else max(h, w) + 16  # one tile: untiled
        y = stylize_tiled(stylizer, x, styles, alpha, levels, tile=t, hook=hook)
        y = smooth(x, y) if smooth is not None else y
        yield y[0] if isinstance(frame, Tensor) and frame.ndim == 3 else y  # (3, H, W) in, (3, H, W) out


def flicker(frames: Sequence[Tensor]) -> float:
    """Mean absolute change between consecutive frames (all frames the same size)."""
    if len(frames) < 2:
        return 0.0
    return float(np.mean([(b - a).abs().mean().item() for a, b in zip(frames, frames[1:], strict=False)]))
