"""The scripts in scripts/ as a user runs them: `--help` only prints, an existing report is kept
unless --overwrite, and a bad option is one line before any work, not a traceback after it.
Every run here stops at its checks, so each takes about a second."""

import argparse
import importlib.util
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
NAMES = sorted(p.stem for p in SCRIPTS.glob("*.py"))
SECTIONS = ("positional arguments:", "options:", "optional arguments:")  # "optional" before Python 3.10


@pytest.fixture(autouse=True)
def torch_settings():
    """A script's main sets torch's process-wide grad mode and threads: the tests after it get them back."""
    grad, threads = torch.is_grad_enabled(), torch.get_num_threads()
    yield
    torch.set_grad_enabled(grad)
    torch.set_num_threads(threads)


def run(name: str, args: list[str], monkeypatch, capsys, script: Path | None = None) -> tuple[object, str]:
    """`python scripts/NAME.py ARGS` in-process: its exit code (SystemExit) and what it printed
    (stdout, then stderr)."""
    path = str(script or SCRIPTS / f"{name}.py")
    monkeypatch.setattr(sys, "argv", [path, *args])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(path, run_name="__main__")
    out, code = capsys.readouterr(), e.value.code
    if isinstance(code, str):  # sys.exit("error: ..."): Python prints it and exits with status 1
        return 1, f"{out.out}{out.err}{code}\n"
    return code, out.out + out.err


