"""The one rich progress bar used by the CLI and training: description, bar, count, info, ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def progress_bar(enabled: bool = True, console: Console | None = None) -> Progress:
    """Tasks take an `info` field (loss, images/s...); pass info="" when there is none."""
    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        TimeRemainingColumn(),
    )
    return Progress(*columns, console=console, disable=not enabled)
