"""Train several decoders at once on one lent GPU, within the device tool's limits.

Only the checkout travels (64 MiB a call), so `pack` writes what the GPU needs into one ignored
folder, `.gpu`: the encoder weights, a few validation photos, the decoders to start from, and as
many training photos as fit, resized to short side 320 as WebP in a seeded random order (so any
prefix holds every source). The encoder travels as int8 with one fp16 scale per output channel
(12.9 MB instead of 25.9), the decoders named by `--q8` with one per 3x3 kernel (relu5_1: 16.9 MB
instead of 26.9; -0.03 dB before any training). Photos fill `--budget-mb` less the files that
travel (tracked, or untracked and not ignored); those named by `--leave-out` (docs, the decoder
files) are not counted, so move them out of the tree for the call, as `pack` reminds you (by
default docs/ and the `--q8` decoders' own files; a level whose decoder is in neither place starts
from scratch). Name `.gpu` in `carry` in EVERY call: the device tool removes a carried folder that
a later call does not name, under the running jobs. On the GPU, `start` launches one `python -m
wct.train` per level in the background, all with the same wall-time budget (the schedule follows
time), and `wait` polls their logs until they end, packing the best decoders into $OUT in pieces of
at most 15 MB as it goes. Back here, `cat part_* | tar x`, then `adopt` scores each best decoder on
the full val set, writes that score into its metadata and exports it to decoders/ if it beats the
one there. `start --seeds 0 1 2` trains one run per seed from the same decoder, for `wct
average-decoders` to average; `wait --soups` averages them with their start there and sends that
back in fp16, each run as int8 while room allows (`adopt` takes either, and takes the start's int8
rounding back out of a soup). `pack --skip N` carries the photos after the N an earlier call
carried, so calls in turn see every photo.

    python scripts/train_gpu.py pack --q8 4 5       # then move out what it names
    python scripts/train_gpu.py start --minutes 7     # on the GPU machine
    python scripts/train_gpu.py wait --seconds 540 --out $OUT
    python scripts/train_gpu.py adopt l3/relu3_1.best.safetensors l4/relu4_1.best.safetensors
"""

import argparse
import fnmatch
import itertools
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
GPU = ROOT / ".gpu"
RUNS = ROOT / "runs" / "gpu"
sys.path.insert(0, str(ROOT))  # the GPU machine runs the checkout, not an installed wct
DATA = Path("/tmp/wct_train")
INIT = Path("/tmp/wct_init")
SHORT_SIDE = 320

if TYPE_CHECKING:
    from wct.decoder import Decoder

# level: peak lr when fine-tuning the shipped decoder
PLAN = {2: 1e-4, 3: 3e-4, 4: 3e-4, 5: 2e-4}


def to_int8(tensors: dict[str, torch.Tensor], per_kernel: bool = True) -> dict[str, torch.Tensor]:
    """Conv weights as int8 with one fp16 scale (`.scale`) per 3x3 kernel, or per output channel;
    other tensors as they are."""
    out = {}
    for k, v in tensors.items():
        if k.endswith(".weight"):
            w = v.float()
            scale = w.abs().amax(dim=(2, 3) if per_kernel else (1, 2, 3), keepdim=True).clamp_min(1e-12) / 127
            out[k] = (w / scale).round().clamp(-127, 127).to(torch.int8)
            out[k + ".scale"] = scale.half()
        else:
            out[k] = v
    return out


def read_int8(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Inverse of `to_int8`, from a file: fp32 tensors and the file's metadata."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta, t = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    state = {
        k: v.float() * t[k + ".scale"].float() if v.dtype == torch.int8 else v.float()
        for k, v in t.items()
        if not k.endswith(".scale")
    }
    return state, meta


def quantize(path: Path, target: Path) -> None:
    """Write a decoder file as int8 (`to_int8`): relu5_1 16.9 MB instead of 26.9."""
    from safetensors.torch import save_file

    from wct.decoder import read_decoder

    tensors, meta = read_decoder(path)
    save_file(to_int8(tensors), target, metadata=meta)


