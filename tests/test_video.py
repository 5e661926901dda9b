"""Batches and video (issue 5, part 6): style statistics once per style, `wct video`, --temporal."""

import re
import subprocess
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import cut_clip, gradient_image
from wct.demo import landscape, painting
from wct.errors import ImageError, InputError, OutputError
from wct.images import load_image, tensor_to_pil
from wct.transform import feature_stats
from wct.video import (
    STRENGTH,
    FrameWriter,
    Smoother,
    TemporalFilter,
    avi_frames,
    ema_stats,
    flicker,
    frame_files,
    has_audio,
    read_frames,
    scene_cut,
    stylize_frames,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def panning(frames: int = 6, size: int = 64, step: int = 3) -> list[torch.Tensor]:
    """A camera panning over a photo-like image, with a little sensor noise."""
    big = gradient_image(size + 16, size + step * frames, seed=3)
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(frames):
        x = big[..., 8 : 8 + size, step * i : step * i + size]
        out.append((x + 0.01 * torch.randn(x.shape, generator=g)).clamp(0, 1))
    return out


def frames_and_style(tmp_path, n: int, width: int, height: int) -> tuple:
    """A style image and a folder of n landscape frames; returns the folder and the CLI's options."""
    painting(48, 48).save(tmp_path / "style.png")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(n):
        landscape(width, height, seed=i).save(frames / f"{i}.png")
    return frames, ("--style", str(tmp_path / "style.png"), "--levels", "1", "--size", "0")


def test_moving_average_of_statistics():
    a = feature_stats(torch.randn(4, 300, dtype=torch.float64))
    b = feature_stats(torch.randn(4, 300, dtype=torch.float64) * 2 + 1)
    assert ema_stats(None, b, 0.5) is b and ema_stats(a, b, 0.0) is b
    m = ema_stats(a, b, 0.25)
    assert torch.allclose(m.mean, 0.25 * a.mean + 0.75 * b.mean)
    assert torch.allclose(m.cov, 0.25 * a.cov + 0.75 * b.cov)
    few = feature_stats(torch.randn(8, 10, dtype=torch.float64))  # fewer samples than 4 x channels
    assert Smoother(0.5)(1, [few])[0] is few
    with pytest.raises(InputError):
        Smoother(1.0)


def test_temporal_filter_smooths_static_pixels_and_follows_motion():
    f = TemporalFilter(strength=0.6)
    x = torch.full((1, 3, 8, 8), 0.5)
    f(x, torch.zeros(1, 3, 8, 8))
    y = f(x, torch.ones(1, 3, 8, 8))  # same input, output jumped: kept 60 % of the previous
    assert torch.allclose(y, torch.full_like(y, 0.4))
    moved = f(torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8))  # input changed a lot: new output
    assert moved.min() > 0.99


def test_temporal_filter_reports_the_value_it_refuses():
    assert TemporalFilter().strength == STRENGTH
    with pytest.raises(InputError, match=r"strength must be in \[0, 1\), got 1.5$"):
        TemporalFilter(strength=1.5)
    for sigma in (0.0, -1.0, float("nan")):  # NaN once passed, and made every output pixel NaN
        with pytest.raises(InputError, match=rf"sigma must be > 0, got {sigma}$"):
            TemporalFilter(sigma=sigma)


def test_temporal_reduces_flicker(stylizer):
    frames = panning()
    style = stylizer.style(gradient_image(64, 64, seed=7))
    base = flicker(frames)
    plain = flicker(list(stylize_frames(stylizer, iter(frames), style, 0.8))) / base
    smooth = flicker(list(stylize_frames(stylizer, iter(frames), style, 0.8, temporal=True))) / base
    assert smooth < 0.9 * plain


def test_temporal_restarts_at_a_scene_cut(stylizer):
    """Two still shots: after the cut, nothing of the first shot carries over (it did 2.3/255)."""
    g = torch.Generator().manual_seed(0)
    a, b = gradient_image(48, 64, seed=1), gradient_image(48, 64, seed=2).flip(-1)
    shot = lambda x: [(x + 0.01 * torch.randn(x.shape, generator=g)).clamp(0, 1) for _ in range(3)]  # noqa: E731
    clip = shot(a) + shot(b)
    style = stylizer.style(gradient_image(64, 64, seed=7), levels=(2, 1))
    both = list(stylize_frames(stylizer, iter(clip), style, 0.8, (2, 1), temporal=True))
    alone = list(stylize_frames(stylizer, iter(clip[3:]), style, 0.8, (2, 1), temporal=True))
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(both[3:], alone, strict=True))
    assert scene_cut(clip[2], clip[3]) and scene_cut(a, a[..., :40, :])  # another shot, another size
    assert not any(scene_cut(x, y) for x, y in zip(clip[:2], clip[1:3], strict=True))  # sensor noise
    assert not any(scene_cut(x, y) for x, y in zip(panning(), panning()[1:], strict=False))  # motion


def test_video_file_and_frame_folders(wct_cli, tmp_path):
    import imageio.v2 as imageio

    painting(48, 48).save(tmp_path / "style.png")
    frames = [np.asarray(landscape(64, 48).crop((i, 0, i + 48, 32))) for i in range(4)]
    clip = tmp_path / "clip.mp4"
    with imageio.get_writer(clip, fps=12, macro_block_size=2) as w:
        for a in frames:
            w.append_data(a)
    common = ("--style", str(tmp_path / "style.png"), "--levels", "2,1", "--size", "0")
    r = wct_cli("video", str(clip), str(tmp_path / "out"), *common, "--temporal")
    assert r.returncode == 0, r.stderr
    written = sorted((tmp_path / "out").glob("frame_*.png"))
    assert len(written) == 4 and Image.open(written[0]).size == (48, 32)
    out = tmp_path / "styled.mp4"
    r = wct_cli("video", str(tmp_path / "out"), str(out), *common)
    assert r.returncode == 0, r.stderr
    back, fps, count = read_frames(str(out))  # the API takes str paths too
    assert fps == 24 and len(list(back)) == 4 and count == 4  # from the duration: MP4s give no count
    assert len(list(read_frames(str(tmp_path / "out"))[0])) == 4
    assert not list(tmp_path.glob(".styled*"))  # no temporary file left behind
    r = wct_cli("video", str(tmp_path / "out"), str(out), *common)
    assert r.returncode == 1 and "exists" in r.stderr
    r = wct_cli("video", str(clip), str(clip), *common, "--overwrite")
    assert r.returncode == 1 and "input" in r.stderr
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    r = wct_cli("video", str(tmp_path / "bad.mp4"), str(tmp_path / "o2"), *common)
    assert r.returncode == 1 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    (tmp_path / "empty.mp4").write_bytes(b"")
    r = wct_cli("video", str(tmp_path / "empty.mp4"), str(tmp_path / "o2"), *common)
    assert r.returncode == 1 and "is empty (0 bytes)" in r.stderr
    import imageio_ffmpeg

    mpg = tmp_path / "clip.mpg"  # not a suffix wct writes, but one ffmpeg reads
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=48x32:rate=25"]
    subprocess.run([*cmd, "-frames:v", "3", "-c:v", "mpeg1video", str(mpg)], check=True)
    assert len(list(read_frames(mpg)[0])) == 3
    (tmp_path / "clip.m4v").write_bytes(mpg.read_bytes())  # a suffix imageio's plugin turns away
    r = wct_cli("video", str(tmp_path / "clip.m4v"), str(tmp_path / "o3"), *common)
    assert r.returncode == 1 and "cannot be read as a video: .avi, .mkv, .mov, .mp4, .webm files" in r.stderr
    for fps in ("inf", "0", "-3"):
        r = wct_cli("video", str(clip), str(tmp_path / "o4.mp4"), *common, "--fps", fps)
        assert r.returncode == 1 and r.stderr.startswith("error: --fps must be a positive, finite number")


