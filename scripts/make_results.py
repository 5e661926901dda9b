"""The README's results picture: content | style | output, for public-domain/CC0 inputs only.

python scripts/make_results.py [--out docs/results.png] [--overwrite]
"""

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

import wct
from wct.cli import SHARED_DATA as DATA  # ../shared/data beside the checkout, from any directory

ROOT = Path(__file__).resolve().parents[1]

# Only inputs we may show: public domain (NASA, SpaceX, old masters) or CC0 (see SOURCES.txt).
PAIRS = [
    ("content/skimage__astronaut.jpg", "styles/neuralstyle__examples_inputs_starry_night.jpg"),
    ("content/skimage__chelsea.jpg", "styles/neuralstyle__examples_inputs_the_scream.jpg"),
    ("content/skimage__coffee.jpg", "styles/msgnet__experiments_images_21styles_composition_vii.jpg"),
    ("content/skimage__rocket.jpg", "styles/neuralstyle__examples_inputs_shipwreck.jpg"),
]
H = 256


def fit(im: Image.Image, h: int = H) -> Image.Image:
    return im.resize((round(im.width * h / im.height), h), Image.Resampling.LANCZOS)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs/results.png",
        help="The picture, PNG or JPEG (default %(default)s).",
    )
    ap.add_argument("--alpha", type=float, default=0.6, help="Style strength, 0 to 1.")
    ap.add_argument("--overwrite", action="store_true", help="Replace an existing --out picture.")
    args = ap.parse_args()
    if not 0 <= args.alpha <= 1:
        ap.error(f"--alpha must be between 0 and 1, got {args.alpha}")
    if missing := [str(DATA / f) for pair in PAIRS for f in pair if not (DATA / f).is_file()]:
        ap.error(f"the public-domain inputs are missing: {', '.join(missing)}")
    from wct.cli import check_output
    from wct.errors import OutputError
    from wct.images import atomic_save

    try:  # before a minute of work
        check_output(args.out, args.overwrite, ())
    except OutputError as e:
        ap.error(f"--out {e}")
    rows = []
    for c, s in PAIRS:
        content, style = Image.open(DATA / c).convert("RGB"), Image.open(DATA / s).convert("RGB")
        out = wct.stylize(content, style, alpha=args.alpha, size=512, style_size=512)
        rows.append([fit(content), fit(style.crop(_square(style))), fit(out)])
    width = max(sum(im.width for im in r) + 8 * (len(r) - 1) for r in rows)
    sheet = Image.new("RGB", (width, len(rows) * (H + 8) - 8), "white")
    for i, r in enumerate(rows):
        x = 0
        for im in r:
            sheet.paste(im, (x, i * (H + 8)))
            x += im.width + 8
    ImageDraw.Draw(sheet)
    try:  # whole or not at all
        atomic_save(sheet, args.out, args.overwrite)
    except OutputError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")


def _square(im: Image.Image) -> tuple[int, int, int, int]:
    side = min(im.size)
    x, y = (im.width - side) // 2, (im.height - side) // 2
    return x, y, x + side, y + side


if __name__ == "__main__":
    main()
