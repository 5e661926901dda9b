"""Tiled stylisation: exactness, seams, peak memory and speed from 1024 px to 8K.

Measures, on a public-domain photo (NASA's astronaut, scikit-image) in Van Gogh's Starry Night
(public domain), 16:9 crops scaled with Lanczos:
  - PSNR between the untiled and a tiled (--check-tile px tiles) stylisation at 1024 px, and the
    seam metric (`wct.tiling.seam_metric`) of both;
  - in a fresh process per size: wall time of the stylisation (style statistics precomputed,
    weights loaded) and peak RSS, untiled at 1024 px and auto-tiled at 4K (3840x2160) and
    8K (7680x4320).
Targets (issue 5): PSNR >= 40 dB, across-border difference <= within-tile, peak RSS <= 6 GB at
4K, time per megapixel at 4K <= 1.2 x that at 1024 px.
After each size the sizes so far are written as a partial report ("finished": false, a first line
in the .md), beside an earlier report as NAME_interrupted.json and .md (then _interrupted2...),
never over it; finished, the run writes NAME.json and .md and removes its partial report.

    python scripts/bench_tiling.py [--sizes 1024,4k,8k] [--threads 2] [--out docs/bench_tiling] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONTENT = ROOT.parent / "shared/data/content/skimage__astronaut.jpg"  # public domain (NASA)
# The exactness and seam check also runs on these (public-domain or CC0 scikit-image photos).
CHECK_PHOTOS = [CONTENT] + [CONTENT.with_name(f"skimage__{n}.jpg") for n in ("chelsea", "coffee", "rocket")]
STYLE = ROOT.parent / "shared/data/styles/neuralstyle__examples_inputs_starry_night.jpg"  # public domain
SIZES = {"1024": (1024, 576), "2k": (1920, 1080), "4k": (3840, 2160), "8k": (7680, 4320)}
ALPHA = 0.8


def content(width: int, height: int, photo: Path = CONTENT) -> torch.Tensor:
    """The photo cropped to width:height and scaled to (width, height); a generated one if absent."""
    from PIL import Image

    from wct.demo import landscape
    from wct.images import pil_to_tensor

    im = Image.open(photo).convert("RGB") if photo.exists() else landscape(1024, 576)
    w, h = im.size
    ch = min(h, round(w * height / width))
    cw = round(ch * width / height)
    im = im.crop(((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw, (h - ch) // 2 + ch))
    return pil_to_tensor(im.resize((width, height), Image.Resampling.LANCZOS))


def style(stylizer):
    from wct.demo import painting
    from wct.images import load_image

    return stylizer.style(load_image(STYLE if STYLE.exists() else painting(512, 512), 512))


def child(size: str, tile: str, levels: tuple[int, ...] = (5, 4, 3, 2, 1)) -> dict:
    """One stylisation in this (fresh) process: seconds and peak RSS."""
    from wct.bench import peak_rss_mb
    from wct.pipeline import Stylizer
    from wct.tiling import AUTO_TILE, needs_tiling, stylize_any

    w, h = SIZES[size]
    s = Stylizer("cpu")
    st = style(s)
    for level in levels:  # weights loaded before timing, as the report says
        s.decoder(level)
    x = content(w, h)
    t = None if tile == "auto" else int(tile)
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    y = stylize_any(s, x, st, ALPHA, levels, tile=t)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert y.shape == x.shape and torch.isfinite(y).all()
    rss = peak_rss_mb() * 1024**2
    return {
        "size": size,
        "levels": ",".join(map(str, levels)),
        "width": w,
        "height": h,
        "megapixels": w * h / 1e6,
        "tiled": needs_tiling(h, w, t),
        "tile": t or AUTO_TILE,
        "seconds": seconds,
        "seconds_per_mp": seconds / (w * h / 1e6),
        "cpu_seconds": cpu,
        "cpu_seconds_per_mp": cpu / (w * h / 1e6),
        "load_average": [load, os.getloadavg()[0]],
        "peak_rss_gb": rss / 1e9,
    }


class ChildFailed(Exception):
    """A size's fresh process failed; the message says which and why."""


