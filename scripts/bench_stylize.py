"""Speed and memory of a 5-level stylisation on this machine, against its convolution throughput.

Measures (median of --runs):
  - conv throughput: one VGG19 forward to relu5_1 at 512x512, FLOPs counted by torch;
  - the time of a full 5-level stylisation of a 512-px content with a 512-px style, and the FLOPs
    of every pass it runs (style encoding, five encodings, five decodings);
  - peak RSS of a 1024-px stylisation, in a fresh process.
Target: time <= 1.3 x FLOPs / throughput, and peak RSS at 1024 px <= 4 GB (10**9 bytes; the
report gives it in GiB too). With --device cuda the 1024-px run also reports the GPU's peak
allocated memory.

    python scripts/bench_stylize.py [--runs 5] [--device cpu] [--precision fp32]
        [--json docs/bench_stylize.json] [--overwrite]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

# ../shared/data beside the checkout, from any directory (not imported from wct.cli: the peak-RSS
# subprocess imports this file, and the CLI's modules would count in its memory)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CONTENT = SHARED_DATA / "content" / "adain__input_content_golden_gate.jpg"
STYLE = SHARED_DATA / "styles" / "neuralstyle__examples_inputs_starry_night.jpg"


def images(size: int):
    from wct.images import load_image

    for p in (CONTENT, STYLE):
        if not p.exists():
            sys.exit(f"error: {p} does not exist (the benchmark measures the shared photos)")
    return load_image(CONTENT, size), load_image(STYLE, size)


def peak_memory_mib(size: int, device: str, precision: str) -> tuple[float, float | None]:
    """Peak RSS (MiB) of a fresh process stylising at `size` px, and its GPU's peak allocated
    memory (MiB; None on the CPU)."""
    code = f"""
import torch
from wct.bench import peak_rss_mb
from wct.pipeline import Stylizer
import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from bench_stylize import images
s = Stylizer({device!r}, precision={precision!r})
c, st = images({size})
s.stylize(c, s.style(st), 0.6)
gpu = torch.cuda.max_memory_allocated() / 2**20 if s.device.type == 'cuda' else None
print(peak_rss_mb(), gpu)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:  # out of memory, say: why, not a CalledProcessError traceback hiding it
        why = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        sys.exit(f"error: the {size}-px peak-RSS run failed: {why}")
    rss, gpu = out.stdout.strip().splitlines()[-1].split()
    return float(rss), None if gpu == "None" else float(gpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="Timed runs of each measure (median).")
    ap.add_argument("--size", type=int, default=512, help="Longer side of content and style, px.")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto (default cpu).")
    ap.add_argument(
        "--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="As wct's --precision."
    )
    ap.add_argument("--json", type=Path, default=None, help="Write the report here (default: print only).")
    ap.add_argument("--overwrite", action="store_true", help="Replace an existing --json report.")
    args = ap.parse_args()
    if args.runs < 1 or args.size < 1:  # before minutes of work, not a traceback after them
        ap.error(f"--runs and --size must be at least 1, got {args.runs} and {args.size}")
    from wct.bench import conv_throughput, count_flops, machine, median_seconds, report_problem

    if args.json and (problem := report_problem(args.json, args.overwrite)):
        ap.error(f"--json {problem}")
    from wct.errors import WCTError
    from wct.pipeline import Stylizer

    content, style = images(args.size)  # the photos exist: before a minute of measuring
    torch.set_grad_enabled(False)
    try:
        s = Stylizer(args.device, precision=args.precision)
    except WCTError as e:  # no CUDA here, a precision the device cannot run...
        sys.exit(f"error: {e}")
    vgg_flops, vgg_time = conv_throughput(s.encoder, args.runs)
    throughput = vgg_flops / vgg_time

    def full():
        return s.stylize(content, s.style(style), 0.6, (5, 4, 3, 2, 1))

    stats = s.style(style)
    total_flops = count_flops(full)
    total_time = median_seconds(full, args.runs)
    transfer_only = median_seconds(lambda: s.stylize(content, stats, 0.6), args.runs)
    ideal = total_flops / throughput
    rss, gpu = peak_memory_mib(1024, str(s.device), args.precision)
    result = {
        "machine": machine(s.device.type),
        "device": str(s.device),
        "precision": args.precision,
        "vgg19_relu5_1_512px_gflop": round(vgg_flops / 1e9, 1),
        "vgg19_relu5_1_512px_seconds": round(vgg_time, 3),
        "conv_throughput_gflops": round(throughput / 1e9, 1),
        "content_px": list(content.shape[-2:]),
        "style_px": list(style.shape[-2:]),
        "stylize_gflop": round(total_flops / 1e9, 1),
        "stylize_seconds": round(total_time, 3),
        "stylize_seconds_cached_style": round(transfer_only, 3),
        "ideal_seconds": round(ideal, 3),
        "ratio_to_ideal": round(total_time / ideal, 3),
        "target_ratio": 1.3,
        "runs": args.runs,
        "peak_rss_gb_1024px": round(rss * 2**20 / 1e9, 2),  # GB (10**9 bytes), as the target
        "peak_rss_gib_1024px": round(rss / 1024, 2),
        "peak_gpu_gb_1024px": None if gpu is None else round(gpu * 2**20 / 1e9, 2),  # allocated by torch
        "target_peak_rss_gb": 4.0,
    }
    print(json.dumps(result, indent=2))
    if args.json:  # whole or not at all: a temporary file renamed into place
        from wct.errors import OutputError
        from wct.images import write_json

        try:
            write_json(result, args.json)
        except OutputError as e:
            sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
