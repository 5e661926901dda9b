import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from wct import bench
from wct.demo import landscape, painting


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("gatys_pair")
    landscape(80, 64).save(d / "content.png")
    painting(64, 64).save(d / "style.png")
    return d


def test_bench_quick_writes_valid_json_table_and_sheet(tmp_path, wct_cli):
    out = tmp_path / "report"
    r = wct_cli("bench", "--quick", "-o", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "bench.json").read_text())
    (row,) = report["summary"]
    (rec,) = report["pairs"]
    assert row["size"] == 64 and row["pairs"] == 1
    assert rec["wct"]["seconds"] > 0 and rec["gatys"]["seconds"] > 0 and rec["wct"]["peak_rss_mb"] > 0
    assert len(rec["gatys"]["history"]) == rec["gatys"]["steps"] + 1 == 6
    best = rec["gatys"]["history"][rec["gatys"]["best_step"]]
    assert best["total"] == min(e["total"] for e in rec["gatys"]["history"])
    assert best["total"] == pytest.approx(rec["gatys"]["total"], rel=1e-4)  # the image scored is the best
    assert rec["gatys"]["settings"]["normalise"] is True and rec["gatys"]["settings"]["steps"] == 5
    for method in ("wct", "gatys"):
        assert rec[method]["style"] > 0 and rec[method]["content"] >= 0
    assert "| 64 | 1 |" in (out / "bench.md").read_text()
    from PIL import Image

    assert Image.open(out / "sheet.png").size == (1024, 256)
    again = wct_cli("bench", "--quick", "-o", str(out))
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_first_match_is_the_first_entry_whose_loss_reaches_the_target():
    history = [{"step": k, "total": t, "seconds": k * 1.5} for k, t in enumerate((9.0, 4.0, 3.0))]
    assert bench.first_match(history, 5.0)["seconds"] == 1.5
    assert bench.first_match(history, 9.0)["step"] == 0  # the starting image itself
    assert bench.first_match(history, 1.0) is None


def test_score_is_zero_for_the_style_image_on_itself_and_content_on_itself(encoder):
    from wct.gatys import Options

    x = torch.rand(1, 3, 64, 64)
    o = Options(tv_weight=0.0)
    s = bench.score(encoder, x, x, x, o)
    other = bench.score(encoder, x, x, torch.rand(1, 3, 64, 64), o)
    assert s["content"] == 0 and s["tv"] == 0 and s["style"] < 1e-6 * other["style"]
    assert s["total"] == pytest.approx(s["content"] + s["style"] + s["tv"])


def test_gatys_cli_writes_output_and_intermediates_and_history(pair, tmp_path, wct_cli):
    from PIL import Image

    out = tmp_path / "g.png"
    hist = tmp_path / "h.json"
    r = wct_cli(
        "gatys",
        str(pair / "content.png"),
        str(pair / "style.png"),
        "-o",
        str(out),
        "--steps",
        "4",
        "--size",
        "64",
        "--save-every",
        "2",
        "--history",
        str(hist),
    )
    assert r.returncode == 0, r.stderr
    assert out.exists() and (tmp_path / "g_step0002.png").exists() and (tmp_path / "g_step0004.png").exists()
    h = json.loads(hist.read_text())
    assert h["finished"] and h["settings"]["steps"] == 4 and h["settings"]["content"] == "content.png"
    assert [e["step"] for e in h["history"]] == [0, 1, 2, 3, 4]
    # L-BFGS runs without a line search, so its first steps may overshoot: progress, not monotony
    assert min(e["total"] for e in h["history"][1:]) < h["history"][0]["total"]
    assert json.loads(Image.open(out).text["wct:settings"]) == h["settings"]
    best = min(h["history"], key=lambda e: e["total"])
    assert h["best_step"] == best["step"] == int(Image.open(out).text["wct:step"])
    assert f"total loss {best['total']:.4g}" in " ".join(r.stderr.split())


def test_texture_synthesis_and_inversion_from_the_cli(pair, tmp_path, wct_cli):
    from PIL import Image

    tex = tmp_path / "tex.png"
    r = wct_cli(
        "gatys",
        "--no-content",
        str(pair / "style.png"),
        "-o",
        str(tex),
        "--steps",
        "3",
        "--size",
        "64",
        "--optimizer",
        "adam",
        "--gram",
        "both",
    )
    assert r.returncode == 0, r.stderr
    assert Image.open(tex).size == (64, 64)
    inv = tmp_path / "inv.png"
    r = wct_cli(
        "invert",
        str(pair / "content.png"),
        "-o",
        str(inv),
        "--layer",
        "relu2_1",
        "--steps",
        "3",
        "--size",
        "64",
    )
    assert r.returncode == 0, r.stderr
    assert Image.open(inv).size == (64, 51)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--optimizer", "sgd"], "unknown optimizer (--optimizer)"),
        (["--gram", "weird"], "unknown gram (--gram)"),
        (["--steps", "0"], "steps (--steps) must be"),
        (["--style-weight", "nan"], "style_weight (--style-weight) must be"),
        (["--lr", "0"], "lr (--lr) must be > 0"),
        (["--optimizer", "adam", "--lr", "1e38"], "lr (--lr) must be at most 1000 with adam"),
        (["--init", "content", "--no-content"], "STYLE"),
        (["--style-layers", "relu1_1,conv2_1"], "style_layers (--style-layers) takes distinct ReLU layers"),
        (["--content-layer", "relu9_1"], "content_layer (--content-layer)"),
        (["--size", "8"], "--size must be at least 16"),
    ],
)
def test_gatys_cli_bad_options_fail_cleanly_without_writing(pair, tmp_path, wct_cli, args, message):
    out = tmp_path / "x.png"
    r = wct_cli(
        "gatys", str(pair / "content.png"), str(pair / "style.png"), "-o", str(out), "--size", "64", *args
    )
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.startswith("error:")  # checked before the encoder loads and the progress bar starts
    assert not out.exists()


def test_gatys_cli_refuses_a_style_preset_saying_why(pair, tmp_path, wct_cli):
    preset = tmp_path / "style.safetensors"
    preset.write_bytes(b"not read: refused by its name")
    out = tmp_path / "x.png"
    for args in ((str(pair / "content.png"), str(preset)), ("--no-content", str(preset))):
        r = wct_cli("gatys", *args, "-o", str(out))
        assert r.returncode == 1 and r.stderr.startswith("error:") and "is a style preset" in r.stderr
    assert not out.exists()


def test_invert_cli_checks_its_options_first(pair, tmp_path, wct_cli):
    out = tmp_path / "x.png"
    for args, message in ((["--layer", "relu9_1"], "unknown VGG19 layer"), (["--steps", "-1"], "--steps")):
        r = wct_cli("invert", str(pair / "content.png"), "-o", str(out), *args)
        assert r.returncode == 1 and r.stderr.startswith("error:") and message in r.stderr
    assert not out.exists()


