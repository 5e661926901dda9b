"""Issue 6: every bad input rejected cleanly, faults survived, nothing lost.

The helpers that build bad inputs and inject faults are shared with scripts/reliability_table.py,
which runs them through the real CLI and writes docs/reliability.md.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import wct
from wct.demo import landscape, painting
from wct.errors import ImageError, InputError, WCTError
from wct.images import load_image, open_image
from wct.train import atomic_torch_save, load_checkpoint
from wct.transform import wct as wct_transform

from .conftest import gradient_image
from .test_train import config

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- bad inputs, shared with the table


def png_claiming(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims `width` x `height` (a decompression bomb, cheaply)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    b[16:24] = struct.pack(">II", width, height)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def bad_file_specs() -> dict[str, tuple[str, bytes, str]]:
    """Inputs that must be refused: name -> (file name, bytes, text the one-line error contains)."""
    photo = landscape(48, 32)
    jpg, png = jpeg_bytes(photo), png_bytes(photo)
    corrupt_png = bytearray(png)
    corrupt_png[len(png) // 2] ^= 0xFF
    corrupt_jpg = bytearray(jpg)
    corrupt_jpg[4:60] = b"\x00" * 56  # after the start marker: headers and tables zeroed
    return {
        "corrupt JPEG (headers zeroed)": ("corrupt.jpg", bytes(corrupt_jpg), "corrupt"),
        "truncated JPEG (first half)": ("truncated.jpg", jpg[: len(jpg) // 2], "truncated"),
        "corrupt PNG (one byte flipped)": ("corrupt.png", bytes(corrupt_png), "corrupt"),
        "truncated PNG (first 60%)": ("truncated.png", png[: len(png) * 6 // 10], "truncated"),
        "zero-byte file": ("empty.png", b"", "empty (0 bytes)"),
        "text file named .jpg": ("notes.jpg", b"these are my notes, not a photo\n", "not an image"),
        "SVG": ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>', "SVG"),
        "decompression bomb (PNG header: 20000x20000)": ("bomb.png", png_claiming(20000, 20000), "too large"),
        "PNG header: 10000x10000 (over Pillow's warning limit)": (
            "big.png",
            png_claiming(10000, 10000),
            "too large",
        ),
    }


def bad_files(d: Path) -> dict[str, tuple[Path, str]]:
    """The bad inputs written to `d`: name -> (path, text the one-line error contains)."""
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, (filename, data, text) in bad_file_specs().items():
        (d / filename).write_bytes(data)
        out[name] = (d / filename, text)
    return out


def write_pair(d: Path) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    landscape(48, 32).save(d / "content.png")
    painting(40, 40).save(d / "style.jpg")
    return d / "content.png", d / "style.jpg"


def temp_files(d: Path) -> list[Path]:
    return [p for p in d.rglob("*.tmp")]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_line_error(r: subprocess.CompletedProcess, *texts: str) -> str:
    """Exit 1, no traceback, and exactly one `error: ...` line that contains every text."""
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = error_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    for t in texts:
        assert t in lines[0], (t, lines[0])
    return lines[0]


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These images are tiny; one thread also keeps eigh fast when other work shares the cores
    (two threads on two busy cores made a 512x512 eigh take 15 s instead of 0.2 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return write_pair(tmp_path_factory.mktemp("pair"))


# ---------------------------------------------------------------- 1. inputs


@pytest.mark.parametrize("name", list(bad_file_specs()))
def test_each_bad_file_is_one_clean_error_and_no_output(name, pair, tmp_path, wct_cli):
    path, text = bad_files(tmp_path / "bad")[name]
    out = tmp_path / "out" / "o.png"
    content, style = pair
    r = wct_cli("stylize", str(path), str(style), "-o", str(out), "--levels", "1", "--size", "32")
    assert_one_line_error(r, path.name, text)
    r = wct_cli("stylize", str(content), str(path), "-o", str(out), "--levels", "1", "--size", "32")
    assert_one_line_error(r, path.name)
    assert not out.exists() and not temp_files(tmp_path)
    with pytest.raises(ImageError, match=path.name):
        wct.stylize(path, painting(32, 32), levels=(1,))


def test_a_directory_where_a_file_is_expected(pair, tmp_path, wct_cli):
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    content, style = pair
    with pytest.raises(ImageError, match="is a directory"):
        open_image(empty)
    with pytest.raises(ImageError, match="is a directory"):
        wct.stylize(empty, style)
    r = wct_cli("stylize", str(empty), str(style), "-o", str(tmp_path / "o.png"))
    assert_one_line_error(r, "no images found", "empty_dir")
    r = wct_cli("stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), "--mask", str(empty))
    assert_one_line_error(r, "empty_dir")
    r = wct_cli(
        "stylize", str(content), str(style), "-o", str(tmp_path / "o.png"), "--vgg-weights", str(empty)
    )
    assert_one_line_error(r, "empty_dir")


def test_modes_load_as_the_right_rgb(tmp_path):
    red = (255, 0, 0)
    cases = {
        "gray.png": (Image.new("L", (8, 6), 128), (128, 128, 128)),
        "gray_alpha.png": (Image.new("LA", (8, 6), (0, 0)), (255, 255, 255)),  # transparent: white
        "palette.png": (Image.new("RGB", (8, 6), red).convert("P"), red),
        "cmyk.jpg": (Image.new("CMYK", (8, 6), (0, 255, 255, 0)), red),
        "cmyk.tiff": (Image.new("CMYK", (8, 6), (0, 255, 255, 0)), red),
        "rgba.png": (Image.new("RGBA", (8, 6), (255, 0, 0, 128)), (255, 127, 127)),
        "16bit.png": (Image.fromarray(np.full((6, 8), 32768, dtype=np.uint16)), (128, 128, 128)),
        "16bit.tiff": (Image.fromarray(np.full((6, 8), 65535, dtype=np.uint16)), (255, 255, 255)),
    }
    for name, (im, rgb) in cases.items():
        im.save(tmp_path / name)
        x = load_image(tmp_path / name)
        assert x.shape == (1, 3, 6, 8), name
        got = (x[0, :, 3, 4] * 255).round()
        assert (got - torch.tensor(rgb, dtype=torch.float32)).abs().max() <= 6, (name, got)


def test_exif_orientation_gives_upright_pixels(pair, tmp_path, wct_cli):
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: the red half on top
    p = tmp_path / "rotated.jpg"
    im.save(p, exif=exif, quality=95)
    x = load_image(p)
    assert x.shape == (1, 3, 40, 20)
    assert x[0, 0, :15].mean() > 0.9 and x[0, 2, :15].mean() < 0.1
    assert x[0, 2, 25:].mean() > 0.9
    out = tmp_path / "o.png"
    r = wct_cli("stylize", str(p), str(pair[1]), "-o", str(out), "--size", "0", "--levels", "1")
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (20, 40)


@pytest.mark.parametrize("suffix", ["gif", "webp"])
def test_animated_images_give_the_first_frame_with_a_warning(suffix, tmp_path):
    red, blue = Image.new("RGB", (16, 16), (255, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 255))
    p = tmp_path / f"anim.{suffix}"
    red.save(p, save_all=True, append_images=[blue], duration=100, loop=0)
    with pytest.warns(UserWarning, match="animated"):
        x = load_image(p)
    assert x[0, 0].mean() > 0.9 and x[0, 2].mean() < 0.1


def test_decode_reads_bytes_as_it_reads_files_and_names_them_as_told(tmp_path):
    from wct.images import decode

    p = tmp_path / "a.png"
    painting(24, 16).save(p)
    assert np.array_equal(np.asarray(decode(io.BytesIO(p.read_bytes()))), np.asarray(decode(p)))
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>'
    with pytest.raises(ImageError, match=r"^up\.svg is not an image in an accepted format \(PNG, GIF\)$"):
        decode(io.BytesIO(svg), formats=("PNG", "GIF"), name="up.svg")
    with pytest.raises(ImageError, match=r"^the file is not an image in a format Pillow reads$"):
        decode(io.BytesIO(svg))
    too_large = r"^the file is too large to open safely: 24x16 = 384 pixels, more than the limit of 100$"
    with pytest.raises(ImageError, match=too_large):
        decode(io.BytesIO(p.read_bytes()), max_pixels=100)


def test_tiny_images_are_stretched_with_a_warning_and_keep_their_size(stylizer):
    content, style = load_image(landscape(5, 7)), load_image(painting(3, 3))
    with pytest.warns(UserWarning, match="3x3 px"):
        st = stylizer.style(style)
    with pytest.warns(UserWarning, match="5x7 px"):
        y = stylizer.stylize(content, st, 0.8)
    assert y.shape == (1, 3, 7, 5) and torch.isfinite(y).all()
    for h, w in ((1, 40), (40, 1), (1, 1)):
        with pytest.warns(UserWarning, match="stretched"):
            y = stylizer.stylize(gradient_image(h, w), st, 0.6)
        assert y.shape == (1, 3, h, w) and torch.isfinite(y).all() and 0 <= y.min() <= y.max() <= 1
    with pytest.warns(UserWarning, match="stretched"):
        out = wct.stylize(landscape(5, 7), painting(3, 3), size=None)
    assert out.size == (5, 7)


def test_decompression_bombs_and_max_pixels(pair, tmp_path, wct_cli):
    content, style = pair
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(20000, 20000))
    with pytest.raises(ImageError, match="too large"):
        open_image(bomb)
    with pytest.raises(ImageError, match="too large"):
        open_image(bomb, max_pixels=10**12)  # over twice Pillow's limit, which it never opens
    with pytest.raises(ImageError, match="more than the limit of 1000"):
        load_image(content, max_pixels=1000)
    assert load_image(content, max_pixels=48 * 32).shape == (1, 3, 32, 48)
    out, big = tmp_path / "o.png", tmp_path / "big.png"
    painting(64, 64).save(big)  # 4096 pixels; content 48x32 = 1536, style 40x40 = 1600
    run = ("stylize", "-o", str(out), "--levels", "1", "--size", "32", "--max-pixels")
    assert_one_line_error(wct_cli(*run, "2000", str(big), str(style)), "big.png", "limit of 2000")
    assert_one_line_error(wct_cli(*run, "2000", str(content), str(big)), "big.png", "limit of 2000")
    for bad in ("0", "-5"):
        assert_one_line_error(wct_cli(*run, bad, str(content), str(style)), "--max-pixels")
    assert not out.exists()
    r = wct_cli(*run, "1600", str(content), str(style))
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("where", ["content", "style"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 1.5, -0.5])
def test_nan_inf_and_out_of_range_tensors_raise_input_error(where, value):
    good = gradient_image(32, 32)[0]
    bad = good.clone()
    bad[1, 3, 4] = value
    args = (bad, good) if where == "content" else (good, bad)
    with pytest.raises(InputError):
        wct.stylize(*args, levels=(1,))


def test_bad_tensors_to_the_stylizer(stylizer):
    st = stylizer.style(gradient_image(32, 32), levels=(1,))
    nan = gradient_image(32, 32)
    nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError):
        stylizer.stylize(nan, st, 0.5, (1,))
    for shape in ((4, 8, 8), (3, 0, 8), (2, 3, 8, 8), (8, 8)):
        with pytest.raises(InputError):
            wct.stylize(torch.rand(shape), gradient_image(16, 16)[0], levels=(1,))
    with pytest.raises(InputError):
        wct.stylize(torch.zeros(3, 8, 8, dtype=torch.complex64), gradient_image(16, 16)[0])
    with pytest.raises(ImageError):
        wct.stylize(Image.new("RGB", (0, 0)), gradient_image(16, 16)[0])
    with pytest.raises(InputError):
        wct.stylize(12345, gradient_image(16, 16)[0])


@pytest.mark.parametrize(
    "option",
    [
        ("--alpha", "nan"),
        ("--alpha", "inf"),
        ("--alpha", "-0.1"),
        ("--alpha", "1.01"),
        ("--levels", "0"),
        ("--levels", "6"),
        ("--levels", ","),
        ("--levels", "one"),
        ("--size", "-1"),
        ("--style-size", "-5"),
        ("--max-pixels", "0"),
    ],
)
def test_out_of_range_options_are_one_clean_error(option, pair, tmp_path, wct_cli):
    out = tmp_path / "o.png"
    r = wct_cli("stylize", str(pair[0]), str(pair[1]), "-o", str(out), *option)
    assert_one_line_error(r, option[0].lstrip("-").split("-")[0])
    assert not out.exists()


def test_out_of_range_api_arguments_raise_input_error(pair):
    for kw in ({"alpha": float("nan")}, {"alpha": 2}, {"levels": ()}, {"levels": (0,)}, {"size": 0}):
        with pytest.raises(InputError):
            wct.stylize(pair[0], pair[1], **kw)
    with pytest.raises(InputError):
        load_image(pair[0], max_pixels=0)


# ---------------------------------------------------------------- RGBA: alpha kept


def rgba_content(w: int = 48, h: int = 32) -> Image.Image:
    im = landscape(w, h).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, w).round().astype(np.uint8), (h, 1))
    alpha[: h // 4] = 255
    im.putalpha(Image.fromarray(alpha, "L"))
    return im


def test_rgba_content_keeps_its_alpha_on_the_output(pair, tmp_path, wct_cli):
    src = tmp_path / "logo.png"
    rgba_content().save(src)
    out = tmp_path / "o.png"
    r = wct_cli("stylize", str(src), str(pair[1]), "-o", str(out), "--size", "0", "--levels", "2,1")
    assert r.returncode == 0, r.stderr
    with Image.open(out) as im, Image.open(src) as orig:
        assert im.mode == "RGBA" and im.size == orig.size
        assert np.array_equal(np.asarray(im.getchannel("A")), np.asarray(orig.getchannel("A")))
    out2 = tmp_path / "o.webp"
    r = wct_cli("stylize", str(src), str(pair[1]), "-o", str(out2), "--size", "24", "--levels", "1")
    assert r.returncode == 0 and Image.open(out2).mode == "RGBA" and Image.open(out2).size == (24, 16)
    jpg = tmp_path / "o.jpg"
    with pytest.warns(UserWarning, match="no alpha channel"):
        r = wct_cli("stylize", str(src), str(pair[1]), "-o", str(jpg), "--size", "0", "--levels", "1")
    assert r.returncode == 0 and Image.open(jpg).mode == "RGB"
    y = wct.stylize(rgba_content(), pair[1], levels=(1,), size=24)
    assert y.mode == "RGBA" and y.size == (24, 16)
    a = np.asarray(y.getchannel("A"))
    assert a[:, -1].min() > 200 and a[8:, 0].max() < 60  # opaque right edge, transparent left
    assert wct.stylize(pair[0], pair[1], levels=(1,), size=24).mode == "RGB"


# ---------------------------------------------------------------- 2. nothing lost


def test_failed_writes_leave_no_partial_file_and_keep_the_old_output(pair, tmp_path, wct_cli, monkeypatch):
    content, style = pair
    args = ("stylize", str(content), str(style), "--levels", "1", "--size", "32")
    assert_one_line_error(wct_cli(*args, "-o", str(tmp_path / "o.xyz")), "unknown image format")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert_one_line_error(wct_cli(*args, "-o", str(blocker / "o.png")), "cannot write", "a_file")
    out = tmp_path / "o.png"
    assert wct_cli(*args, "-o", str(out)).returncode == 0
    before = digest(out)

    def disk_full(self, fp, *a, **k):
        Path(fp).write_bytes(b"\x89PNG half an image")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    r = wct_cli(*args, "-o", str(out), "--overwrite")
    assert_one_line_error(r, "No space left", "o.png")
    assert digest(out) == before
    r = wct_cli(*args, "-o", str(tmp_path / "new.png"))
    assert_one_line_error(r, "No space left")
    assert not (tmp_path / "new.png").exists()
    assert not temp_files(tmp_path)


def test_no_input_is_ever_overwritten(pair, tmp_path, wct_cli):
    content, style = pair
    mask = tmp_path / "mask.png"
    Image.new("L", (48, 32), 0).save(mask)
    before = {p: digest(p) for p in (content, style, mask)}
    for target in (content, style):
        r = wct_cli("stylize", str(content), str(style), "-o", str(target), "--overwrite", "--levels", "1")
        assert_one_line_error(r, "input")
    r = wct_cli(
        "stylize", str(content), "--style", str(style), "--mask", str(mask), "-o", str(mask), "--overwrite"
    )
    assert_one_line_error(r, "input")
    assert {p: digest(p) for p in before} == before


def test_a_batch_reports_every_failure_exits_non_zero_and_resumes(pair, tmp_path, wct_cli):
    contents, styles = tmp_path / "contents", tmp_path / "styles"
    contents.mkdir(), styles.mkdir()
    landscape(40, 32, seed=1).save(contents / "a.png")
    (contents / "b_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    painting(32, 32).save(styles / "s1.png")
    (styles / "s2_empty.png").write_bytes(b"")
    out = tmp_path / "out"
    args = ("stylize", str(contents), str(styles), "-o", str(out), "--levels", "1", "--size", "32")
    r = wct_cli(*args)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "1 written, 0 already complete, 3 failed" in r.stderr
    assert r.stderr.count("failed: ") == 3 and "b_broken.jpg" in r.stderr and "s2_empty.png" in r.stderr
    assert [p.name for p in out.iterdir()] == ["a__s1.png"]
    written = out / "a__s1.png"
    before, mtime = digest(written), written.stat().st_mtime_ns
    (styles / "s2_empty.png").unlink()
    (contents / "b_broken.jpg").unlink()
    landscape(32, 40, seed=2).save(contents / "b.png")
    r = wct_cli(*args)
    assert r.returncode == 0 and "1 written, 1 already complete, 0 failed" in r.stderr
    assert digest(written) == before and written.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in out.iterdir()) == ["a__s1.png", "b__s1.png"]


def test_an_interrupted_batch_leaves_only_complete_files_and_resumes(pair, tmp_path, wct_cli, monkeypatch):
    from wct.pipeline import Stylizer

    contents = tmp_path / "contents"
    contents.mkdir()
    for i in range(3):
        landscape(32, 24, seed=i).save(contents / f"{i}.png")
    out = tmp_path / "out"
    args = ("stylize", str(contents), str(pair[1]), "-o", str(out), "--levels", "1", "--size", "24")
    real, calls = Stylizer.stylize, []

    def interrupt_second(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(Stylizer, "stylize", interrupt_second)
    r = wct_cli(*args)
    assert r.returncode == 130 and "interrupted" in r.stderr and "Traceback" not in r.stderr
    assert [p.name for p in out.iterdir()] == ["0__style.png"]
    Image.open(out / "0__style.png").verify()
    monkeypatch.setattr(Stylizer, "stylize", real)
    r = wct_cli(*args)
    assert r.returncode == 0 and "2 written, 1 already complete" in r.stderr
    assert not temp_files(tmp_path)


# ---------------------------------------------------------------- 3. faults: SIGKILL during training

CHILD = """
import json, sys, time
import torch
torch.set_num_threads(1)
import wct.train as t
real = t.lr_at
def slow(step, cfg, *rest):  # once per step: announce it and slow it, so kills land inside training
    print(f"step {step}", flush=True)
    time.sleep(0.05)
    return real(step, cfg, *rest)