def test_a_video_and_its_frames_as_pngs_are_scaled_alike(tmp_path):
    import imageio.v2 as imageio

    clip, folder = tmp_path / "clip.mp4", tmp_path / "frames"
    with imageio.get_writer(clip, fps=12, macro_block_size=2) as w:
        for i in range(3):
            w.append_data(np.asarray(landscape(64, 48).crop((i, 0, i + 48, 32))))
    folder.mkdir()
    for i, x in enumerate(read_frames(clip)[0]):  # the decoded frames, exactly
        tensor_to_pil(x).save(folder / f"{i}.png")
    for size in (40, 80):  # down and up
        pairs = list(zip(read_frames(clip, size)[0], read_frames(folder, size)[0], strict=True))
        assert len(pairs) == 3 and all(torch.equal(a, b) for a, b in pairs)


def test_a_truncated_video_is_stylised_as_far_as_it_reads_with_a_warning(wct_cli, tmp_path):
    painting(48, 48).save(tmp_path / "style.png")
    clip, cut = cut_clip(tmp_path, 30)
    common = ("--style", str(tmp_path / "style.png"), "--levels", "1", "--size", "0")

    with pytest.warns(UserWarning, match=r"cut.mp4 ended after \d+ of about 30 frames"):
        r = wct_cli("video", str(cut), str(tmp_path / "out"), *common)

    written = len(list((tmp_path / "out").glob("frame_*.png")))
    assert r.returncode == 0 and 5 < written < 25 and f"wrote {written} frames" in r.stderr
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = wct_cli("video", str(clip), str(tmp_path / "whole"), *common)
    assert r.returncode == 0 and len(list((tmp_path / "whole").glob("frame_*.png"))) == 30
    assert not [w for w in caught if "ended after" in str(w.message)]


def test_a_truncated_video_with_audio_warns_too(tmp_path):
    """With an audio track the frames were counted, so a truncated clip promised only what it held."""
    import imageio_ffmpeg

    clip, cut = tmp_path / "clip.mp4", tmp_path / "cut.mp4"
    lavfi = ("testsrc=size=48x32:rate=10:duration=3", "sine=duration=3")
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        *(a for s in lavfi for a in ("-f", "lavfi", "-i", s)),
    ]
    subprocess.run(
        [*cmd, "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart", str(clip)], check=True
    )
    cut.write_bytes(clip.read_bytes()[: clip.stat().st_size * 6 // 10])
    frames, _, count = read_frames(cut)
    with pytest.warns(UserWarning, match=r"cut.mp4 ended after \d+ of about 30 frames"):
        assert 5 < len(list(frames)) < 25 and count == 30
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        frames, _, count = read_frames(clip)
        assert len(list(frames)) == count == 30


def clip_with_sound(path, frames: int, fps: int, seconds: float) -> None:
    """A test-pattern video of `frames` frames with a sine tone lasting `seconds`."""
    import imageio_ffmpeg

    lavfi = [f"testsrc=size=48x32:rate={fps}:duration={frames / fps}", f"sine=duration={seconds}"]
    inputs = [arg for src in lavfi for arg in ("-f", "lavfi", "-i", src)]
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *inputs]
    subprocess.run([*cmd, "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)], check=True)


def duration(path) -> float:
    import imageio_ffmpeg

    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(path)], capture_output=True, text=True)
    h, m, sec = re.search(r"Duration: (\d+):(\d+):([\d.]+)", r.stderr).groups()
    return 3600 * int(h) + 60 * int(m) + float(sec)


def test_video_keeps_the_audio_cut_to_the_frames(wct_cli, tmp_path, monkeypatch):
    painting(48, 48).save(tmp_path / "style.png")
    clip = tmp_path / "clip.mp4"
    clip_with_sound(clip, frames=6, fps=10, seconds=3)  # the sound outlasts the 0.6 s of frames
    common = ("--style", str(tmp_path / "style.png"), "--levels", "1", "--size", "0")
    assert has_audio(clip) and duration(clip) > 2.5
    for out in (tmp_path / "out.mp4", tmp_path / "out.webm"):  # AAC copied; re-encoded to Opus
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # not "ended after 6 of about 30 frames"
            r = wct_cli("video", str(clip), str(out), *common)
        assert r.returncode == 0 and "with the audio of" in " ".join(r.stderr.split()), r.stderr
        assert read_frames(clip)[2] == 6  # the frames' count, not the sound's 3 s x 10 fps
        assert has_audio(out) and duration(out) < 0.8 and len(list(read_frames(out)[0])) == 6
    r = wct_cli("video", str(clip), str(tmp_path / "mute.mp4"), *common, "--no-audio")
    assert r.returncode == 0 and not has_audio(tmp_path / "mute.mp4")
    with pytest.warns(UserWarning, match="--fps changes the clip's duration"):
        r = wct_cli("video", str(clip), str(tmp_path / "slow.mp4"), *common, "--fps", "5")
    assert r.returncode == 0 and not has_audio(tmp_path / "slow.mp4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the clip's own rate, as rounded by hand (23.976 for 24000/1001)
        r = wct_cli("video", str(clip), str(tmp_path / "same.mp4"), *common, "--fps", "10.004")
    assert r.returncode == 0 and has_audio(tmp_path / "same.mp4")

    def fail(*args):
        raise OutputError("ffmpeg could not add the audio (test)")

    monkeypatch.setattr("wct.video.add_audio", fail)
    with pytest.warns(UserWarning, match="without the audio of"):
        r = wct_cli("video", str(clip), str(tmp_path / "silent.mp4"), *common)
    assert r.returncode == 0 and len(list(read_frames(tmp_path / "silent.mp4")[0])) == 6
    assert not has_audio(tmp_path / "silent.mp4")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_sound_shorter_than_the_frames_does_not_cut_them(tmp_path):
    clip = tmp_path / "clip.mp4"
    clip_with_sound(clip, frames=12, fps=10, seconds=0.3)  # -shortest kept 1 frame of 12
    frames, fps, _ = read_frames(clip)
    with FrameWriter(tmp_path / "out.mp4", fps, audio=clip) as writer:
        for x in frames:
            writer.write(x)
    assert writer.audio is not None and has_audio(tmp_path / "out.mp4")
    assert len(list(read_frames(tmp_path / "out.mp4")[0])) == 12


def test_an_avi_starts_with_its_first_frame(tmp_path):
    """AVI stores no presentation times: with B-frames its video began two frames late."""
    import imageio_ffmpeg

    with FrameWriter(tmp_path / "out.avi", 10) as writer:
        for x in panning(8, 32):
            writer.write(x)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(tmp_path / "out.avi"), "-f", "framemd5", "-"]
    rows = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()
    assert [int(r.split(",")[1]) for r in rows if not r.startswith("#")] == list(range(8))  # pts


def test_an_avi_with_audio_keeps_its_frames_in_step(tmp_path):
    """AAC's priming samples start before 0: the AVI muxer shifted the video, its second frame a slot late."""
    import imageio_ffmpeg

    clip_with_sound(tmp_path / "clip.mp4", frames=8, fps=10, seconds=0.8)
    with FrameWriter(tmp_path / "out.avi", 10, audio=tmp_path / "clip.mp4") as writer:
        for x in panning(8, 32):
            writer.write(x)
    assert writer.audio is not None and has_audio(tmp_path / "out.avi")
    video = ("-i", str(tmp_path / "out.avi"), "-map", "0:v")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), *video, "-f", "framemd5", "-"]
    rows = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()
    assert [int(r.split(",")[1]) for r in rows if not r.startswith("#")] == list(range(8))  # pts
    assert len(list(read_frames(tmp_path / "out.avi")[0])) == 8