def test_gatys_cli_never_writes_over_an_input(pair, wct_cli):
    before = (pair / "content.png").read_bytes()
    r = wct_cli(
        "gatys",
        str(pair / "content.png"),
        str(pair / "style.png"),
        "-o",
        str(pair / "content.png"),
        "--overwrite",
        "--steps",
        "1",
        "--size",
        "64",
    )
    assert r.returncode == 1 and "input" in r.stderr
    assert (pair / "content.png").read_bytes() == before


def test_gatys_history_never_replaces_a_file_silently(pair, tmp_path, wct_cli):
    content, out, hist = pair / "content.png", tmp_path / "g.png", tmp_path / "h.json"
    hist.write_text("my notes")
    before = content.read_bytes()
    base = ("gatys", str(content), str(pair / "style.png"), "-o", str(out), "--steps", "1", "--size", "64")

    r = wct_cli(*base, "--history", str(hist))
    assert r.returncode == 1 and "--overwrite" in r.stderr and "Traceback" not in r.stderr
    assert hist.read_text() == "my notes" and not out.exists()  # refused before any work
    r = wct_cli(*base, "--history", str(content), "--overwrite")
    assert r.returncode == 1 and "input" in r.stderr and content.read_bytes() == before
    r = wct_cli(*base, "--history", str(out), "--overwrite")
    assert r.returncode == 1 and "also the output image" in r.stderr and not out.exists()
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"a photo")
    r = wct_cli(*base, "--history", str(photo), "--overwrite")  # a photo never becomes JSON
    assert r.returncode == 1 and "--history" in r.stderr and "must end in .json" in r.stderr
    assert photo.read_bytes() == b"a photo" and not out.exists()
    assert wct_cli(*base, "--history", str(hist), "--overwrite").returncode == 0
    assert len(json.loads(hist.read_text())["history"]) == 2


def test_gatys_cli_refuses_clashing_snapshots_and_bad_history_paths_before_any_work(pair, tmp_path, wct_cli):
    out = tmp_path / "snap.png"
    (tmp_path / "snap_step0002.png").write_bytes(b"an earlier run's snapshot")
    base = ("gatys", str(pair / "content.png"), str(pair / "style.png"), "-o", str(out), "--size", "64")
    r = wct_cli(*base, "--steps", "3", "--save-every", "1")
    assert r.returncode == 1 and "snap_step0002.png exists" in r.stderr and r.stderr.startswith("error:")
    assert not (tmp_path / "snap_step0001.png").exists() and not out.exists()
    (tmp_path / "afile").write_text("x")
    r = wct_cli(*base, "--steps", "1", "--history", str(tmp_path / "afile" / "h.json"))
    assert r.returncode == 1 and "is a file" in r.stderr and not out.exists()


def test_gatys_cli_keeps_the_history_and_best_image_of_a_stopped_run(pair, tmp_path, wct_cli, stop_gatys):
    stop_gatys()
    out, hist = tmp_path / "g.png", tmp_path / "h.json"
    r = wct_cli(
        "gatys", str(pair / "content.png"), str(pair / "style.png"), "-o", str(out), "--size", "64",
        "--steps", "5", "--history", str(hist),
    )  # fmt: skip
    assert r.returncode == 130 and "interrupted" in r.stderr
    h = json.loads(hist.read_text())
    assert h["finished"] is False and [e["step"] for e in h["history"]] == [0, 1]
    assert h["settings"]["steps"] == 5 and h["error"] == "interrupted"  # why it stopped
    assert f"wrote {out}: the lowest loss after 1 of 5 steps, at step {h['best_step']}" in " ".join(
        r.stderr.split()
    )
    with Image.open(out) as im:  # the best image of the steps done, not lost, and marked as such
        assert im.text["wct:interrupted"] == "1" and im.text["wct:step"] == str(h["best_step"])
    stop_gatys()
    r = wct_cli(
        "gatys", str(pair / "content.png"), str(pair / "style.png"), "-o", str(out), "--size", "64",
        "--steps", "5", "--overwrite",
    )  # fmt: skip
    assert r.returncode == 130 and (tmp_path / "g_interrupted.png").exists()  # an earlier OUT is kept
    with Image.open(out) as im:
        assert im.text["wct:interrupted"] == "1"  # the first run's image, not replaced


def test_gatys_cli_stops_a_diverging_run_with_an_error_keeping_the_best_image(
    pair, tmp_path, wct_cli, monkeypatch
):
    out, hist = tmp_path / "g.png", tmp_path / "h.json"
    base = ("gatys", str(pair / "content.png"), str(pair / "style.png"), "-o", str(out), "--size", "64",
            "--steps", "5", "--history", str(hist))  # fmt: skip
    r = wct_cli(*base, "--lr", "1e6")  # L-BFGS's first, memoryless step already more than doubles the loss
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "error: L-BFGS diverged at step 1" in said and "Traceback" not in said, said
    assert "lower lr (--lr) 1e+06, e.g. to 100000" in said
    assert not out.exists()  # its best image is the photo it started from: nothing to keep
    h = json.loads(hist.read_text())
    assert h["finished"] is False and [e["step"] for e in h["history"]] == [0, 1] and h["best_step"] == 0
    assert h["error"].startswith("L-BFGS diverged at step 1") and "\n" not in h["error"]  # why it stopped

    import wct.gatys

    calls, tv_loss = [], wct.gatys.tv_loss

    def nan_in_step_4(x):
        calls.append(1)
        return tv_loss(x) * (float("nan") if len(calls) == 4 else 1)

    monkeypatch.setattr(wct.gatys, "tv_loss", nan_in_step_4)
    r = wct_cli(*base, "--overwrite")
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and "error: the loss became nan at step 3" in said, said
    h = json.loads(hist.read_text())
    assert h["error"].startswith("the loss became nan at step 3")
    assert [e["step"] for e in h["history"]] == [0, 1, 2] and h["best_step"] > 0
    assert f"wrote {out}: the lowest loss after 2 of 5 steps, at step {h['best_step']}" in said
    with Image.open(out) as im:  # the best image of the finite steps, never a NaN one
        assert im.text["wct:step"] == str(h["best_step"]) and im.text["wct:interrupted"] == "2"


