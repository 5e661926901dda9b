"""The README's WCT-vs-Gatys table and contact sheet (issue: Gatys baseline and benchmark).

Uses the public-domain/CC0 pairs of make_results.py, so the sheet may be published.

    python scripts/bench_gatys.py [--steps 500] [--sizes 256,512] [--out docs/bench] [--overwrite]
"""

import argparse
import sys
from pathlib import Path

from make_results import DATA, PAIRS

from wct.cli import main

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="500", help="Gatys L-BFGS steps.")
    ap.add_argument("--sizes", default="256,512", help="Longer sides to measure, px.")
    ap.add_argument("--pairs", type=int, default=4, help="How many of the 4 public-domain pairs (default 4).")
    ap.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1] / "docs" / "bench"),
        help="Folder for the JSON, table and sheet (default %(default)s).",
    )
    ap.add_argument("--overwrite", action="store_true", help="Replace the report in --out.")
    args = ap.parse_args()
    if not 1 <= args.pairs <= len(PAIRS):
        ap.error(f"--pairs must be 1 to {len(PAIRS)} (the public-domain pairs of make_results.py)")
    pairs = [f"--pair={DATA / c},{DATA / s}" for c, s in PAIRS[: args.pairs]]
    again = ["--overwrite"] if args.overwrite else []
    sys.exit(main(["bench", *pairs, "--steps", args.steps, "--sizes", args.sizes, "-o", args.out, *again]))