def test_a_variable_rate_clip_keeps_its_duration(wct_cli, tmp_path):
    import imageio_ffmpeg

    painting(48, 48).save(tmp_path / "style.png")
    clip = tmp_path / "phone.mp4"  # 30 frames at 30 fps, every tenth held a frame longer: 1.1 s
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc=size=48x32:rate=30"]
    vfr = ["-frames:v", "30", "-vf", "setpts='(N+floor(N/10))/30/TB'", "-fps_mode", "passthrough"]
    subprocess.run([*cmd, *vfr, "-pix_fmt", "yuv420p", str(clip)], check=True)
    out = tmp_path / "out.mp4"
    r = wct_cli(
        "video", str(clip), str(out), "--style", str(tmp_path / "style.png"), "--levels", "1", "--size", "0"
    )
    assert r.returncode == 0, r.stderr
    frames, fps = len(list(read_frames(out)[0])), read_frames(out)[1]
    assert frames / fps == pytest.approx(duration(clip), abs=1.5 / fps)  # read at 30 fps: 33 frames, 1.2 s


def test_ntsc_rates_are_read_and_written_exactly(tmp_path):
    """ffmpeg prints 24000/1001 fps as 23.98: read or written at that, a frame repeats every 6000."""
    import imageio_ffmpeg

    clip = tmp_path / "ntsc.mp4"
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=16x16:rate=24000/1001",
    ]
    subprocess.run([*cmd, "-frames:v", "4", "-pix_fmt", "yuv420p", str(clip)], check=True)
    frames, fps, count = read_frames(clip)
    assert fps == pytest.approx(24000 / 1001, abs=1e-9) and count == 4
    writer = FrameWriter(tmp_path / "out.mp4", fps)
    for x in frames:
        writer.write(x)
    writer.close()
    r = subprocess.run([cmd[0], "-i", str(tmp_path / "out.mp4")], capture_output=True, text=True)
    assert " 24k tbn" in r.stderr  # 24000/1001 exactly, not 1199/50
    assert read_frames(tmp_path / "out.mp4")[1] == pytest.approx(24000 / 1001, abs=1e-9)


def test_a_high_speed_clip_keeps_its_rate(tmp_path):
    """ffmpeg prints 1000 fps as "1k fps", which imageio reads as none: read at 24 fps, 20 frames became 2."""
    with FrameWriter(tmp_path / "fast.mp4", 1000) as writer:
        for x in panning(20, 16, 1):
            writer.write(x)
    frames, fps, count = read_frames(tmp_path / "fast.mp4")
    assert fps == 1000 and len(list(frames)) == 20


@pytest.mark.parametrize("stage", ["encoder", "read back"])
def test_an_interrupted_close_leaves_no_temporary_file(tmp_path, stage):
    writer = FrameWriter(tmp_path / "out.mp4", 12)
    for _ in range(2):
        writer.write(torch.rand(1, 3, 16, 16))

    def interrupt(*args):
        raise KeyboardInterrupt

    if stage == "encoder":  # interrupted as ffmpeg finishes the file
        close = writer._writer.close

        def close_then_interrupt():
            writer._writer.close = close  # once: imageio closes again when collected
            close()
            interrupt()

        writer._writer.close = close_then_interrupt
    else:
        writer._unreadable = interrupt
    with pytest.raises(KeyboardInterrupt):
        writer.close()
    assert list(tmp_path.iterdir()) == []


def test_video_files_take_odd_sizes_and_refuse_mixed_ones(wct_cli, tmp_path, caplog):
    frames, common = frames_and_style(tmp_path, 3, 47, 33)
    r = wct_cli("video", str(frames), str(tmp_path / "odd.mp4"), *common)
    assert r.returncode == 0, r.stderr
    assert "macro_block_size" not in caplog.text  # padded by us: imageio did not rescale the frames
    back = list(read_frames(tmp_path / "odd.mp4")[0])
    assert len(back) == 3 and back[0].shape[-2:] == (34, 48)
    landscape(40, 30).save(frames / "3.png")
    import wct.pipeline

    def no_work(*args, **kwargs):
        raise AssertionError("frames were stylised before their sizes were compared")

    with pytest.MonkeyPatch.context() as m:
        m.setattr(wct.pipeline.Stylizer, "__init__", no_work)
        r = wct_cli("video", str(frames), str(tmp_path / "mixed.mp4"), *common)
    assert r.returncode == 1 and "3.png gives 40x30 frames but 0.png 47x33" in r.stderr, r.stderr
    assert not (tmp_path / "mixed.mp4").exists() and not list(tmp_path.glob(".mixed*"))


def test_batch_computes_each_style_once(wct_cli, tmp_path, monkeypatch):
    from wct.pipeline import Stylizer

    (tmp_path / "c").mkdir(), (tmp_path / "s").mkdir()
    for i in range(3):
        landscape(40 + 8 * i, 32).save(tmp_path / "c" / f"photo{i}.png")
    for i in range(2):
        painting(32, 32, seed=i).save(tmp_path / "s" / f"paint{i}.png")
    calls = []
    original = Stylizer.style

    def counting(self, image, *args, **kwargs):
        calls.append(str(image))
        return original(self, image, *args, **kwargs)

    monkeypatch.setattr(Stylizer, "style", counting)
    r = wct_cli(
        "stylize",
        str(tmp_path / "c"),
        str(tmp_path / "s"),
        "-o",
        str(tmp_path / "out"),
        "--levels",
        "1",
        "--size",
        "48",
    )
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 6
    assert sorted(calls) == sorted(str(p) for p in (tmp_path / "s").glob("*.png"))


