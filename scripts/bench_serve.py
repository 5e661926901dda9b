"""Benchmark `wct serve`: live-preview latency at 256 px, and a full-size render against the CLI.

    python scripts/bench_serve.py [--size 512] [--repeats 3] [--previews 8] [--json docs/bench/serve.json]
        [--overwrite]

Runs the studio with uvicorn on a free loopback port and talks to it over HTTP like the page does.
Inputs are our generated landscape and painting (wct.demo, CC0). Preview latency is measured
after the first preview (which loads the weights and computes the style's statistics), alpha
moving as a slider would; full size is timed from the render request to the downloaded PNG and
compared with `python -m wct stylize` for the same job (process start and weight loading
included, as a user runs it) and with the same job in-process through `wct.stylize`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
import uvicorn
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (5, 4, 3, 2, 1)
FIRST_ALPHA = 0.3  # the first preview's, which loads the weights and the style: not timed
# The timed previews' alphas: slider positions 0.05..0.95 spread out, each once and none the first's
# (the studio keeps every computed position, so a repeat would time its cache, not the model).
ALPHAS = [a for a in (round(0.05 + (i * 0.35) % 0.95, 2) for i in range(19)) if a != FIRST_ALPHA]
sys.path.insert(0, str(ROOT))

from wct import serve  # noqa: E402
from wct.bench import conv_throughput, count_flops, machine, median_seconds, report_problem  # noqa: E402
from wct.demo import landscape, painting  # noqa: E402
from wct.errors import OutputError  # noqa: E402
from wct.images import write_json  # noqa: E402


def call(url: str, data: bytes | None = None, method: str | None = None, json_body=None):
    headers = {}
    if json_body is not None:
        data, headers = json.dumps(json_body).encode(), {"Content-Type": "application/json"}
    method = method or ("GET" if data is None else "POST")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req) as r:
        return r.read(), r.headers


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def start():
    """The studio on a free loopback port (uvicorn on a thread): (base url, server, app)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = serve.create_app(device="cpu")
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, app


def session(base: str, content: bytes, style: bytes) -> tuple[str, dict]:
    sid = json.loads(call(f"{base}/api/sessions", b"", "POST")[0])["id"]
    ids = [
        json.loads(call(f"{base}/api/sessions/{sid}/images", d, "POST")[0])["id"] for d in (content, style)
    ]
    return f"{base}/api/sessions/{sid}", {"content": ids[0], "styles": ids[1:]}


def render(api: str, params: dict) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    job = json.loads(call(f"{api}/render", json_body=params)[0])["job"]
    with urllib.request.urlopen(f"{api}/jobs/{job}/events") as events:  # server-sent events
        for line in events:
            if line.startswith(b"data: "):
                state = json.loads(line[6:])
                if state["status"] == "error":
                    raise RuntimeError(state["error"])
    data = call(api.rsplit("/api/", 1)[0] + state["result"]["url"])[0]
    return time.perf_counter() - t0, data


def cli_env() -> dict[str, str]:
    """The environment of the CLI runs: this checkout's wct, on as many threads as the studio here."""
    return os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}