def test_help_prints_usage_instead_of_rewriting_the_model_card_or_screenshot(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # were --help ignored, the old relative paths fail here at once
    code, out = run("make_model_card", ["--help"], monkeypatch, capsys)
    assert code == 0 and "usage: make_model_card.py" in out
    # a copy in a tree of its own: were --help ignored, it would run no browser test of ours
    copy = tmp_path / "scripts" / "serve_screenshot.py"
    copy.parent.mkdir()
    shutil.copy(SCRIPTS / "serve_screenshot.py", copy)
    (tmp_path / "docs").mkdir()
    shot = tmp_path / "docs" / "serve.png"
    code, out = run("serve_screenshot", ["--help"], monkeypatch, capsys, copy)
    assert code == 0 and "usage: serve_screenshot.py" in out
    shot.write_bytes(b"the last screenshot")
    code, err = run("serve_screenshot", [], monkeypatch, capsys, copy)
    assert code == 2 and f"{shot} exists: pass --overwrite" in err
    assert shot.read_bytes() == b"the last screenshot"


def test_make_model_card_keeps_the_card_without_overwrite(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    card = SCRIPTS.parent / "decoders" / "README.md"
    code, err = run("make_model_card", [], monkeypatch, capsys)
    assert code == 2 and f"{card} exists: pass --overwrite to replace it" in err


# (script, its options, the output to create first): tiny settings, in case a check were missing
OVERWRITE = [
    ("bench_precision", ["--size", "32", "--runs", "1", "--json", "{out}"], "p.json"),
    ("bench_serve", ["--size", "64", "--repeats", "1", "--previews", "1", "--json", "{out}"], "s.json"),
    ("bench_video", ["--frames", "2", "--size", "32", "--out", "{out}"], "v.json"),
    ("bench_tiling", ["--sizes", "1024", "--no-check", "--out", "{dir}/tiling"], "tiling.md"),
    ("make_gallery", ["--size", "16", "--out", "{dir}"], "video.jpg"),  # the last one it writes
    ("make_results", ["--out", "{out}"], "results.png"),
    ("reliability_table", ["--skip-slow", "--out", "{out}"], "reliability.md"),
    ("vgg_channel_means", ["--images", "12", "--out", "{out}"], "means.safetensors"),
    ("train_relu5_head", ["--steps", "0", "--out", "{dir}", "--export", "{dir}"], "relu5_1.head.safetensors"),
]


@pytest.mark.parametrize(("name", "args", "existing"), OVERWRITE, ids=[o[0] for o in OVERWRITE])
def test_an_existing_output_is_kept_without_overwrite(name, args, existing, tmp_path, monkeypatch, capsys):
    out = tmp_path / existing
    out.write_bytes(b"last run's report")
    args = [a.format(out=out, dir=tmp_path) for a in args]
    code, err = run(name, args, monkeypatch, capsys)
    assert code == 2 and f"{out} exists: pass --overwrite to replace it" in err, err
    assert out.read_bytes() == b"last run's report"


BAD = [
    ("bench_precision", ["--runs", "0"], "--runs must be at least 1 and --size 32"),
    ("bench_precision", ["--size", "16"], "--runs must be at least 1 and --size 32, got 3 and 16"),
    ("bench_precision", ["--device", "foo", "--size", "32"], "error: unknown device 'foo'"),
    ("bench_serve", ["--repeats", "0", "--json", "{dir}/s.json"], "--repeats and --previews at least 1"),
    ("bench_serve", ["--size", "0", "--json", "{dir}/s.json"], "--size must be 16 to"),
    ("bench_serve", ["--previews", "19", "--json", "{dir}/s.json"], "--previews must be 1 to 18"),
    ("bench_tiling", ["--sizes", "5k", "--no-check", "--out", "{dir}/t"], "--sizes must be among 1024, 2k"),
    ("bench_tiling", ["--sizes", ",", "--no-check", "--out", "{dir}/t"], "--sizes must be among 1024, 2k"),
    ("bench_tiling", ["--threads", "0", "--out", "{dir}/t"], "--threads must be at least 1"),
    ("bench_tiling", ["--report", "{dir}/none.json"], "--report {dir}/none.json is not a file"),
    ("bench_train", ["--crop", "8", "--out", "{dir}/t.json"], "--crop must be at least 16"),
    ("bench_train", ["--device", "foo", "--out", "{dir}/t.json"], "unknown device 'foo'"),
    ("bench_video", ["--frames", "1", "--out", "{dir}/v.json"], "--frames must be at least 2"),
    ("bench_video", ["--alpha", "3", "--out", "{dir}/v.json"], "--alpha must be between 0 and 1"),
    ("bench_video", ["--noise", "inf", "--frames", "2", "--size", "16", "--out", "{dir}/v.json"], "and inf"),
    ("bench_video", ["--step", "inf", "--out", "{dir}/v.json"], "--step a number of px >= 0, got 160 and"),
    ("bench_video", ["--step", "nan", "--out", "{dir}/v.json"], "--step a number of px >= 0, got 160 and"),
    ("bench_video", ["--size", "-5", "--out", "{dir}/v.json"], "--size must be at least 1"),
    ("fuzz_images", ["--n", "0"], "--n must be at least 1"),
    ("make_gallery", ["--size", "0", "--out", "{dir}"], "--size and --threads must be at least 1"),
    ("make_results", ["--alpha", "2", "--out", "{dir}/r.png"], "--alpha must be between 0 and 1"),
    ("make_results", ["--out", "{dir}/r.xyz"], "unknown image format"),
    ("train_decoders", ["--threads", "-1", "--out", "{dir}", "--export", "{dir}"], "--threads must be"),
    ("train_relu5_head", ["--steps", "-1", "--out", "{dir}", "--export", "{dir}"], "--steps and --threads"),
    ("train_relu5_head", ["--export", "{dir}", "--out", "{dir}"], "error: decoder file {dir}/relu4_1"),
]


@pytest.mark.parametrize(("name", "args", "message"), BAD, ids=[f"{b[0]} {' '.join(b[1])}" for b in BAD])
def test_a_bad_option_is_one_line_before_any_work(name, args, message, tmp_path, monkeypatch, capsys):
    code, err = run(name, [a.format(dir=tmp_path) for a in args], monkeypatch, capsys)
    last = err.strip().splitlines()[-1]
    assert code not in (0, None) and message.format(dir=tmp_path) in last and "Traceback" not in err, err


def test_bench_tiling_passes_a_size_with_levels_whole_to_its_child(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_tiling", SCRIPTS / "bench_tiling.py")
    tiling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiling)
    asked = []

    def run_child(size: str, tile: str, threads: int) -> dict:
        asked.append(size)
        w, h = tiling.SIZES[size.partition(":")[0]]
        levels = size.partition(":")[2] or "5,4,3,2,1"
        return {"size": size.partition(":")[0], "levels": levels, "width": w, "height": h, "tiled": False}

    monkeypatch.setattr(tiling, "run_child", run_child)
    monkeypatch.setattr(tiling, "markdown", lambda report: "")
    threads = str(torch.get_num_threads())  # as they are: main sets them for the whole process
    argv = ["bench_tiling.py", "--sizes", "1024,8k:2,1", "--no-check", "--out", str(tmp_path / "t")]
    monkeypatch.setattr(sys, "argv", [*argv, "--threads", threads])
    tiling.main()
    assert asked == ["1024", "8k:2,1"]  # not "8k:2" and then a size "1"


def load_script(name: str):
    """scripts/NAME.py as a module, its main not run."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_serve_times_each_preview_uncached_and_the_cli_on_the_studios_threads():
    bench = load_script("bench_serve")
    # a position timed before (the first preview's included) comes from the studio's cache in 0 ms
    assert len(set(bench.ALPHAS)) == len(bench.ALPHAS) == 18 and bench.FIRST_ALPHA not in bench.ALPHAS
    torch.set_num_threads(1)  # as main sets them for the studio (2 here); the fixture restores them
    code = "import torch; print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=bench.cli_env(), capture_output=True, text=True)
    assert out.stdout.strip() == "1"  # not every core the machine has, against the studio's 2


def test_bench_train_times_the_models_wct_train_builds(monkeypatch):
    import wct.train

    built, real = [], wct.train.build_models  # channels-last on CUDA, as the training runs are
    monkeypatch.setattr(
        wct.train, "build_models", lambda cfg, device: built.append(cfg.level) or real(cfg, device)
    )
    bench = load_script("bench_train")
    assert bench.images_per_second(1, 16, 1, 1, torch.device("cpu"), False) > 0 and built == [1]


def test_the_reliability_tables_full_disk_is_met_where_the_output_is_written(tmp_path):
    from unittest import mock

    from PIL import Image

    table = load_script("reliability_table")
    content, style = table.write_pair(tmp_path)
    out = tmp_path / "o.png"
    out.write_bytes(b"last output")
    with mock.patch.object(Image.Image, "save", table.disk_full):
        code, lines = table.cli(
            "stylize", "--levels", "1", "--size", "32", content, style, "-o", out, "--overwrite"
        )
    # not at the CLI's check of the format, in memory, which would blame the format (a .png)
    assert code == 1 and lines == [f"error: cannot write {out}: No space left on device"], lines
    assert out.read_bytes() == b"last output"


def test_fuzz_images_stopped_midway_still_says_why():
    # the fuzz sends fd 2 to /dev/null while it runs (libtiff's complaints): it must come back
    code = (
        f"import sys; sys.path.insert(0, {str(SCRIPTS)!r}); import fuzz_images\n"
        "def ctrl_c(path): raise KeyboardInterrupt\n"
        "fuzz_images.outcome = ctrl_c; sys.argv = ['fuzz_images.py', '--n', '3']; fuzz_images.main()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "KeyboardInterrupt" in out.stderr, out.stderr


def description(help_text: str) -> str:
    """What `--help` prints between its usage and its first list of arguments."""
    lines = help_text.splitlines()
    first = next(i for i, line in enumerate(lines) if line in SECTIONS)
    return "\n".join(lines[lines.index("") : first]).strip()


def undocumented(help_text: str) -> list[str]:
    """The arguments `--help` lists without a help text. argparse starts every help text at one
    column (that of `-h, --help`'s own), on the argument's line or, after a long one, the next."""
    lines = help_text.splitlines()
    column = next(line.index("show this help") for line in lines if line.startswith("  -h, --help"))
    first = next(i for i, line in enumerate(lines) if line in SECTIONS)
    missing = []
    for i, line in enumerate(lines[first:], first):
        if not line.startswith("  ") or line[2] == " ":  # a heading, a help text or a subcommand
            continue
        below = lines[i + 1] if i + 1 < len(lines) else ""
        here = line[column - 2 : column] == "  " and line[column:].strip()
        if not here and not (len(below) - len(below.lstrip()) == column and below.strip()):
            missing.append(line.strip())
    return missing


@pytest.mark.parametrize("name", NAMES)
def test_help_describes_the_script_and_every_option(name, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(SCRIPTS))  # as `python scripts/NAME.py` has it: siblings import
    commands = [[]]
    for command in commands:  # grows by the subcommands, if any
        code, out = run(name, [*command, "--help"], monkeypatch, capsys)
        which = " ".join([f"{name}.py", *command])
        assert code == 0 and out.startswith(f"usage: {which} "), out
        assert description(out), f"{which} --help has no description:\n{out}"
        assert not undocumented(out), f"{which} --help: no help text for {undocumented(out)}"
        if not command:  # argparse lists them as {pack,start,...}
            found = re.findall(r"^  \{([\w,-]+)\}", out, re.M)
            commands += [[c] for names in found for c in names.split(",")]


class Parsed(Exception):
    """Raised by a script's parse_args in place of parsing: its parser, before any work."""


@pytest.mark.parametrize("name", NAMES)
def test_default_paths_do_not_depend_on_the_current_directory(name, tmp_path, monkeypatch):
    """A default such as `docs/results.png` is in the checkout, wherever the script is run from."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(SCRIPTS))

    def stop(parser: argparse.ArgumentParser, *args, **kwargs):
        raise Parsed(parser)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    monkeypatch.setattr(sys, "argv", [str(SCRIPTS / f"{name}.py")])
    with pytest.raises(Parsed) as e:
        runpy.run_path(str(SCRIPTS / f"{name}.py"), run_name="__main__")
    checkout = {p.name for p in SCRIPTS.parent.iterdir()}  # docs, decoders, runs...
    parsers, relative = [e.value.args[0]], []
    for parser in parsers:  # grows by the subcommands' parsers, if any
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers += action.choices.values()
            elif isinstance(action.default, str | Path) and set(Path(action.default).parts[:1]) & checkout:
                relative.append(f"{action.option_strings[0]} {action.default}")
    assert not relative, f"{name}: defaults relative to the current directory: {relative}"


def test_bench_video_names_the_machine_and_threads_it_ran_on(tmp_path, monkeypatch):
    """Its report had no machine or thread count, which its times depend on."""
    import json

    import wct.pipeline
    import wct.video

    class Stylizer:  # the measurements are not under test here: only what the report names
        def __init__(self, device):
            pass

        def style(self, image):
            return None

    monkeypatch.setattr(wct.pipeline, "Stylizer", Stylizer)
    monkeypatch.setattr(wct.video, "stylize_frames", lambda s, frames, *args, **kwargs: frames)
    bench = load_script("bench_video")
    out = tmp_path / "video.json"
    monkeypatch.setattr(sys, "argv", ["bench_video.py", "--frames", "2", "--size", "32", "--out", str(out)])
    bench.main()
    report = json.loads(out.read_text())
    assert "cores, 1 threads" in report["machine"] and report["frames"] == 2  # --threads 1, the default
