"""Build the relu5_1 decoder as a head on top of the relu4_1 decoder.

End-to-end training from a warm-started tail collapsed on our CPU budget: the fresh head fed the
tail inputs 10-100x larger than it was trained on, a ReLU layer of the tail died, and the decoder
returned the same image for every input (12.7 dB). Here the head (the layers between relu5_1 and
the relu4_1 resolution) predicts relu4_1 itself, scaled per channel to mean 1:
  1. its first conv is solved by least squares (2x2-block means of relu4_1 from 3x3 patches of
     normalised relu5_1), the three convs after the upsampling start as identities;
  2. optionally, Adam refines the whole head on the feature MSE (cheap: nothing is decoded).
The relu4_1 decoder's input whitening and the scale are then folded into its first convolution,
so head + tail is exactly decoder 4 applied to the predicted relu4_1 features. The result is
exported only if it beats the committed relu5_1 decoder on validation.

    python scripts/train_relu5_head.py [--steps 400] [--out runs] [--export decoders] [--overwrite]

With --head-from decoders/relu5_1.safetensors the head of an existing relu5_1 decoder is kept
(and trained further with --steps > 0) and refolded onto the current relu4_1 decoder: a better
decoder 4 makes a better decoder 5 at once (16.11 -> 16.72 dB after decoder 4 went 18.76 -> 20.73).
"""

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from wct.decoder import Decoder, read_decoder
from wct.encoder import load_encoder
from wct.errors import WCTError
from wct.evaluate import load_val_images, reconstruction_scores
from wct.train import Config, Crops, export, input_whitening, loader, lr_at, save_decoder

ROOT = Path(__file__).resolve().parents[1]
HEAD = 9  # decoder 5's layers net[:9] map relu5_1 to 512 channels at the relu4_1 resolution


def fold(decoder5: Decoder, decoder4: Decoder, scale: torch.Tensor) -> None:
    """Copy decoder 4 into decoder 5's tail, its input map W(s * h - m) folded into the first conv."""
    tail = decoder5.net[HEAD:]
    for mine, theirs in zip(tail, decoder4.net, strict=True):
        mine.load_state_dict(theirs.state_dict())
    conv = tail[0]
    w = conv.weight.detach()  # (out, in, 3, 3)
    a = decoder4.whiten * scale[None, :]  # h -> W (s h)
    b = -(decoder4.whiten @ decoder4.mean)  # constant part, spatially constant so bias-foldable
    conv.weight.data = torch.einsum("oikl,ij->ojkl", w, a)
    conv.bias.data = conv.bias.detach() + torch.einsum("oikl,i->o", w, b)


@torch.no_grad()
def fit_head(
    encoder, d5: Decoder, scale: torch.Tensor, cfg: Config, images: int = 200, crop: int = 256
) -> None:
    """Least-squares start: net[0] predicts the 2x2-block means of scaled relu4_1 from 3x3 patches
    of normalised relu5_1; the three convs after the upsampling start as identities (inputs >= 0)."""
    data = Crops(cfg.data, crop)
    k = 512 * 9 + 1
    a = torch.zeros(k, k, dtype=torch.float64)
    b = torch.zeros(k, 512, dtype=torch.float64)
    for i in torch.linspace(0, len(data) - 1, images).long().tolist():
        x = data[(i, i + 7)].pixels
        if x is None:
            break
        f = encoder.extract(x[None].float().div(255), ["relu4_1", "relu5_1"])
        src = d5.normalise(f["relu5_1"])
        p = F.unfold(F.pad(src, (1, 1, 1, 1), mode="replicate"), 3)[0].T.double()
        p = torch.cat([p, torch.ones_like(p[:, :1])], 1)
        t = F.avg_pool2d(f["relu4_1"] / scale[None, :, None, None], 2)[0].reshape(512, -1).T.double()
        a += p.T @ p
        b += p.T @ t
    w = torch.linalg.solve(a + 1e-4 * a.diagonal().mean() * torch.eye(k, dtype=a.dtype), b)
    conv = d5.net[0]
    conv.weight.copy_(w[:-1].T.reshape(conv.weight.shape).float())
    conv.bias.copy_(w[-1].float())
    for i in (3, 5, 7):
        c = d5.net[i]
        c.weight.zero_()
        c.weight[:, :, 1, 1] = torch.eye(512)
        c.bias.zero_()


