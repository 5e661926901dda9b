"""What scripts/train_gpu.py sends to a lent GPU. A decoder travels as int8 and must come back as a
file that `wct train --init-from` and `load_decoder` accept, with nearly the same weights and the
same metadata; so must the encoder; the training photos fill what is left of the 64 MiB."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from wct.decoder import Decoder, average_decoders, load_decoder, read_decoder, save_decoder, soup_metadata
from wct.encoder import NAMES, VGG19_MD5

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "train_gpu.py"


def load_script():
    spec = importlib.util.spec_from_file_location("train_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_int8_round_trip_keeps_weights_and_metadata(tmp_path):
    gpu = load_script()
    torch.manual_seed(0)
    decoder = Decoder(3)
    with torch.no_grad():
        for p in decoder.parameters():
            p.normal_(0, 0.05)
        decoder.net[0].weight[0, 0].mul_(40)  # an outlier kernel must not cost the others precision
        decoder.mean.normal_()
    original = tmp_path / "relu3_1.safetensors"
    save_decoder(decoder, original, {"encoder": VGG19_MD5, "steps": "12", "val_psnr": "27.5"})
    packed, back = tmp_path / "relu3_1.safetensors.q8", tmp_path / "back" / "relu3_1.safetensors"

    gpu.quantize(original, packed)
    gpu.dequantize(packed, back)

    assert packed.stat().st_size < 0.75 * original.stat().st_size  # 0.63 for relu5_1
    restored = load_decoder(3, "cpu", path=back)
    before, after = read_decoder(original), read_decoder(back)
    assert {k: v for k, v in after[1].items() if k != "sha256"} == {
        k: v for k, v in before[1].items() if k != "sha256"
    }
    for name, w in decoder.state_dict().items():
        got = restored.state_dict()[name]
        if name.endswith(".weight"):
            step = w.abs().amax(dim=(2, 3), keepdim=True) / 127  # one int8 step per 3x3 kernel
            assert ((got - w).abs() <= step * 0.51 + 1e-3 * w.abs()).all(), name
        else:
            assert torch.allclose(got, w, rtol=1e-3, atol=1e-4), name


def test_the_packed_encoder_and_photos_unpack_into_what_training_reads(tmp_path, monkeypatch):
    from wct.encoder import default_weights_path, load_encoder, read_weights

    gpu = load_script()
    monkeypatch.setattr(gpu, "GPU", tmp_path / ".gpu")
    monkeypatch.setattr(gpu, "INIT", tmp_path / "init")
    monkeypatch.setattr(gpu, "DATA", tmp_path / "data")
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir(), val.mkdir()
    for i in range(5):
        Image.new("RGB", (60, 40), (40 * i, 9, 0)).save(train / f"p{i}.png")
    Image.new("RGB", (60, 40)).save(val / "v.png")

    gpu.pack(train, val, 1, 75, [], 320, 200.0, ["docs/*", "decoders/*"])
    gpu.unpack_photos()
    vgg = gpu.encoder_file()

    assert not (gpu.GPU / "train").exists() and (gpu.GPU / "train.zip").is_file()
    assert sorted(f.name for f in gpu.DATA.iterdir()) == [f"{i:04d}.webp" for i in range(5)]
    assert (gpu.GPU / "vgg19.q8.safetensors").stat().st_size < 0.55 * vgg.stat().st_size
    original, _ = read_weights(default_weights_path())
    restored = load_encoder("cpu", vgg).state_dict()
    for name, w in original.items():
        conv, kind = name.split(".")
        got = restored[f"layers.{NAMES.index(conv)}.{kind}"]
        step = w.abs().amax(dim=(1, 2, 3), keepdim=True) / 127 if kind == "weight" else 0
        assert ((got - w).abs() <= step * 0.51 + 2e-3 * w.abs() + 1e-6).all(), name


def test_start_without_lr_refuses_levels_the_plan_does_not_cover():
    r = subprocess.run(
        [sys.executable, str(SCRIPT), "start", "--minutes", "1", "--levels", "1"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "pass --lr" in r.stderr and "Traceback" not in r.stderr


def test_start_gives_each_seed_its_own_lr_or_refuses_a_count_that_does_not_match(tmp_path, monkeypatch):
    gpu = load_script()
    launched = []

    class Popen:
        pid = 1

        def __init__(self, cmd, **kwargs):
            launched.append(cmd)

    monkeypatch.setattr(gpu, "RUNS", tmp_path)
    monkeypatch.setattr(gpu, "unpack_photos", lambda: None)
    monkeypatch.setattr(gpu, "init_file", lambda level: None)
    monkeypatch.setattr(gpu, "encoder_file", lambda: tmp_path / "vgg")
    monkeypatch.setattr(gpu, "subprocess", SimpleNamespace(Popen=Popen, STDOUT=subprocess.STDOUT))
    gpu.start(1, 8, 64, 0, [5], "cpu", 0.0, [6e-5, 1e-4, 1.5e-4], [0, 1, 2], rotate_seeds=(2,))
    lrs = [float(cmd[cmd.index("--lr") + 1]) for cmd in launched]
    seeds = [int(cmd[cmd.index("--seed") + 1]) for cmd in launched]
    assert (lrs, seeds) == ([6e-5, 1e-4, 1.5e-4], [0, 1, 2])
    assert ["--rotate" in cmd for cmd in launched] == [False, False, True]
    r = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "start",
            "--minutes",
            "1",
            "--seeds",
            "0",
            "1",
            "2",
            "--lr",
            "1e-4",
            "2e-4",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "one per seed (3), not 2" in r.stderr and "Traceback" not in r.stderr


def test_photos_fill_the_budget_in_an_order_that_spans_the_folder(tmp_path):
    gpu = load_script()
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir(), out.mkdir()
    g = torch.Generator().manual_seed(0)
    files = []
    for i in range(40):
        f = src / f"{i:02d}.png"
        Image.fromarray((torch.rand(400, 500, 3, generator=g) * 255).byte().numpy()).save(f)
        files.append(f)
    one = gpu.pack_photos(files[:1], out, 10**9, 320, 75)
    size = (out / "0000.webp").stat().st_size
    (out / "0000.webp").unlink()

    n = gpu.pack_photos(files, out, int(10.5 * size), 320, 75)

    written = sorted(out.glob("*.webp"))
    assert one == 1 and n == len(written) and 8 <= n <= 11  # noise photos compress alike
    assert sum(f.stat().st_size for f in written) <= 10.5 * size
    assert all(min(Image.open(f).size) == 320 for f in written)
    indices = [int(f.stem) for f in written]
    assert max(indices) >= 20 and indices != list(range(n))  # not just the folder's first photos


def test_left_out_tracked_files_are_not_counted_as_travelling():
    gpu = load_script()
    decoders = sorted((gpu.ROOT / "decoders").glob("*.safetensors"))
    assert decoders
    everything = gpu.travelling_bytes([])
    rest = gpu.travelling_bytes(["decoders/*.safetensors"])
    assert everything - rest == sum(f.stat().st_size for f in decoders)


def test_untracked_files_count_as_travelling_and_ignored_ones_do_not(tmp_path, monkeypatch):
    gpu = load_script()
    monkeypatch.setattr(gpu, "ROOT", tmp_path)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("/.gpu/\n")
    subprocess.run(["git", "add", ".gitignore"], cwd=tmp_path, check=True)
    (tmp_path / "scratch.png").write_bytes(b"x" * 1000)  # not added: it travels all the same
    (tmp_path / ".gpu").mkdir()
    (tmp_path / ".gpu" / "train.zip").write_bytes(b"x" * 5000)  # ignored: counted apart, when carried
    assert gpu.travelling_bytes([]) == len("/.gpu/\n") + 1000
    assert gpu.travelling_bytes(["*.png"]) == len("/.gpu/\n")


def test_skip_carries_the_photos_an_earlier_call_did_not(tmp_path):
    gpu = load_script()
    src = tmp_path / "src"
    src.mkdir()
    files = []
    for i in range(12):
        f = src / f"{i:02d}.png"
        Image.new("RGB", (40, 30), (20 * i, 0, 0)).save(f)
        files.append(f)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    gpu.pack_photos(files[:1], tmp_path, 10**9, 320, 75)
    size = (tmp_path / "0000.webp").stat().st_size  # flat photos compress alike

    n = gpu.pack_photos(files, first, int(5.5 * size), 320, 75)
    m = gpu.pack_photos(files, second, 10**9, 320, 75, skip=n)

    a, b = {f.name for f in first.glob("*.webp")}, {f.name for f in second.glob("*.webp")}
    assert 0 < n < 12 and m == 12 - n and not a & b and len(a | b) == 12


def nudged(decoder: Decoder, scale: float) -> Decoder:
    """A copy of `decoder` with Gaussian noise of `scale` added to its weights: a stand-in for a run."""
    out = Decoder(decoder.level)
    out.load_state_dict(decoder.state_dict())
    with torch.no_grad():
        for p in out.parameters():
            p.add_(torch.randn_like(p) * scale)
    return out


def test_soups_come_back_whole_with_the_runs_as_int8_while_they_fit(tmp_path, monkeypatch):
    import tarfile

    gpu = load_script()
    runs, init = tmp_path / "runs", tmp_path / "init"
    monkeypatch.setattr(gpu, "RUNS", runs)
    monkeypatch.setattr(gpu, "INIT", init)
    torch.manual_seed(0)
    start = Decoder(3)
    init.mkdir()
    save_decoder(start, init / "relu3_1.safetensors", {"encoder": VGG19_MD5})
    weights = [start.state_dict()]
    for run in ("l3", "l3s1"):
        d = nudged(start, 0.1)
        (runs / run).mkdir(parents=True)
        (runs / run / "train.log").write_text("step 1\n")
        save_decoder(d, runs / run / "relu3_1.best.safetensors", {"encoder": VGG19_MD5, "val_psnr": "27.5"})
        weights.append(load_decoder(3, "cpu", path=runs / run / "relu3_1.best.safetensors").state_dict())

    def back(room: int) -> dict[str, Path]:
        out, unpacked = tmp_path / f"out{room}", tmp_path / f"back{room}"
        gpu.collect(out, soups=True, room=room)
        (tmp_path / "all.tar").write_bytes(b"".join(p.read_bytes() for p in sorted(out.glob("part_*"))))
        with tarfile.open(tmp_path / "all.tar") as t:
            t.extractall(unpacked, filter="data")
        return {p.relative_to(unpacked).as_posix(): p for p in unpacked.rglob("*") if p.is_file()}

    everything = back(10**9)
    assert set(everything) == {
        "relu3_1.soup.safetensors",
        "l3/train.log",
        "l3s1/train.log",
        "l3/relu3_1.best.safetensors.q8",
        "l3s1/relu3_1.best.safetensors.q8",
    }
    soup_file = load_decoder(3, "cpu", path=everything["relu3_1.soup.safetensors"])
    assert "val_psnr" not in soup_file.metadata  # a run's score does not hold for the average
    assert len(json.loads(soup_file.metadata["averaged_from"])) == 3
    soup = soup_file.state_dict()
    for name, w in soup.items():
        mean = sum(s[name].float() for s in weights) / 3
        assert torch.allclose(w.float(), mean, atol=2e-3, rtol=2e-3), name
    q8 = everything["l3/relu3_1.best.safetensors.q8"].stat().st_size
    small = sum(everything[k].stat().st_size for k in everything if not k.endswith(".q8")) + q8 * 3 // 2
    assert sum(k.endswith(".q8") for k in back(small)) == 1  # the rest did not fit


def test_a_soup_gets_its_tracked_start_back_in_place_of_the_int8_copy(tmp_path, monkeypatch):
    gpu = load_script()
    root, init = tmp_path / "root", tmp_path / "init"
    monkeypatch.setattr(gpu, "ROOT", root)
    monkeypatch.setattr(gpu, "INIT", init)
    torch.manual_seed(0)
    start = Decoder(2)
    with torch.no_grad():
        for p in start.parameters():
            p.normal_(0, 0.05)
    tracked = root / "decoders" / "relu2_1.safetensors"
    save_decoder(start, tracked, {"encoder": VGG19_MD5})
    gpu.quantize(tracked, tmp_path / "start.q8")
    gpu.dequantize(tmp_path / "start.q8", init / "relu2_1.safetensors")  # what the GPU starts from
    files = [init / "relu2_1.safetensors"]
    for seed in (1, 2):
        run = nudged(load_decoder(2, "cpu", path=files[0]), 0.01)
        files.append(tmp_path / f"run{seed}.safetensors")
        save_decoder(run, files[-1], {"encoder": VGG19_MD5})
    decoders = [load_decoder(2, "cpu", path=f) for f in files]
    weights = [2.0, 1.0, 1.0]
    save_decoder(
        average_decoders(decoders, weights),
        tmp_path / "soup.safetensors",
        soup_metadata(files, decoders, weights),
    )
    soup = load_decoder(2, "cpu", path=tmp_path / "soup.safetensors")

    plain = {k: v.clone() for k, v in soup.state_dict().items()}

    assert gpu.unround_start(soup)

    exact = load_decoder(2, "cpu", path=tracked).state_dict()
    runs = [d.state_dict() for d in decoders[1:]]
    want = {k: (2 * exact[k].float() + runs[0][k].float() + runs[1][k].float()) / 4 for k in exact}
    for name, w in soup.state_dict().items():
        assert torch.allclose(w, want[name], rtol=1e-3, atol=1e-5), name  # the soup file is fp16
    assert not torch.allclose(plain["net.0.weight"], want["net.0.weight"], rtol=1e-3, atol=1e-5)

    with torch.no_grad():
        start.net[0].bias.add_(1.0)  # the tracked file is no longer the start the runs had
    save_decoder(start, tracked, {"encoder": VGG19_MD5})
    assert not gpu.unround_start(soup)


def test_pack_refuses_folders_without_photos_and_keeps_the_last_pack(tmp_path, monkeypatch):
    gpu = load_script()
    monkeypatch.setattr(gpu, "GPU", tmp_path / ".gpu")
    (tmp_path / ".gpu").mkdir()
    (tmp_path / ".gpu" / "train.zip").write_bytes(b"the last pack")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (60, 40)).save(photos / "p.png")
    for train, val, missing in ((tmp_path / "none", photos, "none"), (photos, tmp_path / "nov", "nov")):
        with pytest.raises(SystemExit, match=f"error: no photos in {tmp_path / missing}"):
            gpu.pack(train, val, 1, 75, [], 320, 200.0, ["docs/*", "decoders/*"])
    assert (tmp_path / ".gpu" / "train.zip").read_bytes() == b"the last pack"  # a typo costs no pack
    monkeypatch.setattr(sys, "argv", ["train_gpu.py", "pack", "--quality", "500", "--train", str(photos)])
    with pytest.raises(SystemExit) as e:
        gpu.main()
    assert e.value.code == 2 and (tmp_path / ".gpu" / "train.zip").read_bytes() == b"the last pack"


def test_start_and_wait_without_their_files_say_what_to_run_first(tmp_path, monkeypatch):
    gpu = load_script()
    monkeypatch.setattr(gpu, "GPU", tmp_path / ".gpu")
    monkeypatch.setattr(gpu, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(gpu, "DATA", tmp_path / "data")
    with pytest.raises(SystemExit, match=r"train.zip is missing: run `pack` here and name .gpu in carry"):
        gpu.unpack_photos()
    with pytest.raises(SystemExit, match=r"pids is missing: `start` the runs on this machine first"):
        gpu.wait(1, None)


def test_a_refused_or_empty_pack_keeps_the_last_pack_whole(tmp_path, monkeypatch):
    gpu = load_script()
    monkeypatch.setattr(gpu, "GPU", tmp_path / ".gpu")
    monkeypatch.setattr(gpu, "travelling_bytes", lambda leave_out: 0)
    (tmp_path / ".gpu").mkdir()
    (tmp_path / ".gpu" / "train.zip").write_bytes(b"the last pack")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (60, 40)).save(photos / "p.png")
    with pytest.raises(SystemExit, match=r"MiB travel before any photo; raise --budget-mb"):
        gpu.pack(photos, photos, 1, 75, [], 320, 1.0, [])  # the int8 encoder alone is 12.4 MiB
    assert (tmp_path / ".gpu" / "train.zip").read_bytes() == b"the last pack"  # was removed first
    with pytest.raises(SystemExit, match=r"no photo packed \(--skip 1 leaves none of the 1\)"):
        gpu.pack(photos, photos, 1, 75, [], 320, 200.0, [], skip=1)  # was a pack of no photos
    assert (tmp_path / ".gpu" / "train.zip").read_bytes() == b"the last pack"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gpu", "photos"]  # nothing half-written

    gpu.pack(photos, photos, 1, 75, [], 320, 200.0, [])
    assert zipfile_names(tmp_path / ".gpu" / "train.zip") == ["0000.webp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gpu", "photos"]


def zipfile_names(path: Path) -> list[str]:
    import zipfile

    with zipfile.ZipFile(path) as z:
        return z.namelist()


def test_adopt_scores_a_soup_beside_it_and_takes_its_start_out_once(tmp_path, monkeypatch):
    import wct.encoder
    import wct.evaluate
    import wct.train

    gpu = load_script()
    root, init = tmp_path / "root", tmp_path / "init"
    monkeypatch.setattr(gpu, "ROOT", root)
    monkeypatch.setattr(gpu, "INIT", init)
    torch.manual_seed(0)
    start = nudged(Decoder(2), 0.05)
    tracked = root / "decoders" / "relu2_1.safetensors"
    save_decoder(start, tracked, {"encoder": VGG19_MD5})
    gpu.quantize(tracked, tmp_path / "start.q8")
    gpu.dequantize(tmp_path / "start.q8", init / "relu2_1.safetensors")  # what the GPU starts from
    files = [init / "relu2_1.safetensors", tmp_path / "run.safetensors"]
    save_decoder(nudged(load_decoder(2, "cpu", path=files[0]), 0.01), files[1], {"encoder": VGG19_MD5})
    decoders = [load_decoder(2, "cpu", path=f) for f in files]
    soup = tmp_path / "relu2_1.soup.safetensors"  # as `wait --soups` sends it back
    save_decoder(average_decoders(decoders), soup, soup_metadata(files, decoders, [1.0, 1.0]))
    sent = soup.read_bytes()
    monkeypatch.setattr(wct.encoder, "load_encoder", lambda device: None)  # scoring is not the point
    monkeypatch.setattr(wct.evaluate, "load_val_images", lambda val: [])
    scores = {"psnr": 20.0, "ssim": 0.5, "images": 0}
    monkeypatch.setattr(wct.evaluate, "reconstruction_scores", lambda encoder, decoder, images: scores)
    exported: list[Path] = []
    monkeypatch.setattr(wct.train, "export", lambda best, target: exported.append(best))

    gpu.adopt([soup], tmp_path, "data", "GPU")
    scored = tmp_path / "relu2_1.soup.scored.safetensors"
    assert soup.read_bytes() == sent and exported == [scored]  # was written over the soup itself
    once = load_decoder(2, "cpu", path=scored)
    assert "start_unrounded" in once.metadata
    gpu.adopt([scored], tmp_path, "data", "GPU")  # adopted again: the offset was added twice
    twice = load_decoder(2, "cpu", path=tmp_path / "relu2_1.soup.scored.scored.safetensors")
    for name, w in once.state_dict().items():
        assert torch.equal(twice.state_dict()[name], w), name
