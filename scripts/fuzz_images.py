"""Fuzz the image loading path: mutated PNG/JPEG/GIF/WebP/TIFF/BMP bytes through `load_image`.

Every input must either load as a finite (1, 3, H, W) tensor in [0, 1] or raise one of the typed
errors of `wct.errors`; anything else is a bug and is printed with the seed that reproduces it.

    python scripts/fuzz_images.py [--n 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import struct
import tempfile
import time
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wct.errors import WCTError
from wct.images import load_image

MAX_PIXELS = 1 << 20  # keep claimed-huge images cheap to refuse


def seeds() -> dict[str, bytes]:
    """Small valid files of each format the loader meets, to mutate."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), "RGB")
    out = {}
    for name, im, fmt, kw in [
        ("png", rgb, "PNG", {}),
        ("rgba.png", rgb.convert("RGBA"), "PNG", {}),
        ("16bit.png", Image.fromarray(rng.integers(0, 65535, (12, 16), dtype=np.uint16)), "PNG", {}),
        ("palette.png", rgb.convert("P"), "PNG", {}),
        ("jpg", rgb, "JPEG", {"quality": 80}),
        ("progressive.jpg", rgb, "JPEG", {"progressive": True}),
        ("cmyk.jpg", rgb.convert("CMYK"), "JPEG", {}),
        ("gif", rgb.convert("P"), "GIF", {"save_all": True, "append_images": [rgb.convert("P")]}),
        ("webp", rgb, "WEBP", {"quality": 80}),
        ("anim.webp", rgb, "WEBP", {"save_all": True, "append_images": [rgb.rotate(90)]}),
        ("tiff", rgb, "TIFF", {}),
        ("bmp", rgb, "BMP", {}),
    ]:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        out[name] = buf.getvalue()
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: bit flips, byte overwrites, truncation, insertion, splices."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[i] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 2:
            del b[rng.randrange(len(b) + 1) :]
        elif op == 3:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4 and b:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randint(1, 64)]
        elif op == 5 and len(b) > 8:
            b[i : i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"])
    return bytes(b)


def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every PNG chunk CRC, so mutations reach the decoder instead of the CRC check."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    b, i = bytearray(data), 8
    while i + 12 <= len(b):
        n = struct.unpack(">I", b[i : i + 4])[0]
        end = i + 8 + n
        if end + 4 > len(b):
            break
        b[end : end + 4] = struct.pack(">I", zlib.crc32(b[i + 4 : end]))
        i = end + 4
    return bytes(b)


def outcome(path: Path) -> str:
    """'ok', the typed error's class name, or 'BUG <exception>'."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = load_image(path, size=32, max_pixels=MAX_PIXELS)
    except WCTError as e:
        return type(e).__name__
    except Exception as e:  # noqa: BLE001 - the point is to find these
        return f"BUG {type(e).__name__}: {e}"
    if not (x.ndim == 4 and x.shape[1] == 3 and torch.isfinite(x).all() and 0 <= x.min() <= x.max() <= 1):
        return "BUG bad tensor"
    return "ok"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000, help="Mutated inputs to try.")
    ap.add_argument("--seed", type=int, default=0, help="Random seed of the mutations (reproduces a run).")
    args = ap.parse_args()
    if args.n < 1:
        ap.error(f"--n must be at least 1, got {args.n}")
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    corpus = seeds()
    names = sorted(corpus)
    counts: Counter[str] = Counter()
    by_format: dict[str, Counter[str]] = {n: Counter() for n in names}
    bugs: list[str] = []
    t0 = time.time()
    stderr = os.dup(2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # libtiff prints its complaints to fd 2
    try:  # and fd 2 comes back however the loop ends: Ctrl-C, a full disk... are not silent
        with tempfile.TemporaryDirectory() as d:
            for i in range(args.n):
                name = names[i % len(names)]
                path = Path(d) / f"input.{name.split('.')[-1]}"
                data = mutate(corpus[name], rng)
                if name.endswith("png") and rng.random() < 0.7:
                    data = fix_png_crcs(data)
                path.write_bytes(data)
                result = outcome(path)
                key = "BUG" if result.startswith("BUG") else result
                counts[key] += 1
                by_format[name][key] += 1
                if key == "BUG":
                    bugs.append(f"input {i} ({name}, --seed {args.seed}): {result}")
    finally:
        os.dup2(stderr, 2)
        os.close(stderr)
    print(f"{args.n} mutated inputs in {time.time() - t0:.1f} s (seed {args.seed})")
    for key, n in counts.most_common():
        print(f"  {key:12s} {n}")
    print("by seed file: " + ", ".join(f"{n} {dict(by_format[n])}" for n in names))
    for b in bugs[:20]:
        print("  " + b)
    raise SystemExit(1 if bugs else 0)


if __name__ == "__main__":
    main()
