"""The README gallery: one picture per feature of issue 5, written to docs/gallery/ as JPEG.

Inputs are public domain or CC0 only (see ../shared/data/*/SOURCES.txt), read from ../shared and
never copied: photos by NASA (astronaut, public domain) and scikit-image's CC0 cat (chelsea) and
coffee; paintings by Van Gogh (The Starry Night), Munch (The Scream) and Kandinsky (Composition VII),
all public domain. Masks and the video clip are generated here.

    python scripts/make_gallery.py [--out docs/gallery] [--size 320] [--overwrite]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
DATA = ROOT.parent / "shared/data"
ASTRONAUT = DATA / "content/skimage__astronaut.jpg"
CAT = DATA / "content/skimage__chelsea.jpg"
COFFEE = DATA / "content/skimage__coffee.jpg"
STARRY = DATA / "styles/neuralstyle__examples_inputs_starry_night.jpg"
SCREAM = DATA / "styles/neuralstyle__examples_inputs_the_scream.jpg"
KANDINSKY = DATA / "styles/msgnet__experiments_images_21styles_composition_vii.jpg"
PAD, CAPTION = 6, 18
PICTURES = ("mask.jpg", "mixing.jpg", "texture.jpg", "preserve_color.jpg", "tiling.jpg", "video.jpg")


def sheet(panels: list[tuple[Image.Image, str]], height: int) -> Image.Image:
    """Panels side by side, scaled to `height`, each with a caption underneath."""
    scaled = [
        (im.resize((round(im.width * height / im.height), height), Image.Resampling.LANCZOS), t)
        for im, t in panels
    ]
    width = sum(im.width for im, _ in scaled) + PAD * (len(scaled) + 1)
    out = Image.new("RGB", (width, height + CAPTION + 2 * PAD), "white")
    draw = ImageDraw.Draw(out)
    x = PAD
    for im, text in scaled:
        out.paste(im, (x, PAD))
        draw.text((x + 2, PAD + height + 3), text, fill="black")
        x += im.width + PAD
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs/gallery",
        help="Folder for the JPEG pictures (default %(default)s).",
    )
    p.add_argument("--size", type=int, default=320, help="Longer side of the stylised images, px.")
    p.add_argument("--threads", type=int, default=1, help="Torch threads.")
    p.add_argument("--overwrite", action="store_true", help="Replace pictures already in --out.")
    a = p.parse_args()
    if a.size < 1 or a.threads < 1:
        p.error(f"--size and --threads must be at least 1, got {a.size} and {a.threads}")
    if missing := [str(f) for f in (ASTRONAUT, CAT, COFFEE, STARRY, SCREAM, KANDINSKY) if not f.is_file()]:
        p.error(f"the gallery's public-domain inputs are missing: {', '.join(missing)}")
    from wct.bench import report_problem

    for name in PICTURES:  # before minutes of work
        if problem := report_problem(a.out / name, a.overwrite):
            p.error(f"--out {problem}")
    torch.set_num_threads(a.threads)
    from bench_video import clip

    from wct import controls
    from wct.images import load_image, tensor_to_pil, write_atomic
    from wct.pipeline import Stylizer
    from wct.tiling import splits, stylize_tiled
    from wct.video import stylize_frames

    a.out.mkdir(parents=True, exist_ok=True)
    s = Stylizer("cpu")
    starry, scream, kandinsky = (s.style(load_image(p, 384)) for p in (STARRY, SCREAM, KANDINSKY))
    pil = lambda x: tensor_to_pil(x)  # noqa: E731
    thumb = lambda path: Image.open(path).convert("RGB")  # noqa: E731

    def save(im: Image.Image, name: str) -> None:
        write_atomic(a.out / name, lambda tmp: im.save(tmp, "JPEG", quality=85, optimize=True))
        print("wrote", a.out / name, flush=True)

    # 1. Spatial control: an ellipse around the cat's head takes The Scream, the rest Starry Night.
    cat = load_image(CAT, a.size)
    h, w = cat.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    mask = (((yy - 0.45 * h) / (0.42 * h)) ** 2 + ((xx - 0.5 * w) / (0.3 * w)) ** 2 < 1).long()
    y = s.stylize(cat, [starry, scream], 0.9, mask=mask)
    mask_im = Image.fromarray((mask * 255).byte().numpy(), "L").convert("RGB")
    save(
        sheet(
            [(pil(cat), "content"), (mask_im, "mask"), (pil(y), "outside: Starry Night, inside: The Scream")],
            200,
        ),
        "mask.jpg",
    )

    # 2. Style interpolation between two paintings.
    coffee = load_image(COFFEE, a.size)
    row = [(thumb(STARRY), "style A")]
    for wa in (1.0, 0.75, 0.5, 0.25, 0.0):
        y = s.stylize(coffee, [starry, kandinsky], 0.9, weights=[wa, 1 - wa])
        row.append((pil(y), f"A {wa:.2f} / B {1 - wa:.2f}"))
    save(sheet([*row, (thumb(KANDINSKY), "style B")], 150), "mixing.jpg")

    # 3. Texture synthesis from seeded noise.
    tex = s.texture(kandinsky, (384, 256), seed=0, passes=2)
    tex2 = s.texture(starry, (384, 256), seed=0, passes=2)
    save(
        sheet(
            [
                (thumb(KANDINSKY), "style"),
                (pil(tex), "texture, seed 0"),
                (thumb(STARRY), "style"),
                (pil(tex2), "texture, seed 0"),
            ],
            200,
        ),
        "texture.jpg",
    )

    # 4. Colour preservation.
    astro = load_image(ASTRONAUT, a.size)
    y = s.stylize(astro, starry, 0.8)
    kept = controls.preserve_color(astro, y)
    save(
        sheet([(pil(astro), "content"), (pil(y), "stylised"), (pil(kept), "--preserve-color")], 240),
        "preserve_color.jpg",
    )

    # 5. Tiling: 1024x1024 in 512-px tiles (exact statistics), a 1:1 crop where four tiles meet.
    side, tile = 1024, 512
    big = load_image(ASTRONAUT, side)
    y = stylize_tiled(s, big, starry, 0.8, tile=tile)
    overview = pil(y).resize((384, 384), Image.Resampling.LANCZOS)
    draw = ImageDraw.Draw(overview)
    k = 384 / side
    for _, b in splits(side, tile)[:-1]:
        draw.line([(b * k, 0), (b * k, 384)], fill="yellow")
        draw.line([(0, b * k), (384, b * k)], fill="yellow")
    c = splits(side, tile)[0][1]
    crop = pil(y).crop((c - 192, c - 192, c + 192, c + 192))
    panels = [
        (overview, f"{side} px in {tile}-px tiles (yellow lines)"),
        (crop, "1:1 crop where four tiles meet"),
    ]
    save(sheet(panels, 384), "tiling.jpg")

    # 6. Video: a panning clip, every 4th of 16 frames, input above, --temporal output below.
    frames = clip(16, 192, 1.5, 0.01)
    out = list(stylize_frames(s, iter(frames), starry, 0.8, temporal=True))
    top = sheet([(pil(frames[i]), f"frame {i}") for i in range(0, 16, 4)], 128)
    bottom = sheet([(pil(out[i]), f"--temporal, frame {i}") for i in range(0, 16, 4)], 128)
    strip = Image.new("RGB", (top.width, top.height + bottom.height), "white")
    strip.paste(top, (0, 0))
    strip.paste(bottom, (0, top.height))
    save(strip, "video.jpg")


if __name__ == "__main__":
    main()