def test_gatys_cli_texture_size_and_ignored_options(pair, tmp_path, wct_cli):
    from PIL import Image

    tex = tmp_path / "tex.png"
    args = ("gatys", "--no-content", str(pair / "style.png"), "-o", str(tex), "--steps", "1", "--size", "64")
    with pytest.warns(UserWarning) as caught:
        r = wct_cli(*args, "--texture-size", "96x48", "--content-weight", "3", "--save-every", "2")
    assert r.returncode == 0, r.stderr
    messages = " ".join(str(w.message) for w in caught)
    assert "--content-weight has no effect" in messages and "--save-every 2 is more than --steps" in messages
    assert Image.open(tex).size == (96, 48)
    r = wct_cli(*args, "--texture-size", "40", "--overwrite")  # N is N x N, as for `wct texture --size`
    assert r.returncode == 0, r.stderr
    assert Image.open(tex).size == (40, 40)
    r = wct_cli(*args, "--texture-size", "96x", "--overwrite")
    assert r.returncode == 1 and "--texture-size must be WIDTHxHEIGHT" in r.stderr
    with pytest.warns(UserWarning, match="--seed only seeds --init noise"):
        wct_cli("gatys", str(pair / "content.png"), str(pair / "style.png"), "-o", str(tmp_path / "s.png"),
                "--steps", "1", "--size", "64", "--seed", "3")  # fmt: skip


def test_gatys_cli_warns_that_a_texture_ignores_the_content_layer(pair, tmp_path, wct_cli):
    args = ("gatys", "--no-content", str(pair / "style.png"), "-o", str(tmp_path / "t.png"), "--steps", "1",
            "--size", "64", "--content-layer", "relu1_1")  # fmt: skip
    with pytest.warns(UserWarning, match="--content-layer has no effect with --no-content"):
        assert wct_cli(*args).returncode == 0


def test_bench_cli_checks_its_arguments_before_any_work(tmp_path, wct_cli):
    (tmp_path / "afile").write_text("x")
    for args, message in (
        (["-o", str(tmp_path / "afile")], "is a file"),
        (["--repeats", "0", "-o", str(tmp_path / "r")], "--repeats"),
        (["--steps", "0", "-o", str(tmp_path / "r")], "steps (--steps)"),
    ):
        r = wct_cli("bench", "--quick", *args)
        assert r.returncode == 1 and r.stderr.startswith("error:") and message in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()
    Image.new("RGB", (40, 20)).save(tmp_path / "wide.png")  # 16 px long side: 8 px short
    r = wct_cli("bench", "--pair", f"{tmp_path / 'wide.png'},{tmp_path / 'wide.png'}", "--sizes", "16",
                "-o", str(tmp_path / "r"))  # fmt: skip
    assert r.returncode == 1 and "wide.png is 16x8 px at this --sizes" in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()
    r = wct_cli("bench", "--quick", "-o", str(tmp_path / "afile" / "report"))
    assert r.returncode == 1 and "cannot write the report" in r.stderr and "Traceback" not in r.stderr


def test_bench_refuses_the_options_it_would_ignore(tmp_path, wct_cli):
    for args, refused in (
        (["--sizes", "128"], "--sizes"),
        (["--sizes", "256,512"], "--sizes"),  # the default, given: still not what --quick runs
        (["--repeats", "2"], "--repeats"),
        (["--pairs", "2", "--styles", str(tmp_path)], "--styles, --pairs"),
        (["--pair", "a.png,b.png"], "--pair"),
        (["--steps", "50"], "--steps 50"),  # --quick runs at most 5
    ):
        r = wct_cli("bench", "--quick", "-o", str(tmp_path / "r"), *args)
        said = " ".join(r.stderr.split())
        assert r.returncode == 1 and said.startswith("error: --quick") and f"drop {refused}" in said, said
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    r = wct_cli("bench", "--pair", f"{tmp_path / 'a.png'},{tmp_path / 'a.png'}", "--pairs", "3", "-o",
                str(tmp_path / "r"))  # fmt: skip
    assert r.returncode == 1 and r.stderr.startswith("error: --pair replaces --pairs"), r.stderr
    assert not (tmp_path / "r").exists()


def test_bench_refuses_a_repeated_size_before_any_work(tmp_path, wct_cli):
    Image.new("RGB", (64, 64)).save(tmp_path / "a.png")
    a = str(tmp_path / "a.png")
    r = wct_cli("bench", "--pair", f"{a},{a}", "--sizes", "32,64,32", "--steps", "1", "--repeats", "1",
                "-o", str(tmp_path / "r"))  # fmt: skip
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and said.startswith("error: --sizes must be distinct") and "'32,64,32'" in said
    assert not (tmp_path / "r").exists()
    r = wct_cli(
        "bench", "--pair", f"{a},{a}", "--pair", f"{a},{a}", "--steps", "1", "-o", str(tmp_path / "r")
    )
    assert r.returncode == 1 and r.stderr.startswith("error: --pair") and "given twice" in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()