def test_frame_folders_are_replaced_whole_or_not_at_all(wct_cli, tmp_path):
    painting(48, 48).save(tmp_path / "style.png")
    five, three = tmp_path / "five", tmp_path / "three"
    for folder, n in ((five, 5), (three, 3)):
        folder.mkdir()
        for i in range(n):
            landscape(40, 32, seed=i).save(folder / f"{i}.png")
    out = tmp_path / "out"
    common = ("--style", str(tmp_path / "style.png"), "--levels", "1", "--size", "0")
    assert wct_cli("video", str(five), str(out), *common).returncode == 0
    (out / "notes.txt").write_text("mine")
    r = wct_cli("video", str(three), str(out), *common)
    assert r.returncode == 1 and "--overwrite" in r.stderr
    assert wct_cli("video", str(three), str(out), *common, "--overwrite").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [f"frame_0000{i}.png" for i in range(3)] + ["notes.txt"]
    (five / "2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")  # fails at the third frame
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    r = wct_cli("video", str(five), str(out), *common, "--overwrite")
    assert r.returncode == 1 and "error: " in r.stderr and "2.png is not an image" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old frames, untouched
    assert not list(tmp_path.glob(".out*"))  # and no temporary folder left
    painting(48, 48).save(out / "frame_style.png")  # the user's files, named like frames
    r = wct_cli(
        "video", str(three), str(out), "--style", str(out / "frame_style.png"), *common[2:], "--overwrite"
    )
    assert r.returncode == 0, r.stderr
    assert (out / "frame_style.png").exists() and (out / "notes.txt").read_text() == "mine"
    r = wct_cli(
        "video", str(three), str(out), "--style", str(out / "frame_00001.png"), *common[2:], "--overwrite"
    )
    assert r.returncode == 1 and "frame_00001.png is an input" in r.stderr
    assert (out / "frame_00001.png").exists()


def test_webm_is_written_with_a_webm_codec_and_reads_back(wct_cli, tmp_path):
    frames, common = frames_and_style(tmp_path, 2, 48, 32)
    r = wct_cli("video", str(frames), str(tmp_path / "out.webm"), *common)
    assert r.returncode == 0, r.stderr
    back = list(read_frames(tmp_path / "out.webm")[0])
    assert len(back) == 2 and back[0].shape[-2:] == (32, 48)


def test_frame_folders_are_read_in_natural_order_and_not_from_subfolders(wct_cli, tmp_path):
    painting(48, 48).save(tmp_path / "style.png")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in (1, 2, 10, 11):  # string order would be 1, 10, 11, 2
        Image.new("RGB", (32, 32), (20 * i, 0, 0)).save(frames / f"{i}.png")
    (frames / "._1.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # hidden: macOS's, not a frame
    reds = [round(x[0, 0].mean().item() * 255) for x in read_frames(frames)[0]]
    assert reds == [20, 40, 200, 220]
    common = ("--style", str(tmp_path / "style.png"), "--levels", "1", "--size", "0")
    for again in ((), ("--overwrite",)):  # the output folder inside the source is never read back
        r = wct_cli("video", str(frames), str(frames / "styled"), *common, *again)
        assert r.returncode == 0, r.stderr
        assert "wrote 4 frames" in r.stderr
    (tmp_path / "take.v1").mkdir()  # an existing folder may have a dot in its name
    assert wct_cli("video", str(frames), str(tmp_path / "take.v1"), *common).returncode == 0
    assert len(list((tmp_path / "take.v1").glob("frame_*.png"))) == 4
    (tmp_path / "one").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "one" / "0.png")
    r = wct_cli("video", str(tmp_path / "one"), str(tmp_path / "one_out"), *common)
    assert r.returncode == 0 and "wrote 1 frame to" in r.stderr, r.stderr
    (tmp_path / "clip.mp4").mkdir()  # but a folder named like a video is refused before any work
    r = wct_cli("video", str(frames), str(tmp_path / "clip.mp4"), *common, "--overwrite")
    assert r.returncode == 1 and "is a folder" in r.stderr
    with pytest.warns(UserWarning, match="--fps has no effect"):
        wct_cli("video", str(frames), str(tmp_path / "f2"), *common, "--fps", "5")


def test_stylize_frames_refuses_bad_temporal_settings_and_takes_images(stylizer, tmp_path):
    frames = panning(2, 32)
    st = stylizer.style(gradient_image(32, 32, seed=5), levels=(1,))
    for bad in ({"momentum": -0.5}, {"momentum": float("nan")}, {"strength": -1.0}, {"momentum": "0.3"}):
        with pytest.raises(InputError):  # once silently turned smoothing off, or a TypeError
            list(stylize_frames(stylizer, iter(frames), st, 0.7, (1,), temporal=True, **bad))
    want = list(stylize_frames(stylizer, iter(frames), st, 0.7, (1,)))
    paths = []
    for i, x in enumerate(frames):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(x[0].mul(255).round().byte().permute(1, 2, 0).numpy()).save(paths[-1])
    got = list(stylize_frames(stylizer, iter([paths[0], Image.open(paths[1])]), st, 0.7, (1,)))
    assert [y.shape for y in got] == [y.shape for y in want]
    assert all((a - b).abs().max() < 0.05 for a, b in zip(got, want, strict=True))  # 8-bit frames


def test_a_style_image_is_encoded_once_per_clip(stylizer, monkeypatch):
    calls = []
    style = stylizer.style
    monkeypatch.setattr(stylizer, "style", lambda *a, **k: calls.append(1) or style(*a, **k))
    out = list(stylize_frames(stylizer, iter(panning(3, 32)), gradient_image(32, 32, seed=5), 0.7, (1,)))
    assert len(out) == 3 and len(calls) == 1


def test_frame_writer_refuses_bad_fps_and_frames(tmp_path):
    for fps in (0, -5, float("nan"), float("inf"), "24"):
        with pytest.raises(InputError):
            FrameWriter(tmp_path / "bad.mp4", fps)
    nan = torch.rand(3, 16, 16)
    nan[0, 0, 0] = float("nan")
    for frame in (torch.rand(2, 3, 16, 16), torch.rand(16, 16, 3), nan, np.zeros((16, 16, 3))):
        with FrameWriter(tmp_path / "frames", 24) as writer, pytest.raises(InputError):
            writer.write(frame)  # a batch was cut to its first frame, NaN written as black
    assert list(tmp_path.iterdir()) == []


def test_frame_writer_names_the_file_in_the_way_of_a_video(tmp_path):
    (tmp_path / "notes").write_text("mine")
    for path in (tmp_path / "notes" / "clip.mp4", tmp_path / "notes" / "sub" / "clip.mp4"):
        with pytest.raises(OutputError, match="notes is a file, not a directory"):  # was "File exists"
            FrameWriter(path, 24)
    assert (tmp_path / "notes").read_text() == "mine"


def test_frame_writer_refuses_a_name_too_long_with_an_output_error(tmp_path):
    (tmp_path / "old.mp4").mkdir()
    long = "x" * 300
    for path in (tmp_path / f"{long}.mp4", tmp_path / long, tmp_path / "new" / long / "clip.mp4"):
        with pytest.raises(OutputError, match="cannot write"):  # was a bare OSError for the first two
            FrameWriter(path, 24)
        with pytest.raises(OutputError, match="cannot write"):
            FrameWriter(path, 24, folder=True)
    assert [p.name for p in tmp_path.iterdir()] == ["old.mp4"]


