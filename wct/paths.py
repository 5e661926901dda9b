"""Paths checked before any work, without torch, so the CLI refuses a bad one at once."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Sequence
from pathlib import Path

from .errors import InputError, OutputError

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm"}  # those wct.video reads and writes


def stopped_paths(paths: Sequence[Path | None]) -> list[Path | None]:
    """Where a stopped run writes its partial files `paths` (None: not written): as they are if none
    exists (a link to nothing counts), else each with `_interrupted` added to its stem, then
    `_interrupted2`, 3...: the first set none of whose files exists, so that nothing earlier is
    replaced by a partial result, and the files of one run keep one name."""
    out, k = list(paths), 0
    while any(p is not None and os.path.lexists(p) for p in out):
        k += 1
        tag = f"_interrupted{k if k > 1 else ''}"
        out = [p and p.with_stem(f"{p.stem}{tag}") for p in paths]
    return out


def check_target(
    path: str | os.PathLike,
    overwrite: bool,
    protect: Collection[str | os.PathLike] = (),
    others: Collection[str | os.PathLike] = (),
    option: str = "--overwrite",
) -> Path:
    """`path` as a Path, or an OutputError before any work if writing it would lose something or
    fail: it is an input (`protect`), another output of the same run (`others`), a directory, under
    a file or a folder we may not write, or exists without `overwrite` (the message says to pass
    `option`: "overwrite=True" from Python). A path that cannot even be looked up (a name too
    long...) is the OSError, which the CLI prints with the name shortened."""
    path = Path(path)
    if any(same_file(path, p) for p in protect):
        raise OutputError(f"refusing to write over the input {path}")
    if any(path.resolve() == Path(p).resolve() for p in others):
        raise OutputError(f"{path} is also the output image: give another file name")
    if path.is_dir():
        raise OutputError(f"{path} is a directory: give a file name")
    check_parents(path)
    if os.path.lexists(path) and not overwrite:  # a link to nothing too: the user's
        raise OutputError(f"{path} exists: pass {option} to replace it")
    return path


def check_parents(path: str | os.PathLike) -> None:
    """An OutputError, before any work, if no file could be made at `path` for its folders: the
    nearest that exists is a file, a link to nothing (mkdir cannot make a folder through it) or a
    folder we may not write."""
    parent = next((p for p in Path(path).parents if os.path.lexists(p)), None)
    if parent is not None and not parent.exists():
        raise OutputError(f"cannot write {path}: {parent} is a broken link (to {os.readlink(parent)})")
    if parent is not None and not parent.is_dir():
        raise OutputError(f"cannot write {path}: {parent} is a file, not a directory")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):  # found now, not after the work
        raise OutputError(f"cannot write {path}: {parent} is not writable")


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same resolved path, or one existing file under two
    names (a hard link, or another case on a case-insensitive disk such as macOS's)."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:  # either does not exist (yet)
        return False
    return sa.st_ino != 0 and os.path.samestat(sa, sb)  # some network drives give every file inode 0


def write_error(path: str | os.PathLike, e: OSError) -> OutputError:
    """The OutputError for an OSError met writing `path` (a name too long, a full disk...)."""
    return OutputError(f"cannot write {path}: {e.strerror or e}")


def check_preset_path(path: str | os.PathLike, overwrite: bool = False, option: str = "--overwrite") -> Path:
    """`path` as a Path, or an OutputError if it is not a .safetensors name (`style` would not
    read it as a preset), `check_target` refuses it (it exists without `overwrite`...) or it cannot
    be looked at (a name too long...)."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise OutputError(f"a style preset must be a .safetensors file, got {path}")
    try:
        return check_target(path, overwrite, option=option)
    except OSError as e:  # as write_atomic reports it
        raise write_error(path, e) from None


def check_json_target(
    path: str | os.PathLike,
    option: str,
    overwrite: bool,
    protect: Collection[str | os.PathLike] = (),
    others: Collection[str | os.PathLike] = (),
) -> Path:
    """`check_target`, and a .json name: --overwrite must never turn a photo into a JSON file."""
    path = check_target(path, overwrite, protect, others)
    if path.suffix.lower() != ".json":
        raise OutputError(f"{option} {path} must end in .json")
    return path


_WEIGHTED = re.compile(r"^(?P<path>.+):(?P<weight>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$")


def parse_style_spec(text: str) -> tuple[Path, float | None]:
    """'a.jpg:0.7' -> (a.jpg, 0.7); 'a.jpg' -> (a.jpg, None).

    Only a trailing ':NUMBER' is a weight, and not when the whole text names an existing file,
    so paths with colons ('C:/x.jpg', 'take:2/a.jpg', even a file named 'a.jpg:2') still work.
    An empty text (an unset shell variable) is refused, not read as the current folder.
    """
    if not text:
        raise InputError("--style is an empty path: name the file or folder to read")
    if Path(text).exists():
        return Path(text), None
    m = _WEIGHTED.match(text)
    if m is None:
        head, colon, tail = text.rpartition(":")
        if colon and head and Path(head).exists():
            raise InputError(f"--style {text}: the weight {tail!r} must be a number >= 0")
        return Path(text), None
    return Path(m["path"]), float(m["weight"])