def dequantize(path: Path, target: Path) -> None:
    """Inverse of `quantize`: a decoder file `wct.train --init-from` reads."""
    from wct.decoder import Decoder, save_decoder

    state, meta = read_int8(path)
    decoder = Decoder(int(meta["level"]))
    decoder.load_state_dict(state)
    save_decoder(decoder, target, meta)  # writes its own level and digest


def init_file(level: int) -> Path | None:
    """The decoder a level starts from: the tracked file, or the int8 copy in `.gpu`."""
    name = f"relu{level}_1.safetensors"
    if (GPU / "init" / f"{name}.q8").exists():
        dequantize(GPU / "init" / f"{name}.q8", INIT / name)
        return INIT / name
    return ROOT / "decoders" / name if (ROOT / "decoders" / name).exists() else None


def encoder_file() -> Path:
    """The encoder weights the runs read: the int8 copy in `.gpu` written out in fp16. Decoding
    such an encoder's relu5_1 features with the shipped decoder scored 20.377 dB on 12 val photos
    against the fp32 encoder's 20.383 (20.385 with a scale per kernel, 2.9 MB more)."""
    from wct.encoder import save_weights

    target = INIT / "vgg19_fp16.safetensors"
    if not target.exists():
        INIT.mkdir(parents=True, exist_ok=True)
        save_weights(read_int8(GPU / "vgg19.q8.safetensors")[0], target)
    return target


def travelling_bytes(leave_out: list[str]) -> int:
    """Bytes of the files in the tree that travel (tracked, and untracked but not ignored), less those
    matching `leave_out` (moved out for the call)."""
    ls = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    out = subprocess.run(ls, cwd=ROOT, capture_output=True, check=True).stdout
    names = [n for n in out.decode().split("\0") if n]
    keep = [ROOT / n for n in names if not any(fnmatch.fnmatch(n, pat) for pat in leave_out)]
    return sum(f.stat().st_size for f in keep if f.is_file())


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def pack_photos(
    files: list[Path], target: Path, max_bytes: int, short_side: int, quality: int, skip: int = 0
) -> int:
    """Write photos as WebP in a seeded random order, from its `skip`-th on, until the next would
    pass `max_bytes`."""
    order, used, written = random.Random(0).sample(range(len(files)), len(files)), 0, 0
    for i in order[skip:]:
        im = Image.open(files[i]).convert("RGB")
        s = short_side / min(im.size)
        if s < 1:
            im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.LANCZOS)
        out = target / f"{i:04d}.webp"
        im.save(out, quality=quality)
        if used + out.stat().st_size > max_bytes:
            out.unlink()
            break
        used, written = used + out.stat().st_size, written + 1
    return written


def pack_into(
    folder: Path,
    files: list[Path],
    val_files: list[Path],
    quality: int,
    q8: list[int],
    short_side: int,
    budget_mb: float,
    leave_out: list[str],
    skip: int,
) -> tuple[int, int]:
    """Write a pack (see `pack`) into the new `folder`: the photos packed and the bytes that
    travel besides them."""
    from safetensors.torch import save_file

    from wct.encoder import VGG19_MD5, default_weights_path, read_weights

    for sub in ("train", "val", "init"):
        (folder / sub).mkdir(parents=True)
    for level in q8:
        quantize(ROOT / f"decoders/relu{level}_1.safetensors", folder / f"init/relu{level}_1.safetensors.q8")
    weights, _ = read_weights(default_weights_path())
    meta = {"source_md5": VGG19_MD5}
    save_file(to_int8(weights, per_kernel=False), folder / "vgg19.q8.safetensors", metadata=meta)
    for f in val_files:
        (folder / "val" / f.name).write_bytes(f.read_bytes())
    fixed = travelling_bytes([*leave_out, f"{folder.name}/*"]) + folder_bytes(folder)  # folder: once
    room = int(budget_mb * 2**20) - fixed
    if room <= 0:
        sys.exit(
            f"error: {fixed / 2**20:.1f} MiB travel before any photo; raise --budget-mb or --leave-out more"
        )
    n = pack_photos(files, folder / "train", room, short_side, quality, skip)
    if not n:  # a run on no photos would fail on the GPU, after its start-up
        why = f"--skip {skip} leaves none of the {len(files)}" if skip >= len(files) else "none fits"
        sys.exit(f"error: no photo packed ({why}); lower --skip, raise --budget-mb or --leave-out more")
    # one file: the device tool refused a 63.4 MiB tree holding 1,854 loose photos (it seems to
    # count each small file's disk blocks) and took the same photos zipped
    with zipfile.ZipFile(folder / "train.zip", "w", zipfile.ZIP_STORED) as z:
        for f in sorted((folder / "train").iterdir()):
            z.write(f, f.name)
    shutil.rmtree(folder / "train")
    return n, fixed