def run_child(size: str, tile: str, threads: int) -> dict:
    """`size` is a key of SIZES, optionally with levels: '8k:2,1'."""
    size, _, levels = size.partition(":")
    cmd = [sys.executable, __file__, "--child", size, "--tile", tile, "--threads", str(threads)]
    cmd += ["--levels", levels] if levels else []
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode:  # killed for memory at 8K, say: why, not a CalledProcessError traceback
        why = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise ChildFailed(f"the {size} run failed: {why}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_report(path: Path, text: str) -> None:
    """`text` to `path` whole or not at all (a temporary file renamed into place)."""
    from wct.errors import OutputError
    from wct.images import write_atomic

    try:
        write_atomic(path, lambda tmp: Path(tmp).write_text(text))
    except OutputError as e:
        sys.exit(f"error: {e}")


def write_reports(paths: list[Path], report: dict) -> None:
    """`report` as its .json and .md, `paths`, written as one set (`wct.bench.write_set`): a reader
    finds the earlier pair or the new one, never a mix."""
    from wct.bench import write_set
    from wct.errors import OutputError

    text = markdown(report)
    try:
        write_set(
            [
                (paths[0], lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n")),
                (paths[1], lambda tmp: Path(tmp).write_text(text)),
            ]
        )
    except OutputError as e:
        sys.exit(f"error: {e}")


def check(check_tile: int) -> dict:
    """Untiled vs tiled at 1024 px on each check photo: PSNR and the seam metric of both; the
    first photo's numbers at the top level, every photo's and their means under "photos"."""
    from wct.evaluate import psnr  # 100 dB for identical images: JSON has no infinity
    from wct.pipeline import Stylizer
    from wct.tiling import seam_metric, stylize_tiled

    s = Stylizer("cpu")
    st = style(s)
    rows = []
    for photo in dict.fromkeys(p if p.exists() else CONTENT for p in CHECK_PHOTOS):
        x = content(*SIZES["1024"], photo)
        y0 = s.stylize(x, st, ALPHA)
        y1 = stylize_tiled(s, x, st, ALPHA, tile=check_tile)
        across, within = seam_metric(y1, check_tile)
        ref_across, ref_within = seam_metric(y0, check_tile)
        rows.append(
            {
                "photo": photo.name,
                "psnr_db": psnr(y0, y1),
                "max_abs_diff": (y0 - y1).abs().max().item(),
                "seam_across": across,
                "seam_within": within,
                "untiled_across": ref_across,
                "untiled_within": ref_within,
            }
        )
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0] if k != "photo"}
    return {"size": "1024x576", "tile": check_tile, **rows[0], "photos": rows, "mean": mean}