def test_summary_counts_matches_by_the_content_photo_itself_and_takes_medians():
    def record(match_step, wct_s):
        return {
            "size": 64,
            "wct": {"seconds": wct_s, "peak_rss_mb": 10.0, "style": 2.0, "content": 1.0},
            "gatys": {
                "steps": 5, "seconds": 12.0, "seconds_per_step": 2.0, "seconds_500_steps": 1002.0,
                "peak_rss_mb": 20.0, "style": 1.0, "content": 3.0,
                "steps_to_match_wct": match_step,
                "time_to_match_wct": None if match_step is None else 2.0 * match_step,
            },
            "speedup_500_steps": 1002.0 / wct_s,
            "time_to_match_ratio": None if match_step is None else 2.0 * match_step / wct_s,
        }  # fmt: skip

    (row,) = bench.summarise([record(0, 1.0), record(2, 2.0), record(None, 4.0)])
    assert row["pairs"] == 3 and row["matched"] == 2 and row["matched_at_start"] == 1
    assert row["wct_seconds"] == 2.0 and row["time_to_match_ratio"] == 1.0  # median of 0 and 2
    assert row["gatys_seconds_500"] == 1002.0 and row["speedup_500_steps"] == 501.0
    assert "(2/3 matched, 1 by the content photo itself)" in bench.markdown([row], "test machine")


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_machine_names_the_device_the_benchmark_ran_on(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    cpu = bench.machine("cpu")  # a CPU benchmark on a machine that also has a GPU
    assert "Some GPU" not in cpu and "cores" in cpu and "threads" in cpu
    assert f"({torch.backends.cpu.get_cpu_capability()})" in cpu  # AVX2 or AVX512: bf16's speed differs
    assert bench.machine(torch.device("cuda")).startswith("Some GPU")
    assert bench.machine().startswith("Some GPU")  # no device: the GPU whenever there is one


def test_train_decoders_finetune_runs_the_levels_it_has_a_schedule_for(monkeypatch, capsys):
    import runpy

    import wct.train

    levels = []
    monkeypatch.setattr(wct.train, "train", lambda cfg: levels.append((cfg.level, cfg.steps)) or {})
    script = str(SCRIPTS / "train_decoders.py")
    monkeypatch.setattr(sys, "argv", [script, "--finetune", "--export", "nowhere"])
    runpy.run_path(script, run_name="__main__")
    assert levels == [(3, 400), (4, 300), (5, 250)]
    for args in (["--finetune", "--levels", "1"], ["--levels", "6"], ["--levels", "a"]):
        monkeypatch.setattr(sys, "argv", [script, *args])
        with pytest.raises(SystemExit) as e:
            runpy.run_path(script, run_name="__main__")
        assert e.value.code == 2 and "--levels" in capsys.readouterr().err, args
    assert len(levels) == 3


def test_bench_video_clip_never_stretches_a_pan_past_the_photo():
    clip = load_script("bench_video").clip
    frames = clip(106, 160, 1.5, 0.0)  # the photo is 320 px wide: the pan just fits
    assert len(frames) == 106 and all(f.shape == (1, 3, 160, 160) for f in frames)
    with pytest.raises(ValueError, match="lower --frames or --step"):
        clip(107, 160, 1.5, 0.0)  # the last frames were a narrower crop stretched to 160 px
    with pytest.raises(ValueError, match="--step"):
        clip(4, 160, -1.0, 0.0)


def test_bench_tiling_loads_the_decoders_before_timing(monkeypatch):
    import wct.tiling

    tiling = load_script("bench_tiling")
    loaded = []

    def stylize_any(s, x, *args, **kwargs):
        loaded.append(sorted(s._decoders))
        return x

    monkeypatch.setattr(wct.tiling, "stylize_any", stylize_any)
    monkeypatch.setattr(tiling, "style", lambda s: None)
    monkeypatch.setattr(tiling, "content", lambda w, h: torch.rand(1, 3, 16, 16))
    tiling.child("1024", "auto", (5, 4, 3, 2, 1))
    assert loaded == [[1, 2, 3, 4, 5]]  # loading them is not part of the time


def test_vgg_channel_means_refuses_to_write_a_zero_mean(tmp_path, monkeypatch, capsys):
    import runpy

    from PIL import Image

    Image.new("RGB", (32, 32), (128, 128, 128)).save(tmp_path / "flat.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")  # skipped, not a traceback
    out, script = tmp_path / "means.safetensors", str(SCRIPTS / "vgg_channel_means.py")
    for args, message in ((["--images", "2"], "never active"), (["--images", "0"], "--images")):
        monkeypatch.setattr(sys, "argv", [script, "--data", str(tmp_path), "--out", str(out), *args])
        with pytest.raises(SystemExit) as e:
            runpy.run_path(script, run_name="__main__")
        assert message in f"{e.value.code} {capsys.readouterr().err}" and e.value.code != 0
    assert not out.exists()  # wct.gatys divides by these means: a zero gives NaN losses


def test_timing_waits_for_queued_gpu_work(monkeypatch):
    events = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: events.append("sync"))
    bench.median_seconds(lambda: events.append("run"), 2)
    assert events == ["run", "sync", "run", "sync", "sync", "run", "sync"]


def test_gatys_and_invert_keep_the_alpha_channel_of_their_photo(pair, tmp_path, wct_cli):
    from PIL import Image

    photo = Image.open(pair / "content.png").convert("RGBA")
    photo.putalpha(Image.linear_gradient("L").resize(photo.size))
    photo.save(tmp_path / "cut_out.png")
    for args in (
        ("gatys", str(tmp_path / "cut_out.png"), str(pair / "style.png"), "-o", str(tmp_path / "g.png")),
        ("invert", str(tmp_path / "cut_out.png"), "--layer", "relu1_1", "-o", str(tmp_path / "i.png")),
    ):
        r = wct_cli(*args, "--steps", "2", "--size", "80", "--save-every", "2")
        assert r.returncode == 0, r.stderr
        for out in (Path(args[-1]), Path(args[-1]).with_name(f"{Path(args[-1]).stem}_step0002.png")):
            im = Image.open(out)
            assert im.mode == "RGBA" and im.getchannel("A").tobytes() == photo.getchannel("A").tobytes()


def test_gatys_cli_names_the_init_flag_when_there_is_no_content(pair, tmp_path, wct_cli):
    out = tmp_path / "x.png"
    r = wct_cli("gatys", "--no-content", str(pair / "style.png"), "--init", "content", "-o", str(out))
    assert r.returncode == 1 and "init (--init) 'content' needs a content image" in r.stderr
    assert not out.exists()


def test_bench_stylize_checks_its_arguments_before_any_work(tmp_path, monkeypatch, capsys):
    import wct.bench

    script = load_script("bench_stylize")
    monkeypatch.setattr(wct.bench, "conv_throughput", lambda *a: pytest.fail("measured before checking"))
    report = tmp_path / "stylize.json"
    report.write_text("an earlier report")
    for args, message in (
        (["--runs", "0"], "--runs"),
        (["--size", "0"], "--size"),
        (["--json", str(report)], "--overwrite"),
        (["--json", str(tmp_path)], "is a directory"),
        (["--json", str(report / "r.json")], "is a file, not a directory"),  # not after the work
    ):
        monkeypatch.setattr(sys, "argv", ["bench_stylize.py", *args])
        with pytest.raises(SystemExit) as e:
            script.main()
        assert e.value.code == 2 and message in capsys.readouterr().err, args
    assert report.read_text() == "an earlier report"