t.lr_at = slow
t.train(t.Config(**json.loads(sys.argv[1])))
print("done", flush=True)
"""


def train_config(data: Path, out: Path, steps: int = 12) -> dict:
    """test_train's tiny config, checkpointing every step, as a JSON-able dict for a child process."""
    return asdict(config(data, out, val=None, steps=steps, ckpt_every=1, resume=True))


def training_data(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for i in range(6):
        landscape(48 + 8 * i, 40, seed=i).save(d / f"{i}.png")
    return d


def start_child(cfg: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )


def checkpoint_step(out: Path) -> int:
    p = out / "relu2_1.last.pt"
    return load_checkpoint(p)["state"]["step"] if p.exists() else 0


def kill_and_resume(data: Path, out: Path, kills: int = 5, seed: int = 6, steps: int = 12) -> list[dict]:
    """Train, SIGKILL at `kills` moments drawn from `seed` (distinct steps, each plus a delay of up
    to two step times), resume each time, then let it finish. Returns, per kill, the step it hit
    and the checkpoint step it left."""
    rng = random.Random(seed)
    cfg = train_config(data, out, steps)
    log = []
    for target in sorted(rng.sample(range(steps), kills)):
        start = checkpoint_step(out)
        target, delay = max(target, start), rng.uniform(0, 0.1)
        child = start_child(cfg)
        for line in child.stdout:
            if line.strip() == f"step {target}":
                break
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        left = checkpoint_step(out)
        log.append({"from": start, "killed at step": target, "delay s": round(delay, 3), "left": left})
    run_uninterrupted(data, out, steps)
    return log


def run_uninterrupted(data: Path, out: Path, steps: int = 12) -> None:
    child = start_child(train_config(data, out, steps))
    child.communicate(timeout=600)
    assert child.returncode == 0


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_checkpoint(a / "relu2_1.last.pt"), load_checkpoint(b / "relu2_1.last.pt")
    da, db = wa["decoder"], wb["decoder"]
    return (
        wa["state"]["step"] == wb["state"]["step"]
        and da.keys() == db.keys()
        and all(torch.equal(da[k], db[k]) for k in da)
    )


def test_training_killed_five_times_ends_with_the_uninterrupted_weights(tmp_path):
    data = training_data(tmp_path / "data")
    log = kill_and_resume(data, tmp_path / "killed")
    assert len(log) == 5
    assert any(0 < e["left"] < 12 for e in log), log  # the kills really landed inside training
    run_uninterrupted(data, tmp_path / "ref")
    assert checkpoint_step(tmp_path / "killed") == 12
    assert same_weights(tmp_path / "killed", tmp_path / "ref"), log


# ---------------------------------------------------------------- 3. faults: damaged files


def flip_bit(p: Path, at: int) -> None:
    b = bytearray(p.read_bytes())
    b[at] ^= 0x04
    p.write_bytes(bytes(b))


def truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_damaged_decoder_is_refused_naming_the_file(damage, pair, tmp_path, wct_cli, monkeypatch):
    from wct.decoder import decoder_path

    d = tmp_path / "decoders"
    d.mkdir()
    p = d / "relu1_1.safetensors"
    p.write_bytes(decoder_path(1).read_bytes())
    truncate(p) if damage == "truncated" else flip_bit(p, p.stat().st_size - 40)
    monkeypatch.setenv("WCT_DECODERS", str(d))
    out = tmp_path / "o.png"
    r = wct_cli("stylize", str(pair[0]), str(pair[1]), "-o", str(out), "--levels", "1")
    line = assert_one_line_error(r, str(p))
    assert ("corrupt" if damage == "bit-flipped" else "truncated") in line
    assert not out.exists()


def fake_checkpoint() -> dict:
    g = torch.Generator().manual_seed(0)
    return {
        "decoder": {"w": torch.randn(64, 64, generator=g)},
        "optimizer": {"state": {}, "param_groups": []},
        "state": {"step": 7, "history": []},
        "config": {"level": 2},
    }


@pytest.mark.parametrize("damage", ["truncated", "bit-flipped"])
def test_damaged_checkpoint_is_refused_naming_the_file(damage, tmp_path):
    p = tmp_path / "relu2_1.last.pt"
    atomic_torch_save(fake_checkpoint(), p)
    assert load_checkpoint(p)["state"]["step"] == 7
    truncate(p) if damage == "truncated" else flip_bit(p, p.stat().st_size // 2)
    with pytest.raises(WCTError, match="corrupt") as e:
        load_checkpoint(p)
    assert str(p) in str(e.value)


def test_legacy_checkpoints_without_a_digest_still_load(tmp_path):
    p = tmp_path / "old.pt"
    torch.save(fake_checkpoint(), p)
    assert load_checkpoint(p)["state"]["step"] == 7


# ---------------------------------------------------------------- 6. safe loading


class Evil:
    """Unpickling this runs a shell command (creates `marker`)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_checkpoints(d: Path, marker: Path) -> dict[str, Path]:
    """A plain pickle, a torch zip file, and a sealed checkpoint with a valid digest, each of
    which would run `touch marker` if unpickled without restrictions."""
    d.mkdir(parents=True, exist_ok=True)
    plain, zipped, sealed = d / "plain.pt", d / "zipped.pt", d / "sealed.pt"
    plain.write_bytes(pickle.dumps({"decoder": Evil(marker)}))
    torch.save({"decoder": Evil(marker)}, zipped)
    buf = io.BytesIO()
    torch.save({"decoder": Evil(marker), "optimizer": {}, "state": {}}, buf)
    data = buf.getvalue()
    torch.save(
        {
            "sha256": hashlib.sha256(data).hexdigest(),
            "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8),
        },
        sealed,
    )
    return {"plain pickle": plain, "torch zip": zipped, "sealed, valid digest": sealed}


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    for name, p in malicious_checkpoints(tmp_path / "ck", marker).items():
        with pytest.raises(WCTError, match="not a wct checkpoint") as e:
            load_checkpoint(p)
        assert str(p) in str(e.value), name
        assert not marker.exists(), name


def test_torch_load_is_only_used_with_weights_only_and_no_pickle_loads():
    found = 0
    for f in [*ROOT.glob("wct/*.py"), *ROOT.glob("scripts/*.py")]:
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            if owner == "torch" and node.func.attr == "load":
                found += 1
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True
                assert ok, f"{f.name}:{node.lineno}: torch.load without weights_only=True"
            assert not (owner in ("pickle", "dill", "joblib") and "load" in node.func.attr), f.name
    assert found >= 2


# ---------------------------------------------------------------- 4. numerical robustness


def extreme_images(h: int = 32, w: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    salt = (torch.rand(1, 1, h, w, generator=g) < 0.5).float().expand(1, 3, h, w).clone()
    lines = torch.zeros(1, 3, h, w)
    lines[..., ::2, :] = 1
    vline = torch.zeros(1, 3, h, w)
    vline[..., w // 2] = 1
    checker = ((torch.arange(h)[:, None] + torch.arange(w)[None]) % 2).float().expand(1, 3, h, w)
    return {
        "all black": torch.zeros(1, 3, h, w),
        "all white": torch.ones(1, 3, h, w),
        "one colour": torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1).expand(1, 3, h, w).clone(),
        "salt and pepper": salt,
        "1-px horizontal lines": lines,
        "one 1-px vertical line": vline,
        "1-px checkerboard": checker.clone(),
    }


def assert_image(y: torch.Tensor, shape: tuple[int, ...]) -> None:
    assert y.shape == shape and torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


@pytest.mark.parametrize("name", list(extreme_images()))
def test_extreme_images_give_finite_outputs_in_range(name, stylizer):
    x, normal = extreme_images()[name], gradient_image(32, 32)
    as_style = stylizer.style(x)
    assert_image(stylizer.stylize(x, stylizer.style(painting(32, 32)), 1.0), x.shape)
    assert_image(stylizer.stylize(normal, as_style, 1.0), x.shape)
    assert_image(stylizer.stylize(x, as_style, 0.6), x.shape)


@settings(max_examples=40, deadline=None)
@given(
    c=st.integers(1, 16),
    hw=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    content_scale=st.sampled_from([0.0, 1e-8, 1e-3, 1.0, 1e4, 1e8]),
    style_scale=st.sampled_from([0.0, 1e-8, 1e-3, 1.0, 1e4, 1e8]),
    alpha=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_transform_is_finite_for_any_shape_and_scale_of_content_and_style(
    c, hw, content_scale, style_scale, alpha, seed
):
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(c, *hw, generator=g) * content_scale + 3
    style = torch.randn(c, 7, 5, generator=g) * style_scale - 2
    out = wct_transform(content, style, alpha)
    assert out.shape == content.shape and torch.isfinite(out).all()


# ---------------------------------------------------------------- 5. fuzzing the loader


def fuzz_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
    out = {}
    for suffix, im, kw in [
        ("png", rgb, {}),
        ("png", rgb.convert("P"), {}),
        ("jpg", rgb, {}),
        ("jpg", rgb, {"progressive": True}),
        ("gif", rgb.convert("P"), {"save_all": True, "append_images": [rgb.rotate(90).convert("P")]}),
        ("webp", rgb, {}),
        ("webp", rgb, {"save_all": True, "append_images": [rgb.rotate(90)]}),
    ]:
        buf = io.BytesIO()
        im.save(buf, {"jpg": "JPEG"}.get(suffix, suffix.upper()), **kw)
        out[f"{len(out)}.{suffix}"] = buf.getvalue()
    return out


SEEDS = fuzz_seeds()
EDIT = st.tuples(
    st.sampled_from(["flip", "set", "cut", "insert"]), st.floats(0, 1), st.binary(min_size=1, max_size=8)
)


def apply_edits(data: bytes, edits: list[tuple[str, float, bytes]]) -> bytes:
    b = bytearray(data)
    for op, where, payload in edits:
        i = min(int(where * len(b)), max(len(b) - 1, 0))
        if op == "flip" and b:
            b[i] ^= payload[0] or 1
        elif op == "set":
            b[i : i + len(payload)] = payload
        elif op == "cut":
            del b[i:]
        else:
            b[i:i] = payload
    return bytes(b)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(SEEDS)), edits=st.lists(EDIT, min_size=1, max_size=4))
def test_mutated_image_bytes_load_or_raise_typed_errors_only(fuzz_dir, name, edits):
    path = fuzz_dir / f"input.{name.split('.')[1]}"
    path.write_bytes(apply_edits(SEEDS[name], edits))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            x = load_image(path, size=16, max_pixels=1 << 20)
        except WCTError as e:
            assert str(path) in str(e) and "\n" not in str(e)
            return
    assert x.shape[:2] == (1, 3) and torch.isfinite(x).all() and 0 <= x.min() <= x.max() <= 1


def test_threads_loading_images_leave_the_warning_filters_as_they_were(tmp_path):
    # catch_warnings blocks of two threads interleaved and left "ignore every warning" behind
    from wct.images import alpha_channel, decode

    path = tmp_path / "a.png"
    Image.new("RGBA", (8, 8)).save(path)
    before = list(warnings.filters)

    def work() -> None:
        for _ in range(300):
            decode(path)
            alpha_channel(path, (8, 8))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert warnings.filters == before


# ---------------------------------------------------------------- 3. faults: signals


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])  # SIGHUP: the terminal closed
def test_sigterm_cleans_up_like_ctrl_c_and_keeps_the_old_output(tmp_path, name):
    # SIGTERM killed the process outright: exit -15, no message, a .out.mp4.*.mp4 temp file left
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        landscape(32, 24, seed=i).save(frames / f"{i}.png")
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier run's video")
    args = ["video", str(frames), str(out), "--style", str(frames / "0.png"), "--size", "24", "--overwrite"]
    child = subprocess.Popen(
        [sys.executable, "-m", "wct", *args], stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.mp4.*")) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # the temporary video: the run has started
    child.send_signal(signal.Signals[name])
    _, err = child.communicate(timeout=60)
    code = 128 + signal.Signals[name]
    assert child.returncode == code and err.strip().splitlines()[-1] == "terminated", (child.returncode, err)
    assert "Traceback" not in err
    assert out.read_bytes() == b"an earlier run's video"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out.mp4"]


def test_a_signal_while_frames_replace_old_ones_leaves_one_whole_set(pair, tmp_path, wct_cli, monkeypatch):
    # SIGTERM after the 1st old frame was deleted left 3 old frames and none of the new ones
    from wct.video import FrameWriter

    frames, out = tmp_path / "frames", tmp_path / "out"
    frames.mkdir()
    for i in range(4):
        landscape(32, 24, seed=i).save(frames / f"{i}.png")
    with FrameWriter(out, 24) as w:  # an earlier run's frames, and a file of the user's
        for _ in range(4):
            w.write(torch.zeros(3, 24, 32))
    (out / "notes.txt").write_text("mine")
    real = Path.unlink

    def unlink(self, *a, **k):
        real(self, *a, **k)
        if self.parent == out:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Path, "unlink", unlink)
    r = wct_cli("video", str(frames), str(out), "--style", str(pair[1]), "--levels", "1", "--overwrite")
    assert r.returncode == 143 and "terminated" in r.stderr and "Traceback" not in r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["frame_00000.png", "frame_00001.png", "frame_00002.png", "frame_00003.png", "notes.txt"]
    assert all(np.asarray(Image.open(out / n)).max() > 0 for n in names[:4])  # the new frames, all
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "out"]


def test_frames_folder_made_read_only_is_one_output_error_and_keeps_the_old_frames(tmp_path, monkeypatch):
    # the PermissionError came out raw: "error: PermissionError: ... (set WCT_DEBUG=1 for details)"
    from wct.errors import OutputError
    from wct.video import FrameWriter

    out = tmp_path / "out"
    with FrameWriter(out, 24) as w:
        w.write(torch.zeros(3, 8, 8))
    before = digest(out / "frame_00000.png")

    def refuse(self, *a, **k):
        raise PermissionError(1, "Operation not permitted", str(self))

    writer = FrameWriter(out, 24, overwrite=True)
    writer.write(torch.ones(3, 8, 8))
    monkeypatch.setattr(Path, "unlink", refuse)  # as in a folder made read-only during the run
    with pytest.raises(OutputError, match="cannot write .*out: Operation not permitted"):
        writer.close()
    monkeypatch.undo()
    assert digest(out / "frame_00000.png") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