def markdown(report: dict) -> str:
    from wct.tiling import tiles

    c = report["check"]
    lines = []
    if report.get("finished") is False:  # reports before this field were all finished
        why = f" ({report['error']})" if report.get("error") else ""
        lines += [
            f"**Partial report**: {len(report['runs'])} of {len(report['sizes'])} sizes measured{why}; "
            "the table holds those only.",
            "",
        ]
    lines += [
        f"Machine: {report['machine']}, {report['threads']} torch thread(s); alpha {ALPHA}, "
        "style statistics precomputed, weights loaded before timing. Every size runs in a fresh "
        "process. The machine was shared with other jobs (load average in the table), so wall time "
        "varies; CPU time (of all the threads) is the fairer measure of work.",
        "",
    ]
    if c:
        lines += [
            f"Exactness at 1024x576, tiles of {c['tile']} px: PSNR tiled vs untiled "
            f"**{c['psnr_db']:.1f} dB** "
            f"(max abs difference {c['max_abs_diff']:.4f}). Seam metric (mean |difference| of neighbouring "
            f"pixels): across tile borders {c['seam_across']:.5f}, across the same 16-px grid lines inside "
            f"tiles {c['seam_within']:.5f}; untiled image at the same lines {c['untiled_across']:.5f} / "
            f"{c['untiled_within']:.5f}.",
            "",
        ]
        if len(c.get("photos", [])) > 1:
            lines += [
                "| photo | PSNR tiled vs untiled (dB) | across borders | within tiles "
                "| untiled across | untiled within |",
                "|---|---|---|---|---|---|",
            ]
            for r in [*c["photos"], {"photo": "mean", **c["mean"]}]:
                lines.append(
                    f"| {r['photo']} | {r['psnr_db']:.1f} | {r['seam_across']:.5f} | {r['seam_within']:.5f} "
                    f"| {r['untiled_across']:.5f} | {r['untiled_within']:.5f} |"
                )
            lines.append("")
    lines += [
        "| size | levels | pixels | tiled | wall s | CPU s | CPU s / MP | vs 1024 px | peak RSS (GB) "
        "| load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    full = [r for r in report["runs"] if r.get("levels", "5,4,3,2,1") == "5,4,3,2,1"]
    base = [r["cpu_seconds_per_mp"] for r in full if r["size"] == "1024"]
    base_mean = sum(base) / len(base) if base else None
    for r in report["runs"]:
        ratio = f"{r['cpu_seconds_per_mp'] / base_mean:.2f}x" if base_mean and r in full else ""
        tiled = (
            f"{len(tiles(_round16(r['height']), _round16(r['width']), r['tile']))} tiles"
            if r["tiled"]
            else "no"
        )
        lines.append(
            f"| {r['size']} | {r.get('levels', '5,4,3,2,1')} | {r['width']}x{r['height']} | {tiled} | "
            f"{r['seconds']:.0f} | "
            f"{r['cpu_seconds']:.0f} | "
            f"{r['cpu_seconds_per_mp']:.1f} | {ratio} | {r['peak_rss_gb']:.2f} | "
            f"{r['load_average'][0]:.1f}-{r['load_average'][1]:.1f} |"
        )
    return "\n".join(lines) + "\n"


def parse_sizes(text: str) -> list[str]:
    """--sizes as run_child takes them: '1024,8k:2,1' is 1024, then 8k at levels 2 and 1."""
    out: list[str] = []
    for token in filter(None, (t.strip() for t in text.split(","))):
        if out and ":" in out[-1] and token in ("1", "2", "3", "4", "5"):
            out[-1] += f",{token}"
        else:
            out.append(token)
    return out


def valid_size(size: str) -> bool:
    """A key of SIZES, optionally with levels 1 to 5: '8k:2,1'."""
    key, colon, levels = size.partition(":")
    return key in SIZES and (not colon or all(v in ("1", "2", "3", "4", "5") for v in levels.split(",")))


def _round16(v: int) -> int:
    return -(-v // 16) * 16


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1024,4k,8k", help=f"among {', '.join(SIZES)}; 8k:2,1: levels 2, 1")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="Torch threads.")
    p.add_argument("--check-tile", type=int, default=256, help="Tile side of the exactness check, px.")
    p.add_argument("--no-check", action="store_true", help="Skip the tiled-vs-untiled check at 1024 px.")
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs/bench_tiling",
        help="Report path, written as .json and .md (default %(default)s).",
    )
    p.add_argument("--overwrite", action="store_true", help="Replace an existing --out report (.json, .md).")
    p.add_argument("--report", type=Path, help="Only rewrite the markdown of this JSON report.")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--tile", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--levels", default="5,4,3,2,1", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.threads < 1 or a.check_tile < 16:
        p.error(f"--threads must be at least 1 and --check-tile 16, got {a.threads} and {a.check_tile}")
    torch.set_num_threads(a.threads)
    if a.report:
        if a.report.suffix != ".json":  # its .md is written beside it, never over the report itself
            p.error(f"--report {a.report} must be the .json report")
        if not a.report.is_file():
            p.error(f"--report {a.report} is not a file")
        try:
            text = markdown(json.loads(a.report.read_text()))
        except (ValueError, KeyError, TypeError) as e:  # not JSON, or not this script's report
            p.error(f"--report {a.report} is not a report of this script ({type(e).__name__}: {e})")
        write_report(a.report.with_suffix(".md"), text)
        return
    if a.child:
        print(json.dumps(child(a.child, a.tile, tuple(int(v) for v in a.levels.split(",")))))
        return
    sizes = parse_sizes(a.sizes)
    if not sizes or any(not valid_size(size) for size in sizes):  # none: a report of no runs
        p.error(f"--sizes must be among {', '.join(SIZES)}, with levels or not (8k:2,1), got {a.sizes!r}")
    from wct.bench import machine, report_problem
    from wct.paths import stopped_paths

    paths = [a.out.with_suffix(suffix) for suffix in (".json", ".md")]
    for path in paths:  # before minutes of work
        if problem := report_problem(path, a.overwrite):
            p.error(f"--out {problem}")
    report = {
        "machine": machine("cpu"),
        "threads": a.threads,
        "sizes": sizes,
        "finished": False,
        "check": None if a.no_check else check(a.check_tile),
        "runs": [],
    }
    partial = stopped_paths(paths)  # the sizes so far, marked partial: beside an earlier report
    for size in sizes:
        try:
            report["runs"].append(run_child(size, "auto", a.threads))
        except ChildFailed as e:
            if not report["runs"]:
                sys.exit(f"error: {e}")
            write_reports(partial, report | {"error": str(e)})
            sys.exit(f"error: {e} (the sizes before it are in {partial[0]})")
        print(json.dumps(report["runs"][-1]), flush=True)
        if len(report["runs"]) < len(sizes):  # a run stopped later keeps these
            write_reports(partial, report)
    report["finished"] = True
    write_reports(paths, report)
    for path in set(partial) - set(paths):  # this run's own partial report, now replaced
        path.unlink(missing_ok=True)
    print(markdown(report))


if __name__ == "__main__":
    main()