def pack(
    train: Path,
    val: Path,
    val_every: int,
    quality: int,
    q8: list[int],
    short_side: int,
    budget_mb: float,
    leave_out: list[str],
    skip: int = 0,
) -> None:
    from wct.images import list_images

    files, val_files = list_images(train), list_images(val)[::val_every]
    if not files or not val_files:  # before the last pack is removed
        sys.exit(f"error: no photos in {train if not files else val}: check --train and --val")
    stage = GPU.with_name(".gpu.new")  # the last pack stays whole until this one is
    shutil.rmtree(stage, ignore_errors=True)
    try:
        n, fixed = pack_into(stage, files, val_files, quality, q8, short_side, budget_mb, leave_out, skip)
    except BaseException:  # refused, failed or stopped: no half pack is left to travel
        shutil.rmtree(stage, ignore_errors=True)
        raise
    shutil.rmtree(GPU, ignore_errors=True)  # written only by pack: a stale photo or decoder must not travel
    stage.rename(GPU)
    print(
        f"packed {n} of {len(files)} photos (from the {skip}th of the order: next call --skip {skip + n}); "
        f"{(fixed + (GPU / 'train.zip').stat().st_size) / 2**20:.1f} MiB travel"
    )
    print("move out of the tree for the call:", " ".join(leave_out))


def unpack_photos() -> None:
    """Put the carried training photos, `pack`'s `train.zip`, in DATA."""
    if not (GPU / "train.zip").is_file():
        sys.exit(f"error: {GPU / 'train.zip'} is missing: run `pack` here and name .gpu in carry")
    DATA.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(GPU / "train.zip") as z:
        z.extractall(DATA)


def start(
    minutes: float,
    batch: int,
    crop: int,
    workers: int,
    levels: list[int],
    device: str,
    feature_weight: float,
    lr: list[float] | None,
    seeds: list[int],
    loss: str = "mse",
    scale: float = 1.0,
    rotate_seeds: tuple[int, ...] = (),
) -> None:
    unpack_photos()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    pids = []
    inits = {level: init_file(level) for level in levels}  # dequantized once, shared by its seeds
    vgg = encoder_file()
    for level, (i, seed) in itertools.product(levels, enumerate(seeds)):
        peak, init = lr[i % len(lr)] if lr else PLAN[level], inits[level]
        out = RUNS / (f"l{level}" if seed == seeds[0] else f"l{level}s{seed}")
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
            "--scale",
            str(scale),
            "--batch",
            str(batch),
            "--steps",
            "1000000",
            "--minutes",
            str(minutes),
            "--lr",
            str(peak),
            "--feature-weight",
            str(feature_weight),
            "--feature-from",
            "0.8",
            "--loss",
            loss,
            "--out",
            str(out),
            "--device",
            device,
            "--workers",
            str(workers),
            "--val-every",
            "250",
            "--val-images",
            "8",
            "--ckpt-every",
            "250",
            "--vgg-weights",
            str(vgg),
            "--seed",
            str(seed),
        ]
        if init:
            cmd += ["--init-from", str(init)]
        if seed in rotate_seeds:
            cmd += ["--rotate"]
        with open(out / "train.log", "a") as log:
            p = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        pids.append(p.pid)
        print("started", " ".join(cmd[3:6]), "from", init or "scratch", flush=True)
    (RUNS / "pids").write_text(" ".join(map(str, pids)))