def test_an_output_ending_in_a_slash_is_a_folder_of_frames(wct_cli, tmp_path):
    frames, common = frames_and_style(tmp_path, 2, 32, 24)
    for name in ("styled.mp4", "styled.v1"):  # a video file, and refused as "give a video file"
        r = wct_cli("video", str(frames), str(tmp_path / name) + "/", *common)
        assert r.returncode == 0, r.stderr
        written = sorted(p.name for p in (tmp_path / name).iterdir())
        assert written == ["frame_00000.png", "frame_00001.png"]
    with pytest.warns(UserWarning, match="--fps has no effect on a folder"):
        r = wct_cli("video", str(frames), str(tmp_path / "styled.mp4") + "/", *common, "--fps", "10")
    assert r.returncode == 1 and "holds frames already" in r.stderr
    (tmp_path / "clip.mp4").write_text("mine")
    r = wct_cli("video", str(frames), str(tmp_path / "clip.mp4") + "/", *common)
    assert r.returncode == 1 and "is a file" in r.stderr
    (tmp_path / "bad.png").write_text("not an image")
    r = wct_cli(
        "video", str(frames), str(tmp_path / "new" / "out.mp4") + "/", "--style", str(tmp_path / "bad.png")
    )
    assert r.returncode == 1 and "bad.png is not an image" in r.stderr
    assert not (tmp_path / "new").exists() and (tmp_path / "clip.mp4").read_text() == "mine"
    with FrameWriter(tmp_path / "api.webm", 24, audio=tmp_path / "clip.mp4", folder=True) as writer:
        writer.write(torch.rand(3, 16, 16))
    assert writer.audio is None and [p.name for p in (tmp_path / "api.webm").iterdir()] == ["frame_00000.png"]


def test_frame_writer_closes_once_and_as_a_context_manager(tmp_path):
    for name in ("frames", "clip.mp4"):
        with FrameWriter(tmp_path / name, 24) as writer:
            writer.write(torch.rand(3, 16, 16))
            writer.close()  # closing twice once deleted the frames it had just published
        with pytest.raises(OutputError):
            writer.write(torch.rand(3, 16, 16))
    assert [p.name for p in (tmp_path / "frames").iterdir()] == ["frame_00000.png"]
    assert read_frames(tmp_path / "clip.mp4")[2] == 1
    with pytest.raises(KeyboardInterrupt), FrameWriter(tmp_path / "other", 24) as writer:
        writer.write(torch.rand(3, 16, 16))
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "frames"]


def test_a_frame_writer_dropped_unclosed_leaves_no_temporary_file(tmp_path):
    import gc
    import sys

    (tmp_path / "old.mp4").write_bytes(b"mine")
    for path in (tmp_path / "old.mp4", tmp_path / "new" / "clip.mp4", tmp_path / "frames"):
        writer = FrameWriter(path, 12, overwrite=True)
        writer.write(torch.rand(3, 16, 16))
        del writer  # an error before close, say
        gc.collect()
    assert [p.name for p in tmp_path.iterdir()] == ["old.mp4"]
    assert (tmp_path / "old.mp4").read_bytes() == b"mine"  # replaced only by close()
    script = "import sys, torch; from wct.video import FrameWriter; w = FrameWriter(sys.argv[1], 12); "
    script += "w.write(torch.rand(3, 16, 16)); sys.exit(3)"  # left open at exit
    r = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "exit.mp4")], capture_output=True, text=True
    )
    assert r.returncode == 3, r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["old.mp4"]


def test_read_frames_starts_ffmpeg_at_the_first_frame_and_stops_it_on_close(tmp_path, monkeypatch):
    import imageio.v2 as imageio

    clip, _ = cut_clip(tmp_path, 6)
    opened = []
    get_reader = imageio.get_reader
    monkeypatch.setattr(
        imageio, "get_reader", lambda *a, **k: opened.append(get_reader(*a, **k)) or opened[-1]
    )
    frames, fps, count = read_frames(clip)
    assert count == 6 and all(r.closed for r in opened)  # never iterated: no ffmpeg left running
    next(frames)
    assert not opened[-1].closed
    frames.close()  # stopped early
    assert all(r.closed for r in opened)


def test_a_failed_run_removes_the_folders_it_made_and_only_those(wct_cli, tmp_path):
    for name in ("clip.mp4", "frames"):
        with pytest.raises(KeyboardInterrupt), FrameWriter(tmp_path / "new" / "sub" / name, 24) as writer:
            writer.write(torch.rand(3, 16, 16))
            raise KeyboardInterrupt
        FrameWriter(tmp_path / "new" / "sub" / name, 24).close()  # no frames
    assert list(tmp_path.iterdir()) == []
    clip, _ = cut_clip(tmp_path, 2)
    (tmp_path / "mine").mkdir()
    (tmp_path / "bad.png").write_text("not an image")
    r = wct_cli(
        "video", str(clip), str(tmp_path / "mine" / "new" / "out"), "--style", str(tmp_path / "bad.png")
    )
    assert r.returncode == 1 and "bad.png is not an image" in r.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.png", "clip.mp4", "cut.mp4", "mine"]
    with FrameWriter(tmp_path / "mine" / "new" / "out", 24) as writer:  # a run that writes keeps them
        writer.write(torch.rand(3, 16, 16))
    assert [p.name for p in (tmp_path / "mine" / "new" / "out").iterdir()] == ["frame_00000.png"]


def test_odd_videos_read_or_fail_with_a_clear_error(tmp_path):
    import imageio_ffmpeg

    def make(name: str, *args: str) -> None:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *args, str(tmp_path / name)]
        subprocess.run(cmd, check=True)

    make("audio.mp4", "-f", "lavfi", "-i", "sine", "-t", "0.2")
    make("none.mp4", "-f", "lavfi", "-i", "testsrc=size=32x24", "-frames:v", "0")
    make("audio.mp3", "-f", "lavfi", "-i", "sine", "-t", "0.2")
    for name in ("audio.mp4", "audio.mp3"):  # was "is not a video ffmpeg can read (OSError)"
        with pytest.raises(ImageError, match=rf"{name} has no video stream \(audio only\)$"):
            read_frames(tmp_path / name)
    with pytest.raises(ImageError, match="is not a video ffmpeg can read"):  # no stream at all
        read_frames(tmp_path / "none.mp4")
    make("odd.mkv", "-f", "lavfi", "-i", "testsrc=size=31x23", "-frames:v", "2", "-c:v", "ffv1")
    assert [x.shape[-2:] for x in read_frames(tmp_path / "odd.mkv")[0]] == [(23, 31)] * 2


def test_a_video_that_changes_frame_size_is_refused_not_stretched(wct_cli, tmp_path):
    import imageio_ffmpeg

    def make(name: str, *args: str) -> None:
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *args, str(tmp_path / name)]
        subprocess.run(cmd, check=True)

    for size in ("64x48", "48x64"):  # two shots, landscape then portrait, joined without re-encoding
        shot = ("-f", "lavfi", "-i", f"testsrc=size={size}:rate=10", "-frames:v", "4")
        make(f"{size}.ts", *shot, "-c:v", "libx264", "-g", "2")
    make("sizes.mkv", "-i", f"concat:{tmp_path / '64x48.ts'}|{tmp_path / '48x64.ts'}", "-c", "copy")
    message = r"sizes.mkv changes frame size at frame 5, from 64x48 to 48x64: a video's frames share one size"
    with pytest.raises(ImageError, match=message):  # ffmpeg stretched the portrait frames to 64x48
        read_frames(tmp_path / "sizes.mkv")
    painting(32, 32).save(tmp_path / "style.png")
    r = wct_cli(
        "video", str(tmp_path / "sizes.mkv"), str(tmp_path / "out"), "--style", str(tmp_path / "style.png")
    )
    assert r.returncode == 1 and re.search(f"^error: .*{message}", r.stderr) and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_an_image_or_an_empty_folder_as_the_source_says_what_to_do(tmp_path):
    painting(32, 32).save(tmp_path / "photo.jpg")
    painting(32, 32).save(tmp_path / "still.gif")  # one frame: not an animation
    for name in ("photo.jpg", "still.gif"):  # was: convert it first (ffmpeg -i photo.jpg photo.mp4)
        with pytest.raises(
            ImageError, match=rf"{name} is an image, not a video: stylise it with `wct stylize`$"
        ):
            read_frames(tmp_path / name)
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "clip.mov").write_bytes(b"not a frame")
    with pytest.raises(
        InputError, match=r"no images found directly in .*frames \(looked for .bmp, .gif, .*\)$"
    ):
        read_frames(tmp_path / "frames")


