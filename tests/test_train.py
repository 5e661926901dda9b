import math
import os
import time
import warnings
from dataclasses import replace

import pytest
import torch

from wct.decoder import load_decoder
from wct.demo import landscape
from wct.errors import InputError, WeightsError
from wct.train import Config, StepSampler, changed_settings, load_checkpoint, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    (d / "sub").mkdir()
    for i in range(6):
        landscape(48 + 8 * i, 40, seed=i).save(d / ("sub" if i % 2 else ".") / f"{i}.png")
    landscape(20, 24, seed=9).convert("L").save(d / "small_gray.jpg")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return d


def config(data, out, **kw) -> Config:
    base = dict(
        level=2,
        data=str(data),
        val=str(data),
        crop=32,
        batch=2,
        steps=6,
        lr=1e-3,
        warmup=2,
        feature_weight=0.5,
        feature_from=0.5,
        out=str(out),
        device="cpu",
        workers=0,
        val_every=3,
        ckpt_every=2,
        stats_images=4,
        seed=3,
    )
    base.update(kw)
    return Config(**base)


def weights(out, level=2):
    return load_checkpoint(out / f"relu{level}_1.last.pt")["decoder"]


def test_training_exports_and_counts_bad_files(data, tmp_path):
    with pytest.warns(UserWarning, match="1 unreadable training images were skipped: broken.jpg"):
        summary = train(config(data, tmp_path / "run", steps=12, export=str(tmp_path / "dec")))
    assert summary["step"] == 12 and summary["files"] == 8
    assert summary["bad_files"] == 1  # one broken file, counted once however often it is drawn
    ck = load_checkpoint(tmp_path / "run" / "relu2_1.last.pt")
    losses = [h["loss"] for h in ck["state"]["history"] if "loss" in h]
    assert ck["state"]["step"] == 12
    assert (tmp_path / "run" / "relu2_1.curves.png").exists()
    dec = load_decoder(2, "cpu", path=tmp_path / "dec" / "relu2_1.safetensors")
    best = max((h for h in ck["state"]["history"] if "psnr" in h), key=lambda h: h["psnr"])
    assert dec.metadata["steps"] == str(best["step"]) and float(dec.metadata["val_psnr"]) > 0
    assert dec.metadata["hardware"] == "CPU"
    assert losses == [] or all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.parametrize("loss", ["mse", "psnr"])
def test_training_lowers_the_loss(data, tmp_path, loss):
    summary = train(
        config(data, tmp_path / loss, steps=16, log_every=1, val=None, feature_weight=0.0, loss=loss)
    )
    final = load_decoder(2, "cpu", path=summary["decoder"])  # no --val: the last step's decoder
    assert final.metadata["steps"] == "16" and "val_psnr" not in final.metadata
    history = load_checkpoint(tmp_path / loss / "relu2_1.last.pt")["state"]["history"]
    losses = [h["loss"] for h in history]
    assert len(losses) == 16

    def db(v: list[float]) -> float:  # the psnr loss is in dB already
        return 10 * math.log10(sum(v) / len(v)) if loss == "mse" else sum(v) / len(v)

    assert db(losses[-4:]) < db(losses[:4]) - 3  # an untrained decoder's loss wanders by about 1.5 dB


def test_psnr_loss_is_minus_the_mean_psnr_of_each_image():
    from wct.decoder import Decoder
    from wct.encoder import load_encoder
    from wct.evaluate import psnr
    from wct.train import reconstruction_loss

    torch.manual_seed(0)
    encoder, decoder = load_encoder("cpu"), Decoder(1)
    x = torch.rand(3, 3, 24, 24) * torch.tensor([0.2, 0.6, 1.0])[:, None, None, None]  # unequal errors
    with torch.no_grad():
        y = decoder.net(decoder.normalise(encoder(x, 1)))
        mse = reconstruction_loss(encoder, decoder, decoder.net, x, 0.0, 1.0, "mse")
        minus_psnr = reconstruction_loss(encoder, decoder, decoder.net, x, 0.0, 1.0, "psnr")
    assert mse.item() == pytest.approx(torch.mean((y - x) ** 2).item(), rel=1e-5)
    expected = -sum(psnr(y[i], x[i]) for i in range(3)) / 3
    assert minus_psnr.item() == pytest.approx(expected, rel=1e-5)
    assert minus_psnr.item() != pytest.approx(-psnr(y, x), rel=1e-3)  # not the PSNR of the mean MSE


@pytest.mark.parametrize("batch", [2, 1])  # batch 1: some batches are the unreadable file alone
def test_resume_matches_an_uninterrupted_run(data, tmp_path, batch):
    train(config(data, tmp_path / "a", batch=batch, steps=8))
    train(config(data, tmp_path / "b", batch=batch, steps=8, stop_at=4))
    train(config(data, tmp_path / "b", batch=batch, steps=8, resume=True))
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)