def soup(level: int) -> Path | None:
    """Write the equal average of a level's runs (each one's best decoder) and the decoder they
    started from (its int8 copy, if it travelled so), the mix that scored best so far (model card);
    None with fewer than two."""
    from wct.decoder import average_decoders, load_decoder, save_decoder, soup_metadata

    name = f"relu{level}_1.safetensors"
    start = next((f for f in (INIT / name, ROOT / "decoders" / name) if f.exists()), None)
    files = sorted(RUNS.glob(f"l{level}*/relu{level}_1.best.safetensors")) + ([start] if start else [])
    if len(files) < 2:
        return None
    decoders = [load_decoder(None, "cpu", path=f) for f in files]
    target = RUNS / f"relu{level}_1.soup.safetensors"
    save_decoder(average_decoders(decoders), target, soup_metadata(files, decoders, [1.0] * len(files)))
    return target


def collect(out: Path, soups: bool = False, room: int = 60 * 2**20) -> None:
    """Pack logs, curves and each run's best decoder into `out` in pieces of 15 MB. With `soups`,
    each level's soup (fp16) comes first and the runs' decoders travel as int8 while they fit in
    `room`, so that three or more seeds still come back whole in one average."""
    tar = Path("/tmp/gpu_runs.tar")
    files = sorted(RUNS.glob("l*/*"))
    keep = [f for f in files if f.suffix in (".log", ".png")]
    best = [f for f in files if f.name.endswith(".best.safetensors")]
    if soups:
        levels = sorted({int(f.name.removeprefix("relu")[0]) for f in best})
        keep += [f for f in (soup(level) for level in levels) if f]
        for f in best:
            q8 = f.with_name(f.name + ".q8")
            quantize(f, q8)
            if sum(k.stat().st_size for k in keep) + q8.stat().st_size <= room:
                keep.append(q8)
    else:
        keep += best
    with tarfile.open(tar, "w") as t:
        for f in keep:
            t.add(f, arcname=str(f.relative_to(RUNS)))
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("part_*"):
        old.unlink()
    subprocess.run(["split", "-b", "15M", str(tar), str(out / "part_")], check=True)


def wait(seconds: float, out: Path | None, soups: bool = False) -> None:
    """Report every 30 s until the runs end or `seconds` pass, collecting into `out` every 2 min."""
    t0, collected = time.time(), time.time()
    if not (RUNS / "pids").is_file():
        sys.exit(f"error: {RUNS / 'pids'} is missing: `start` the runs on this machine first")
    pids = [int(p) for p in (RUNS / "pids").read_text().split()]
    while True:
        time.sleep(max(0.0, min(30.0, seconds - (time.time() - t0))))
        for log in sorted(RUNS.glob("l*/train.log")):
            lines = log.read_text(errors="replace").strip().splitlines()
            val = [x for x in lines if "val PSNR" in x]
            print(log.parent.name, "|", (val or ["-"])[-1], "|", (lines or ["-"])[-1][-90:], flush=True)
        running = [p for p in pids if Path(f"/proc/{p}").exists()]
        if not running or time.time() - t0 >= seconds - 1:
            break
        if out and time.time() - collected > 120:
            collect(out, soups)
            collected = time.time()
    if out:
        collect(out, soups)