@torch.no_grad()
def channel_means(encoder, cfg: Config) -> torch.Tensor:
    mean, _ = input_whitening(encoder, Config(**{**cfg.__dict__, "level": 4}), torch.device("cpu"))
    return mean.clamp_min(1e-3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--steps", type=int, default=400, help="Adam steps refining the head (0: least squares only)."
    )
    ap.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default %(default)s).")
    ap.add_argument(
        "--crop", type=int, default=128, help="Side of the square training crops, px (default 128)."
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=ROOT / "runs",
        help="Folder for relu5_1.head.safetensors (default %(default)s).",
    )
    ap.add_argument(
        "--export",
        type=Path,
        default=ROOT / "decoders",
        help="Holds the relu4_1 tail; relu5_1 is replaced there only if beaten (default %(default)s).",
    )
    ap.add_argument("--threads", type=int, default=0, help="Torch threads (0: torch's default).")
    ap.add_argument("--head-from", type=Path, help="keep the head of this relu5_1 decoder file")
    ap.add_argument("--overwrite", action="store_true", help="Replace the head an earlier run left in --out.")
    args = ap.parse_args()
    if min(args.steps, args.threads) < 0 or args.crop < 16 or not args.lr > 0:
        ap.error("--steps and --threads must be at least 0, --crop at least 16 and --lr above 0")
    best = args.out / "relu5_1.head.safetensors"
    if best.exists() and not args.overwrite:  # before minutes of work
        ap.error(f"{best} exists: pass --overwrite to replace it")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = Config(
        level=5,
        data=str(ROOT.parent / "shared/data/train"),  # beside the checkout, from any directory
        val=str(ROOT.parent / "shared/data/val"),
        crop=args.crop,
        batch=8,
        steps=args.steps,
        lr=args.lr,
        warmup=min(50, args.steps // 4),
        workers=1,
        stats_images=64,
    )
    encoder = load_encoder("cpu")
    tensors, meta4 = read_decoder(args.export / "relu4_1.safetensors")  # both read before minutes of work
    prior_head = read_decoder(args.head_from) if args.head_from else None
    d5 = Decoder(5)
    scale = channel_means(encoder, cfg)
    if prior_head:
        d5.load_state_dict({k: v.float() for k, v in prior_head[0].items()})
    else:
        mean, whiten = input_whitening(encoder, cfg, torch.device("cpu"))
        d5.mean.copy_(mean)
        d5.whiten.copy_(whiten)
        fit_head(encoder, d5, scale, cfg)
    d4 = Decoder(4)
    d4.load_state_dict({k: v.float() for k, v in tensors.items()})
    fold(d5, d4, scale)  # the tail is frozen: only the head is trained below
    val = load_val_images(cfg.val)
    prior = {}
    if prior_head:
        m = prior_head[1]
        prior = {
            "prior_steps": int(m["steps"]) + int(m.get("prior_steps", 0)),
            "prior_train_seconds": float(m.get("train_seconds", 0)) + float(m.get("prior_train_seconds", 0)),
        }
    t0, step, seconds = time.time(), 0, 0.0

    def evaluate_and_save() -> float:
        d5.eval()
        scores = reconstruction_scores(encoder, d5, val)
        d5.train()
        print(f"step {step}: {json.dumps(scores)}", flush=True)
        if best.exists() and float(read_decoder(best)[1]["val_psnr"]) >= scores["psnr"]:
            return scores["psnr"]
        meta = {
            "encoder": encoder.weights_id,
            "training_data": cfg.data,
            "steps": step,
            "val_psnr": round(scores["psnr"], 3),
            "val_ssim": round(scores["ssim"], 4),
            "val_data": cfg.val,
            "val_images": scores["images"],
            "train_seconds": round(seconds, 1),
            **prior,
            "config": {
                **cfg.__dict__,
                "recipe": "scripts/train_relu5_head.py",
                "tail_sha256": meta4["sha256"],
            },
        }
        save_decoder(d5, best, meta)
        return scores["psnr"]

    best.unlink(missing_ok=True)
    evaluate_and_save()
    head = d5.net[:HEAD]
    opt = torch.optim.Adam(head.parameters(), lr=cfg.lr)
    dl, _ = loader(cfg, 0, 0, 1) if cfg.steps else ([], 0)
    t0 = time.time()
    for batch, _ in dl:
        if step >= cfg.steps:
            break
        if batch.shape[0] == 0:
            continue
        x = batch.float().div(255)
        with torch.no_grad():
            f = encoder.extract(x, ["relu4_1", "relu5_1"])
        target = f["relu4_1"] / scale[None, :, None, None]
        loss = F.mse_loss(head(d5.normalise(f["relu5_1"])), target)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 25 == 0:
            print(f"step {step}/{cfg.steps} loss {loss.item():.4f} {time.time() - t0:.0f}s", flush=True)
    seconds = time.time() - t0
    if cfg.steps:
        evaluate_and_save()
    print("exported" if export(best, args.export / "relu5_1.safetensors") else "kept the committed decoder")


if __name__ == "__main__":
    try:
        main()
    except WCTError as e:  # a missing decoder file or data folder: one line
        raise SystemExit(f"error: {e}") from None