@pytest.mark.parametrize("name", ["clip.webp", "clip.png", "clip.gif"])
def test_an_animated_image_is_a_clip_at_its_mean_frame_rate(tmp_path, name):
    """An animated GIF, WebP or PNG was refused ("convert it first" with an ffmpeg that may not be
    on PATH); its frames are read by Pillow, at the mean of their durations."""
    frames = [painting(32, 24), landscape(32, 24), painting(32, 24, seed=3)]
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], duration=[100, 200, 300])
    got, fps, count = read_frames(tmp_path / name, 16)
    got = list(got)
    assert count == len(got) == 3 and fps == pytest.approx(5.0)
    assert all(x.shape == (1, 3, 12, 16) for x in got)
    want = [load_image(f, 16) for f in frames]
    tolerance = 0.1 if name.endswith(".gif") else 0.03  # GIF's palette, WebP's lossy frames
    for x, y in zip(got, want, strict=True):
        assert (x - y).abs().mean() < tolerance
    assert not torch.equal(got[0], got[1])
    pages = tmp_path / ("pages.tif" if name.endswith(".webp") else "pages.mpo.jpg")
    if pages.suffix == ".tif":  # several pictures, but not a clip: an image to stylise
        frames[0].save(pages, save_all=True, append_images=frames[1:])
    else:  # a phone's MPO JPEG holds two pictures
        frames[0].save(pages, "MPO", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="is an image, not a video: stylise it with `wct stylize`"):
        read_frames(pages)


def test_frame_writer_tells_python_users_overwrite_true(tmp_path):
    """FrameWriter told Python users to "pass --overwrite", a CLI option (the CLI still says it)."""
    (tmp_path / "taken.mp4").write_bytes(b"mine")
    with pytest.raises(OutputError, match=r"taken.mp4 exists: pass overwrite=True to replace it$"):
        FrameWriter(tmp_path / "taken.mp4", 24)
    with FrameWriter(tmp_path / "frames", 24) as writer:
        writer.write(torch.rand(3, 16, 16))
    with pytest.raises(OutputError, match=r"holds frames already: pass overwrite=True to replace them$"):
        FrameWriter(tmp_path / "frames", 24)
    with pytest.raises(OutputError, match=r"taken.mp4 exists: pass --overwrite to replace it$"):
        FrameWriter(tmp_path / "taken.mp4", 24, option="--overwrite")
    assert (tmp_path / "taken.mp4").read_bytes() == b"mine"


@pytest.mark.parametrize("name", ["out.mp4", "frames"])
def test_an_output_made_while_the_frames_are_written_is_kept(tmp_path, name):
    """The output was checked only when the writer opened: a file or frames made there during a
    long run (another run's) were replaced silently when it closed."""
    out = tmp_path / name
    mine = out / "frame_00000.png" if name == "frames" else out
    message = r"(exists|holds frames).* \(found as the run ended: its frames are discarded\)$"
    with pytest.raises(OutputError, match=message), FrameWriter(out, 24) as writer:
        writer.write(torch.rand(3, 16, 16))
        mine.parent.mkdir(exist_ok=True)
        mine.write_bytes(b"mine")
    assert mine.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == [name]
    with FrameWriter(out, 24, overwrite=True) as writer:  # replaced when asked to
        writer.write(torch.rand(3, 16, 16))
    assert mine.read_bytes() != b"mine"


def test_an_output_made_while_the_audio_is_added_is_kept(tmp_path, monkeypatch):
    import wct.video

    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    clip_with_sound(clip, frames=4, fps=8, seconds=0.5)
    real = wct.video.add_audio

    def another_run_meanwhile(*a, **k):
        out.write_bytes(b"mine")
        return real(*a, **k)

    monkeypatch.setattr(wct.video, "add_audio", another_run_meanwhile)
    with (
        pytest.raises(OutputError, match="found as the run ended"),
        FrameWriter(out, 8, audio=clip) as writer,
    ):
        for _ in range(4):
            writer.write(torch.rand(3, 16, 16))
    assert out.read_bytes() == b"mine" and sorted(p.name for p in tmp_path.iterdir()) == [
        "clip.mp4",
        "out.mp4",
    ]


def test_uint8_frames_are_read_as_0_to_255_as_load_image_reads_them(stylizer):
    """uint8 frames (as torchvision.io.read_video gives) failed with --temporal: the scene-cut test
    and the temporal filter took them as they came ("adaptive_avg_pool2d" not implemented for 'Byte')."""
    st = stylizer.style(gradient_image(32, 32, seed=5), levels=(1,))
    floats = [x.mul(255).round().div(255) for x in panning(3, 32)]
    as_uint8 = [x[0].mul(255).round().to(torch.uint8) for x in floats]  # (3, H, W), as torchvision
    want = list(stylize_frames(stylizer, iter(floats), st, 0.7, (1,), temporal=True))
    got = list(stylize_frames(stylizer, iter(as_uint8), st, 0.7, (1,), temporal=True))
    assert [y.shape for y in got] == [(3, 32, 32)] * 3  # (3, H, W) in, (3, H, W) out
    assert all(torch.allclose(a[0], b, atol=1e-5) for a, b in zip(want, got, strict=True))
    with pytest.raises(InputError, match="floats in \\[0, 1\\] or uint8 in 0..255, got torch.int16"):
        list(stylize_frames(stylizer, iter([as_uint8[0].short()]), st, 0.7, (1,)))


def make_clip(path, *args: str) -> None:
    """An 8-frame 64x48 H.264 clip at `path` (ffmpeg `args` before the output: -display_rotation...)."""
    import imageio_ffmpeg

    source = ("-f", "lavfi", "-i", "testsrc=size=64x48:rate=8", "-frames:v", "8", "-c:v", "libx264")
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", *source, str(path)]
    subprocess.run(cmd, check=True)
    if args:
        rotated = path.with_name(f"r{path.name}")
        copy = [cmd[0], "-v", "error", *args, "-i", str(path), "-c", "copy", str(rotated)]
        subprocess.run(copy, check=True)
        rotated.replace(path)


