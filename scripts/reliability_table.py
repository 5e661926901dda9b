"""Run every bad input and injected fault of issue 6 through the real CLI; write docs/reliability.md.

Each row is observed, not written by hand: the CLI runs in-process (`wct.cli.main`), its exit
code and stderr are captured, and "handled" rows state what was checked on the output.

    python scripts/reliability_table.py [--out docs/reliability.md] [--skip-slow] [--overwrite]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import wct  # noqa: E402
from tests.conftest import cut_clip  # noqa: E402
from tests.test_reliability import (  # noqa: E402
    bad_files,
    extreme_images,
    flip_bit,
    kill_and_resume,
    malicious_checkpoints,
    rgba_content,
    run_uninterrupted,
    same_weights,
    training_data,
    truncate,
    write_pair,
)
from wct.bench import report_problem  # noqa: E402
from wct.cli import main  # noqa: E402
from wct.demo import landscape, painting  # noqa: E402
from wct.errors import WCTError  # noqa: E402
from wct.images import load_image, write_atomic  # noqa: E402
from wct.pipeline import Stylizer  # noqa: E402
from wct.train import atomic_torch_save  # noqa: E402

KEEP = ("error:", "warning:", "interrupted", "  failed:", "Usage:", "Error:")


class Table:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.sections: list[tuple[str, list[tuple[str, str]]]] = []

    def section(self, title: str) -> None:
        self.sections.append((title, []))

    def row(self, what: str, response: str) -> None:
        clean = response.replace(f"{self.tmp}/", "").replace(str(self.tmp), ".").replace("|", "\\|")
        self.sections[-1][1].append((what, clean))
        print(f"{what}: {clean}", flush=True)

    def markdown(self) -> str:
        out = []
        for title, rows in self.sections:
            out += [f"## {title}", "", "| input / fault | response |", "|---|---|"]
            out += [f"| {w} | {r} |" for w, r in rows]
            out.append("")
        return "\n".join(out)


def cli(*args: str | Path) -> tuple[int, list[str]]:
    """`wct ARGS` in-process: the exit code and the stderr lines a user reads (errors, warnings)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    lines = err.getvalue().splitlines()
    summary = [line for line in lines if " written, " in line]
    return code, [line for line in lines if line.startswith(KEEP)] + summary


def code_span(text: str) -> str:
    """`text` as inline code (its own backticks become quotes)."""
    return "`" + text.replace("`", "'") + "`"


def response(code: int, lines: list[str]) -> str:
    shown = "<br>".join(code_span(line.strip()) for line in lines) or "(no message)"
    return f"exit {code}: {shown}"