def unround_start(decoder: "Decoder") -> bool:
    """In a soup whose start travelled as int8, put the tracked start back in place of its int8
    copy: add weight/total x (start - int8 copy). Measured on the thirteenth stage's soup: 19.858 dB,
    against 19.851 when the whole offset is added (as if every run had started from the tracked
    file). True if corrected; only when the tracked file's int8 round trip has the copy's digest."""
    import json
    import tempfile

    from wct.decoder import read_decoder

    parts = json.loads(decoder.metadata.get("averaged_from", "[]"))
    start = next((p for p in parts if Path(p["file"]).parent == INIT), None)
    tracked = ROOT / "decoders" / f"relu{decoder.level}_1.safetensors"
    if start is None or not tracked.exists():
        return False
    with tempfile.TemporaryDirectory() as tmp:
        q8, copy = Path(tmp) / "start.q8", Path(tmp) / "start.safetensors"
        quantize(tracked, q8)
        dequantize(q8, copy)
        rounded, meta = read_decoder(copy)
    if meta["sha256"] != start["sha256"]:
        print(f"{tracked} is not the start this soup's runs had: left as it is", flush=True)
        return False
    exact = read_decoder(tracked)[0]
    share = start["weight"] / sum(p["weight"] for p in parts)
    offset = {k: exact[k].float() - rounded[k].float() for k in rounded}
    decoder.load_state_dict({k: v.float() + share * offset[k] for k, v in decoder.state_dict().items()})
    return True


def adopt(files: list[Path], val: Path, data: str, hardware: str) -> None:
    """Rescore GPU-trained decoders on the full val set and export each one that is better."""
    from wct.decoder import load_decoder, save_decoder
    from wct.encoder import load_encoder
    from wct.evaluate import load_val_images, reconstruction_scores
    from wct.train import export

    encoder, images = load_encoder("cpu"), load_val_images(val)
    for f in files:
        if f.suffix == ".q8":  # a run that came back as int8 beside its level's soup
            dequantize(f, f.with_suffix(""))
            f = f.with_suffix("")
        decoder = load_decoder(None, "cpu", path=f)  # in eval mode, no grad
        meta = dict(decoder.metadata)
        if "start_unrounded" not in meta and unround_start(decoder):  # once: not again on a file adopt wrote
            meta["start_unrounded"] = "the int8 copy of the start replaced by the tracked file"
            print(f, "its start's int8 rounding taken back out", flush=True)
        s = reconstruction_scores(encoder, decoder, images)
        meta.update(val_psnr=f"{s['psnr']:.3f}", val_ssim=f"{s['ssim']:.4f}", val_images=str(s["images"]))
        meta.update(val_data=os.path.relpath(val, ROOT), training_data=data)
        meta.setdefault("hardware", hardware)
        # beside f, never over it (a soup's name has no ".best.")
        scored = f.with_name(
            f.name.replace(".best.", ".scored.") if ".best." in f.name else f"{f.stem}.scored{f.suffix}"
        )
        save_decoder(decoder, scored, meta)
        print(f, f"{s['psnr']:.3f} dB", flush=True)
        export(scored, ROOT / "decoders" / f"relu{decoder.level}_1.safetensors")