def test_bench_stylize_writes_its_json_whole_or_not_at_all(tmp_path, monkeypatch):
    import wct.bench
    import wct.pipeline

    class Stylizer:  # the measurements are not under test here: only how the report is written
        encoder, device = None, torch.device("cpu")

        def __init__(self, device, precision):
            pass

        def style(self, image):
            return image

        def stylize(self, content, style, *args):
            return content

    script = load_script("bench_stylize")
    monkeypatch.setattr(wct.pipeline, "Stylizer", Stylizer)
    monkeypatch.setattr(wct.bench, "conv_throughput", lambda encoder, runs: (10**9, 0.01))
    monkeypatch.setattr(wct.bench, "count_flops", lambda fn: 10**8)
    monkeypatch.setattr(script, "images", lambda size: (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)))
    monkeypatch.setattr(script, "peak_memory_mib", lambda size, device, precision: (1024.0, None))
    report = tmp_path / "stylize.json"
    report.write_text("an earlier report")
    write_text = Path.write_text

    def disk_full(path, text, *args, **kwargs):  # half the report, then no space left
        write_text(path, text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    argv = ["bench_stylize.py", "--runs", "1", "--json", str(report), "--overwrite"]
    monkeypatch.setattr(sys, "argv", argv)
    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", disk_full)
        with pytest.raises(SystemExit) as e, torch.enable_grad():  # main() turns gradients off
            script.main()
    assert "No space left" in str(e.value.code) and report.read_text() == "an earlier report"
    assert sorted(tmp_path.iterdir()) == [report]  # no temporary file left behind
    with torch.enable_grad():
        script.main()
    assert torch.is_grad_enabled()
    result = json.loads(report.read_text())
    assert result["runs"] == 1 and result["content_px"] == [32, 32]
    # the target is 4 GB (10**9 bytes), as the README says: the peak compared with it is in GB too
    assert result["peak_rss_gb_1024px"] == 1.07 and result["peak_rss_gib_1024px"] == 1.0
    assert result["target_peak_rss_gb"] == 4.0
    assert (
        result["device"] == "cpu" and result["precision"] == "fp32" and result["peak_gpu_gb_1024px"] is None
    )


def test_bench_train_checks_its_arguments_and_keeps_an_earlier_report(tmp_path, monkeypatch, capsys):
    script = load_script("bench_train")
    monkeypatch.setattr(script, "images_per_second", lambda *a: pytest.fail("measured before checking"))
    report = tmp_path / "train.json"
    report.write_text("an earlier report")
    for args, message in ((["--steps", "0"], "--steps"), (["--out", str(report)], "--overwrite")):
        monkeypatch.setattr(sys, "argv", ["bench_train.py", *args])
        with pytest.raises(SystemExit) as e:
            script.main()
        assert e.value.code == 2 and message in capsys.readouterr().err, args
    assert report.read_text() == "an earlier report"
    monkeypatch.setattr(script, "images_per_second", lambda *a: 1.0)
    monkeypatch.setattr(sys, "argv", ["bench_train.py", "--out", str(report), "--overwrite"])
    script.main()
    assert json.loads(report.read_text())["images_per_second"]["relu5_1"] == 1.0
    assert sorted(tmp_path.iterdir()) == [report]


def test_bench_names_the_option_of_a_missing_folder(tmp_path, wct_cli):
    """Where the default ../shared/data folders are missing, bench said "error: <path>/content does
    not exist", naming no option."""
    (tmp_path / "styles").mkdir()
    for args, said in (
        (("--contents", str(tmp_path / "content"), "--styles", str(tmp_path / "styles")), "--contents"),
        (("--contents", str(tmp_path / "styles"), "--styles", str(tmp_path / "none")), "--styles"),
    ):
        r = wct_cli("bench", *args, "-o", str(tmp_path / "out"))
        assert r.returncode == 1 and f"error: {said} {tmp_path}" in r.stderr and "does not exist" in r.stderr
    assert not (tmp_path / "out").exists()


def tiling_run(size: str) -> dict:
    """A made-up bench_tiling record of one size (the measurements are not under test)."""
    return {"size": size, "levels": "5,4,3,2,1", "width": 1024, "height": 576, "tiled": False, "tile": 512,
            "seconds": 1.0, "cpu_seconds": 1.0, "cpu_seconds_per_mp": 1.7, "peak_rss_gb": 1.0,
            "load_average": [0.0, 0.0]}  # fmt: skip


def test_bench_tiling_writes_its_reports_whole_or_not_at_all(tmp_path, monkeypatch):
    tiling = load_script("bench_tiling")
    monkeypatch.setattr(tiling, "run_child", lambda size, tile, threads: tiling_run(size))
    out = tmp_path / "tiling"
    for suffix in (".json", ".md"):
        out.with_suffix(suffix).write_text("an earlier report")
    write_text = Path.write_text

    def disk_full(path, text, *args, **kwargs):  # half the report, then no space left
        write_text(path, text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    threads = str(torch.get_num_threads())  # as they are: main sets them for the whole process
    argv = ["bench_tiling.py", "--sizes", "1024", "--no-check", "--out", str(out), "--overwrite"]
    monkeypatch.setattr(sys, "argv", [*argv, "--threads", threads])
    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", disk_full)
        with pytest.raises(SystemExit) as e:
            tiling.main()
    assert "No space left" in str(e.value.code)
    assert [p.read_text() for p in sorted(tmp_path.iterdir())] == ["an earlier report"] * 2  # no temp file
    tiling.main()
    assert json.loads(out.with_suffix(".json").read_text())["runs"] == [tiling_run("1024")]
    assert "| 1024 | 5,4,3,2,1 | 1024x576 | no |" in out.with_suffix(".md").read_text()


def test_bench_tiling_says_why_a_size_failed_and_keeps_the_sizes_before_it(tmp_path, monkeypatch):
    import subprocess

    tiling = load_script("bench_tiling")

    def run(cmd, **kwargs):  # the fresh process of each size: 4K runs out of memory
        size = cmd[cmd.index("--child") + 1]
        if size == "4k":
            return subprocess.CompletedProcess(cmd, 1, "", "Traceback (most recent call last):\n"
                                               "RuntimeError: not enough memory")  # fmt: skip
        return subprocess.CompletedProcess(cmd, 0, json.dumps(tiling_run(size)) + "\n", "")

    monkeypatch.setattr(tiling.subprocess, "run", run)
    out = tmp_path / "tiling"
    threads = str(torch.get_num_threads())
    argv = ["bench_tiling.py", "--sizes", "1024,4k", "--no-check", "--out", str(out), "--threads", threads]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as e:
        tiling.main()  # was a CalledProcessError traceback, the child's stderr never shown
    assert e.value.code == (
        f"error: the 4k run failed: RuntimeError: not enough memory (the sizes before it are in {out}.json)"
    )
    assert json.loads(out.with_suffix(".json").read_text())["runs"] == [tiling_run("1024")]


def test_bench_tiling_report_refuses_a_file_that_is_not_its_json_report(tmp_path, monkeypatch, capsys):
    tiling = load_script("bench_tiling")
    threads = str(torch.get_num_threads())
    (tmp_path / "other.json").write_text('{"rows": []}')
    (tmp_path / "broken.json").write_text('{"machine": "half a rep')
    (tmp_path / "table.md").write_text("| size |")
    for name, message in (
        ("other.json", "is not a report of this script (KeyError"),
        ("broken.json", "is not a report of this script (JSONDecodeError"),
        ("table.md", "must be the .json report"),  # its .md is itself: never written over
    ):
        argv = ["bench_tiling.py", "--report", str(tmp_path / name), "--threads", threads]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as e:
            tiling.main()
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.json", "other.json", "table.md"]
    assert (tmp_path / "table.md").read_text() == "| size |"


def test_bench_serve_times_previews_at_the_size_its_report_names(tmp_path, monkeypatch):
    """With --size 64 the previews were 64 px while the report said 256x192 and compared them
    with 256-px stylisations."""
    from types import SimpleNamespace

    script = load_script("bench_serve")

    class Stop(Exception):
        pass

    asked = []

    def call(url, data=None, method=None, json_body=None):
        asked.append(json_body)
        raise Stop  # the first preview's request is all this test needs

    app = SimpleNamespace(state=SimpleNamespace(engine=SimpleNamespace(prefetch=True)))
    monkeypatch.setattr(script, "start", lambda: ("http://studio", None, app))
    monkeypatch.setattr(script, "session", lambda *a: ("http://studio/api/sessions/1", {"content": "c"}))
    monkeypatch.setattr(script, "call", call)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # main sets them for the process
    for size in ("64", "512"):
        argv = ["bench_serve.py", "--size", size, "--json", str(tmp_path / "s.json")]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(Stop):
            script.main()
    assert [min(a["size"], script.serve.PREVIEW_SIZE) for a in asked] == [256, 256]


def test_pick_pairs_never_picks_a_pair_twice(tmp_path):
    """One content and two styles, --pairs 2: the same pair was run, and counted, twice."""
    from wct.errors import InputError

    for folder, names in (("one", "a"), ("two", "ab"), ("styles", "xy")):
        (tmp_path / folder).mkdir()
        for name in names:
            Image.new("RGB", (16, 16)).save(tmp_path / folder / f"{name}.png")
    picked = bench.pick_pairs(tmp_path / "one", tmp_path / "styles", 2)
    assert [(c.name, s.name) for c, s in picked] == [("a.png", "x.png"), ("a.png", "y.png")]
    for n in (3, 4):  # up to every pair the folders hold
        assert len(set(bench.pick_pairs(tmp_path / "two", tmp_path / "styles", n))) == n
    with pytest.raises(InputError, match=r"must be 1 to 4 \(2 contents x 2 styles\), got 5"):
        bench.pick_pairs(tmp_path / "two", tmp_path / "styles", 5)
    with pytest.raises(InputError, match="got 0"):
        bench.pick_pairs(tmp_path / "one", tmp_path / "styles", 0)


def test_bench_stylize_refuses_a_device_it_cannot_use_in_one_line(monkeypatch):
    import wct.bench

    script = load_script("bench_stylize")
    monkeypatch.setattr(wct.bench, "conv_throughput", lambda *a: pytest.fail("measured on no device"))
    monkeypatch.setattr(script, "images", lambda size: (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)))
    monkeypatch.setattr(sys, "argv", ["bench_stylize.py", "--device", "tpu"])
    with pytest.raises(SystemExit) as e, torch.enable_grad():  # main() turns gradients off
        script.main()
    assert e.value.code == "error: unknown device 'tpu': use cpu, cuda or auto"


def test_bench_stylize_says_why_before_measuring_or_after_a_failed_child(tmp_path, monkeypatch):
    import subprocess

    import wct.bench

    script = load_script("bench_stylize")
    monkeypatch.setattr(wct.bench, "conv_throughput", lambda *a: pytest.fail("measured before the photos"))
    monkeypatch.setattr(script, "CONTENT", tmp_path / "missing.jpg")
    monkeypatch.setattr(sys, "argv", ["bench_stylize.py", "--runs", "1"])
    with pytest.raises(SystemExit) as e, torch.enable_grad():  # main() turns gradients off
        script.main()
    assert e.value.code.startswith(f"error: {tmp_path / 'missing.jpg'} does not exist")

    def oom(cmd, **kwargs):  # the fresh 1024-px process runs out of memory
        return subprocess.CompletedProcess(cmd, 1, "", "Traceback (most recent call last):\nMemoryError")

    monkeypatch.setattr(script.subprocess, "run", oom)
    with pytest.raises(SystemExit) as e:  # was a CalledProcessError traceback, its stderr hidden
        script.peak_memory_mib(1024, "cpu", "fp32")
    assert e.value.code == "error: the 1024-px peak-RSS run failed: MemoryError"


def test_make_model_card_writes_the_card_whole_or_not_at_all(tmp_path, monkeypatch, capsys):
    script = load_script("make_model_card")  # everything it measures stubbed: only the writing is tested
    card, picture = tmp_path / "README.md", tmp_path / "reconstructions.png"
    card.write_text("the last card")
    monkeypatch.setattr(script, "CARD", card)
    monkeypatch.setattr(script, "PICTURE", picture)
    monkeypatch.setattr(script, "VAL", tmp_path)
    monkeypatch.setattr(script, "load_encoder", lambda device: lambda x, level: x)
    monkeypatch.setattr(script, "load_val_images", lambda val: [torch.rand(1, 3, 8, 8)])

    class Decoder:
        metadata = {"steps": "10"}

        def __call__(self, x):
            return x

    monkeypatch.setattr(script, "load_decoder", lambda level, device: Decoder())
    monkeypatch.setattr(script, "reconstruction_scores", lambda *a: {"psnr": 30.0, "ssim": 0.9})
    monkeypatch.setattr(sys, "argv", ["make_model_card.py", "--overwrite"])
    monkeypatch.setattr(script, "list_images", lambda val: [tmp_path / "kodim01.png"])
    with pytest.raises(SystemExit) as e, torch.enable_grad():  # main() turns gradients off
        script.main()  # was a StopIteration traceback
    assert e.value.code == f"error: no kodim23 among the val images in {tmp_path} (the picture shows it)"
    monkeypatch.setattr(script, "list_images", lambda val: [tmp_path / "kodim23.png"])
    write_text = Path.write_text

    def disk_full(path, text, *args, **kwargs):  # half the card, then no space left
        write_text(path, text[: len(text) // 2])
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m, torch.enable_grad():
        m.setattr(Path, "write_text", disk_full)
        with pytest.raises(SystemExit) as e:
            script.main()
    assert "No space left" in str(e.value.code) and card.read_text() == "the last card"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "reconstructions.png"]  # no temp file
    with torch.enable_grad():
        script.main()
    assert "| relu5_1 | 30.00 | 0.9000 |" in card.read_text() and Image.open(picture).size == (40, 24)


@pytest.mark.parametrize(("platform", "maxrss"), [("linux", 3 * 1024**2), ("darwin", 3 * 1024**3)])
def test_peak_rss_is_in_mib_where_proc_is_missing(platform, maxrss, monkeypatch):
    """Without /proc (macOS), ru_maxrss counts bytes, not KiB: 3 GiB was reported as 3 Mi MiB."""
    import resource
    from types import SimpleNamespace

    class NoProc(type(Path())):
        def read_text(self, *args, **kwargs):
            raise FileNotFoundError(2, "No such file or directory", str(self))

    monkeypatch.setattr(bench, "Path", NoProc)
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=maxrss))
    assert bench.peak_rss_mb() == 3 * 1024


