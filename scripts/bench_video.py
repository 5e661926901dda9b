"""Flicker of stylised video with and without --temporal.

A synthetic clip: a camera panning slowly across a public-domain photo (NASA's astronaut,
scikit-image; our generated landscape if absent) with a little sensor noise, stylised in Van
Gogh's Starry Night (public domain). Flicker = mean absolute frame-to-frame change of the output
divided by that of the input (`wct.video.flicker`); 1 means the output changes as much as the
input. Reported for: no smoothing, statistics smoothing only, output filter only, both (--temporal).

    python scripts/bench_video.py [--frames 16] [--size 160] [--out docs/bench_video.json] [--overwrite]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONTENT = ROOT.parent / "shared/data/content/skimage__astronaut.jpg"  # public domain (NASA)
STYLE = ROOT.parent / "shared/data/styles/neuralstyle__examples_inputs_starry_night.jpg"  # public domain


def clip(frames: int, size: int, step: float, noise: float, seed: int = 0) -> list[torch.Tensor]:
    """`frames` square crops of `size` px panning right by `step` px per frame, plus noise."""
    import torch.nn.functional as F

    from wct.demo import landscape
    from wct.images import load_image

    big = load_image(CONTENT if CONTENT.exists() else landscape(768, 512), 2 * size)
    if step < 0:
        raise ValueError(f"the pan must go right (--step >= 0), got {step}")
    pan = int(step * (frames - 1))
    if pan + size + 2 > big.shape[-1] or size + 1 > big.shape[-2]:  # a shorter crop would be stretched
        raise ValueError(
            f"{frames} frames at {step} px each pan {pan} px, more than the {big.shape[-1] - size - 2} px "
            f"the {big.shape[-1]}x{big.shape[-2]} photo leaves beside a {size}-px frame: "
            "lower --frames or --step"
        )
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(frames):
        x0 = step * i
        # a sub-pixel shift by bilinear resampling of a slightly larger crop
        lo = int(x0)
        crop = big[..., : size + 1, lo : lo + size + 2]
        theta = torch.tensor([[[1.0, 0, 2 * (x0 - lo) / (size + 2)], [0, 1.0, 0]]])
        grid = F.affine_grid(theta, (1, 3, size + 1, size + 2), align_corners=False)
        frame = F.grid_sample(crop, grid, align_corners=False)[..., :size, :size]
        out.append((frame + noise * torch.randn(frame.shape, generator=g)).clamp(0, 1))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=16, help="Frames in the clip (at least 2).")
    p.add_argument("--size", type=int, default=160, help="Side of the square frames, px.")
    p.add_argument("--step", type=float, default=1.5, help="Pan speed, px per frame.")
    p.add_argument("--noise", type=float, default=0.01, help="Sensor noise (standard deviation).")
    p.add_argument("--alpha", type=float, default=0.8, help="Style strength, 0 to 1.")
    p.add_argument("--threads", type=int, default=1, help="Torch threads.")
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs/bench_video.json",
        help="Report file (JSON; default %(default)s).",
    )
    p.add_argument("--overwrite", action="store_true", help="Replace an existing --out report.")
    a = p.parse_args()
    if a.frames < 2 or a.threads < 1:  # flicker compares consecutive frames
        p.error(f"--frames must be at least 2 and --threads 1, got {a.frames} and {a.threads}")
    if not 0 <= a.alpha <= 1 or not 0 <= a.noise < math.inf:
        p.error(
            f"--alpha must be between 0 and 1 and --noise a finite number >= 0, got {a.alpha} and {a.noise}"
        )
    if a.size < 1 or not 0 <= a.step < math.inf:  # before the Stylizer loads, not a traceback after
        p.error(f"--size must be at least 1 and --step a number of px >= 0, got {a.size} and {a.step}")
    from wct.bench import machine, report_problem

    if problem := report_problem(a.out, a.overwrite):  # before the work
        p.error(f"--out {problem}")
    torch.set_num_threads(a.threads)
    from wct.demo import painting
    from wct.errors import OutputError
    from wct.images import load_image, write_json
    from wct.pipeline import Stylizer
    from wct.video import TemporalFilter, flicker, stylize_frames

    s = Stylizer("cpu")
    style = s.style(load_image(STYLE if STYLE.exists() else painting(512, 512), 512))
    try:
        frames = clip(a.frames, a.size, a.step, a.noise)
    except ValueError as e:
        p.error(str(e))
    base = flicker(frames)
    # The output filter runs after stylisation, so two stylisation passes give all four settings.
    results = {}
    for stats in (False, True):
        start = time.perf_counter()
        kw = {"temporal": True, "strength": 0.0} if stats else {}
        out = list(stylize_frames(s, iter(frames), style, a.alpha, **kw))
        seconds = time.perf_counter() - start
        filt = TemporalFilter()
        filtered = [filt(x, y) for x, y in zip(frames, out, strict=True)]
        names = ("statistics only", "--temporal (both)") if stats else ("none", "output filter only")
        results[names[0]] = {"flicker": flicker(out) / base, "seconds": seconds}
        results[names[1]] = {"flicker": flicker(filtered) / base, "seconds": seconds}
        for n in names:
            print(f"{n:20s} flicker {results[n]['flicker']:.3f}", flush=True)
    report = {
        "machine": machine("cpu"),  # its torch threads, --threads, included
        "frames": a.frames,
        "size": a.size,
        "pan_px_per_frame": a.step,
        "noise": a.noise,
        "alpha": a.alpha,
        "input_change": base,
        "results": results,
    }
    try:  # whole or not at all
        write_json(report, a.out)
    except OutputError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
