import os
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests explore the same examples on every run, so CI is reproducible; run with
# HYPOTHESIS_PROFILE=explore to search new ones.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def one_thread():
    """One thread for a module: on a shared 2-core machine two threads can be 10x slower than one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def encoder():
    from wct.encoder import load_encoder

    return load_encoder("cpu")


@pytest.fixture(scope="session")
def stylizer():
    from wct.pipeline import Stylizer

    return Stylizer("cpu")


def cut_clip(folder: Path, frames: int = 30) -> tuple[Path, Path]:
    """A noise MP4 of `frames` frames with its index at the front, and a copy cut to 60% of its
    bytes: the cut one still promises `frames` frames but ffmpeg reads only the first ones."""
    import imageio.v2 as imageio
    import numpy as np

    clip, cut = folder / "clip.mp4", folder / "cut.mp4"
    rng = np.random.default_rng(0)
    with imageio.get_writer(clip, fps=10, macro_block_size=2, ffmpeg_params=["-movflags", "+faststart"]) as w:
        for _ in range(frames):  # noise: every frame costs about as many bytes as the next
            w.append_data(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size * 6 // 10])
    return clip, cut


def gradient_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth synthetic photo-like image (1, 3, h, w) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([xx, yy, (xx + yy) / 2])
    noise = torch.nn.functional.interpolate(
        torch.rand(1, 3, 8, 8, generator=g), (h, w), mode="bilinear", align_corners=False
    )[0]
    return (0.6 * base + 0.4 * noise).clamp(0, 1)[None]


@pytest.fixture
def wct_cli(capfd):
    """The CLI in-process (fast); same result shape as subprocess.run."""

    from wct.cli import main

    def call(*args: str) -> subprocess.CompletedProcess:
        with pytest.raises(SystemExit) as e:
            main(list(args))
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(args, e.value.code or 0, out, err)

    return call


@pytest.fixture
def stop_gatys(monkeypatch):
    """Call it to make the next gatys or invert run stop as Ctrl-C stops it, in its third loss
    evaluation (after the first step); call it again to arm it for another run."""
    import wct.gatys

    tv_loss, calls = wct.gatys.tv_loss, []

    def in_step_3(x):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return tv_loss(x)

    def arm() -> None:
        calls.clear()
        monkeypatch.setattr(wct.gatys, "tv_loss", in_step_3)

    return arm
