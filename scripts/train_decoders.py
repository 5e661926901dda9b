"""Train the five shipped decoders in sequence, each warm-started from the previous level.

Decoder X+1 ends with exactly the layers of decoder X, so those start trained. The schedule
below is the first stage of the committed decoders, on a 2-core CPU: they then went through
further CPU and H200 stages and weight averages (decoders/README.md lists each), and relu5_1 was
rebuilt as a head on decoder 4 (scripts/train_relu5_head.py) after this schedule's level 5
collapsed. Running it gives a start, not the shipped scores.

    python scripts/train_decoders.py [--levels 1,2,3,4,5] [--out runs] [--data DIR] [--val DIR]
"""

import argparse
import json
import time
from pathlib import Path

import torch

from wct.cli import SHARED_DATA  # ../shared/data beside the checkout, from any directory
from wct.errors import WCTError
from wct.train import Config, train

ROOT = Path(__file__).resolve().parents[1]
# level: (steps, crop, lr, feature_from). Level 1 is solved by least squares, then fine-tuned.
SCHEDULE = {
    1: (200, 128, 1e-5, 0.0),
    2: (1400, 128, 3e-3, 0.8),
    3: (600, 112, 3e-3, 0.8),
    4: (380, 112, 2e-3, 0.8),
    5: (260, 112, 2e-3, 0.8),
}
# Second stage (--finetune): continue each committed decoder with a fresh cosine cycle.
FINETUNE = {
    3: (400, 128, 1e-3, 0.7),
    4: (300, 128, 1e-3, 0.7),
    5: (250, 128, 1e-3, 0.7),
}

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levels", default=None, help="default 1,2,3,4,5; with --finetune 3,4,5")
    ap.add_argument(
        "--data", default=str(SHARED_DATA / "train"), help="Training photos (default %(default)s)."
    )
    ap.add_argument(
        "--val", default=str(SHARED_DATA / "val"), help="Validation photos (default %(default)s)."
    )
    ap.add_argument(
        "--out", default=str(ROOT / "runs"), help="Folder for checkpoints and logs (default %(default)s)."
    )
    ap.add_argument(
        "--export",
        default=str(ROOT / "decoders"),
        help="Decoders start from here; a better one replaces its file (default %(default)s).",
    )
    ap.add_argument("--resume", action="store_true", help="Continue each level from its checkpoint in --out.")
    ap.add_argument("--finetune", action="store_true", help="start from the committed decoders")
    ap.add_argument("--threads", type=int, default=0, help="Torch threads (0: torch's default).")
    args = ap.parse_args()
    schedule = FINETUNE if args.finetune else SCHEDULE
    try:
        levels = [int(v) for v in (args.levels or ",".join(map(str, schedule))).split(",")]
    except ValueError:
        ap.error(f"--levels must be comma-separated numbers, got {args.levels!r}")
    if not set(levels) <= set(schedule):
        which = "with --finetune " if args.finetune else ""
        ap.error(f"--levels {which}must be among {','.join(map(str, schedule))}, got {args.levels}")
    if args.threads < 0:
        ap.error(f"--threads must be at least 0 (torch's default), got {args.threads}")
    torch.set_num_threads(args.threads or torch.get_num_threads())
    for level in levels:
        steps, crop, lr, feature_from = schedule[level]
        prev = Path(args.export) / f"relu{level - int(not args.finetune)}_1.safetensors"
        cfg = Config(
            level=level,
            data=args.data,
            val=args.val,
            crop=crop,
            batch=8,
            steps=steps,
            lr=lr,
            feature_weight=0.01,
            feature_from=feature_from,
            warmup=min(100, steps // 4),
            out=args.out,
            export=args.export,
            resume=args.resume,
            init_from=str(prev) if prev.exists() else None,
            workers=1,
            val_every=500,
            val_images=8,
            ckpt_every=50,
            stats_images=64,
        )
        t = time.time()
        try:
            summary = train(cfg)
        except WCTError as e:  # bad data or settings: one line, as the CLI says it
            ap.exit(1, f"error: {e}\n")
        summary["minutes"] = round((time.time() - t) / 60, 1)
        print(json.dumps({"level": level, **summary}), flush=True)