def test_a_report_name_too_long_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    long = tmp_path / ("a" * 300 + ".json")
    assert bench.report_problem(long, False) == f"cannot write {long}: File name too long"
    script = load_script("bench_train")  # and so for every script that checks its report with it
    monkeypatch.setattr(script, "images_per_second", lambda *a: pytest.fail("measured before checking"))
    monkeypatch.setattr(sys, "argv", ["bench_train.py", "--out", str(long)])
    with pytest.raises(SystemExit) as e:
        script.main()  # was an OSError traceback
    assert e.value.code == 2 and "File name too long" in capsys.readouterr().err


def bench_pairs(pair) -> list[str]:
    """Two --pair options at 32 px, one WCT run, one Gatys step: the cheapest real benchmark."""
    c, s = pair / "content.png", pair / "style.png"
    return ["--pair", f"{c},{s}", "--pair", f"{s},{s}", "--sizes", "32", "--steps", "1", "--repeats", "1"]


def test_bench_stopped_keeps_a_partial_report_of_the_pairs_done(pair, tmp_path, wct_cli, monkeypatch):
    import os
    import signal

    run_pair, calls = bench.run_pair, []

    def stopped_in_pair(n: int, stop):
        def run(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                stop()
            return run_pair(*args, **kwargs)

        return run

    def interrupt():
        raise KeyboardInterrupt

    out = tmp_path / "new" / "report"
    monkeypatch.setattr(bench, "run_pair", stopped_in_pair(1, interrupt))
    r = wct_cli("bench", *bench_pairs(pair), "-o", str(out))
    assert r.returncode == 130 and "interrupted" in r.stderr
    assert not (tmp_path / "new").exists()  # nothing measured: no folder of ours left behind

    calls.clear()
    monkeypatch.setattr(bench, "run_pair", stopped_in_pair(2, lambda: os.kill(os.getpid(), signal.SIGTERM)))
    r = wct_cli("bench", *bench_pairs(pair), "-o", str(out))
    assert r.returncode == 143 and "terminated" in r.stderr, r.stderr
    report = json.loads((out / "bench.json").read_text())
    assert report["finished"] is False and report["error"] == "interrupted"
    assert [p["content"] for p in report["pairs"]] == ["content.png"] and report["summary"][0]["pairs"] == 1
    table = (out / "bench.md").read_text()
    assert table.startswith("**Partial report**: the benchmark stopped (interrupted) after 1 of 2")
    assert "| 32 | 1 |" in table and Image.open(out / "sheet.png").size == (1024, 256)

    calls.clear()  # with --overwrite, a stopped run never replaces a report: it goes beside it
    earlier = {f.name: f.read_bytes() for f in out.iterdir()}
    r = wct_cli("bench", *bench_pairs(pair), "-o", str(out), "--overwrite")
    assert r.returncode == 143
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.name in earlier} == earlier
    assert sorted(f.name for f in out.iterdir()) == sorted(
        [*earlier, "bench_interrupted.json", "bench_interrupted.md", "sheet_interrupted.png"]
    )
    assert json.loads((out / "bench_interrupted.json").read_text())["finished"] is False
    calls.clear()  # nor an earlier stopped run's report
    earlier = {f.name: f.read_bytes() for f in out.iterdir()}
    assert wct_cli("bench", *bench_pairs(pair), "-o", str(out), "--overwrite").returncode == 143
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.name in earlier} == earlier
    assert (out / "bench_interrupted2.json").is_file() and (out / "sheet_interrupted2.png").is_file()


