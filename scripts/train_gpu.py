"""Train decoders 2..5 together on one lent GPU, within the device tool's limits.

Only the checkout travels (64 MiB a call), so `pack` writes what the GPU needs into one ignored
folder, `.gpu` (add `/.gpu/` to .git/info/exclude): fp16 encoder weights, the training photos
resized to short side 256 as WebP (every fifth left out, to fit beside the tracked files) and a
few validation photos, about 50 MB. Name `.gpu` in `carry` in EVERY call: the device tool removes
a carried folder that a later call does not name, under the running jobs. The relu5_1 decoder
(27 MB) does not fit beside it, so level 5 starts fresh there. On the GPU, `start` launches one
`python -m wct.train` per level in the background, all with the same wall-time budget (the
schedule follows time), and `wait` polls their logs and packs the best decoders into $OUT in
pieces of at most 15 MB. Back here, `cat part_* | tar x` and evaluate on the full val set.

    python scripts/train_gpu.py pack
    python scripts/train_gpu.py start --minutes 20     # on the GPU machine
    python scripts/train_gpu.py wait --seconds 540 --out $OUT
"""

import argparse
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
GPU = ROOT / ".gpu"
RUNS = ROOT / "runs" / "gpu"
DATA = Path("/tmp/wct_train")
SHORT_SIDE = 256

# level: (peak lr, decoder to fine-tune from, relative to the repo root)
PLAN = {
    2: (3e-4, "decoders/relu2_1.safetensors"),
    3: (5e-4, "decoders/relu3_1.safetensors"),
    4: (5e-4, "decoders/relu4_1.safetensors"),
    5: (3e-4, "decoders/relu5_1.safetensors"),
}


def pack(train: Path, val: Path, val_every: int, quality: int, skip_every: int) -> None:
    from wct.encoder import default_weights_path, read_weights, save_weights
    from wct.images import list_images

    for sub in ("train", "val"):
        (GPU / sub).mkdir(parents=True, exist_ok=True)
    weights, _ = read_weights(default_weights_path())
    save_weights(weights, GPU / "vgg19_fp16.safetensors")
    files = list_images(train)
    for i, f in enumerate(files):
        if skip_every and (i + 1) % skip_every == 0:
            continue
        im = Image.open(f).convert("RGB")
        s = SHORT_SIDE / min(im.size)
        if s < 1:
            im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.LANCZOS)
        im.save(GPU / "train" / f"{i:04d}.webp", quality=quality)
    for f in list_images(val)[::val_every]:
        (GPU / "val" / f.name).write_bytes(f.read_bytes())


def start(minutes: float, batch: int, crop: int, workers: int, levels: list[int]) -> None:
    DATA.mkdir(parents=True, exist_ok=True)
    for f in sorted((GPU / "train").glob("*.webp")):
        link = DATA / f.name
        if not link.exists():
            link.symlink_to(f)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    for level in levels:
        lr, init = PLAN[level]
        out = RUNS / f"l{level}"
        out.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "wct.train",
            "--level",
            str(level),
            "--data",
            str(DATA),
            "--val",
            str(GPU / "val"),
            "--crop",
            str(crop),
            "--batch",
            str(batch),
            "--steps",
            "1000000",
            "--minutes",
            str(minutes),
            "--lr",
            str(lr),
            "--feature-weight",
            "0.01",
            "--feature-from",
            "0.8",
            "--out",
            str(out),
            "--device",
            "cuda",
            "--workers",
            str(workers),
            "--val-every",
            "250",
            "--val-images",
            "8",
            "--ckpt-every",
            "250",
            "--vgg-weights",
            str(GPU / "vgg19_fp16.safetensors"),
        ]
        if (ROOT / init).exists():
            cmd += ["--init-from", str(ROOT / init)]
        with open(out / "train.log", "a") as log:
            subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        print("started", " ".join(cmd[3:6]), flush=True)


def collect(out: Path) -> None:
    tar = Path("/tmp/gpu_runs.tar")
    with tarfile.open(tar, "w") as t:
        for f in sorted(RUNS.glob("l*/*")):
            if f.suffix in (".log", ".png") or f.name.endswith(".best.safetensors"):
                t.add(f, arcname=str(f.relative_to(RUNS)))
    for old in out.glob("part_*"):
        old.unlink()
    subprocess.run(["split", "-b", "15M", str(tar), str(out / "part_")], check=True)


def wait(seconds: float, out: Path) -> None:
    t0 = time.time()
    while True:
        left = seconds - (time.time() - t0)
        time.sleep(max(0.0, min(60.0, left)))
        for log in sorted(RUNS.glob("l*/train.log")):
            lines = log.read_text(errors="replace").strip().splitlines()
            val = [x for x in lines if "val PSNR" in x]
            print(log.parent.name, "|", (val or ["-"])[-1], "|", (lines or ["-"])[-1][-90:], flush=True)
        if time.time() - t0 >= seconds - 1:
            break
    if out:
        collect(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--train", type=Path, default=ROOT.parent / "shared/data/train")
    p.add_argument("--val", type=Path, default=ROOT.parent / "shared/data/val")
    p.add_argument("--val-every", type=int, default=3)
    p.add_argument("--quality", type=int, default=65)
    p.add_argument("--skip-every", type=int, default=5, help="leave out every Nth photo (0: none)")
    s = sub.add_parser("start")
    s.add_argument("--minutes", type=float, required=True)
    s.add_argument("--batch", type=int, default=16)
    s.add_argument("--crop", type=int, default=256)
    s.add_argument("--workers", type=int, default=4)
    s.add_argument("--levels", type=int, nargs="+", default=[2, 3, 4, 5])
    w = sub.add_parser("wait")
    w.add_argument("--seconds", type=float, required=True)
    w.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.train, a.val, a.val_every, a.quality, a.skip_every)
    elif a.cmd == "start":
        start(a.minutes, a.batch, a.crop, a.workers, a.levels)
    else:
        wait(a.seconds, a.out)


if __name__ == "__main__":
    main()