def api(fn: Callable[[], object]) -> str:
    """The typed exception an API call raises, or what it returned."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = fn()
    except WCTError as e:
        return code_span(f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001 - reported as a failure in the table
        return f"**untyped {type(e).__name__}: {e}**"
    return f"returned {out}"


def temps(d: Path) -> str:
    n = len(list(d.rglob("*.tmp")))
    return "no temporary file left" if n == 0 else f"**{n} temporary files left**"


def size_mode(p: Path) -> str:
    if not p.exists():
        return "no output file"
    with Image.open(p) as im:
        return f"output {im.mode} {im.width}x{im.height}"


PIL_SAVE = Image.Image.save


def disk_full(self: Image.Image, fp, *args, **kwargs) -> None:
    """`Image.save` on a full disk: half a file, then ENOSPC. Saves to memory (the CLI's check of
    the format, before the work) are not on the disk, and succeed."""
    if not isinstance(fp, (str, os.PathLike)):  # atomic_save writes a temporary file by its name
        return PIL_SAVE(self, fp, *args, **kwargs)
    with open(fp, "wb") as f:
        f.write(b"\x89PNG half an image")
    raise OSError(28, "No space left on device")


def inputs(t: Table, tmp: Path) -> None:
    content, style = write_pair(tmp / "pair")
    out = tmp / "out"
    out.mkdir()
    run = ("stylize", "--levels", "1", "--size", "32")
    t.section("Bad inputs (CLI: `wct stylize CONTENT STYLE -o OUT`)")
    for name, (path, _) in bad_files(tmp / "bad").items():
        code, lines = cli(*run, path, style, "-o", out / "o.png")
        t.row(f"{name} as CONTENT", f"{response(code, lines)}; {size_mode(out / 'o.png')}")
    code, lines = cli(*run, content, tmp / "bad" / "empty.png", "-o", out / "o.png")
    t.row("zero-byte file as STYLE", response(code, lines))
    code, lines = cli(*run, tmp / "missing.jpg", style, "-o", out / "o.png")
    t.row("missing file", response(code, lines))
    empty = tmp / "empty_dir"
    empty.mkdir()
    t.row("directory with no images as CONTENT", response(*cli(*run, empty, style, "-o", out / "o.png")))
    code, lines = cli(*run, content, "--style", style, "--mask", empty, "-o", out / "o.png")
    t.row("directory as `--mask` (a file expected)", response(code, lines))
    code, lines = cli(*run, content, style, "-o", out / "o.png", "--vgg-weights", empty)
    t.row("directory as `--vgg-weights` (a file expected)", response(code, lines))
    t.row("directory as an API image", api(lambda: wct.stylize(empty, style)))
    big = tmp / "big.png"
    painting(64, 64).save(big)
    code, lines = cli(*run, big, style, "-o", out / "o.png", "--max-pixels", "2000")
    t.row("64x64 content with `--max-pixels 2000`", response(code, lines))
    code, lines = cli(*run, content, big, "-o", out / "o.png", "--max-pixels", "2000")
    t.row("64x64 style with `--max-pixels 2000`", response(code, lines))

    t.section("Image kinds that are handled")
    d = tmp / "kinds"
    d.mkdir()
    red = (255, 0, 0)
    kinds = {
        "16-bit PNG (value 32768 of 65535)": (
            "16bit.png",
            Image.fromarray(np.full((24, 32), 32768, np.uint16)),
        ),
        "palette PNG": ("palette.png", Image.new("RGB", (32, 24), red).convert("P")),
        "CMYK JPEG": ("cmyk.jpg", Image.new("CMYK", (32, 24), (0, 255, 255, 0))),
        "grayscale JPEG": ("gray.jpg", Image.new("L", (32, 24), 128)),
        "grayscale + alpha PNG": ("la.png", Image.new("LA", (32, 24), (128, 200))),
    }
    for name, (filename, im) in kinds.items():
        im.save(d / filename)
        x = load_image(d / filename)
        rgb = tuple(int(v) for v in (x[0, :, 12, 16] * 255).round())
        o = out / f"{Path(filename).stem}.png"
        code, lines = cli(*run, d / filename, style, "-o", o)
        t.row(name, f"handled: loads as RGB {rgb}; {response(code, lines)}; {size_mode(o)}")
    src = d / "logo.png"
    rgba_content().save(src)
    o = out / "logo.png"
    code, lines = cli("stylize", "--levels", "1", "--size", "0", src, style, "-o", o)
    with Image.open(o) as a, Image.open(src) as b:
        same = np.array_equal(np.asarray(a.getchannel("A")), np.asarray(b.getchannel("A")))
    t.row("RGBA PNG -> PNG", f"handled: {response(code, lines)}; {size_mode(o)}; alpha identical: {same}")
    o = out / "logo.jpg"
    code, lines = cli("stylize", "--levels", "1", "--size", "0", src, style, "-o", o)
    t.row("RGBA PNG -> JPEG", f"handled: {response(code, lines)}; {size_mode(o)}")
    y = wct.stylize(rgba_content(), style, levels=(1,), size=24)
    t.row("RGBA PIL image -> `wct.stylize`", f"handled: returns {y.mode} {y.width}x{y.height}")
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste(red, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(d / "rotated.jpg", exif=exif)
    o = out / "rotated.png"
    code, lines = cli("stylize", "--levels", "1", "--size", "0", d / "rotated.jpg", style, "-o", o)
    x = load_image(d / "rotated.jpg")
    upright = bool(x[0, 0, :15].mean() > 0.9)
    t.row(
        "JPEG stored 40x20 with EXIF orientation 6",
        f"handled: {response(code, lines)}; {size_mode(o)}; red half on top: {upright}",
    )
    for suffix in ("gif", "webp"):
        a = d / f"anim.{suffix}"
        Image.new("RGB", (32, 24), red).save(
            a, save_all=True, append_images=[Image.new("RGB", (32, 24), (0, 0, 255))], duration=100
        )
        o = out / f"anim_{suffix}.png"
        code, lines = cli(*run, a, style, "-o", o)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first = bool(load_image(a)[0, 0].mean() > 0.9)
        t.row(
            f"animated {suffix.upper()} (red, then blue)",
            f"handled: {response(code, lines)}; red frame: {first}",
        )
    landscape(5, 7).save(d / "tiny.png")
    painting(3, 3).save(d / "tiny_style.png")
    o = out / "tiny.png"
    code, lines = cli("stylize", "--size", "0", d / "tiny.png", d / "tiny_style.png", "-o", o)
    t.row("5x7 content, 3x3 style (all 5 levels)", f"handled: {response(code, lines)}; {size_mode(o)}")
    landscape(1, 40).save(d / "line.png")
    o = out / "line.png"
    code, lines = cli("stylize", "--size", "0", d / "line.png", style, "-o", o)
    t.row("1x40 content", f"handled: {response(code, lines)}; {size_mode(o)}")

    t.section("Out-of-range options and tensors")
    for opt in [
        ("--alpha", "nan"),
        ("--alpha", "1.5"),
        ("--alpha", "abc"),
        ("--levels", "0"),
        ("--levels", "6"),
        ("--levels", ","),
        ("--size", "-1"),
        ("--style-size", "-5"),
        ("--max-pixels", "0"),
    ]:
        code, lines = cli("stylize", content, style, "-o", out / "o.png", *opt)
        t.row(f"`{' '.join(opt)}`", response(code, lines))
    good = load_image(content)[0]
    for label, value in (("NaN", float("nan")), ("Inf", float("inf")), ("1.5", 1.5)):
        bad = good.clone()
        bad[0, 0, 0] = value
        t.row(f"{label} in a content tensor (API)", api(lambda b=bad: wct.stylize(b, style)))
        t.row(f"{label} in a style tensor (API)", api(lambda b=bad: wct.stylize(content, b)))
    t.row("tensor of shape (4, 8, 8) (API)", api(lambda: wct.stylize(torch.rand(4, 8, 8), style)))
    t.row("`alpha=float('nan')` (API)", api(lambda: wct.stylize(content, style, alpha=float("nan"))))
    t.row("`levels=()` (API)", api(lambda: wct.stylize(content, style, levels=())))
    s = Stylizer("cpu")
    st, x = s.style(style, levels=(1,)), load_image(content)
    u8 = x.mul(255).round().byte()
    same = torch.equal(s.stylize(u8, st, 1, (1,)), s.stylize(u8.float() / 255, st, 1, (1,)))
    t.row("uint8 content tensor, `Stylizer.stylize` (API)", f"handled: read as 0..255, = float / 255: {same}")
    t.row(
        "int64 content tensor, `Stylizer.stylize` (API)",
        api(lambda: s.stylize(x.mul(255).long(), st, 1, (1,))),
    )
    soft = torch.rand(x.shape[-2:])
    t.row("fractional (soft) mask tensor (API)", api(lambda: s.stylize(x, [st, st], 1, (1,), mask=soft)))
    pair = s.stylize(torch.cat([x, x.flip(-1)]), st, 1, (1,))
    same = torch.allclose(pair[1:], s.stylize(x.flip(-1), st, 1, (1,)), atol=1e-5)
    t.row(
        "(2, 3, H, W) batch, `Stylizer.stylize` (API)",
        f"handled: shape {tuple(pair.shape)}; 2nd = alone: {same}",
    )
    for opt in (("--size", "20000x20000"), ("--tile", "8")):
        code, lines = cli("texture", style, "-o", out / "t.png", *opt)
        t.row(f"`wct texture {' '.join(opt)}`", f"{response(code, lines)}; {size_mode(out / 't.png')}")

    t.section("Extreme images (32x32, all 5 levels, alpha 1; as content, as style, and both)")
    s = Stylizer("cpu")
    normal, normal_style = load_image(landscape(32, 32)), s.style(painting(32, 32))
    for name, x in extreme_images().items():
        st = s.style(x)
        ys = [s.stylize(x, normal_style, 1.0), s.stylize(normal, st, 1.0), s.stylize(x, st, 1.0)]
        ok = all(torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1 for y in ys)
        lo, hi = min(y.min().item() for y in ys), max(y.max().item() for y in ys)
        t.row(name, f"handled: finite and in [0, 1]: {ok} (min {lo:.3f}, max {hi:.3f})")


def nothing_lost(t: Table, tmp: Path) -> None:
    content, style = write_pair(tmp / "pair2")
    run = ("stylize", "--levels", "1", "--size", "32", content, style)
    t.section("Nothing lost")
    d = tmp / "outputs"
    d.mkdir()
    code, lines = cli(*run, "-o", d / "o.xyz")
    t.row("output with an unknown extension", f"{response(code, lines)}; {temps(d)}")
    (d / "a_file").write_text("x")
    code, lines = cli(*run, "-o", d / "a_file" / "o.png")
    t.row("output inside a path that is a file", f"{response(code, lines)}; {temps(d)}")
    o = d / "o.png"
    cli(*run, "-o", o)
    before = o.read_bytes()
    code, lines = cli(*run, "-o", o)
    t.row(
        "existing output, no `--overwrite`", f"{response(code, lines)}; unchanged: {o.read_bytes() == before}"
    )

    with mock.patch.object(Image.Image, "save", disk_full):
        code, lines = cli(*run, "-o", o, "--overwrite")
    t.row(
        "disk full while replacing an output (`--overwrite`)",
        f"{response(code, lines)}; old output unchanged: {o.read_bytes() == before}; {temps(d)}",
    )
    for p in (content, style):
        b = p.read_bytes()
        code, lines = cli(*run, "-o", p, "--overwrite")
        t.row(
            f"`-o` is the {p.stem} input, with `--overwrite`",
            f"{response(code, lines)}; unchanged: {p.read_bytes() == b}",
        )
    contents, styles, out = tmp / "batch" / "contents", tmp / "batch" / "styles", tmp / "batch" / "out"
    contents.mkdir(parents=True), styles.mkdir()
    landscape(40, 32, seed=1).save(contents / "a.png")
    (contents / "b_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    painting(32, 32).save(styles / "s1.png")
    (styles / "s2_empty.png").write_bytes(b"")
    batch = ("stylize", "--levels", "1", "--size", "32", contents, styles, "-o", out)
    t.row("batch of 2 contents x 2 styles, one bad file in each", response(*cli(*batch)))
    t.row("the same batch again (the bad files still there)", response(*cli(*batch)))
    calls, real = [], Stylizer.stylize

    def interrupt_second(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    three, out2 = tmp / "batch" / "three", tmp / "batch" / "out2"
    three.mkdir()
    for i in range(3):
        landscape(32, 24, seed=i).save(three / f"c{i}.png")
    batch2 = ("stylize", "--levels", "1", "--size", "32", three, style, "-o", out2)
    with mock.patch.object(Stylizer, "stylize", interrupt_second):
        code, lines = cli(*batch2)
    files = sorted(p.name for p in out2.iterdir())
    t.row("Ctrl-C during the 2nd image of a batch", f"{response(code, lines)}; files: {files}; {temps(out2)}")
    t.row("the same batch again", response(*cli(*batch2)))
    before = {f.name: f.read_bytes() for f in out2.iterdir()}
    code, lines = cli(*batch2, "--alpha", "0.9")
    same = {f.name: f.read_bytes() for f in out2.iterdir()} == before
    t.row("the same batch with another `--alpha`", f"{response(code, lines)}; outputs unchanged: {same}")
    clash, out3 = tmp / "batch" / "clash", tmp / "batch" / "out3"
    clash.mkdir()
    landscape(32, 24, seed=1).save(clash / "a.png")
    landscape(32, 24, seed=2).save(clash / "a.jpg")
    code, lines = cli("stylize", "--levels", "1", "--size", "32", clash, style, "-o", out3)
    files = sorted(p.name for p in out3.iterdir())
    t.row("batch of `a.png` and `a.jpg` (same stem)", f"{response(code, lines)}; files: {files}")
    frames, out4 = tmp / "frames", tmp / "frames_out"
    frames.mkdir()
    for i in range(3):
        landscape(32, 24, seed=i).save(frames / f"{i}.png")
    video = ("video", frames, out4, "--style", style, "--levels", "1", "--size", "0", "--overwrite")
    cli(*video)
    before = {f.name: f.read_bytes() for f in out4.iterdir()}
    (frames / "1.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    code, lines = cli(*video)
    same = {f.name: f.read_bytes() for f in out4.iterdir()} == before
    left = len(list(tmp.glob(".frames_out*")))
    t.row(
        "`wct video` into a folder of frames, 2nd frame unreadable (`--overwrite`)",
        f"{response(code, lines)}; earlier frames unchanged: {same}; temporary folders left: {left}",
    )
    _, cut = cut_clip(tmp, 30)
    out5 = tmp / "cut_frames"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # imageio-ffmpeg's pipes; Python hides these
        code, lines = cli("video", cut, out5, "--style", style, "--levels", "1", "--size", "0")
    t.row(
        "`wct video` of a 30-frame MP4 cut to 60% of its bytes",
        f"{response(code, lines)}; frames written: {len(list(out5.glob('frame_*.png')))}",
    )
    gatys = ("gatys", content, style, "-o", d / "g.png", "--steps", "1", "--size", "32", "--overwrite")
    b = content.read_bytes()
    code, lines = cli(*gatys, "--history", content)
    t.row(
        "`wct gatys --history` naming the content photo",
        f"{response(code, lines)}; unchanged: {content.read_bytes() == b}",
    )
    (d / "scores.json").write_text("{}")
    code, lines = cli("eval-decoders", "--data", three, "--levels", "1", "--json", d / "scores.json")
    t.row(
        "`wct eval-decoders --json` an existing file",
        f"{response(code, lines)}; unchanged: {(d / 'scores.json').read_text() == '{}'}",
    )


def faults(t: Table, tmp: Path, slow: bool) -> None:
    from wct.decoder import decoder_path

    content, style = write_pair(tmp / "pair3")
    t.section("Faults injected")
    decs = tmp / "decoders"
    decs.mkdir()
    p = decs / "relu1_1.safetensors"
    for damage in ("truncated", "bit-flipped"):
        p.write_bytes(decoder_path(1).read_bytes())
        truncate(p) if damage == "truncated" else flip_bit(p, p.stat().st_size - 40)
        with mock.patch.dict(os.environ, {"WCT_DECODERS": str(decs)}):
            code, lines = cli("stylize", content, style, "-o", tmp / "o.png", "--levels", "1")
        t.row(f"{damage} decoder file", response(code, lines))
    data = training_data(tmp / "train_data")
    train = ("train", "--level", "2", "--data", data, "--steps", "4", "--crop", "32", "--batch", "2")
    train = (*train, "--device", "cpu", "--workers", "0", "--resume")
    for damage in ("truncated", "bit-flipped"):
        out = tmp / f"ck_{damage}"
        out.mkdir()
        ck = out / "relu2_1.last.pt"
        atomic_torch_save({"decoder": {"w": torch.randn(64, 64)}, "optimizer": {}, "state": {"step": 2}}, ck)
        truncate(ck) if damage == "truncated" else flip_bit(ck, ck.stat().st_size // 2)
        t.row(f"{damage} training checkpoint, `wct train --resume`", response(*cli(*train, "--out", out)))
    unreadable = tmp / "unreadable"
    unreadable.mkdir()
    for i in range(3):
        (unreadable / f"{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, lines = cli(*train, "--out", tmp / "never", "--data", unreadable)
    shown = f"{response(code, lines)}; --out created: {(tmp / 'never').exists()}"
    t.row("`wct train` on a folder of 3 unreadable images", shown)
    for opt in (
        ("--val-every", "0"),
        ("--workers", "-1"),
        ("--val", tmp / "missing"),
        ("--val", unreadable),
        ("--export", content),
        ("--export", tmp / "decoders_out"),
        ("--crop", "33"),
    ):
        code, lines = cli(*train, "--out", tmp / "never", *opt)
        shown = " ".join(str(v.relative_to(tmp)) if isinstance(v, Path) else v for v in opt)
        t.row(f"`wct train {shown}`", f"{response(code, lines)}; --out created: {(tmp / 'never').exists()}")
    marker = tmp / "pwned"
    for i, (name, path) in enumerate(malicious_checkpoints(tmp / "evil", marker).items()):
        out = tmp / f"evil_{i}"
        out.mkdir()
        path.rename(out / "relu2_1.last.pt")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            code, lines = cli(*train, "--out", out)
        t.row(
            f"malicious pickle checkpoint ({name}) that runs `touch pwned`",
            f"{response(code, lines)}; command ran: {marker.exists()}",
        )
    if slow:
        t0 = time.time()
        log = kill_and_resume(data, tmp / "killed")
        run_uninterrupted(data, tmp / "ref")
        kills = "; ".join(
            f"step {e['killed at step']} +{e['delay s']} s -> resumed from {e['left']}" for e in log
        )
        t.row(
            "training (level 2, 12 steps, checkpoint every step) killed with SIGKILL 5 times",
            f"handled: {kills}; final weights equal to an uninterrupted run (torch.equal): "
            f"{same_weights(tmp / 'killed', tmp / 'ref')} ({time.time() - t0:.0f} s)",
        )
        r = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "fuzz_images.py"), "--n", "10000"],
            capture_output=True,
            text=True,
            check=False,
        )
        counts = [line.strip() for line in r.stdout.splitlines() if not line.startswith("by seed file")]
        summary = "; ".join(" ".join(line.split()) for line in counts)
        t.row(
            "10,000 mutated PNG/JPEG/GIF/WebP/TIFF/BMP files (`scripts/fuzz_images.py`)",
            f"exit {r.returncode}: {summary}",
        )


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "reliability.md",
        help="The table, Markdown (default %(default)s).",
    )
    ap.add_argument("--skip-slow", action="store_true", help="No SIGKILL training run, no 10,000-input fuzz.")
    ap.add_argument("--overwrite", action="store_true", help="Replace an existing --out table.")
    args = ap.parse_args()
    if problem := report_problem(args.out, args.overwrite):  # before minutes of work
        ap.error(f"--out {problem}")
    torch.set_num_threads(1)
    warnings.simplefilter("always")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d).resolve()
        t = Table(tmp)
        inputs(t, tmp)
        nothing_lost(t, tmp)
        faults(t, tmp, not args.skip_slow)
    head = [
        "# Reliability: bad inputs and injected faults",
        "",
        "Generated by `python scripts/reliability_table.py` (do not edit): every row ran through the",
        "real CLI in-process (`wct.cli.main`) or the API, and the response is what came back: the exit",
        "code and the lines printed on stderr, or, for inputs that are handled, what was checked on the",
        "output. Paths are relative to a temporary directory. Tests: `tests/test_reliability.py`.",
        "",
    ]
    table = "\n".join(head) + "\n" + t.markdown()
    write_atomic(args.out, lambda tmp: Path(tmp).write_text(table))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main_()