def cpu() -> float:
    """CPU seconds of this process (all threads: the server's worker and torch's) and its children."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def timed(fn, cpus: list | None = None) -> float:
    """Wall seconds of fn(); its CPU seconds are appended to `cpus`. On a shared machine the CPU
    time is the steadier number: wall time there includes waiting for other jobs' turns."""
    c0, t0 = cpu(), time.perf_counter()
    fn()
    if cpus is not None:
        cpus.append(cpu() - c0)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="Full-size render: longer side, px.")
    ap.add_argument(
        "--alpha", type=float, default=0.6, help="Style strength of the full-size render, 0 to 1."
    )
    ap.add_argument("--repeats", type=int, default=3, help="Full-size renders timed per route (median).")
    ap.add_argument(
        "--previews", type=int, default=8, help=f"Slider positions timed as previews, 1 to {len(ALPHAS)}."
    )
    ap.add_argument(
        "--json",
        type=Path,
        default=ROOT / "docs" / "bench" / "serve.json",
        help="Report file (JSON; default %(default)s).",
    )
    ap.add_argument("--overwrite", action="store_true", help="Replace an existing --json report.")
    args = ap.parse_args()
    if not 16 <= args.size <= serve.MAX_SIZE or min(args.repeats, args.previews) < 1:
        ap.error(f"--size must be 16 to {serve.MAX_SIZE} px, --repeats and --previews at least 1")
    if args.previews > len(ALPHAS):
        ap.error(f"--previews must be 1 to {len(ALPHAS)} (distinct slider positions), got {args.previews}")
    if not 0 <= args.alpha <= 1:
        ap.error(f"--alpha must be between 0 and 1, got {args.alpha}")
    if problem := report_problem(args.json, args.overwrite):  # before minutes of work
        ap.error(f"--json {problem}")
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    med = statistics.median
    load = [os.getloadavg()[0]]
    content, style = landscape(512, 384), painting(384, 384)
    base, server, app = start()
    api, ids = session(base, png(content), png(style))
    # the studio previews at min(size, 256) px: at 256 whatever --size, as the report says
    preview = ids | {"size": max(args.size, serve.PREVIEW_SIZE)}

    # 1. Computed previews (no prefetch): the first (FIRST_ALPHA, not among `alphas`) loads the
    # weights and the style's statistics.
    app.state.engine.prefetch = False
    first = timed(lambda: call(f"{api}/preview", json_body=preview | {"alpha": FIRST_ALPHA}))
    alphas = ALPHAS[: args.previews]
    rtt, model, rtt_cpu = [], [], []
    for a in alphas:
        c0, t0 = cpu(), time.perf_counter()
        _, headers = call(f"{api}/preview", json_body=preview | {"alpha": a})
        rtt.append(time.perf_counter() - t0)
        rtt_cpu.append(cpu() - c0)
        model.append(float(headers["X-Compute-Ms"]) / 1000)
    from wct import stylize  # the same preview without any cache (style encoded every time)

    stylize(content, style, 0.6, size=16)  # load its weights (CPU by default here) before timing
    uncached_cpu: list[float] = []
    uncached = [
        timed(lambda a=a: stylize(content, style, a, size=256, device="cpu"), uncached_cpu) for a in alphas
    ]
    load.append(os.getloadavg()[0])

    # 2. Prefetch: the idle worker renders every slider position; then the slider costs no model work.
    frames = next(iter(app.state.sessions.items.values())).frames
    frames.clear()
    app.state.engine.prefetch = True
    c0, t0 = cpu(), time.perf_counter()
    call(f"{api}/preview", json_body=preview | {"alpha": 0.6})  # computed; the worker then prefetches
    steps = round(1 / serve.ALPHA_STEP) + 1
    while len(frames) < steps:
        time.sleep(0.05)
    fill, fill_cpu = time.perf_counter() - t0, cpu() - c0
    slider = [timed(lambda a=a: call(f"{api}/preview", json_body=preview | {"alpha": a})) for a in alphas]
    app.state.engine.prefetch = False
    load.append(os.getloadavg()[0])

    # 3. Full size, interleaved (the machine is shared): a fresh session (upload, style statistics,
    # render, PNG, download) vs the CLI in a new process vs wct.stylize in-process.
    warm, cold, cli, inproc, served = [], [], [], [], b""
    cpus: dict[str, list[float]] = {"cold": [], "cli": [], "inproc": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        c, s, out = Path(tmp) / "content.png", Path(tmp) / "style.png", Path(tmp) / "out.png"
        content.save(c)
        style.save(s)
        cmd = [sys.executable, "-m", "wct", "stylize", str(c), str(s), "-o", str(out), "--overwrite"]
        cmd += ["--alpha", str(args.alpha), "--size", str(args.size), "--device", "cpu"]
        env = cli_env()
        job = {"alpha": args.alpha, "size": args.size}
        for _ in range(args.repeats):
            c0, t0 = cpu(), time.perf_counter()
            api2, ids2 = session(base, c.read_bytes(), s.read_bytes())
            served = render(api2, ids2 | job)[1]
            cold.append(time.perf_counter() - t0)
            cpus["cold"].append(cpu() - c0)
            call(api2, method="DELETE")
            run_cli = lambda: subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)  # noqa: E731
            cli.append(timed(run_cli, cpus["cli"]))
            inproc.append(
                timed(lambda: stylize(c, s, args.alpha, size=args.size, device="cpu"), cpus["inproc"])
            )
            warm.append(timed(lambda: render(api, ids | job), cpus["warm"]))
        cli_pixels = np.asarray(Image.open(out).convert("RGB"))
        same = np.array_equal(cli_pixels, np.asarray(Image.open(io.BytesIO(served))))
    load.append(os.getloadavg()[0])
    server.should_exit = True

    # 4. The floor under a computed preview: the FLOPs it runs (first level cached, as in the studio)
    # over this machine's measured convolution throughput, and the same cascade timed in-process.
    s = app.state.engine.s
    st = s.style(style)
    prep = serve.prepare(content, serve.PREVIEW_SIZE, None, [st], LEVELS)
    cascade = lambda a=0.6: s.cascade(prep.x, [st], a, LEVELS, first=prep.first, hw=prep.hw)  # noqa: E731
    cascade(0.3)  # fills the first-level memo
    preview_flops = count_flops(cascade)
    preview_s = median_seconds(cascade, args.repeats + 2)
    vgg_flops, vgg_s = conv_throughput(s.encoder)
    floor = preview_flops / (vgg_flops / vgg_s)

    r3 = lambda v: [round(x, 3) for x in v]  # noqa: E731
    result = {
        "machine": {
            "cpu": machine("cpu"),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "load_average_1min": [round(v, 2) for v in load],
            "note": "load_average_1min is the load at each phase on these cores: above their count, "
            "wall times include waiting for other jobs; *_cpu_s are the CPU seconds of the work itself",
        },
        "inputs": "wct.demo landscape 512x384 and painting 384x384 (ours, CC0); levels 5,4,3,2,1",
        "preview": {
            "size_px": "256x192",
            "first_s": round(first, 3),
            "alphas": alphas,
            "computed_round_trip_s": r3(rtt),
            "computed_model_s": r3(model),
            "median_computed_round_trip_s": round(med(rtt), 3),
            "median_computed_model_s": round(med(model), 3),
            "computed_round_trip_cpu_s": r3(rtt_cpu),
            "median_computed_round_trip_cpu_s": round(med(rtt_cpu), 3),
            "uncached_wct_stylize_256_s": r3(uncached),
            "uncached_wct_stylize_256_cpu_s": r3(uncached_cpu),
            "median_uncached_wct_stylize_256_s": round(med(uncached), 3),
            "median_uncached_wct_stylize_256_cpu_s": round(med(uncached_cpu), 3),
            "prefetch_all_positions_s": round(fill, 3),
            "prefetch_all_positions_cpu_s": round(fill_cpu, 3),
            "positions": steps,
            "prefetched_round_trip_s": r3(slider),
            "median_prefetched_round_trip_s": round(med(slider), 4),
            "computed_preview_gflop": round(preview_flops / 1e9, 1),
            "conv_throughput_gflops": round(vgg_flops / vgg_s / 1e9, 1),
            "floor_s": round(floor, 3),
            "in_process_computed_preview_s": round(preview_s, 3),
            "target_s": 0.5,
        },
        "full_size": {
            "size_px": args.size,
            "alpha": args.alpha,
            "server_fresh_session_s": r3(cold),
            "server_style_cached_s": r3(warm),
            "cli_subprocess_s": r3(cli),
            "in_process_wct_stylize_s": r3(inproc),
            "median_server_fresh_session_s": round(med(cold), 3),
            "median_server_style_cached_s": round(med(warm), 3),
            "median_cli_subprocess_s": round(med(cli), 3),
            "median_in_process_s": round(med(inproc), 3),
            "cpu_s": {k: r3(v) for k, v in cpus.items()},
            "median_cpu_s": {k: round(med(v), 3) for k, v in cpus.items()},
            "server_fresh_over_cli_cpu": round(med(cpus["cold"]) / med(cpus["cli"]), 3),
            "server_fresh_over_in_process_cpu": round(med(cpus["cold"]) / med(cpus["inproc"]), 3),
            "server_fresh_over_cli": round(med(cold) / med(cli), 3),
            "server_fresh_over_in_process": round(med(cold) / med(inproc), 3),
            "target_ratio": 1.1,
            "server_png_equals_cli_png_pixels": bool(same),
        },
    }
    print(json.dumps(result, indent=1))
    try:  # whole or not at all
        write_json(result, args.json)
    except OutputError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
