"""Training throughput (images/s) of each decoder level on this machine, fp32 or bf16 autocast.

One step = encode, decode, pixel + feature loss, backward, Adam: the `wct train` step with the
feature loss on (its slowest phase). Writes docs/bench/train.json.

    python scripts/bench_train.py [--crop 128] [--batch 8] [--steps 3] [--device cpu] [--amp]
        [--out FILE] [--overwrite]
"""

import argparse
import sys
import time
from pathlib import Path

import torch

from wct.bench import machine, report_problem
from wct.encoder import resolve_device
from wct.errors import InputError, OutputError
from wct.images import write_json
from wct.train import Config, build_models, reconstruction_loss

ROOT = Path(__file__).resolve().parents[1]


def images_per_second(
    level: int, crop: int, batch: int, steps: int, device: torch.device, amp: bool
) -> float:
    encoder, decoder = build_models(Config(level=level), device)  # as `wct train`: channels-last on CUDA
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, crop, crop, device=device)
    if device.type == "cuda":  # as `wct train` feeds its batches
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    for i in range(steps + 1):  # the first step is a warm-up
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with autocast:
            loss = reconstruction_loss(encoder, decoder, decoder.net, x, 0.01, 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crop", type=int, default=128, help="Side of the square training crops, px.")
    ap.add_argument("--batch", type=int, default=8, help="Images per step.")
    ap.add_argument("--steps", type=int, default=3, help="Timed steps per level, after one warm-up.")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto.")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (default: fp32).")
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs/bench/train.json",
        help="Report file (JSON; default %(default)s).",
    )
    ap.add_argument("--overwrite", action="store_true", help="Replace an existing --out report.")
    a = ap.parse_args()
    if min(a.batch, a.steps) < 1 or a.crop < 16:  # relu5_1 needs 16 px
        ap.error("--crop must be at least 16, --batch and --steps at least 1")
    if problem := report_problem(a.out, a.overwrite):
        ap.error(f"--out {problem}")
    try:
        device = resolve_device(a.device)
    except InputError as e:
        ap.error(f"--device: {e}")
    rates = {}
    for level in range(1, 6):
        rates[f"relu{level}_1"] = round(images_per_second(level, a.crop, a.batch, a.steps, device, a.amp), 2)
        print(f"relu{level}_1: {rates[f'relu{level}_1']} images/s", flush=True)
    report = {"machine": machine(device), "device": str(device), "amp_bf16": a.amp}
    report.update(crop=a.crop, batch=a.batch)
    try:  # whole or not at all
        write_json({**report, "images_per_second": rates}, a.out)
    except OutputError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