def test_a_rotated_clip_reads_upright_without_imageio_ffmpegs_size_notice(tmp_path, caplog):
    """imageio-ffmpeg logged "The frame size for reading (48, 64) is different from the source frame
    size (64, 48)." twice for every phone clip shot upright; its other messages still show."""
    import logging

    make_clip(tmp_path / "phone.mp4", "-display_rotation", "90")
    frames, _, count = read_frames(tmp_path / "phone.mp4")
    assert count == 8 and [x.shape[-2:] for x in frames] == [(64, 48)] * 8  # upright
    logging.getLogger("imageio_ffmpeg").warning("another notice")  # not hidden
    assert [r.getMessage() for r in caplog.records if r.name == "imageio_ffmpeg"] == ["another notice"]


def test_an_mp4_cut_before_its_index_is_called_truncated(tmp_path):
    """An MP4 whose moov atom (written last) is missing was "not a video ffmpeg can read (OSError)"."""
    make_clip(tmp_path / "clip.mp4")
    data = (tmp_path / "clip.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut.mp4 is incomplete or truncated: its MP4 index \(moov atom\)"):
        read_frames(tmp_path / "cut.mp4")


def test_a_cut_avi_warns_with_the_frame_count_its_header_promises(tmp_path):
    """ffmpeg estimates a cut AVI's duration from its size: 24 of 30 frames read as all of "about 24"."""
    import imageio.v2 as imageio

    rng = np.random.default_rng(0)
    with imageio.get_writer(tmp_path / "clip.avi", fps=10, macro_block_size=2) as w:
        for _ in range(30):  # noise: every frame costs about as many bytes as the next
            w.append_data(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    data = (tmp_path / "clip.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) * 8 // 10])
    frames, _, count = read_frames(tmp_path / "cut.avi")
    with pytest.warns(UserWarning, match=r"cut.avi ended after \d+ of about 30 frames"):
        assert count == 30 and 15 < len(list(frames)) < 28
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        frames, _, count = read_frames(tmp_path / "clip.avi")
        assert len(list(frames)) == count == 30
    garbled = bytearray(data[: len(data) // 2])
    garbled[16:20] = (2).to_bytes(4, "little")  # its header list's size: under the 4 bytes of "hdrl"
    (tmp_path / "garbled.avi").write_bytes(garbled)
    assert avi_frames(tmp_path / "garbled.avi") is None  # was a bare ValueError (read of -2 bytes)


def test_a_web_page_saved_as_an_mp4_is_not_called_truncated(tmp_path):
    """ffmpeg guesses MP4 from the name and misses its moov atom: not a cut download, not a video."""
    page = tmp_path / "clip.mp4"
    page.write_text("<!DOCTYPE html><html><head><title>403 Forbidden</title></head></html>\n")
    with pytest.raises(ImageError, match=r"clip.mp4 is not a video ffmpeg can read \(Invalid data found"):
        read_frames(page)  # ffmpeg's reason, not "(OSError)"


def test_a_frame_as_the_output_is_refused_for_what_it_is_not_for_overwrite(wct_cli, tmp_path):
    """`wct video frames/ frames/0.png` said "pass --overwrite", then with it "give a video file"."""
    frames, common = frames_and_style(tmp_path, 2, 32, 24)
    before = (frames / "0.png").read_bytes()
    for extra in ((), ("--overwrite",)):
        r = wct_cli("video", str(frames), str(frames / "0.png"), *common, *extra)
        assert r.returncode == 1 and "0.png: give a video file (.avi, .mkv" in r.stderr, r.stderr
    (tmp_path / "notes").write_text("mine")
    r = wct_cli("video", str(frames), str(tmp_path / "notes"), *common)
    assert r.returncode == 1 and "notes is a file: give a folder for the frames" in r.stderr, r.stderr
    assert (frames / "0.png").read_bytes() == before and (tmp_path / "notes").read_text() == "mine"


def test_a_bad_size_is_refused_when_the_frames_are_opened_not_at_the_first_frame(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "0.png")
    for bad in (-1, 0, 2.5):
        with pytest.raises(InputError, match="size must be a whole positive number of pixels"):
            read_frames(tmp_path, size=bad)
    frames, _, count = read_frames(tmp_path, size=16.0)
    assert count == 1 and next(frames).shape == (1, 3, 16, 16)


def ffmpeg(*args) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True)


def flash_and_beep(path, seconds: float = 3.0) -> None:
    """A black 10 fps clip with one white frame at 1.5 s and a beep at 1.5 s (in step)."""
    video = f"color=black:s=48x32:r=10:d={seconds},drawbox=c=white:t=fill:enable='between(t,1.5,1.55)'"
    audio = f"aevalsrc='if(between(t,1.5,1.6),sin(2*PI*1000*t),0)':d={seconds}:s=44100"
    ffmpeg("-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio, "-pix_fmt", "yuv420p", "-c:a", "aac", path)


def test_a_clip_trimmed_without_re_encoding_is_not_called_truncated(tmp_path):
    """`ffmpeg -ss 1 -i clip.mp4 -c copy` keeps the frames before 1 s, hidden by an edit list: counted,
    its 30 frames were promised, and its 20 read were "truncated or damaged?"."""
    flash_and_beep(tmp_path / "clip.mp4")
    ffmpeg("-ss", "1", "-i", tmp_path / "clip.mp4", "-c", "copy", tmp_path / "trimmed.mp4")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        frames, _, count = read_frames(tmp_path / "trimmed.mp4")
        assert len(list(frames)) == count == 20


def test_an_avi_keeps_the_audio_of_a_trimmed_or_delayed_clip_in_step(tmp_path):
    """AVI stores no start times: a copied track played from 0, 1 s early for a clip trimmed by an
    edit list (its hidden audio too) and 0.5 s early for one whose audio starts late."""
    import imageio_ffmpeg

    flash_and_beep(tmp_path / "clip.mp4")
    ffmpeg("-ss", "1", "-i", tmp_path / "clip.mp4", "-c", "copy", tmp_path / "trimmed.mov")
    v = "color=black:s=48x32:r=10:d=3,drawbox=c=white:t=fill:enable='between(t,1.5,1.55)'"
    a = "aevalsrc='if(between(t,1.0,1.1),sin(2*PI*1000*t),0)':d=2:s=44100"  # played from 0.5 s
    delayed = ("-f", "lavfi", "-i", v, "-itsoffset", "0.5", "-f", "lavfi", "-i", a, "-pix_fmt", "yuv420p")
    ffmpeg(*delayed, "-c:a", "aac", tmp_path / "delayed.mp4")
    for source, flash in (("trimmed.mov", 0.5), ("delayed.mp4", 1.5)):
        frames, fps, _ = read_frames(tmp_path / source)
        with FrameWriter(tmp_path / "out.avi", fps, overwrite=True, audio=tmp_path / source) as writer:
            for x in frames:
                writer.write(x)
        shown = [x.mean().item() for x in read_frames(tmp_path / "out.avi")[0]]
        assert shown.index(max(shown)) / fps == pytest.approx(flash)
        probe = ("-i", str(tmp_path / "out.avi"), "-map", "0:a", "-af", "silencedetect=d=0.05", "-f", "null")
        log = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), *probe, "-"], capture_output=True, text=True)
        beep = float(re.search(r"silence_end: ([\d.]+)", log.stderr)[1])
        assert beep == pytest.approx(flash, abs=0.04), source  # MP3's encoder delay: 0.03 s


def test_an_anamorphic_clip_is_read_as_players_show_it(tmp_path):
    """A clip of pixels twice as wide as high (DV, DVD, HDV) came out half as wide as it is shown."""
    source = ("-f", "lavfi", "-i", "testsrc=size=32x48:rate=8", "-frames:v", "4", "-pix_fmt", "yuv420p")
    ffmpeg(*source, "-vf", "setsar=2", tmp_path / "wide.mp4")
    ffmpeg("-display_rotation", "90", "-i", tmp_path / "wide.mp4", "-c", "copy", tmp_path / "phone.mp4")
    for name, shape in (("wide.mp4", (48, 64)), ("phone.mp4", (64, 48))):
        frames, _, count = read_frames(tmp_path / name)
        assert count == 4 and [x.shape[-2:] for x in frames] == [shape] * 4, name


def test_an_apngs_still_default_image_and_a_gifs_short_delays(tmp_path):
    """An APNG's default image outside its animation was read as a frame lasting 0 ms (3 frames at
    15 fps for 2 at 10); GIF delays of 0 and 10 ms, played at 100 ms, gave 24 and 100 fps."""
    still, *shown = (Image.new("RGB", (16, 12), c) for c in ("red", "green", "blue"))
    still.save(tmp_path / "clip.png", save_all=True, append_images=shown, duration=100, default_image=True)
    frames, fps, count = read_frames(tmp_path / "clip.png")
    frames = list(frames)
    assert count == len(frames) == 2 and fps == pytest.approx(10)
    assert frames[0][0, :, 0, 0].tolist() == pytest.approx([0, 128 / 255, 0], abs=0.01)  # green first
    for ms in (0, 10):
        still.save(tmp_path / "clip.gif", save_all=True, append_images=shown, duration=ms)
        assert read_frames(tmp_path / "clip.gif")[1] == pytest.approx(10)


def test_a_video_stream_without_frames_says_so(tmp_path):
    """An MKV cut after its header was "not a video ffmpeg can read (OSError)"."""
    clip_with_sound(tmp_path / "clip.mkv", frames=4, fps=10, seconds=0.4)
    data = (tmp_path / "clip.mkv").read_bytes()
    (tmp_path / "empty.mkv").write_bytes(data[: data.find(b"\x1f\x43\xb6\x75") + 20])  # to its first cluster
    with pytest.raises(ImageError, match=r"empty.mkv has no frames: its video stream is empty"):
        read_frames(tmp_path / "empty.mkv")


def test_a_frame_name_with_a_superscript_digit_sorts(tmp_path):
    """The name "1²2.png" split into 1, "²" and 2, and int("²") was a bare ValueError."""
    for i, name in enumerate(("3.png", "1²2.png", "1.png")):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / name)
    frames, _, count = read_frames(tmp_path)
    assert count == 3 and [round(x[0, 0].mean().item() * 255) for x in frames] == [80, 40, 0]


