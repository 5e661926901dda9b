"""Evaluate the committed decoders and write their model card (decoders/README.md).

Scores use the protocol of shared/README.md on ../shared/data/val; the picture shows one Kodak
image (released for unrestricted use) reconstructed at each level.

    python scripts/make_model_card.py [--overwrite]
"""

import argparse
import json
from pathlib import Path

import torch
from PIL import Image

from wct.bench import machine
from wct.decoder import load_decoder
from wct.encoder import load_encoder
from wct.errors import OutputError
from wct.evaluate import PUBLISHED, TARGETS, load_val_images, reconstruction_scores
from wct.images import list_images, tensor_to_pil, write_atomic

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT.parent / "shared/data/val"
CARD, PICTURE = ROOT / "decoders/README.md", ROOT / "docs/reconstructions.png"
PICTURE_IMAGE = "kodim23"
FIRST_BAR = {1: 32, 2: 29, 3: 25, 4: 21, 5: 18}


def steps(meta: dict) -> str:
    """Total steps, as 'first stage + fine-tuning' when the decoder was fine-tuned."""
    prior = int(meta.get("prior_steps", 0))
    return f"{prior} + {meta['steps']}" if prior else meta["steps"]


def minutes(meta: dict) -> float:
    return (float(meta.get("train_seconds", 0)) + float(meta.get("prior_train_seconds", 0))) / 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--overwrite", action="store_true", help=f"Replace {CARD} and {PICTURE}.")
    args = ap.parse_args()
    for path in (CARD, PICTURE):  # before minutes of scoring
        if path.exists() and not args.overwrite:
            ap.error(f"{path} exists: pass --overwrite to replace it")
    if not VAL.is_dir():
        ap.error(f"the validation photos {VAL} are missing (the model card is scored on them)")
    torch.set_grad_enabled(False)
    encoder = load_encoder("cpu")
    images, files = load_val_images(VAL), list_images(VAL)
    if len(images) != len(files):  # a skipped image would shift the picture's index
        raise SystemExit(f"{len(files) - len(images)} of {len(files)} val images were skipped (see above)")
    pick = next((i for i, p in enumerate(files) if PICTURE_IMAGE in p.name), None)
    if pick is None:  # before minutes of scoring, not a StopIteration after loading
        raise SystemExit(f"error: no {PICTURE_IMAGE} among the val images in {VAL} (the picture shows it)")
    rows, tiles, metas = [], [tensor_to_pil(images[pick])], {}
    for level in range(1, 6):
        dec = load_decoder(level, "cpu")
        metas[level] = dec.metadata
        r = reconstruction_scores(encoder, dec, images)
        tiles.append(tensor_to_pil(dec(encoder(images[pick], level))))
        cfg = json.loads(dec.metadata.get("config", "{}"))
        pub = PUBLISHED[level]
        rows.append(
            f"| relu{level}_1 | {r['psnr']:.2f} | {r['ssim']:.4f} | {FIRST_BAR[level]} | {TARGETS[level]} "
            f"| {'n/a' if pub is None else pub} | {steps(dec.metadata)} | {cfg.get('crop')} "
            f"| {cfg.get('lr')} | {minutes(dec.metadata):.0f} | {dec.metadata.get('hardware', 'CPU')} |"
        )
        print(rows[-1], flush=True)
    w, h = tiles[0].size
    sheet = Image.new("RGB", (w * 3 + 16, h * 2 + 8), "white")
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % 3) * (w + 8), (i // 3) * (h + 8)))
    table = "\n".join(
        [
            "| level | PSNR (dB) | SSIM | first bar (dB) | target (dB) | published WCT (dB) | steps | crop "
            "| peak lr | train minutes | last stage on |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    card = (ROOT / "decoders/README.template.md").read_text()
    hardware = f"Scored on {machine('cpu')}, fp32; trained there (CPU) unless the last column says otherwise"
    card = card.replace("SCORES_TABLE", table).replace("HARDWARE", hardware)
    try:  # each whole or not at all: a temporary file renamed into place
        write_atomic(PICTURE, lambda tmp: sheet.save(tmp, "PNG", optimize=True))
        write_atomic(CARD, lambda tmp: Path(tmp).write_text(card))
    except OutputError as e:
        raise SystemExit(f"error: {e}") from None
    print(table)


if __name__ == "__main__":
    main()