def test_bench_records_a_diverged_gatys_run_and_goes_on(pair, tmp_path, wct_cli, monkeypatch):
    import wct.gatys

    gatys, calls = wct.gatys.gatys, []

    def diverges_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise wct.gatys.Diverged("the loss became nan at step 1: lower the weights", None)
        return gatys(*args, **kwargs)

    monkeypatch.setattr(wct.gatys, "gatys", diverges_first)
    out = tmp_path / "report"
    r = wct_cli("bench", *bench_pairs(pair), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "Gatys the loss became nan at step 1" in " ".join(r.stderr.split())
    report = json.loads((out / "bench.json").read_text())
    assert report["finished"] is True
    first, second = report["pairs"]
    assert first["gatys"]["diverged"].startswith("the loss became nan") and first["speedup"] is None
    assert first["wct"]["seconds"] > 0 and second["gatys"]["diverged"] is None
    (row,) = report["summary"]
    assert row["pairs"] == 1 and row["diverged"] == 1  # left out of the medians
    assert row["wct_seconds"] == second["wct"]["seconds"]
    table = (out / "bench.md").read_text()
    assert "| 32 | 1 (+1 diverged) |" in table
    assert "- content.png + style.png, 32 px: the loss became nan at step 1" in table


def test_bench_replaces_its_report_as_a_set_or_not_at_all(pair, tmp_path, wct_cli, monkeypatch):
    out = tmp_path / "report"
    assert wct_cli("bench", "--quick", "-o", str(out)).returncode == 0
    earlier = {f.name: f.read_bytes() for f in out.iterdir()}

    class FullDisk:  # the sheet, the last file written, cannot be saved
        mode, size = "RGB", (1024, 256)

        def save(self, *args, **kwargs):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(bench, "contact_sheet", lambda rows: FullDisk())
    r = wct_cli("bench", "--quick", "-o", str(out), "--overwrite")
    assert r.returncode == 1 and "No space left on device" in r.stderr, r.stderr
    assert {f.name: f.read_bytes() for f in out.iterdir()} == earlier  # no new JSON beside the old sheet


def test_bench_scripts_take_peak_rss_in_mib_from_wct_bench(monkeypatch):
    """ru_maxrss counts KiB on Linux but bytes on macOS: the scripts read `bench.peak_rss_mb`."""
    import subprocess

    import wct.tiling

    script, ran = load_script("bench_stylize"), []

    def child(cmd, **kwargs):  # the fresh 1024-px process, which prints its peak
        ran.append(cmd[-1])
        return subprocess.CompletedProcess(cmd, 0, "3072.0 None\n", "")

    monkeypatch.setattr(script.subprocess, "run", child)
    assert script.peak_memory_mib(1024, "cpu", "fp32") == (3072.0, None) and "print(peak_rss_mb()," in ran[0]

    tiling = load_script("bench_tiling")
    monkeypatch.setattr(bench, "peak_rss_mb", lambda: 3072.0)
    monkeypatch.setattr(wct.tiling, "stylize_any", lambda s, x, *args, **kwargs: x)
    monkeypatch.setattr(tiling, "style", lambda s: None)
    monkeypatch.setattr(tiling, "content", lambda w, h: torch.rand(1, 3, 16, 16))
    assert tiling.child("1024", "auto")["peak_rss_gb"] == 3 * 1024**3 / 1e9


def test_a_stop_signal_while_the_report_set_is_written_waits_for_the_set(tmp_path):
    """A signal mask holds signals from one thread only: torch's threads took SIGTERM and the
    benchmark stopped halfway through its report set, losing it."""
    import os
    import signal
    import threading
    import time

    class Stopped(Exception):
        pass

    def stop(signum, frame):
        raise Stopped

    torch.ones(256, 256) @ torch.ones(256, 256)  # torch's worker threads exist

    def slow(tmp: str) -> None:
        time.sleep(0.6)
        Path(tmp).write_text("the table")

    before = signal.signal(signal.SIGTERM, stop)
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        with pytest.raises(Stopped):  # delivered once the set is in place
            bench.write_set(
                [
                    (tmp_path / "bench.json", lambda tmp: Path(tmp).write_text("{}")),
                    (tmp_path / "bench.md", slow),
                ]
            )
    finally:
        signal.signal(signal.SIGTERM, before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.md"]
    (tmp_path / "sheet.png").mkdir()  # in the way of the last rename: refused before the first
    with pytest.raises(bench.OutputError, match="sheet.png is a directory"):
        bench.write_set(
            [
                (tmp_path / "bench.json", lambda tmp: Path(tmp).write_text("new")),
                (tmp_path / "sheet.png", slow),
            ]
        )
    assert (tmp_path / "bench.json").read_text() == "{}"


def test_bench_warms_wct_up_and_counts_gatys_setup_in_its_time_to_match(pair, stylizer, monkeypatch):
    """WCT's time includes its style encoding, but Gatys's time to match counted its optimisation
    only, not the style Grams and content features it computes first; and on the CPU the first of
    `repeats` WCT runs was a cold one, half of the median of two."""
    import time

    import wct.gatys

    runs, real_stylize, real_setup = [], stylizer.stylize, bench.gatys_setup
    monkeypatch.setattr(stylizer, "stylize", lambda *a, **kw: runs.append(1) or real_stylize(*a, **kw))
    monkeypatch.setattr(bench, "gatys_setup", lambda *a: time.sleep(0.05) or real_setup(*a))

    def gatys_matching_at(step: int):
        def gatys(encoder, content, style, **kwargs):  # step `step` reaches WCT's loss
            history = [
                {"step": k, "content": 0.0, "style": 0.0, "tv": 0.0, "total": 0.0 if k >= step else 1e9,
                 "seconds": 0.5 * k}
                for k in range(3)
            ]  # fmt: skip
            return wct.gatys.GatysResult(content, history, 2)

        return gatys

    c, s = pair / "content.png", pair / "style.png"
    monkeypatch.setattr(wct.gatys, "gatys", gatys_matching_at(1))
    rec, _ = bench.run_pair(stylizer, c, s, 32, 2, repeats=2)
    assert len(runs) == 3 and len(rec["wct"]["all_seconds"]) == 2  # one untimed warm-up first
    g = rec["gatys"]
    assert g["setup_seconds"] >= 0.05 and g["optimisation_seconds_to_match_wct"] == 0.5
    assert g["time_to_match_wct"] == 0.5 + g["setup_seconds"]
    assert rec["time_to_match_ratio"] == g["time_to_match_wct"] / rec["wct"]["seconds"]
    (row,) = bench.summarise([rec])
    assert row["gatys_setup_seconds"] == g["setup_seconds"]
    assert "(Gatys setup included)" in bench.markdown([row], "test machine")

    runs.clear()  # --quick's single run stays a single run; the content photo itself needs no setup
    monkeypatch.setattr(wct.gatys, "gatys", gatys_matching_at(0))
    rec, _ = bench.run_pair(stylizer, c, s, 32, 2, repeats=1)
    assert len(runs) == 1 and rec["gatys"]["time_to_match_wct"] == 0 and rec["time_to_match_ratio"] == 0


def test_bench_tiling_stopped_keeps_the_earlier_report_and_marks_its_partial_one(tmp_path, monkeypatch):
    """With --overwrite, each size's partial JSON replaced the earlier report while its .md stayed:
    a stopped run left an unmarked partial .json beside a stale .md, the earlier JSON lost."""
    tiling = load_script("bench_tiling")
    done = []

    def run_child(size: str, tile: str, threads: int) -> dict:
        if size == "4k":
            raise KeyboardInterrupt  # Ctrl-C during the second size
        done.append(size)
        return tiling_run(size)

    monkeypatch.setattr(tiling, "run_child", run_child)
    out = tmp_path / "tiling"
    for suffix in (".json", ".md"):
        out.with_suffix(suffix).write_text(f"an earlier report{suffix}")
    threads = str(torch.get_num_threads())
    argv = ["bench_tiling.py", "--sizes", "1024,4k", "--no-check", "--out", str(out), "--overwrite"]
    monkeypatch.setattr(sys, "argv", [*argv, "--threads", threads])
    with pytest.raises(KeyboardInterrupt):
        tiling.main()
    for suffix in (".json", ".md"):
        assert out.with_suffix(suffix).read_text() == f"an earlier report{suffix}"
    partial = json.loads((tmp_path / "tiling_interrupted.json").read_text())
    assert partial["finished"] is False and partial["runs"] == [tiling_run("1024")]
    assert (tmp_path / "tiling_interrupted.md").read_text().startswith("**Partial report**: 1 of 2 sizes")
    with pytest.raises(KeyboardInterrupt):  # nor an earlier stopped run's report
        tiling.main()
    assert json.loads((tmp_path / "tiling_interrupted2.json").read_text())["finished"] is False
    assert (tmp_path / "tiling_interrupted.json").read_text() == json.dumps(partial, indent=2) + "\n"

    monkeypatch.setattr(sys, "argv", [*argv, "--threads", threads, "--sizes", "1024"])
    tiling.main()  # finished: the report replaced, no partial one of its own left
    assert json.loads(out.with_suffix(".json").read_text())["finished"] is True
    assert not out.with_suffix(".md").read_text().startswith("**Partial")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tiling.json", "tiling.md", "tiling_interrupted.json", "tiling_interrupted.md",
        "tiling_interrupted2.json", "tiling_interrupted2.md",
    ]  # fmt: skip


def test_bench_tiling_scores_identical_tiles_in_standard_json(monkeypatch):
    """Tiled and untiled identical gave a PSNR of inf, which json.dumps writes as Infinity."""
    import wct.pipeline
    import wct.tiling

    tiling = load_script("bench_tiling")

    class Stylizer:
        def __init__(self, device):
            pass

        def stylize(self, x, *args):
            return x

    monkeypatch.setattr(wct.pipeline, "Stylizer", Stylizer)
    monkeypatch.setattr(wct.tiling, "stylize_tiled", lambda s, x, *args, **kwargs: x)
    monkeypatch.setattr(tiling, "style", lambda s: None)
    monkeypatch.setattr(tiling, "content", lambda w, h, photo=None: torch.rand(1, 3, 32, 32))
    c = tiling.check(16)
    assert c["psnr_db"] == 100.0 and c["mean"]["psnr_db"] == 100.0
    json.dumps(c, allow_nan=False)  # no Infinity