def test_a_finished_video_is_on_disk_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    """Not fsynced, a power cut could leave an empty new file where the old output was."""
    import os

    synced, fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_ino) or fsync(fd))
    for name in ("out.mp4", "frames"):
        with FrameWriter(tmp_path / name, 12) as writer:
            for x in panning(2, 32):
                writer.write(x[..., :24, :])
    assert (tmp_path / "out.mp4").stat().st_ino in synced  # the file renamed, inode kept
    assert {f.stat().st_ino for f in (tmp_path / "frames").iterdir()} <= set(synced)  # PNGs: write_atomic


def test_temporal_frames_refilled_in_place_are_not_taken_for_one_still_frame(stylizer):
    """stylize_frames kept the caller's tensor as the previous frame: refilled in place for each
    frame, no change was seen between frames, so no scene cut, and the filter held the old output."""
    a, b = gradient_image(24, 32, seed=1), gradient_image(24, 32, seed=2).flip(-1)
    clip = [a, a, b, b]
    style = stylizer.style(gradient_image(32, 32, seed=7), levels=(1,))
    want = list(stylize_frames(stylizer, iter(clip), style, 0.8, (1,), temporal=True))
    buffer = torch.empty_like(a)

    def refilled():
        for x in clip:
            buffer.copy_(x)
            yield buffer

    got = list(stylize_frames(stylizer, refilled(), style, 0.8, (1,), temporal=True))
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(want, got, strict=True))


def test_frame_names_equal_in_natural_order_come_by_name_whatever_the_listing(tmp_path, monkeypatch):
    """1.png and 01.png sort equal by number: they came in the order the filesystem listed them."""
    from pathlib import Path

    for name in ("1.png", "01.png", "2.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    listed = Path.iterdir
    for backwards in (False, True):
        monkeypatch.setattr(Path, "iterdir", lambda p, b=backwards: iter(sorted(listed(p), reverse=b)))
        assert [f.name for f in frame_files(tmp_path)] == ["01.png", "1.png", "2.png"]


def test_the_frame_count_is_the_frames_read_for_late_video_and_high_rates(tmp_path):
    """A video starting 1/6 s after its audio read 35 frames of "30" (the read fills the start);
    3 frames at 240 fps, a duration of "0.01 s", were "2"; 4 at 1000 fps, "0.00 s", had no count."""
    late = ("-itsoffset", "0.1667", "-f", "lavfi", "-i", "testsrc=size=32x24:rate=30:duration=1")
    sound = ("-f", "lavfi", "-i", "sine=duration=1.5", "-c:a", "aac")
    ffmpeg(*late, *sound, "-pix_fmt", "yuv420p", tmp_path / "late.mp4")
    for rate, n in ((240, 3), (1000, 4), (1000, 15)):  # 15 ms given as "0.02 s": not truncated
        source = ("-f", "lavfi", "-i", f"testsrc=size=32x24:rate={rate}", "-frames:v", n)
        ffmpeg(*source, "-pix_fmt", "yuv420p", tmp_path / f"{rate}_{n}.mp4")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        for name, want in (("late.mp4", 35), ("240_3.mp4", 3), ("1000_4.mp4", 4), ("1000_15.mp4", 15)):
            frames, _, count = read_frames(tmp_path / name)
            assert count == len(list(frames)) == want, name


def test_rates_below_one_fps_are_read_and_written_exactly(tmp_path):
    """ffmpeg prints 1/60 fps as 0.02: read at 1/50, 3 frames became 4; 1/3 fps as 0.33: 1% long."""
    for rate, n in (("1/60", 3), ("1/3", 4)):
        source = ("-f", "lavfi", "-i", f"testsrc=size=32x24:rate={rate}", "-frames:v", n)
        ffmpeg(*source, "-pix_fmt", "yuv420p", tmp_path / "slow.mp4")
        frames, fps, count = read_frames(tmp_path / "slow.mp4")
        assert fps == pytest.approx(float(Fraction(rate)), rel=1e-12) and count == len(list(frames)) == n
        with FrameWriter(tmp_path / "out.mp4", fps, overwrite=True) as writer:
            for x in read_frames(tmp_path / "slow.mp4")[0]:
                writer.write(x)
        assert read_frames(tmp_path / "out.mp4")[1] == pytest.approx(float(Fraction(rate)), rel=1e-12)
        assert duration(tmp_path / "out.mp4") == pytest.approx(duration(tmp_path / "slow.mp4"))