def main() -> None:
    from wct.train import LOSSES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, help="the step to run")
    what = "Write .gpu here: the encoder, decoders, val photos and the training photos that fit."
    p = sub.add_parser("pack", help=what, description=what)
    p.add_argument(
        "--train", type=Path, default=ROOT.parent / "shared/data/train", help="Training photos folder."
    )
    p.add_argument(
        "--val", type=Path, default=ROOT.parent / "shared/data/val", help="Validation photos folder."
    )
    p.add_argument("--val-every", type=int, default=3, help="Carry every Nth validation photo (default 3).")
    p.add_argument("--quality", type=int, default=75, help="WebP quality (lower: more photos, easier ones)")
    p.add_argument("--q8", type=int, nargs="*", default=[], help="levels whose decoder travels as int8")
    p.add_argument(
        "--short-side", type=int, default=SHORT_SIDE, help="downscale photos to this (smaller, but easier)"
    )
    p.add_argument("--budget-mb", type=float, default=62.5, help="MiB that may travel in all (the tool: 64)")
    p.add_argument(
        "--leave-out",
        nargs="*",
        help="tracked files you move out for the call (default: docs and the --q8 decoders)",
    )
    p.add_argument("--skip", type=int, default=0, help="photos of the seeded order to skip (carried before)")
    what = "On the GPU: start one background training run per level and seed."
    s = sub.add_parser("start", help=what, description=what)
    s.add_argument("--minutes", type=float, required=True, help="Wall-time budget of every run, minutes.")
    s.add_argument("--batch", type=int, default=16, help="Images per step (default 16).")
    s.add_argument(
        "--crop", type=int, default=256, help="Side of the square training crops, px (default 256)."
    )
    s.add_argument("--workers", type=int, default=4, help="Data-loading processes per run (default 4).")
    s.add_argument("--levels", type=int, nargs="+", default=[3, 4, 5], help="Decoder levels (default 3 4 5).")
    s.add_argument("--device", default="cuda", help="Device of the runs (default cuda).")
    s.add_argument("--feature-weight", type=float, default=0.0, help="0.01 costs pixel PSNR (model card)")
    s.add_argument(
        "--lr",
        type=float,
        nargs="+",
        help="peak lr for every level, or one per seed (default: PLAN's for each)",
    )
    s.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per level and seed, to average")
    s.add_argument("--loss", choices=LOSSES, default="mse", help="see wct train --loss")
    s.add_argument("--scale", type=float, default=1.0, help="see wct train --scale")
    s.add_argument("--rotate-seeds", type=int, nargs="*", default=[], help="these seeds' runs use --rotate")
    what = "On the GPU: follow the runs, packing their best decoders into --out."
    w = sub.add_parser("wait", help=what, description=what)
    w.add_argument("--seconds", type=float, required=True, help="How long to follow the runs, s.")
    w.add_argument("--out", type=Path, help="Folder for the part_* pieces (default: report only).")
    w.add_argument(
        "--soups", action="store_true", help="return each level's soup, and its runs as int8 as room allows"
    )
    what = "Back here: rescore decoders on the full val set and export those that beat decoders/."
    d = sub.add_parser("adopt", help=what, description=what)
    d.add_argument("files", type=Path, nargs="+", help="Decoder files that came back (.safetensors or .q8).")
    d.add_argument(
        "--val", type=Path, default=ROOT.parent / "shared/data/val", help="Validation photos to score on."
    )
    train = f"../shared/data/train (a subset, short side {SHORT_SIDE}, WebP)"
    d.add_argument("--data", default=train, help="Training data to record in the metadata.")
    d.add_argument("--hardware", default="GPU", help="for files written before wct recorded it")
    a = ap.parse_args()
    if a.cmd == "pack":
        if not 0 <= a.quality <= 100 or min(a.val_every, a.short_side) < 1 or a.skip < 0 or a.budget_mb <= 0:
            ap.error(
                "--quality must be 0 to 100, --val-every and --short-side at least 1, --skip at least 0 "
                "and --budget-mb above 0"
            )
        if missing := [v for v in a.q8 if not (ROOT / f"decoders/relu{v}_1.safetensors").is_file()]:
            ap.error(f"--q8: no decoders/relu{{level}}_1.safetensors for level(s) {missing}")
        leave_out = (
            a.leave_out
            if a.leave_out is not None
            else ["docs/*"] + [f"decoders/relu{v}_1.safetensors" for v in a.q8]
        )
        pack(a.train, a.val, a.val_every, a.quality, a.q8, a.short_side, a.budget_mb, leave_out, a.skip)
    elif a.cmd == "start":
        unplanned = [v for v in a.levels if v not in PLAN]
        if a.lr is None and unplanned:
            ap.error(f"no planned lr for level(s) {unplanned} (PLAN covers {sorted(PLAN)}): pass --lr")
        if a.lr and len(a.lr) not in (1, len(a.seeds)):
            ap.error(f"--lr takes one value, or one per seed ({len(a.seeds)}), not {len(a.lr)}")
        start(
            a.minutes,
            a.batch,
            a.crop,
            a.workers,
            a.levels,
            a.device,
            a.feature_weight,
            a.lr,
            a.seeds,
            a.loss,
            a.scale,
            tuple(a.rotate_seeds),
        )
    elif a.cmd == "wait":
        wait(a.seconds, a.out, a.soups)
    else:
        adopt(a.files, a.val, a.data, a.hardware)


if __name__ == "__main__":
    from wct.errors import WCTError

    try:
        main()
    except WCTError as e:  # a missing or damaged decoder file, a bad --val: one line
        sys.exit(f"error: {e}")
