"""Per-channel mean activations of VGG19's ReLU layers over training photos: the constants of
Gatys et al.'s "normalised VGG" (each filter's mean activation is 1), used by wct.gatys.

Dividing a ReLU layer's output by its channel means is the same network with rescaled weights
(ReLU and max pooling commute with positive scaling), so no weight file changes.

    python scripts/vgg_channel_means.py [--data ../shared/data/train] [--images 256] [--out FILE]
        [--overwrite]
"""

import argparse
import random
import sys
from pathlib import Path

import torch

from wct.bench import report_problem
from wct.cli import SHARED_DATA
from wct.encoder import NAMES, load_encoder, write_signed
from wct.errors import ImageError, OutputError
from wct.gatys import MEANS_FILE
from wct.images import list_images, load_image

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", default=str(SHARED_DATA / "train"), help="Folder of photos (default %(default)s)."
    )
    ap.add_argument("--images", type=int, default=256, help="Photos to average over, a seeded random pick.")
    ap.add_argument("--out", default=str(MEANS_FILE), help="Means file, safetensors (default %(default)s).")
    ap.add_argument("--overwrite", action="store_true", help="Replace an existing --out (wct's by default).")
    args = ap.parse_args()
    if args.images < 1:
        ap.error(f"--images must be at least 1, got {args.images}")
    if problem := report_problem(Path(args.out), args.overwrite):  # before the work
        ap.error(f"--out {problem}")

    encoder = load_encoder("cpu")
    relus = [n for n in NAMES if n.startswith("relu")]
    paths = list_images(args.data)
    random.Random(0).shuffle(paths)
    sums = {n: 0.0 for n in relus}
    used = 0
    with torch.no_grad():
        for p in paths:
            if used == args.images:
                break
            try:
                image = load_image(p)  # the photo as it is (short side 320)
            except ImageError as e:
                print(f"skipped: {e}", file=sys.stderr)
                continue
            feats = encoder.extract(image, relus)
            for n in relus:
                sums[n] = sums[n] + feats[n].double().mean(dim=(0, 2, 3))
            used += 1
    if not used:
        raise SystemExit(f"error: no images found in {args.data}")
    means = {n: (s / used).float() for n, s in sums.items()}
    dead = {n: int((m <= 0).sum()) for n, m in means.items() if (m <= 0).any()}
    if dead:  # wct.gatys divides by these: a zero would turn those channels into NaN
        raise SystemExit(f"error: channels never active on {used} photos {dead}: measure more --images")
    meta = {
        "encoder_md5": encoder.weights_id,
        "data": f"{Path(args.data).name}/ ({used} photos, random order of seed 0, as they are)",
        "what": "mean activation per channel of each ReLU layer",
    }
    try:
        write_signed(means, meta, args.out)
    except OutputError as e:
        raise SystemExit(f"error: {e}") from None
    for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"):
        print(f"{n}: mean of channel means {means[n].mean():.1f}, min {means[n].min():.3g}")