def test_resume_reports_changed_settings_and_survives_another_data_folder(data, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for i in range(3):
        landscape(48, 40, seed=20 + i).save(other / f"{i}.png")
    out = tmp_path / "run"
    train(config(data, out, stop_at=3, val=None))
    with pytest.warns(UserWarning, match=r"changed settings \(data .* -> .*other; lr 0.001 -> 0.002\)"):
        summary = train(config(other, out, lr=2e-3, resume=True, val=None))
    assert summary["step"] == 6


def test_init_from_takes_the_same_level_or_the_one_below(data, tmp_path):
    from wct.decoder import decoder_path

    with pytest.raises(InputError, match="relu1_1 decoder: give one of level 3"):
        train(config(data, tmp_path / "x", level=3, init_from=str(decoder_path(1))))
    assert not (tmp_path / "x").exists()


def test_init_from_a_file_whose_tensors_do_not_fit_is_a_weights_error(tmp_path):
    from wct.decoder import Decoder, write_signed
    from wct.encoder import VGG19_MD5
    from wct.train import warm_start

    path = tmp_path / "relu3_1.safetensors"
    tensors = {k: v.half() for k, v in Decoder(2).state_dict().items()}
    write_signed(tensors, {"encoder": VGG19_MD5, "level": "3"}, path)  # signed, but level 2 inside
    with pytest.raises(WeightsError, match="do not fit a relu3_1"):
        warm_start(Decoder(3), path)
    (tmp_path / "notes.txt").write_text("not a decoder")
    with pytest.raises(
        WeightsError, match=r"^--init-from \(Config.init_from\): decoder file .*notes.txt is unread"
    ):
        warm_start(Decoder(3), tmp_path / "notes.txt")


def test_init_from_a_decoder_of_other_encoder_weights_is_refused_before_any_work(data, tmp_path):
    from wct.decoder import Decoder, write_signed

    path = tmp_path / "relu2_1.safetensors"
    write_signed(
        {k: v.half() for k, v in Decoder(2).state_dict().items()}, {"encoder": "0" * 32, "level": "2"}, path
    )
    with pytest.raises(WeightsError, match="trained for encoder weights '0000"):
        train(config(data, tmp_path / "x", level=2, init_from=str(path)))
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("bad", ["nan", "tensors of level 3"])
def test_init_from_the_level_below_is_checked_like_a_decoder_file(data, tmp_path, bad):
    from wct.decoder import Decoder, write_signed
    from wct.encoder import VGG19_MD5

    path = tmp_path / "relu1_1.safetensors"
    tensors = {k: v.half() for k, v in Decoder(3 if bad != "nan" else 1).state_dict().items()}
    if bad == "nan":
        tensors["net.0.weight"][0, 0, 0, 0] = float("nan")
    write_signed(tensors, {"encoder": VGG19_MD5, "level": "1"}, path)
    with pytest.raises(WeightsError, match="non-finite" if bad == "nan" else "do not fit a relu1_1"):
        train(config(data, tmp_path / "x", init_from=str(path)))
    assert not (tmp_path / "x").exists()


def test_resume_after_a_kill_between_the_best_decoder_and_the_checkpoint_keeps_the_best(
    data, tmp_path, monkeypatch
):
    import wct.train as wt
    from wct.decoder import read_decoder

    scores = iter([5.0, 10.0, 11.0, 15.0, 14.0, 12.0, 13.0])  # steps 0, 2, 4, 6, 8; resumed: 6, 8, lower
    monkeypatch.setattr(
        wt, "reconstruction_scores", lambda e, d, v: {"psnr": next(scores), "ssim": 0.5, "images": 1}
    )
    save, calls = wt.atomic_torch_save, []

    def killed_at_the_second_checkpoint(obj, path):
        calls.append(path)
        if len(calls) == 3:  # after step 0's and step 4's
            raise KeyboardInterrupt
        save(obj, path)

    monkeypatch.setattr(wt, "atomic_torch_save", killed_at_the_second_checkpoint)
    cfg = config(data, tmp_path / "run", steps=8, val_every=2, ckpt_every=4, log_every=1)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    best = tmp_path / "run" / "relu2_1.best.safetensors"
    assert read_decoder(best)[1]["val_psnr"] == "15.0"  # saved at step 6, after the checkpoint of step 4
    monkeypatch.setattr(wt, "atomic_torch_save", save)
    summary = train(replace(cfg, resume=True))
    meta = read_decoder(best)[1]
    assert (meta["val_psnr"], meta["steps"], summary["best_psnr"]) == ("15.0", "6", 15.0)
    history = load_checkpoint(tmp_path / "run" / "relu2_1.last.pt")["state"]["history"]
    assert [h["step"] for h in history if "loss" in h] == list(range(1, 9))
    assert [h["step"] for h in history if "psnr" in h] == [0, 2, 4, 6, 8]


def test_sampler_splits_ranks_and_resumes():
    full = StepSampler(10, 2, 0, 0, 0, 1)
    it = iter(full)
    stream = [next(it) for _ in range(40)]
    r0, r1 = iter(StepSampler(10, 1, 0, 0, 0, 2)), iter(StepSampler(10, 1, 0, 0, 1, 2))
    interleaved = [x for _ in range(20) for x in (next(r0), next(r1))]
    assert interleaved == stream
    later = iter(StepSampler(10, 2, 0, 5, 0, 1))
    assert [next(later) for _ in range(30)] == stream[10:]


def test_bad_arguments(data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="Config.data.*holds no images"):
        train(config(empty, tmp_path / "x", val=None))
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    for i in range(3):
        (unreadable / f"{i}.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="Config.data.*none of its 3 image files"):
        train(config(unreadable, tmp_path / "x", val=None))
    with pytest.raises(InputError, match="Config.val.*no readable image"):
        train(config(data, tmp_path / "x", val=str(unreadable)))
    with pytest.raises(InputError, match="Config.export.*needs --val"):
        train(config(data, tmp_path / "x", val=None, export=str(tmp_path / "dec")))
    with pytest.raises(InputError, match="multiple of 16"):
        train(config(data, tmp_path / "x", level=5, crop=24))
    assert not (tmp_path / "x").exists()  # refused during setup: --out is not even created
    with pytest.raises(InputError):
        train(config(data, tmp_path / "y", level=7))
    with pytest.raises(InputError, match="loss"):
        train(config(data, tmp_path / "z", loss="l1"))
    with pytest.raises(InputError, match="scale"):
        train(config(data, tmp_path / "s", scale=0.0))
    photo = next(data.glob("*.png"))
    for field, value in (  # each refused by name before any work, the API as the CLI
        ("batch", 0),
        ("batch", "2"),
        ("crop", 33),
        ("steps", 2.5),
        ("stop_at", 0),
        ("seed", -1),
        ("seed", 2**32),  # a nanosecond clock as the seed overflowed the data order's generator
        ("data", None),
        ("out", None),
        ("amp", "yes"),
        ("resume", "no"),
        ("lr", float("nan")),
        ("ckpt_every", 0),
        ("val_every", 0),
        ("val_images", 0),
        ("workers", -1),
        ("minutes", 0.0),
        ("val", str(tmp_path / "missing")),
        ("out", str(photo)),
        ("export", str(photo)),
        ("init_from", str(tmp_path / "missing.safetensors")),
        ("export", str(photo / "sub")),  # under a file: could never be written
    ):
        cfg = replace(config(data, tmp_path / "bad"), **{field: value})
        with pytest.raises(InputError, match=f"Config.{field}"):
            train(cfg)
        assert not (tmp_path / "bad").exists()


def test_scale_shrinks_photos_before_cropping(tmp_path):
    from PIL import Image

    from wct.train import Crops

    ramp = torch.arange(256, dtype=torch.uint8).repeat(256, 1)  # value = x coordinate
    Image.fromarray(torch.stack([ramp] * 3, -1).numpy()).save(tmp_path / "ramp.png")

    def widths(scale: float) -> list[int]:
        crops = Crops(tmp_path, 64, scale)
        xs = [crops[(0, seed)].pixels for seed in range(40)]
        assert all(x.shape == (3, 64, 64) and x.dtype == torch.uint8 for x in xs)
        assert torch.equal(xs[0], crops[(0, 0)].pixels)  # a function of the seed
        return [int(x[0, 32].max()) - int(x[0, 32].min()) for x in xs]

    plain, shrunk = widths(1.0), widths(0.3)
    assert all(60 <= w <= 64 for w in plain)  # 64 pixels of the ramp, mirrored or not
    assert max(shrunk) > 150 and min(shrunk) >= 60  # up to 64 / 0.3 photo pixels, never fewer than 64


def test_a_thin_strip_is_cropped_before_it_is_enlarged(tmp_path, monkeypatch):
    from PIL import Image

    from wct.train import Crops

    ramp = (torch.arange(3000) * 255 // 2999).to(torch.uint8)[:, None].repeat(1, 2)  # 2 x 3000, by row
    Image.fromarray(torch.stack([ramp] * 3, -1).numpy()).save(tmp_path / "strip.png")
    sizes = []
    resize = Image.Image.resize

    def recorded(im, size, *args, **kw):
        sizes.append(size)
        return resize(im, size, *args, **kw)

    monkeypatch.setattr(Image.Image, "resize", recorded)
    crops = [Crops(tmp_path, 64)[(0, seed)].pixels for seed in range(5)]
    assert max(w * h for w, h in sizes) == 64 * 64  # not 64 x 96000 px (1.5 GB at a crop of 256)
    for x in crops:
        rows = x[0, :, 0].int()
        assert x.shape == (3, 64, 64) and bool((x == x[:, :, :1]).all())  # each row one value
        assert rows[-1] - rows[0] in (0, 1) and bool((rows.diff() >= 0).all())  # 64 of 96000 rows


def test_rotate_turns_crops_into_all_eight_orientations(tmp_path):
    from PIL import Image

    from wct.train import Crops

    corner = torch.zeros(64, 64, dtype=torch.uint8)
    corner[:8, :16] = 255  # a mark in the top-left corner, wider than tall
    Image.fromarray(torch.stack([corner] * 3, -1).numpy()).save(tmp_path / "mark.png")

    def orientations(rotate: bool) -> set[bytes]:
        crops = Crops(tmp_path, 64, rotate=rotate)
        xs = [crops[(0, seed)].pixels for seed in range(64)]
        assert torch.equal(xs[5], crops[(0, 5)].pixels)  # a function of the seed
        assert all(x.shape == (3, 64, 64) for x in xs)
        return {x.numpy().tobytes() for x in xs}

    assert len(orientations(False)) == 2  # mirrored or not
    assert len(orientations(True)) == 8


def test_corrupt_checkpoint_is_refused(data, tmp_path):
    out = tmp_path / "c"
    train(config(data, out, stop_at=2))
    p = out / "relu2_1.last.pt"
    p.write_bytes(p.read_bytes()[:100])
    from wct.errors import WCTError

    with pytest.raises(WCTError, match="corrupt"):
        train(config(data, out, steps=4, resume=True))


def free_port() -> int:
    """A TCP port free on this machine now, for a run's processes to meet at."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_as(rank: int, world: int, port: int) -> None:
    """This process as `rank` of `world` processes, as torchrun sets them up, on one thread."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)


def run_two(target, *args) -> list[int]:
    """Run `target(rank, *args)` in two spawned processes; the ranks still running after 90 s
    (killed then)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=target, args=(r, *args)) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=90)
    stalled = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        p.kill()
    return stalled


def _ddp_worker(rank: int, world: int, data: str, out: str, port: int) -> None:
    import json

    join_as(rank, world, port)
    summary = train(config(data, out, steps=3, val=None, feature_from=0.0))
    with open(f"{out}/summary{rank}.json", "w") as f:
        json.dump(summary, f)


def test_two_cpu_processes_with_gloo_end_with_identical_weights(data, tmp_path):
    import json

    import torch.multiprocessing as mp

    port = free_port()
    mp.spawn(_ddp_worker, args=(2, str(data), str(tmp_path), port), nprocs=2, join=True)
    s0, s1 = (json.loads((tmp_path / f"summary{r}.json").read_text()) for r in (0, 1))
    assert s0["step"] == s1["step"] == 3
    assert s0["weights_sha256"] == s1["weights_sha256"]
    single = train(config(data, tmp_path / "single", steps=3, val=None, feature_from=0.0))
    assert single["weights_sha256"] != s0["weights_sha256"]  # the ranks really trained on more data
    for run, processes in ((tmp_path, 2), (tmp_path / "single", 1)):  # each took --batch images a step
        meta = load_decoder(2, "cpu", path=run / "relu2_1.final.safetensors").metadata
        assert json.loads(meta["config"])["processes"] == processes


def _ddp_failing_worker(rank: int, data: str, out: str, port: int, fail: str) -> None:
    """One of two processes started apart (as without torchrun, which would kill the others): rank 1
    has no images (`fail` "setup") or its images turn unreadable after two steps ("late": 3 crops
    are drawn during setup, then 2 a step), or rank 0 cannot write its checkpoint ("disk")."""
    import json

    import wct.train

    join_as(rank, 2, port)
    if rank == 1 and fail == "setup":
        data = os.path.join(out, "empty")
    if rank == 1 and fail == "late":
        drawn, real = [], wct.train.Crops.__getitem__
        wct.train.Crops.__getitem__ = lambda self, key: (
            real(self, key) if drawn.append(1) or len(drawn) <= 7 else wct.train.Crop(None, ())
        )
    if rank == 0 and fail == "disk":

        def full(run, step):
            raise OSError(28, "No space left on device", f"{out}/run/relu2_1.last.pt")

        wct.train.save_checkpoint = full
    try:
        train(config(data, f"{out}/run", steps=6, val=None, stats_images=2, ckpt_every=2))
        result = ["ok", ""]
    except Exception as e:
        result = [type(e).__name__, str(e)]
    with open(f"{out}/result{rank}.json", "w") as f:
        json.dump(result, f)


@pytest.mark.parametrize("fail", ["setup", "late", "disk"])
def test_data_failing_on_one_process_stops_every_process_with_one_clear_error(data, tmp_path, fail):
    import json

    (tmp_path / "empty").mkdir()
    stalled = run_two(_ddp_failing_worker, str(data), str(tmp_path), free_port(), fail)
    assert not stalled, f"process(es) {stalled} waited forever for the one that failed"
    results = [json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1)]
    failed = 0 if fail == "disk" else 1
    (kind, msg), (other_kind, other_msg) = results[failed], results[1 - failed]
    want = {"setup": "holds no images", "late": "can be read any more", "disk": "No space left"}[fail]
    assert kind == ("OSError" if fail == "disk" else "InputError") and want in msg, (kind, msg)
    assert other_kind == ("WCTError" if fail == "disk" else "InputError"), other_kind
    assert other_msg.startswith(f"process {failed} of 2 stopped: ") and want in other_msg, other_msg
    assert "\n" not in other_msg


def test_time_budget_ends_the_run_and_drives_the_schedule(data, tmp_path):
    from wct.train import lr_at, progress

    cfg = config(data, tmp_path / "t", steps=100000, minutes=0.05, val_every=10**6, ckpt_every=10**6)
    assert progress(10, 1.5, cfg) == pytest.approx(0.5)  # time, not steps, sets the pace
    assert lr_at(50, cfg, 1.0) == pytest.approx(cfg.lr * 0.02)
    assert lr_at(50, cfg, 0.0) == pytest.approx(cfg.lr)
    summary = train(cfg)
    assert 0 < summary["step"] < 100000
    ck = load_checkpoint(tmp_path / "t" / "relu2_1.last.pt")
    assert ck["state"]["step"] == summary["step"] and ck["state"]["seconds"] >= 3
    meta = load_decoder(2, "cpu", path=tmp_path / "t" / "relu2_1.best.safetensors").metadata
    assert meta["steps"] == str(summary["step"]) and float(meta["train_seconds"]) >= 3


def test_amp_on_a_cpu_without_bf16_kernels_warns_and_is_off_by_default_there(data, tmp_path, monkeypatch):
    import wct.encoder

    monkeypatch.setattr(wct.encoder, "cpu_has_fast_bf16", lambda: False)
    with pytest.warns(UserWarning, match="drop --amp"):
        assert train(config(data, tmp_path / "a", steps=1, amp=True, val_every=10**6))["amp"]
    assert not train(config(data, tmp_path / "c", steps=1, val_every=10**6))["amp"]
    monkeypatch.setattr(wct.encoder, "cpu_has_fast_bf16", lambda: True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert train(config(data, tmp_path / "b", steps=1, val_every=10**6))["amp"]  # on by default
    assert not [w for w in caught if "--amp" in str(w.message)]
    assert load_checkpoint(tmp_path / "b" / "relu2_1.last.pt")["config"]["amp"] is True


def test_the_best_decoder_on_validation_is_kept_and_runs_are_not_replaced(data, tmp_path):
    out = tmp_path / "best"
    summary = train(config(data, out, steps=6, val_every=1, lr=0.05, warmup=0, feature_weight=0.0))
    history = [h for h in load_checkpoint(out / "relu2_1.last.pt")["state"]["history"] if "psnr" in h]
    top = max(history, key=lambda h: h["psnr"])
    assert top["step"] < 6, [round(h["psnr"], 2) for h in history]  # this run ends below its best
    kept = load_decoder(2, "cpu", path=summary["decoder"])
    assert kept.metadata["steps"] == str(top["step"]) and summary["best_psnr"] == pytest.approx(top["psnr"])
    before = (out / "relu2_1.last.pt").read_bytes()
    with pytest.raises(InputError, match="holds a relu2_1 run"):
        train(config(data, out, steps=6))  # a new run over an old one, without --resume
    assert (out / "relu2_1.last.pt").read_bytes() == before
    (out / "relu2_1.last.pt").unlink()  # deleted to save space: the kept decoder must still be safe
    kept_bytes = (out / "relu2_1.best.safetensors").read_bytes()
    for resume in (False, True):
        with pytest.raises(InputError, match="holds relu2_1.best.safetensors .* but no checkpoint"):
            train(config(data, out, steps=6, resume=resume))
    assert (out / "relu2_1.best.safetensors").read_bytes() == kept_bytes


def test_the_kept_decoder_is_compared_with_the_final_one_on_all_of_val(data, tmp_path, capsys):
    out = tmp_path / "subset"
    cfg = config(data, out, steps=4, val_every=1, val_images=2, lr=0.05, warmup=0, feature_weight=0.0)
    summary = train(cfg)
    kept = load_decoder(2, "cpu", path=summary["decoder"])
    assert kept.metadata["val_images"] == "7"  # scored on all 7 readable images, not the first 2
    assert float(kept.metadata["val_psnr"]) == pytest.approx(summary["best_psnr"], abs=1e-3)
    capsys.readouterr()
    summary = train(replace(cfg, out=str(tmp_path / "worse"), level=1, lr=0.5))  # keeps its start
    kept = load_decoder(1, "cpu", path=summary["decoder"])
    assert kept.metadata["steps"] == "0" and kept.metadata["val_images"] == "7"
    said = capsys.readouterr().out  # the kept one was rescored on all of --val, and the log says so
    assert f"(step 0) rescored on all 7 --val images: {float(kept.metadata['val_psnr']):.2f} dB" in said


def test_a_run_that_diverges_stops_with_an_error_and_saves_nothing_broken(data, tmp_path):
    from wct.errors import TrainingError

    out = tmp_path / "nan"
    train(config(data, out, steps=8, stop_at=2, val=None))  # a sound checkpoint at step 2
    files = ("relu2_1.last.pt", "relu2_1.final.safetensors")
    kept = [(out / f).read_bytes() for f in files]
    with pytest.raises(
        TrainingError, match=r"diverged by step 4.*lower --lr.*last.pt is kept as it was: --resume"
    ):
        train(config(data, out, steps=8, val=None, lr=1e6, warmup=0, resume=True))
    assert [(out / f).read_bytes() for f in files] == kept
    with pytest.raises(TrainingError, match="Nothing was saved"):
        train(config(data, tmp_path / "nan2" / "run", steps=4, lr=1e6, warmup=0, val=None))
    assert not (tmp_path / "nan2").exists()  # the folders it made are removed, not left empty
    (mine := tmp_path / "mine").mkdir()
    with pytest.raises(TrainingError, match="Nothing was saved"):
        train(config(data, mine, steps=4, lr=1e6, warmup=0, val=None))
    assert mine.is_dir()  # the user's own folder stays
    with pytest.raises(TrainingError, match=r"last.pt is kept as it was: --resume"):  # step 0's, with --val
        train(config(data, tmp_path / "nan3", steps=8, lr=1e6, warmup=0, val_every=1, ckpt_every=100))


@pytest.mark.parametrize("scored", [False, True])
def test_a_run_that_diverges_between_checks_is_named_so_not_a_bad_image(data, tmp_path, scored):
    # the feature loss encodes the decoder's output: non-finite, the encoder would refuse it as input
    from wct.errors import TrainingError

    kept = "last.pt is kept as it was: --resume" if scored else "Nothing was saved"
    val = str(data) if scored else None
    cfg = config(data, tmp_path / "run", val=val, lr=1e6, warmup=0, feature_from=0.0)
    with pytest.raises(TrainingError, match=rf"diverged by step \d.*lower --lr.*{kept}"):
        train(replace(cfg, ckpt_every=100, val_every=100))  # checked at the last step only


def test_resuming_with_other_processes_or_amp_is_reported(data, tmp_path):
    out = tmp_path / "run"
    train(config(data, out, stop_at=2, val=None, amp=False))
    ck = load_checkpoint(out / "relu2_1.last.pt")
    assert ck["config"]["processes"] == 1 and ck["config"]["amp"] is False
    with pytest.warns(UserWarning, match=r"changed settings \(amp False -> True\)"):
        train(config(data, out, stop_at=3, val=None, amp=True, resume=True))
    assert changed_settings({"processes": 2}, {"processes": 1}) == "processes 2 -> 1"
    assert (
        changed_settings({"val": "a", "val_images": 4}, {"val": "a", "val_images": 8}) == "val_images 4 -> 8"
    )
    assert changed_settings({"init_from": None}, {"init_from": "a"}) == "init_from None -> a"
    assert changed_settings({}, {"processes": 2}) == ""  # a checkpoint from before it was recorded


def test_unreadable_data_on_resume_is_one_clear_error(data, tmp_path):
    out = tmp_path / "run"
    train(config(data, out, stop_at=2, val=None))
    unreadable = tmp_path / "gone"
    unreadable.mkdir()
    (unreadable / "0.jpg").write_bytes(b"not a jpeg")
    want = r"^--data \(Config.data\) .*gone: none of its 1 image files can be read: .*0.jpg is not an image"
    with pytest.raises(InputError, match=want):
        train(config(unreadable, out, val=None, resume=True, workers=1))


def _huge_png(path, width: int, height: int) -> None:
    """A PNG whose header claims `width` x `height` pixels (its data is cut short: the size is refused
    from the header, before any decoding)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    head = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + head + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


def test_images_over_the_pixel_limit_are_named_with_the_reason_they_are_skipped(data, tmp_path):
    huge = tmp_path / "huge"
    huge.mkdir()
    _huge_png(huge / "scan.png", 9500, 9500)  # 90.25M pixels, over Pillow's 89.5M
    with pytest.raises(InputError, match=r"none of its 1 image files can be read: .*scan.png is too") as e:
        train(config(huge, tmp_path / "a", val=None))
    assert "--max-pixels" not in str(e.value)  # wct train has no such option
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    landscape(48, 40).save(mixed / "a.png")
    _huge_png(mixed / "b.png", 9500, 9500)
    with pytest.warns(UserWarning, match=r"skipped: b.png \(.*b.png is too large to open safely: 9500x9500"):
        train(config(mixed, tmp_path / "b", val=None, steps=2))


def test_data_folders_are_read_through_links_once(tmp_path):
    from wct.images import list_images

    real, data = tmp_path / "real", tmp_path / "data"
    real.mkdir()
    data.mkdir()
    landscape(32, 32, seed=0).save(real / "a.png")
    landscape(32, 32, seed=1).save(data / "b.jpg")
    (data / "linked").symlink_to(real, target_is_directory=True)
    (data / "loop").symlink_to(tmp_path, target_is_directory=True)  # a link to a parent must not loop
    assert [p.relative_to(data).as_posix() for p in list_images(data)] == ["b.jpg", "linked/a.png"]
    (data / "._b.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS's copy of b.jpg's metadata
    (data / ".cache").mkdir()
    landscape(32, 32, seed=2).save(data / ".cache" / "c.png")
    assert [p.relative_to(data).as_posix() for p in list_images(data)] == ["b.jpg", "linked/a.png"]


def test_the_default_feature_loss_does_not_decide_the_run():
    from wct.decoder import load_decoder
    from wct.encoder import load_encoder
    from wct.images import load_image
    from wct.train import Config, feature_variance, reconstruction_loss

    from .conftest import SHARED

    photo = SHARED / "val" / "kodak24__testsets_Kodak24_kodim01.jpg"
    if not photo.exists():
        pytest.skip("needs ../shared/data/val")
    encoder, decoder = load_encoder("cpu"), load_decoder(3, "cpu")
    x = load_image(photo, 128)[..., :112, :112]
    feature_var = feature_variance(decoder)
    pixel = reconstruction_loss(encoder, decoder, decoder.net, x, 0.0, feature_var).item()
    both = reconstruction_loss(encoder, decoder, decoder.net, x, Config.feature_weight, feature_var).item()
    assert 0 < both - pixel < 2 * pixel  # at weight 1 the feature term is about 50 times the pixel MSE


def test_paths_and_a_torch_device_in_the_config_are_recorded_and_resume(data, tmp_path):
    from pathlib import Path

    out = tmp_path / "run"
    cfg = config(Path(data), out, level=1, steps=4, stop_at=2, val=Path(data), device=torch.device("cpu"))
    train(cfg)  # the metadata and the checkpoint hold plain strings, not Path or torch.device
    summary = train(replace(cfg, stop_at=None, resume=True, export=tmp_path / "dec"))
    assert summary["step"] == 4 and summary["exported"]
    meta = load_decoder(1, "cpu", path=tmp_path / "dec" / "relu1_1.safetensors").metadata
    assert '"device": "cpu"' in meta["config"] and f'"out": "{out}"' in meta["config"]


def test_numpy_integer_settings_are_taken_and_recorded_as_ints(data, tmp_path):
    import numpy as np

    ints = dict(level=1, steps=4, crop=32, batch=2, seed=3)
    cfg = config(data, tmp_path / "np", **{k: np.int64(v) for k, v in ints.items()})
    train(replace(cfg, stop_at=np.int32(2)))  # a numpy level failed writing the metadata (JSON)
    summary = train(replace(cfg, resume=True, export=str(tmp_path / "dec")))
    assert summary["step"] == 4 and summary["exported"]
    assert summary["weights_sha256"] == train(config(data, tmp_path / "int", **ints))["weights_sha256"]
    meta = load_decoder(1, "cpu", path=tmp_path / "dec" / "relu1_1.safetensors").metadata
    assert '"level": 1,' in meta["config"] and '"seed": 3,' in meta["config"]


def test_numpy_float_settings_are_taken_and_recorded_as_floats(data, tmp_path):
    import json
    from dataclasses import asdict

    import numpy as np

    from wct.train import check_config, plain

    reals = dict(lr=1e-3, feature_weight=0.5, feature_from=0.5, scale=0.75, minutes=5.0)
    cfg = config(data, tmp_path / "np", **{k: np.float32(v) for k, v in reals.items()})
    check_config(cfg)  # np.float32 was refused: only np.float64 is a Python float
    kept = plain(cfg)
    assert all(type(getattr(kept, k)) is float for k in reals)
    assert json.loads(json.dumps(asdict(kept)))["scale"] == 0.75  # what checkpoints and metadata record
    with pytest.raises(InputError, match="--lr"):
        check_config(replace(cfg, lr=np.float32("nan")))


def test_the_plot_leaves_the_backend_alone_and_shows_a_single_point(tmp_path):
    import matplotlib
    import numpy as np
    from PIL import Image

    from wct.train import plot_history

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a notebook's or an app's own backend
    try:
        plot_history([{"step": 25, "loss": 0.1}, {"step": 25, "psnr": 20.0}], tmp_path / "c.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
    png = np.asarray(Image.open(tmp_path / "c.png").convert("RGB")).astype(int)
    blue = (png[..., 2] > 150) & (png[..., 0] < 100)  # the curves' colour
    half = png.shape[1] // 2
    assert blue[:, :half].any() and blue[:, half:].any()  # the first logged loss is drawn too


def test_a_chunk_of_a_run_exports_nothing_the_end_exports_the_decoder_scored_on_all_of_val(data, tmp_path):
    cfg = config(
        data, tmp_path / "run", level=1, steps=4, val_every=1, val_images=1, export=str(tmp_path / "dec")
    )
    assert "exported" not in train(replace(cfg, stop_at=2))  # its best is scored on 1 image only
    assert not (tmp_path / "dec" / "relu1_1.safetensors").exists()
    assert train(replace(cfg, resume=True))["exported"]
    assert load_decoder(1, "cpu", path=tmp_path / "dec" / "relu1_1.safetensors").metadata["val_images"] == "7"


def test_export_keeps_a_decoder_that_records_no_score(tmp_path, capsys):
    from wct.decoder import Decoder, save_decoder
    from wct.encoder import VGG19_MD5
    from wct.train import export

    soup, best = tmp_path / "relu1_1.safetensors", tmp_path / "best.safetensors"
    save_decoder(Decoder(1), soup, {"encoder": VGG19_MD5, "averaged_from": "[]"})  # averaged without --val
    save_decoder(Decoder(1), best, {"encoder": VGG19_MD5, "val_psnr": 20.0})
    before = soup.read_bytes()
    assert not export(best, soup)
    assert soup.read_bytes() == before and "records no val PSNR" in capsys.readouterr().out
    soup.write_bytes(b"not a decoder")  # an unreadable file is replaced
    assert export(best, soup)


def test_a_warmup_as_long_as_the_run_still_reaches_the_peak_and_decays(data, tmp_path):
    from wct.train import lr_at

    cfg = config(data, tmp_path / "w", steps=40, warmup=100)
    lrs = [lr_at(step, cfg) for step in range(40)]
    assert max(lrs) == pytest.approx(cfg.lr) and lrs[-1] < 0.05 * cfg.lr
    assert lr_at(0, config(data, tmp_path / "w", steps=1, warmup=100)) == pytest.approx(cfg.lr)


def test_a_timed_run_of_fewer_steps_than_the_warmup_still_peaks_and_decays(data, tmp_path):
    from wct.train import lr_at

    cfg = config(data, tmp_path / "w", steps=100000, minutes=5.0, warmup=100)
    lrs = [lr_at(step, cfg, step / 40) for step in range(40)]  # slow steps: 40 in the budget
    assert lrs[0] == pytest.approx(cfg.lr / 100)  # the warm-up starts as in steps
    assert max(lrs) > 0.8 * cfg.lr and lrs[-1] < 0.05 * cfg.lr  # was still warming up, at 0.4 lr
    assert all(b <= a * 1.1 for a, b in zip(lrs[10:], lrs[11:], strict=False))  # no jump on the way


def test_the_progress_bar_counts_every_step_and_ends_full(data, tmp_path, monkeypatch):
    import io

    from rich.console import Console

    import wct.train
    from wct.progress import progress_bar

    bars = []

    def terminal_bar(enabled: bool):  # as on a terminal, where the bar replaces the log lines
        bars.append(progress_bar(True, Console(file=io.StringIO(), force_terminal=True)))
        return bars[-1]

    monkeypatch.setattr(wct.train, "progress_bar", terminal_bar)
    train(config(data, tmp_path / "run", steps=6, val=None))  # shorter than one log interval (25)
    assert bars[0].tasks[0].completed == 6  # it stood at 0 until step 25, and a run ended short of full


def test_the_progress_bar_of_a_timed_run_counts_to_the_step_it_ends_at(data, tmp_path, monkeypatch, capsys):
    import io

    from rich.console import Console

    import wct.train
    from wct.progress import progress_bar

    bars = []

    def terminal_bar(enabled: bool):
        bars.append(progress_bar(True, Console(file=io.StringIO(), force_terminal=True)))
        return bars[-1]

    monkeypatch.setattr(wct.train, "progress_bar", terminal_bar)
    cfg = config(data, tmp_path / "t", level=1, steps=100000, minutes=0.03, val=None, log_every=1)
    summary = train(cfg)
    task = bars[0].tasks[0]
    assert 0 < summary["step"] < 100000
    assert task.completed == task.total == summary["step"]  # not 100000, which --steps only caps
    monkeypatch.setattr(wct.train, "progress_bar", progress_bar)  # no terminal: log lines
    capsys.readouterr()
    train(replace(cfg, out=str(tmp_path / "u")))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step 1/")]
    assert lines and lines[0].startswith("step 1/~") and "/~100000" not in lines[0]


def test_resume_at_a_level_without_a_checkpoint_names_the_runs_out_holds(data, tmp_path, capsys):
    from wct.train import check_out

    out = tmp_path / "run"
    train(config(data, out, stop_at=2, val=None))
    capsys.readouterr()
    check_out(config(data, out, level=3, resume=True), 0)  # a slip of --level: say so, then start anew
    held = "(it holds relu2_1.last.pt: check --level)"
    assert capsys.readouterr().out == f"no relu3_1.last.pt in {out} {held}: starting a new run\n"


def test_resuming_a_checkpoint_of_another_level_is_one_clear_error(data, tmp_path):
    out = tmp_path / "run"
    train(config(data, out, stop_at=2, val=None))
    (out / "relu2_1.last.pt").rename(out / "relu3_1.last.pt")
    before = (out / "relu3_1.last.pt").read_bytes()
    with pytest.raises(InputError, match=r"relu3_1.last.pt is a checkpoint of a relu2_1 run, not relu3_1"):
        train(config(data, out, level=3, val=None, resume=True))
    assert (out / "relu3_1.last.pt").read_bytes() == before


def test_train_decoders_script_reports_bad_data_in_one_line(tmp_path, monkeypatch, capsys):
    import runpy
    import sys
    from pathlib import Path

    script = str(Path(__file__).parents[1] / "scripts" / "train_decoders.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [script, "--levels", "2", "--out", "runs", "--data", "missing"])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(script, run_name="__main__")
    err = capsys.readouterr().err
    assert e.value.code == 1 and err.startswith("error: --data (Config.data)") and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_eval_decoders_json_must_end_in_json_so_a_photo_is_never_replaced(tmp_path, wct_cli):
    val = tmp_path / "val"
    val.mkdir()
    landscape(64, 48).save(val / "x.png")
    photo = tmp_path / "photo.jpg"
    landscape(40, 30, seed=1).save(photo)
    before = photo.read_bytes()
    r = wct_cli("eval-decoders", "--data", str(val), "--levels", "1", "--json", str(photo), "--overwrite")
    assert r.returncode == 1 and r.stderr.strip() == f"error: --json {photo} must end in .json", r.stderr
    assert photo.read_bytes() == before


def test_decoder_commands_name_the_option_of_a_bad_input(tmp_path, wct_cli):
    from wct.decoder import decoder_path

    a, missing = str(decoder_path(1)), str(tmp_path / "none.safetensors")
    soup, d = str(tmp_path / "soup.safetensors"), str(tmp_path)
    for args, line in [
        (("eval-decoders", "--data", missing), f"--data {missing} does not exist"),
        (("eval-decoders", "--data", a), f"--data {a} is not a directory of images"),
        (("eval-decoders", "--data", d, "--decoder", missing), f"--decoder {missing} does not exist"),
        (("eval-decoders", "--data", d, "--decoder", d), f"--decoder {d} is a directory"),
        (("average-decoders", a, d, "-o", soup), f"decoder file {d} is a directory"),
        (("average-decoders", a, missing, "-o", soup), f"decoder file {missing} does not exist"),
        (("average-decoders", a, a, "-o", soup), f"decoder file {a} is given twice"),  # a soup of one
        (("average-decoders", a, a, "-o", soup, "--val", missing), f"--val {missing} does not exist"),
        (("average-decoders", a, str(decoder_path(2)), "-o", soup, "--weights", "1,nan"), "--weights needs"),
        (("average-decoders", a, str(decoder_path(2)), "-o", soup, "--weights", "0,0"), "--weights needs"),
        (("train", "--level", "6", "--data", d), "--level (Config.level) must be 1, 2, 3, 4 or 5, not 6"),
        (("train", "--level", "1", "--data", d, "--out", ""), "--out is an empty path"),
        (("train", "--level", "1", "--data", d, "--export", ""), "--export is an empty path"),
    ]:
        r = wct_cli(*args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith(f"error: {line}") and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "soup.safetensors").exists() and not (tmp_path / "runs").exists()


def test_export_into_a_folder_named_as_the_decoder_is_refused_before_training(data, tmp_path):
    (tmp_path / "dec" / "relu2_1.safetensors").mkdir(parents=True)
    with pytest.raises(InputError, match="Config.export.*holds a folder relu2_1.safetensors"):
        train(config(data, tmp_path / "run", export=str(tmp_path / "dec")))
    assert not (tmp_path / "run").exists()


def test_export_says_it_replaces_an_unreadable_file(tmp_path, capsys):
    from wct.decoder import Decoder, save_decoder
    from wct.encoder import VGG19_MD5
    from wct.train import export

    target, best = tmp_path / "relu1_1.safetensors", tmp_path / "best.safetensors"
    save_decoder(Decoder(1), best, {"encoder": VGG19_MD5, "val_psnr": 20.0})
    target.write_bytes(b"not a decoder")
    assert export(best, target)
    assert "replacing an unreadable decoder file there" in capsys.readouterr().out


def test_export_says_which_decoder_it_replaces_and_on_which_images_each_was_scored(tmp_path, capsys):
    from wct.decoder import Decoder, save_decoder
    from wct.encoder import VGG19_MD5
    from wct.train import export

    target, best = tmp_path / "relu1_1.safetensors", tmp_path / "best.safetensors"
    save_decoder(Decoder(1), target, {"encoder": VGG19_MD5, "val_psnr": 33.1, "val_data": "shared/val"})
    save_decoder(Decoder(1), best, {"encoder": VGG19_MD5, "val_psnr": 40.0, "val_data": "faces/val"})
    assert export(best, target)
    line = capsys.readouterr().out.strip()
    assert line == (
        f"exported {target} (40.0 dB), replacing one of 33.1 dB scored on shared/val (this one on faces/val)"
    )
    save_decoder(Decoder(1), best, {"encoder": VGG19_MD5, "val_psnr": 41.0, "val_data": "faces/val"})
    assert export(best, target)
    assert capsys.readouterr().out.strip() == f"exported {target} (41.0 dB), replacing one of 40.0 dB"
    here = os.path.join(
        os.getcwd(), "faces", "val"
    )  # the same folder, recorded relative by one run, absolute by another
    save_decoder(Decoder(1), best, {"encoder": VGG19_MD5, "val_psnr": 42.0, "val_data": here})
    assert export(best, target)
    assert capsys.readouterr().out.strip() == f"exported {target} (42.0 dB), replacing one of 41.0 dB"


def test_resumed_without_val_the_unscored_decoder_is_not_shown_with_the_old_score(data, tmp_path, wct_cli):
    out = tmp_path / "run"
    train(config(data, out, steps=3, val_every=3))
    common = ("--level", "2", "--data", str(data), "--crop", "32", "--batch", "2", "--steps", "4")
    r = wct_cli("train", *common, "--out", str(out), "--resume", "--device", "cpu", "--workers", "0")
    assert r.returncode == 0, r.stderr
    assert f"step 4: {out / 'relu2_1.final.safetensors'} (not scored: no --val)" in r.stdout


def test_a_resumed_run_removes_the_temporary_files_a_killed_write_left(data, tmp_path, capsys):
    out = tmp_path / "run"
    train(config(data, out, steps=2))
    stale = [out / ".relu2_1.last.pt.k3x9.tmp", out / ".relu2_1.best.safetensors.a1b2.tmp"]
    others = [out / ".relu3_1.last.pt.k3x9.tmp", out / "notes.tmp", out / ".relu2_1.txt"]
    others += [out / ".relu2_1.safetensors.c3d4.tmp", out / ".relu2_1.final.safetensors.live.tmp"]
    for p in stale + others:
        p.write_bytes(b"x" * 1000)
        if p.name != ".relu2_1.final.safetensors.live.tmp":  # being written now: kept
            os.utime(p, (time.time() - 120,) * 2)
    train(config(data, out, steps=3, resume=True))
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)
    assert f"removed 2 temporary file(s) of an interrupted write from {out}" in capsys.readouterr().out


def test_log_every_sets_how_often_the_loss_is_printed(data, tmp_path, wct_cli):
    common = ("--level", "2", "--data", str(data), "--crop", "32", "--batch", "2", "--steps", "4")
    r = wct_cli(
        "train",
        *common,
        "--out",
        str(tmp_path / "r"),
        "--log-every",
        "2",
        "--device",
        "cpu",
        "--workers",
        "0",
    )
    assert r.returncode == 0, r.stderr
    assert [
        line.split()[1] for line in r.stdout.splitlines() if line.startswith("step ") and "loss" in line
    ] == [
        "2/4",
        "4/4",
    ]


# Training (`wct train ARGS`, or `train(Config(**CONFIG))` without an argument) that says when it
# is in step 3 (then takes a second over it).
_SLOW_STEP_3 = """
import json, os, sys, time
import wct.train
from wct.cli import train_main

real = wct.train.train_step

def step(run, batch, unreadable, i, done):
    if i == 2:
        print("in step 3", flush=True)
        time.sleep(1)
    return real(run, batch, unreadable, i, done)

wct.train.train_step = step
if len(sys.argv) > 1:
    train_main()
else:
    wct.train.train(wct.train.Config(**json.loads(os.environ["CONFIG"])))
"""


@pytest.mark.parametrize(
    ("name", "cli", "code", "said"),
    [("SIGINT", True, 130, "interrupted"), ("SIGTERM", False, -15, "")],  # -15: killed by it, once saved
)
def test_a_signal_checkpoints_the_step_in_progress_and_resume_matches_an_uninterrupted_run(
    data, tmp_path, name, cli, code, said
):
    import json
    import signal
    import subprocess
    import sys
    from dataclasses import asdict

    cfg = config(data, tmp_path / "stopped", steps=6, val=None, ckpt_every=1000, stats_images=64, workers=1)
    options = ("level", "data", "crop", "batch", "steps", "lr", "warmup", "feature_weight", "feature_from")
    options += ("out", "device", "workers", "ckpt_every", "seed")  # and the CLI's default --stats-images, 64
    argv = [f"--{k.replace('_', '-')}={getattr(cfg, k)}" for k in options]
    p = subprocess.Popen(
        [sys.executable, "-c", _SLOW_STEP_3, *(argv if cli else [])],
        env={**os.environ, "CONFIG": json.dumps(asdict(cfg))},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    for line in p.stdout:
        if line == "in step 3\n":
            break
    assert p.poll() is None, p.stderr.read()
    os.killpg(p.pid, signal.Signals[name])  # as a terminal's Ctrl-C or torchrun's SIGTERM: to every process
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    assert "interrupted: saved the checkpoint at step 3; --resume continues from there" in out
    assert err.strip() == said  # the CLI's line; no traceback
    assert load_checkpoint(tmp_path / "stopped" / "relu2_1.last.pt")["state"]["step"] == 3
    train(replace(cfg, resume=True, workers=0))
    train(replace(cfg, out=str(tmp_path / "whole"), workers=0))
    wa, wb = weights(tmp_path / "whole"), weights(tmp_path / "stopped")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)


def test_ctrl_c_before_the_first_step_writes_nothing_new(data, tmp_path, monkeypatch, capsys):
    import signal

    import wct.train

    real = wct.train.next_batch

    def ctrl_c_first(run, batches, caught):  # asked before the first step
        os.kill(os.getpid(), signal.SIGINT)
        return real(run, batches, caught)

    out = tmp_path / "run"
    train(config(data, out, steps=4, stop_at=2, val=None))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(wct.train, "next_batch", ctrl_c_first)
    for cfg in (config(data, out, steps=4, val=None, resume=True), config(data, tmp_path / "new", val=None)):
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not (tmp_path / "new").exists()
    assert "interrupted" not in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # as it was


def test_a_second_ctrl_c_stops_at_once_and_the_last_checkpoint_stays(data, tmp_path, monkeypatch):
    import signal

    import wct.train

    sent, real_step, real_write = [], wct.train.train_step, wct.train.write_atomic

    def step(run, batch, unreadable, i, done):
        if i == 2:  # Ctrl-C in step 3: it is checkpointed...
            os.kill(os.getpid(), signal.SIGINT)
            sent.append(i)
        return real_step(run, batch, unreadable, i, done)

    def write_atomic(path, write):
        def write_then_ctrl_c(tmp):
            write(tmp)
            if sent:  # ...and Ctrl-C again while the checkpoint is written
                sent.append(path.name)
                os.kill(os.getpid(), signal.SIGINT)

        return real_write(path, write_then_ctrl_c)

    monkeypatch.setattr(wct.train, "train_step", step)
    monkeypatch.setattr(wct.train, "write_atomic", write_atomic)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config(data, out, steps=8, val=None, ckpt_every=2))
    assert sent == [2, "relu2_1.last.pt"]
    assert load_checkpoint(out / "relu2_1.last.pt")["state"]["step"] == 2  # loadable, as it was
    assert [p.name for p in out.iterdir()] == ["relu2_1.last.pt"]  # no temporary file left


def test_ctrl_c_while_the_start_is_scored_checkpoints_it_to_resume(data, tmp_path, monkeypatch, capsys):
    import signal

    import wct.train

    real = wct.train.reconstruction_scores

    def scores_then_ctrl_c(encoder, decoder, images):  # Ctrl-C during the first validation
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))
        return real(encoder, decoder, images)

    sent: list = []
    monkeypatch.setattr(wct.train, "reconstruction_scores", scores_then_ctrl_c)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(config(data, out, steps=4, ckpt_every=100, val_every=100))
    assert sorted(p.name for p in out.iterdir()) == [
        "relu2_1.best.safetensors",
        "relu2_1.curves.png",
        "relu2_1.last.pt",
    ]  # scored and checkpointed, not a lone best file that blocks --resume
    assert load_checkpoint(out / "relu2_1.last.pt")["state"]["step"] == 0
    assert "interrupted" not in capsys.readouterr().out  # no step was trained
    assert train(config(data, out, steps=4, ckpt_every=100, val_every=100, resume=True))["step"] == 4


def _ddp_interrupted_worker(rank: int, data: str, out: str, port: int) -> None:
    """One of two processes; only rank 1 gets a Ctrl-C, in step 3."""
    import json
    import signal

    import wct.train

    join_as(rank, 2, port)
    real = wct.train.train_step

    def step(run, batch, unreadable, i, done):
        if i == 2 and rank == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real(run, batch, unreadable, i, done)

    wct.train.train_step = step
    try:
        train(config(data, f"{out}/run", steps=8, val=None, stats_images=2, ckpt_every=1000))
        result = "finished"
    except BaseException as e:
        result = type(e).__name__
    with open(f"{out}/result{rank}.json", "w") as f:
        json.dump(result, f)


def test_ctrl_c_in_one_process_of_a_run_stops_every_process_after_the_same_step(data, tmp_path):
    import json

    stalled = run_two(_ddp_interrupted_worker, str(data), str(tmp_path), free_port())
    assert not stalled, f"process(es) {stalled} never stopped"
    results = [json.loads((tmp_path / f"result{r}.json").read_text()) for r in (0, 1)]
    assert results == ["KeyboardInterrupt", "KeyboardInterrupt"]
    assert load_checkpoint(tmp_path / "run" / "relu2_1.last.pt")["state"]["step"] == 3  # rank 0 wrote it


def test_an_out_folder_where_the_data_or_val_images_are_read_is_refused(data, tmp_path):
    """Its curves plot would be read as a photo by the next run of another level, or the resumed one."""
    import shutil

    photos = tmp_path / "photos"
    shutil.copytree(data, photos)
    for field, cfg in (
        ("data", config(photos, photos / "runs", val=None)),
        ("val", config(data, photos / "sub" / "runs", val=str(photos))),
        ("data", config(photos, photos, val=None)),
    ):
        with pytest.raises(
            InputError, match=rf"^--out \(Config.out\) .* is inside --{field} \(Config.{field}\)"
        ):
            train(cfg)
    assert sorted(p.name for p in photos.iterdir()) == sorted(p.name for p in data.iterdir())
    summary = train(config(photos, photos / ".runs", val=None, steps=2, log_every=1))
    assert (photos / ".runs" / "relu2_1.curves.png").exists()  # hidden: not one of the images
    assert summary["files"] == 8 and train(config(photos, tmp_path / "b", val=None, steps=2))["files"] == 8


def _ddp_skipping_worker(rank: int, data: str, out: str, port: int) -> None:
    """One of two processes; rank 1 alone draws (and skips) an unreadable only1.png."""
    import wct.train

    join_as(rank, 2, port)
    if rank == 1:
        real = wct.train.Crops.__getitem__
        wct.train.Crops.__getitem__ = lambda self, key: real(self, key)._replace(unreadable=("only1.png",))
    train(config(data, f"{out}/run", steps=2, val=None, stats_images=2, ckpt_every=2))


def test_the_checkpoint_of_two_processes_records_the_files_each_skipped(data, tmp_path):
    """A resumed run warns of them all at its end, also of those another process skipped earlier."""
    stalled = run_two(_ddp_skipping_worker, str(data), str(tmp_path), free_port())
    assert not stalled
    assert "only1.png" in load_checkpoint(tmp_path / "run" / "relu2_1.last.pt")["state"]["bad_files"]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="finds the data-loading workers in /proc")
@pytest.mark.parametrize(
    ("name", "code", "said"), [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated")]
)
def test_a_signal_sent_to_each_process_of_the_run_still_checkpoints_the_step_in_progress(
    data, tmp_path, name, code, said
):
    """As a cluster's scheduler or `pkill` sends it: to the data-loading workers too."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    cfg = config(data, tmp_path / "stopped", steps=6, val=None, ckpt_every=1000, workers=2)
    options = ("level", "data", "crop", "batch", "steps", "out", "device", "workers", "ckpt_every")
    argv = [f"--{k.replace('_', '-')}={getattr(cfg, k)}" for k in options]
    p = subprocess.Popen(
        [sys.executable, "-c", _SLOW_STEP_3, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for line in p.stdout:
        if line == "in step 3\n":
            break
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == p.pid:  # its parent
                workers.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
    assert len(workers) == 2 and p.poll() is None, p.stderr.read()
    for pid in (p.pid, *workers):
        os.kill(pid, signal.Signals[name])
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, err
    assert "interrupted: saved the checkpoint at step 3; --resume continues from there" in out
    assert err.strip() == said
    assert load_checkpoint(tmp_path / "stopped" / "relu2_1.last.pt")["state"]["step"] == 3


def test_the_start_is_scored_so_a_run_never_keeps_a_worse_decoder(data, tmp_path):
    # level 1 starts from least squares; a far too high lr then makes it worse at every step
    summary = train(config(data, tmp_path / "run", level=1, steps=4, lr=0.5, warmup=0, val_every=2))
    history = load_checkpoint(tmp_path / "run" / "relu1_1.last.pt")["state"]["history"]
    scored = {h["step"]: h["psnr"] for h in history if "psnr" in h}
    assert list(scored) == [0, 2, 4] and scored[0] > max(scored[2], scored[4])
    kept = load_decoder(1, "cpu", path=tmp_path / "run" / "relu1_1.best.safetensors")
    assert kept.metadata["steps"] == "0" and summary["best_psnr"] == pytest.approx(scored[0], abs=1e-3)


def test_a_run_that_fails_before_its_first_checkpoint_can_be_resumed(data, tmp_path):
    from wct.errors import TrainingError

    cfg = config(data, tmp_path / "run", steps=20, lr=1e8, warmup=0, log_every=1, val_every=10, ckpt_every=10)
    with pytest.raises(
        TrainingError, match=r"diverged by step \d.*relu2_1.last.pt is kept as it was: --resume"
    ):
        train(cfg)  # its start was scored and checkpointed: not a lone best file that blocks a rerun
    with pytest.warns(UserWarning, match="resuming with changed settings"):
        summary = train(replace(cfg, lr=1e-3, resume=True))
    assert summary["step"] == 20
    history = load_checkpoint(tmp_path / "run" / "relu2_1.last.pt")["state"]["history"]
    assert [h["step"] for h in history if "psnr" in h] == [0, 10, 20]  # step 0 scored once, not again


def test_export_scores_the_decoder_there_on_this_runs_val_if_it_records_a_score_on_other_images(
    data, tmp_path, capsys
):
    from pathlib import Path

    from wct.decoder import Decoder, save_decoder
    from wct.encoder import VGG19_MD5

    poor = tmp_path / "poor.safetensors"  # untrained: far worse than the shipped decoder
    save_decoder(Decoder(1), poor, {"encoder": VGG19_MD5})
    target = tmp_path / "dec" / "relu1_1.safetensors"
    target.parent.mkdir()
    shipped = load_decoder(1, "cpu")  # recorded with a low score on other images
    save_decoder(shipped, target, {**shipped.metadata, "val_psnr": "1.0", "val_data": "elsewhere/val"})
    before = target.read_bytes()
    cfg = config(data, tmp_path / "a", level=1, steps=1, lr=1e-9, warmup=0, init_from=str(poor))
    summary = train(replace(cfg, export=str(target.parent)))
    assert summary["exported"] is False and target.read_bytes() == before
    said = capsys.readouterr().out
    val = Path(data).resolve()
    assert f"on the same 7 images of {val} (it records 1.0 dB on elsewhere/val)" in said, said
    # recorded on this run's images, the recorded score is the one compared, as before
    save_decoder(
        shipped, target, {**shipped.metadata, "val_psnr": "1.0", "val_data": str(val), "val_images": "7"}
    )
    summary = train(replace(cfg, out=str(tmp_path / "b"), export=str(target.parent)))
    assert summary["exported"] and f"{target} (" in (said := capsys.readouterr().out)
    assert "replacing one of 1.0 dB\n" in said


def test_runs_record_where_their_files_were_what_ran_them_and_compare_paths_resolved_on_resume(
    data, tmp_path, monkeypatch
):
    import json
    import re
    from datetime import datetime, timedelta

    import wct

    a, b = tmp_path.resolve() / "a", tmp_path.resolve() / "b"
    for i, d in enumerate((a, b)):  # two folders named alike
        (d / "photos").mkdir(parents=True)
        for j in range(3):
            landscape(48, 40, seed=10 * i + j).save(d / "photos" / f"{j}.png")
    (b / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    monkeypatch.chdir(a)
    cfg = config("photos", "run", val="photos", steps=6, stop_at=2)
    train(cfg)
    best = load_decoder(2, "cpu", path=a / "run" / "relu2_1.best.safetensors").metadata
    assert (best["training_data"], best["val_data"]) == (str(a / "photos"),) * 2
    assert changed_settings({"data": "photos"}, {"data": str(a / "photos")}) == ""  # an older checkpoint's
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # the same folders, typed in full: no change
        full = str(a / "photos")
        train(replace(cfg, data=full, val=full, out=str(a / "run"), stop_at=4, resume=True))
    assert not [w for w in caught if "changed settings" in str(w.message)]
    monkeypatch.chdir(b)  # the same name from another folder: another folder
    with pytest.warns(UserWarning, match=re.escape(f"(data {a / 'photos'} -> {b / 'photos'};")):
        summary = train(replace(cfg, out=str(a / "run"), val=None, stop_at=None, resume=True))
    meta = load_decoder(2, "cpu", path=summary["decoder"]).metadata  # the last step's, no --val
    config_recorded = json.loads(meta["config"])
    assert meta["training_data"] == config_recorded["data"] == str(b / "photos")
    assert config_recorded["out"] == str(a / "run")
    assert (meta["training_files"], meta["unreadable_files"]) == ("4", "1")
    assert (meta["wct_version"], meta["torch_version"]) == (wct.__version__, torch.__version__)
    assert datetime.fromisoformat(meta["date"]).utcoffset() == timedelta(0)


def test_a_resumed_run_compares_its_best_with_later_steps_on_the_same_images(data, tmp_path, monkeypatch):
    import wct.train as wt

    real = wt.reconstruction_scores

    def easy_subset(encoder, decoder, images):  # the first 2 --val images score far higher than all 7
        s = real(encoder, decoder, images)
        return {**s, "psnr": s["psnr"] + (100 if len(images) == 2 else 0)}

    monkeypatch.setattr(wt, "reconstruction_scores", easy_subset)
    cfg = config(data, tmp_path / "run", level=1, steps=2, val_every=1, val_images=2, lr=0.5, warmup=0)
    assert train(cfg)["best_step"] == 0  # the least-squares start, then an lr that ruins it
    with pytest.warns(UserWarning, match="steps 2 -> 4"):  # its best was rescored on all 7 at its end
        summary = train(replace(cfg, steps=4, resume=True))
    meta = load_decoder(1, "cpu", path=summary["decoder"]).metadata
    assert summary["best_step"] == 0 and (meta["steps"], meta["val_images"]) == ("0", "7")


def _ddp_cli_worker(rank: int, data: str, out: str, port: int) -> None:
    """`wct train` as process `rank` of two (as torchrun starts it), its output in stdout{rank}.txt."""
    import sys

    from wct.cli import main

    join_as(rank, 2, port)
    args = ["train", "--level", "2", "--data", data, "--crop", "32", "--batch", "2", "--steps", "2"]
    sys.stdout = open(f"{out}/stdout{rank}.txt", "w")  # noqa: SIM115
    try:
        main([*args, "--out", f"{out}/run", "--device", "cpu", "--workers", "0"])
    except SystemExit as e:
        print(f"exit {e.code or 0}")
    finally:
        sys.stdout.close()


def test_under_torchrun_only_the_first_process_prints_the_summary(data, tmp_path):
    import json

    assert not run_two(_ddp_cli_worker, str(data), str(tmp_path), free_port())
    first, second = ((tmp_path / f"stdout{r}.txt").read_text().splitlines() for r in (0, 1))
    assert second == ["exit 0"], second
    assert first[-1] == "exit 0" and json.loads(first[-2])["step"] == 2, first


def test_the_cli_names_the_step_of_the_kept_decoder(data, tmp_path, wct_cli):
    out = tmp_path / "run"
    common = ("--level", "1", "--data", str(data), "--val", str(data), "--crop", "32", "--batch", "2")
    ruined = ("--steps", "2", "--lr", "0.5", "--warmup", "0", "--val-every", "1")  # keeps its start
    r = wct_cli("train", *common, *ruined, "--out", str(out), "--device", "cpu", "--workers", "0")
    assert r.returncode == 0, r.stderr
    assert f"step 0: {out / 'relu1_1.best.safetensors'} (val PSNR" in r.stdout, r.stdout


def test_a_checkpoint_from_before_best_on_resumes_past_an_unreadable_best(data, tmp_path, capsys):
    """A checkpoint that does not say which images its best was scored on has the best rescored at
    the first validation; a best file cut short (a kill mid-write) stopped the run with a
    WeightsError, where it is to be replaced, as an unreadable best always was."""
    from wct.train import atomic_torch_save

    cfg = config(data, tmp_path / "run", level=1, steps=6, val_every=2, ckpt_every=2, stop_at=2)
    train(cfg)
    last = tmp_path / "run" / "relu1_1.last.pt"
    ck = load_checkpoint(last)
    ck["state"].pop("best_on", None)  # as checkpoints written before it was recorded
    atomic_torch_save(ck, last)
    best = tmp_path / "run" / "relu1_1.best.safetensors"
    best.write_bytes(best.read_bytes()[: best.stat().st_size // 2])
    capsys.readouterr()
    summary = train(replace(cfg, stop_at=None, resume=True))
    assert (
        summary["step"] == 6
        and "best so far not rescored, replaced by this step's" in capsys.readouterr().out
    )
    assert int(load_decoder(1, "cpu", path=best).metadata["steps"]) >= 2  # readable again: replaced
