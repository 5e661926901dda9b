"""Stylisation speed and fidelity at each --precision, against fp32, on one device.

For each content/style pair and precision: median seconds of a 5-level stylisation (style
statistics precomputed; the result is copied to the CPU, so GPU work is included) and the PSNR /
SSIM of the result against fp32's. fp16 is skipped on the CPU (refused there). For scale, each
pair also gets the fp32 result of its content nudged by +-0.5/255 (below 8-bit rounding): how far
WCT's cascade itself moves when its input barely changes.

    python scripts/bench_precision.py [--device auto] [--size 512] [--runs 3] [--json FILE] [--overwrite]
"""

import argparse
import sys
import warnings
from pathlib import Path

import torch

from wct.cli import SHARED_DATA as DATA  # ../shared/data beside the checkout, from any directory

PAIRS = [("chicago", "asheville"), ("brad_pitt", "brushstrokes"), ("avril", "contrast_of_forms")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto.")
    ap.add_argument("--size", type=int, default=512, help="Longer side of content and style, px.")
    ap.add_argument("--runs", type=int, default=3, help="Timed runs per pair and precision (median).")
    ap.add_argument("--json", type=Path, default=None, help="Write the report here (default: print only).")
    ap.add_argument("--overwrite", action="store_true", help="Replace an existing --json report.")
    args = ap.parse_args()
    if args.runs < 1 or args.size < 32:  # before minutes of work, not an error after them
        ap.error(  # SSIM needs 11 px a side, and the pairs' photos are up to 1.6 times wider than high
            f"--runs must be at least 1 and --size 32, got {args.runs} and {args.size}"
        )
    from wct.bench import machine, median_seconds, report_problem

    if args.json and (problem := report_problem(args.json, args.overwrite)):
        ap.error(f"--json {problem}")
    from wct.evaluate import psnr, ssim
    from wct.images import load_image, write_json
    from wct.pipeline import Stylizer

    torch.set_grad_enabled(False)
    ref = Stylizer(args.device)
    precisions = ["fp32", "bf16"] + (["fp16"] if ref.device.type == "cuda" else [])
    stylizers = {"fp32": ref}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bf16 on a CPU without bf16 kernels: measured anyway
        stylizers |= {p: Stylizer(args.device, precision=p) for p in precisions[1:]}
    rows = []
    for content, style in PAIRS:
        x = load_image(DATA / "content" / f"adain__input_content_{content}.jpg", args.size)
        path = DATA / "styles" / f"adain__input_style_{style}.jpg"
        base = base_style = None
        for p in precisions:
            s = stylizers[p]
            st = s.style(path, args.size)
            y = s.stylize(x, st, 0.6).cpu()
            base, base_style = (y, st) if base is None else (base, base_style)
            seconds = median_seconds(lambda s=s, st=st, x=x: s.stylize(x, st, 0.6).cpu(), args.runs)
            row = {"pair": f"{content}+{style}", "precision": p, "px": list(x.shape[-2:])}
            row |= {"seconds": round(seconds, 3), "psnr_vs_fp32": round(psnr(y, base), 2)}
            rows.append(row | {"ssim_vs_fp32": round(ssim(y, base), 4)})
            print(rows[-1], flush=True)
        g = torch.Generator().manual_seed(0)
        nudged = (x + (torch.rand(x.shape, generator=g) - 0.5) / 255).clamp(0, 1)
        y = ref.stylize(nudged, base_style, 0.6).cpu()
        rows.append({"pair": f"{content}+{style}", "precision": "fp32, content +-0.5/255"})
        rows[-1] |= {"psnr_vs_fp32": round(psnr(y, base), 2), "ssim_vs_fp32": round(ssim(y, base), 4)}
        print(rows[-1], flush=True)
    result = {"machine": machine(ref.device), "device": str(ref.device), "rows": rows}
    if args.json:
        write_json(result, args.json)  # whole or not at all


if __name__ == "__main__":
    from wct.errors import WCTError

    try:
        main()
    except WCTError as e:  # a bad --device, a missing photo, an unwritable --json: one line
        sys.exit(f"error: {e}")
