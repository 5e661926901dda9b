"""The package's public names as README.md's Python API section and wct/__init__.py document them."""

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import wct
import wct.tiling
import wct.video

README = Path(__file__).resolve().parents[1] / "README.md"


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_every_public_name_is_listed_by_dir_and_documented():
    assert set(wct.__all__) <= set(dir(wct))  # tab completion finds the lazily loaded names
    for name in wct.__all__:
        assert inspect.getdoc(getattr(wct, name)), name


def test_probing_a_dunder_name_imports_nothing():
    # wct.__main__ runs the CLI: a probe such as hasattr(wct, "__main__") must not import it
    r = run("import sys, wct; print(hasattr(wct, '__main__'), 'wct.__main__' in sys.modules)")
    assert (r.returncode, r.stdout.strip()) == (0, "False False"), r.stdout + r.stderr


def test_a_missing_dependency_is_named_not_hidden_as_a_missing_attribute():
    r = run(
        "import sys; sys.modules['fastapi'] = None\n"
        "import wct\n"
        "try:\n    wct.serve\nexcept ModuleNotFoundError as e:\n    print(e.name)\n"
        "try:\n    wct.no_such_module\nexcept AttributeError as e:\n    print(e)"
    )
    assert r.stdout.splitlines() == ["fastapi", "module 'wct' has no attribute 'no_such_module'"], r.stderr


def test_readme_python_api_calls_match_the_signatures():
    block = re.search(r"## Python API\n\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    tree = ast.parse(block)
    names = {
        "wct": wct,
        "stylize_any": wct.tiling.stylize_any,
        "stylize_tiled": wct.tiling.stylize_tiled,
        "read_frames": wct.video.read_frames,
        "stylize_frames": wct.video.stylize_frames,
        "FrameWriter": wct.video.FrameWriter,
        "out": wct.video.FrameWriter.__new__(wct.video.FrameWriter),
        "s": wct.Stylizer.__new__(wct.Stylizer),
    }
    checked = 0
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        f = call.func
        if isinstance(f, ast.Name) and f.id in names:
            fn = names[f.id]
        elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in names:
            fn = getattr(names[f.value.id], f.attr)
        else:
            continue
        args = [None] * len(call.args)
        inspect.signature(fn).bind(*args, **{k.arg: None for k in call.keywords})
        checked += 1
    assert checked >= 10


def test_a_decoder_of_an_unknown_level_is_an_input_error():
    import pytest

    from wct.errors import InputError

    for level in (0, 7, 3.5):
        with pytest.raises(InputError, match="unknown level"):
            wct.Decoder(level)
