"""Colour management: embedded ICC profiles are converted to sRGB when an image is read for
stylisation (files, PIL images, studio uploads); untagged and sRGB images, and masks, keep their values.

The profiles are built here (ICC v2: matrix/TRC for RGB and grey, a 2-point lut16 for CMYK).
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps

from tests.test_reliability import png_claiming
from wct.controls import read_mask
from wct.errors import ImageError, InputError
from wct.images import decode, load_image, open_image, to_rgb

D50 = (0.9642, 1.0, 0.8249)
SRGB_COLORANTS = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))  # D50
ADOBE_COLORANTS = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))
ADOBE_GAMMA = 563 / 256


def s15(*v: float) -> bytes:
    return struct.pack(">3i", *(round(x * 65536) for x in v))


def xyz_tag(v: tuple[float, float, float]) -> bytes:
    return b"XYZ " + bytes(4) + s15(*v)


def curve_tag(gamma: float) -> bytes:
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)


def desc_tag(text: str) -> bytes:
    a = text.encode() + b"\0"
    return b"desc" + bytes(4) + struct.pack(">I", len(a)) + a + bytes(8 + 3 + 67)


def icc(space: str, device: str, tags: dict[str, bytes]) -> bytes:
    """An ICC v2 profile: 128-byte header, tag table, tags padded to 4 bytes; PCS XYZ, D50."""
    table, data, start = b"", b"", 128 + 4 + 12 * len(tags)
    for sig, body in tags.items():
        body += bytes(-len(body) % 4)
        table += struct.pack(">4sII", sig.encode(), start + len(data), len(body))
        data += body
    header = struct.pack(
        ">I4sI4s4s4s12s4s", start + len(data), b"lcms", 0x02100000, device.encode(), space.encode(),
        b"XYZ ", bytes(12), b"acsp",
    )  # fmt: skip
    header += bytes(68 - len(header)) + s15(*D50)
    return header + bytes(128 - len(header)) + struct.pack(">I", len(tags)) + table + data


def rgb_profile(colorants, gamma: float) -> bytes:
    tags = {"desc": desc_tag("test RGB"), "wtpt": xyz_tag(D50)}
    tags |= {f"{c}XYZ": xyz_tag(p) for c, p in zip("rgb", colorants, strict=True)}
    return icc("RGB ", "mntr", tags | {f"{c}TRC": curve_tag(gamma) for c in "rgb"})


def grey_profile(gamma: float) -> bytes:
    tags = {"desc": desc_tag("test grey"), "wtpt": xyz_tag(D50), "kTRC": curve_tag(gamma)}
    return icc("GRAY", "mntr", tags)


def cmyk_profile() -> bytes:
    """Inks that multiply linear sRGB light, R = (1 - C)(1 - K) and so on: a lut16 with 2 grid points."""
    corners = np.array(np.meshgrid(*[[0, 1]] * 4, indexing="ij")).reshape(4, -1).T  # C slowest
    linear = (1 - corners[:, :3]) * (1 - corners[:, 3:])
    clut = (linear @ np.array(SRGB_COLORANTS)).ravel()  # XYZ, 1.0 = 0x8000 in a lut16
    ramp = (0, 65535)
    body = b"mft2" + bytes(4) + struct.pack(">4B", 4, 3, 2, 0) + s15(1, 0, 0) + s15(0, 1, 0) + s15(0, 0, 1)
    body += struct.pack(">2H", 2, 2) + struct.pack(">8H", *ramp * 4)
    body += struct.pack(f">{clut.size}H", *(round(v * 32768) for v in clut)) + struct.pack(">6H", *ramp * 3)
    return icc("CMYK", "prtr", {"desc": desc_tag("test CMYK"), "wtpt": xyz_tag(D50), "A2B0": body})


SWAPPED = rgb_profile((SRGB_COLORANTS[1], SRGB_COLORANTS[0], SRGB_COLORANTS[2]), 2.2)  # red <-> green
ADOBE = rgb_profile(ADOBE_COLORANTS, ADOBE_GAMMA)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    v = np.clip(linear, 0, 1)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055) * 255


def saved(tmp_path, im: Image.Image, name: str, icc_profile: bytes | None = None, **kw) -> str:
    path = tmp_path / name
    im.save(path, **({"icc_profile": icc_profile} if icc_profile else {}), **kw)
    return str(path)


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int64)


def test_the_test_profiles_are_valid_icc():
    profiles = {"RGB": SWAPPED, "GRAY": grey_profile(1.0), "CMYK": cmyk_profile()}
    for space, data in (*profiles.items(), ("RGB", ADOBE)):
        assert ImageCms.ImageCmsProfile(io.BytesIO(data)).profile.xcolor_space.strip() == space


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_a_tagged_green_opens_as_the_colour_its_profile_says(tmp_path, mode):
    """Under the swapped profile, device green is sRGB red: the file, a PIL image and a tensor agree."""
    path = saved(tmp_path, Image.new("RGB", (8, 8), (0, 255, 0)).convert(mode), "g.png", SWAPPED)
    assert np.abs(pixels(open_image(path)) - (255, 0, 0)).max() <= 1
    with Image.open(path) as im:  # the Python API given a PIL image
        x = load_image(im)
    assert np.abs(x[0, :, 0, 0].numpy() * 255 - (255, 0, 0)).max() <= 1
    assert pixels(to_rgb(decode(path)))[0, 0].tolist() == [0, 255, 0]  # what it read before


def test_adobe_rgb_colours_match_the_matrix_math(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(40, 216, (8, 8, 3), dtype=np.uint8)  # mid tones: inside sRGB's gamut
    got = pixels(open_image(saved(tmp_path, Image.fromarray(a), "adobe.png", ADOBE)))
    to_xyz, from_xyz = np.array(ADOBE_COLORANTS).T, np.linalg.inv(np.array(SRGB_COLORANTS).T)
    want = srgb_encode((from_xyz @ to_xyz @ ((a / 255) ** ADOBE_GAMMA).reshape(-1, 3).T).T).reshape(a.shape)
    assert np.abs(got - want).max() <= 1.5
    assert np.abs(got - a).max() > 10  # and it did change


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_untagged_and_srgb_tagged_images_open_exactly_as_before(tmp_path, fmt):
    a = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    plain = saved(tmp_path, Image.fromarray(a), f"plain.{fmt}")
    tagged = saved(tmp_path, Image.fromarray(a), f"srgb.{fmt}", SRGB)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = [pixels(open_image(path)) for path in (plain, tagged)]
    assert np.array_equal(got[0], got[1])
    assert np.array_equal(got[0], pixels(to_rgb(decode(plain))))
    assert fmt != "png" or np.array_equal(got[0], a)


def test_only_a_profile_other_than_srgb_costs_a_pass_over_the_image(tmp_path, monkeypatch):
    from PIL import ImageCms

    sizes = []
    convert = ImageCms.profileToProfile
    monkeypatch.setattr(
        ImageCms, "profileToProfile", lambda im, *a, **k: sizes.append(im.size) or convert(im, *a, **k)
    )
    a = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    open_image(saved(tmp_path, Image.fromarray(a), "srgb.png", SRGB))
    assert (50, 40) not in sizes  # the profile was probed on a small colour cube instead
    open_image(saved(tmp_path, Image.fromarray(a), "adobe.png", ADOBE))
    assert (50, 40) in sizes


def test_a_corrupt_profile_warns_once_naming_the_file_and_still_opens(tmp_path):
    broken = bytearray(ADOBE)
    broken[140:200] = b"\xff" * 60  # the tag table
    for name, data in (("junk.png", b"not a profile" * 20), ("table.png", bytes(broken))):
        path = saved(tmp_path, Image.new("RGB", (8, 8), (10, 20, 30)), name, data)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            im = open_image(path)
        assert len(w) == 1, [str(m.message) for m in w]
        assert str(w[0].message).startswith(f"{path} has a colour profile that cannot be used (")
        assert str(w[0].message).endswith("its colours are read as sRGB")
        assert pixels(im)[0, 0].tolist() == [10, 20, 30]


def test_a_cmyk_jpeg_is_converted_with_its_own_profile(tmp_path):
    path = saved(tmp_path, Image.new("CMYK", (8, 8), (128, 0, 0, 0)), "c.jpg", cmyk_profile(), quality=100)
    want = srgb_encode(np.array([1 - 128 / 255, 1, 1]))  # half the red light: 188, not Pillow's 127
    assert np.abs(pixels(open_image(path)) - want).max() <= 2
    with Image.open(path) as im:
        assert pixels(im.convert("RGB"))[0, 0, 0] < 135  # the naive conversion it replaces


def test_a_grey_image_with_a_grey_profile_is_converted(tmp_path):
    path = saved(tmp_path, Image.new("L", (8, 8), 128), "g.png", grey_profile(1.0))  # linear grey
    assert np.abs(pixels(open_image(path)) - srgb_encode(np.array(128 / 255))).max() <= 1


def test_masks_keep_their_values_whatever_their_profile(tmp_path):
    a = np.zeros((8, 8, 3), np.uint8)
    a[:, :3], a[:, 3:6], a[:, 6:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    plain = read_mask(saved(tmp_path, Image.fromarray(a), "plain.png"))
    assert np.array_equal(read_mask(saved(tmp_path, Image.fromarray(a), "tagged.png", SWAPPED)), plain)
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) % 3
    labels = read_mask(saved(tmp_path, Image.fromarray(grey), "labels.png", grey_profile(2.2)))
    assert np.array_equal(labels.numpy(), grey)


def test_the_studio_converts_uploads_but_not_masks():
    serve = pytest.importorskip("wct.serve")
    a = np.zeros((16, 16, 3), np.uint8)
    a[:, :8], a[:, 8:] = (255, 0, 0), (0, 255, 0)
    tagged, plain = io.BytesIO(), io.BytesIO()
    Image.fromarray(a).save(tagged, "PNG", icc_profile=SWAPPED)
    Image.fromarray(a).save(plain, "PNG")
    upload = serve.decode_upload(tagged.getvalue())
    x = load_image(upload)[0].permute(1, 2, 0).numpy() * 255  # as a content or style: converted
    assert np.abs(x - a[..., [1, 0, 2]]).max() <= 1
    assert np.array_equal(read_mask(upload), read_mask(serve.decode_upload(plain.getvalue())))  # as a mask
    buf = io.BytesIO()
    Image.new("CMYK", (16, 16), (128, 0, 0, 0)).save(buf, "JPEG", icc_profile=cmyk_profile(), quality=100)
    upload = serve.decode_upload(buf.getvalue())
    want = srgb_encode(np.array([1 - 128 / 255, 1, 1]))
    assert np.abs(pixels(upload) - want).max() <= 2
    assert np.abs(load_image(upload)[0, :, 0, 0].numpy() * 255 - want).max() <= 2  # not converted twice


def test_a_failed_write_removes_the_folders_it_made_and_only_those(tmp_path):
    from wct.errors import OutputError
    from wct.images import atomic_save, write_atomic

    (tmp_path / "mine").mkdir()

    def interrupted(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("half")
        raise KeyboardInterrupt

    def full(tmp: str) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="cannot write mode F as JPEG"):
        atomic_save(Image.new("F", (8, 8)), tmp_path / "mine" / "new" / "sub" / "x.jpg")
    with pytest.raises(OutputError, match="No space left"):
        write_atomic(tmp_path / "new" / "sub" / "x.json", full)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "new" / "x.json", interrupted)
    with pytest.raises(OutputError, match="File name too long"):
        atomic_save(Image.new("RGB", (8, 8)), tmp_path / "new" / f"{'a' * 300}.png")
    assert [p.name for p in tmp_path.rglob("*")] == ["mine"]
    atomic_save(Image.new("RGB", (8, 8)), tmp_path / "mine" / "new" / "x.png")  # one that works keeps them
    assert (tmp_path / "mine" / "new" / "x.png").is_file()


def test_check_target_refuses_every_output_that_would_lose_something(tmp_path):
    """One check for every writer (CLI, atomic_save, presets, videos, bench reports)."""
    import os

    from wct.errors import OutputError
    from wct.images import atomic_save
    from wct.paths import check_target

    mine, photo = tmp_path / "mine.txt", tmp_path / "photo.png"
    mine.write_text("my notes")
    Image.new("RGB", (8, 8)).save(photo)
    other_name = tmp_path / "PHOTO.png"  # the input under another name: a hard link, or macOS's case
    os.link(photo, other_name)
    for args, message in (
        ((photo, True, (photo,)), "refusing to write over the input"),
        ((other_name, True, (photo,)), "refusing to write over the input"),
        ((tmp_path / "h.json", True, (), (tmp_path / "h.json",)), "is also the output image"),
        ((tmp_path, True), "is a directory"),
        ((mine / "o.png", True), f"{mine} is a file, not a directory"),
        ((mine, False), "exists: pass --overwrite"),
    ):
        with pytest.raises(OutputError, match=message):
            check_target(*args)
        if len(args) < 4:  # atomic_save has no other outputs; it tells Python callers their option
            with pytest.raises(OutputError, match=message.replace("--overwrite", "overwrite=True")):
                atomic_save(Image.new("RGB", (8, 8)), *args)
    assert check_target(str(mine), True) == mine and mine.read_text() == "my notes"
    with pytest.raises(OutputError, match="File name too long"):  # was a bare OSError in a folder
        atomic_save(Image.new("RGB", (8, 8)), tmp_path / f"{'a' * 300}.png")


def test_atomic_writes_reach_the_disk_before_they_are_published(tmp_path, monkeypatch):
    import os

    from wct.images import atomic_save, write_json

    real, synced = os.fsync, []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.fstat(fd).st_ino) or real(fd))
    write_json({"loss": 1.0}, tmp_path / "report.json")
    atomic_save(Image.new("RGB", (8, 8)), tmp_path / "x.png")
    assert synced == [(tmp_path / "report.json").stat().st_ino, (tmp_path / "x.png").stat().st_ino]


# ---------------------------------------------------------------- pixel limits


def test_max_pixels_replaces_pillows_limit_up_to_twice_it(tmp_path):
    big, bomb = tmp_path / "big95.png", tmp_path / "bomb.png"
    big.write_bytes(png_claiming(10000, 9500))  # a 95 MP camera file, over Pillow's 89.5M
    bomb.write_bytes(png_claiming(20000, 20000))  # 400 MP: over twice Pillow's limit too
    with pytest.raises(ImageError) as e:
        decode(big)
    message = str(e.value)
    assert "\n" not in message and "10000x9500 = 95000000 pixels" in message and "attack" not in message
    assert "default limit of 89.5M (a guard against decompression bombs)" in message
    assert "--max-pixels" in message and "up to 179.0M" in message
    with pytest.raises(ImageError, match="truncated"):  # allowed: the (missing) pixels are decoded
        decode(big, max_pixels=10**8)
    with pytest.raises(ImageError, match="95000000 pixels, more than the limit of 94999999$"):
        decode(big, max_pixels=95_000_000 - 1)
    with pytest.raises(ImageError, match="too large to open"):
        decode(bomb, max_pixels=10**9)


def test_a_real_image_over_pillows_limit_opens_with_a_larger_max_pixels(tmp_path, monkeypatch):
    monkeypatch.setattr("PIL.Image.MAX_IMAGE_PIXELS", 1000)  # Pillow warns over 1000, refuses over 2000
    a = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    path = saved(tmp_path, Image.fromarray(a), "40.png")
    with pytest.raises(ImageError, match="1600 pixels, more than the default limit of 0.0M"):
        open_image(path)
    with pytest.raises(ImageError, match="more than the limit of 1599$"):
        open_image(path, max_pixels=1599)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's warning does not reach the caller
        assert (pixels(open_image(path, max_pixels=1600)) == a).all()
        assert load_image(path, max_pixels=1600).shape == (1, 3, 40, 40)


def test_a_video_read_as_an_image_points_to_wct_video(tmp_path):
    import imageio.v2 as imageio

    clip = tmp_path / "clip.mp4"
    with imageio.get_writer(clip, fps=8, macro_block_size=2) as w:
        for _ in range(2):
            w.append_data(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(
        ImageError, match=r"clip.mp4 is a video, not an image: stylise its frames with `wct video`$"
    ):
        load_image(clip)


# ---------------------------------------------------------------- what load_image takes


def test_sizes_and_max_pixels_must_be_whole_positive_numbers(tmp_path):
    import torch

    x, im = torch.rand(3, 64, 64), Image.new("RGB", (64, 64))
    for image in (x, im):
        for size in (1.5, 64.7, np.float64(40.5)):  # were a 2x2, a 65x65 and a 41x41 image
            with pytest.raises(InputError, match="whole positive number of pixels"):
                load_image(image, size)
        assert load_image(image, 32.0).shape == load_image(image, np.int64(32)).shape == (1, 3, 32, 32)
    path = saved(tmp_path, im, "a.png")
    for max_pixels in ("1000", True, 1e6 + 0.5):  # a TypeError, a limit of True, half a pixel
        with pytest.raises(InputError, match=r"^max_pixels must be a (whole positive )?number"):
            load_image(path, max_pixels=max_pixels)
    for max_pixels in (1e6, np.float64(1e6), torch.tensor(10**6), 4096):  # whole numbers, however given
        assert load_image(path, max_pixels=max_pixels).shape == (1, 3, 64, 64)
    with pytest.raises(InputError, match="max_pixels"):  # checked even where no file is read
        load_image(x, max_pixels="1000")


def test_uint8_tensors_are_0_to_255_as_torchvision_reads_images():
    import torch

    dark = torch.randint(0, 2, (3, 16, 16), dtype=torch.uint8)  # a near-black image: was read as 0..1
    assert load_image(dark).max() <= 1 / 255
    a = torch.randint(0, 256, (1, 3, 16, 24), dtype=torch.uint8)
    torch.testing.assert_close(load_image(a), a.float() / 255)
    assert load_image(a[0], 12).shape == (1, 3, 8, 12)
    for other in (a.long(), dark.int()):  # other integers are not guessed at, even 0/1 ones
        with pytest.raises(InputError, match="floats in .0, 1. or uint8 in 0..255, got torch.int"):
            load_image(other)


def test_tensors_without_values_or_channels_last_are_clear_input_errors():
    import torch

    odd = {
        "meta": torch.rand(3, 8, 8, device="meta"),  # was a RuntimeError from .item()
        "sparse": torch.rand(3, 8, 8).to_sparse(),  # was a NotImplementedError
    }
    for kind, x in odd.items():
        with pytest.raises(InputError, match=f"dense tensors holding their values, got a .*{kind}"):
            load_image(x)
    with pytest.raises(InputError, match=r"got \(8, 9, 3\) \(channels last\? use x.permute\(2, 0, 1\)\)$"):
        load_image(torch.rand(8, 9, 3))
    x = torch.rand(8, 8, 3, requires_grad=True).permute(2, 0, 1)  # non-contiguous, with a graph
    torch.testing.assert_close(load_image(x), x.detach()[None])


def test_numpy_arrays_are_images_as_pil_gives_them_and_checked_as_tensors():
    import torch

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    want = load_image(Image.fromarray(a))
    read_only = np.asarray(Image.fromarray(a))  # not writable: torch.from_numpy would warn
    for x in (a, a / 255, (a / 255).astype(">f4"), read_only, a[::-1][::-1]):  # 0..255, [0, 1], ...
        torch.testing.assert_close(load_image(x), want)
    torch.testing.assert_close(load_image(a[..., 0]), want[:, :1].expand(1, 3, 20, 30))  # grey
    assert load_image(a, 15).shape == (1, 3, 10, 15)
    f = (a / 255).astype(np.float32)
    x = load_image(f)
    f[0, 0] = 0.5
    assert x[0, :, 0, 0].tolist() == (a[0, 0] / 255).astype(np.float32).tolist()  # a copy, not a view
    bad = {
        r"got \(3, 8, 8\) \(channels first\? use torch.from_numpy\(a\)\)": np.zeros((3, 8, 8), np.float32),
        r"\(H, W, 3\) RGB or \(H, W\) grey, got \(8, 8, 4\)$": np.zeros((8, 8, 4), np.uint8),
        "uint8 in 0..255 or floats in .0, 1., got int64": np.zeros((8, 8, 3), np.int64),
        "no pixels": np.zeros((0, 8, 3), np.uint8),
        "NaN or Inf": np.full((8, 8, 3), np.nan),
        r"in \[0, 1\]": np.full((8, 8, 3), 255.0),
    }
    for message, x in bad.items():
        with pytest.raises(InputError, match=message):
            load_image(x)


def test_a_pil_image_whose_file_cannot_be_read_is_an_image_error(tmp_path):
    path = saved(tmp_path, Image.effect_noise((64, 64), 50).convert("RGB"), "a.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with (  # opened lazily: decoded on first use
        Image.open(tmp_path / "cut.png") as im,
        pytest.raises(ImageError, match="PIL image cannot be read: .* truncated"),
    ):
        load_image(im)  # was a raw OSError
    with Image.open(path) as im:
        pass
    with pytest.raises(ImageError, match="corrupt, truncated or closed"):
        load_image(im)  # its file closed before its pixels were read: was an AssertionError
    with Image.open(path) as im:
        assert load_image(im).shape == (1, 3, 64, 64)


def test_images_in_memory_are_held_to_the_limit_files_are(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr("PIL.Image.MAX_IMAGE_PIXELS", 1000)  # a file over 2000 px is refused
    big = Image.new("RGB", (50, 50))
    with pytest.raises(ImageError, match="too large to open"):
        load_image(saved(tmp_path, big, "big.png"), max_pixels=5000)
    for image in (big, torch.rand(3, 50, 50)):  # were read whole, and a stylised content kept that size
        with pytest.raises(InputError, match="50x50 image is over the limit of 2,000 pixels: give a size"):
            load_image(image)
        assert load_image(image, 40).shape == (1, 3, 40, 40)
    assert load_image(Image.new("RGB", (50, 30))).shape == (1, 3, 30, 50)  # up to twice Pillow's limit


def test_float8_image_tensors_load_as_float32():
    import torch

    x = torch.rand(3, 16, 24)
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):  # were a NotImplementedError from isfinite
        torch.testing.assert_close(load_image(x.to(dtype)), x.to(dtype).float()[None])
        with pytest.raises(InputError, match="NaN or Inf"):
            load_image(torch.full((3, 16, 16), float("nan")).to(dtype))


def test_float_grey_images_map_nan_and_infinities_without_overflow(tmp_path):
    a = np.array([[0.0, 0.5, 1.0, np.nan], [0.25, -np.inf, np.inf, 0.75]], dtype=np.float32)
    Image.fromarray(a, "F").save(tmp_path / "f.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in multiply" reached the user
        rgb = np.asarray(open_image(tmp_path / "f.tif"))[..., 0]
    assert rgb.tolist() == [[0, 128, 255, 0], [64, 0, 255, 191]]  # NaN, -inf black; +inf white


def test_a_folder_we_may_not_write_is_refused_before_any_work(tmp_path, monkeypatch):
    import os

    from wct import paths
    from wct.errors import OutputError

    shut = tmp_path / "shut"
    shut.mkdir()
    real = os.access
    monkeypatch.setattr(
        paths.os, "access", lambda p, mode: Path(p) != shut and real(p, mode)
    )  # root skips chmod
    with pytest.raises(OutputError, match=f"cannot write .*: {shut} is not writable"):
        paths.check_target(shut / "new" / "out.png", False)
    assert paths.check_target(tmp_path / "out.png", False) == tmp_path / "out.png"


def test_tensor_to_pil_converts_what_load_image_takes_and_refuses_the_rest(tmp_path):
    import torch

    from wct.images import atomic_save, tensor_to_pil

    u = torch.randint(0, 256, (3, 5, 6), dtype=torch.uint8)  # as torchvision reads: was black and white
    assert np.array_equal(np.asarray(tensor_to_pil(u)), u.permute(1, 2, 0).numpy())
    x = torch.rand(1, 3, 5, 6)
    assert np.array_equal(np.asarray(tensor_to_pil(x)), (x[0] * 255).round().byte().permute(1, 2, 0).numpy())
    bad = {
        r"got \(2, 3, 5, 6\) \(a batch": torch.rand(2, 3, 5, 6),  # was its first image only
        "NaN or Inf": torch.full((3, 5, 6), float("nan")),  # was a black image
        r"got \(5, 6, 3\)": torch.rand(5, 6, 3),  # was a TypeError
        "got torch.int64": torch.zeros(3, 5, 6, dtype=torch.long),
        "got ndarray": np.zeros((3, 5, 6)),  # was an AttributeError
    }
    for message, y in bad.items():
        with pytest.raises(InputError, match=message):
            tensor_to_pil(y)
    with pytest.raises(InputError, match="takes a PIL image, got Tensor: convert it with tensor_to_pil"):
        atomic_save(x, tmp_path / "x.png")  # was an AttributeError from Pillow's save
    assert not list(tmp_path.iterdir())


def test_a_palette_with_alpha_made_in_memory_keeps_its_transparency(tmp_path):
    from wct.images import alpha_channel

    a = np.zeros((8, 8, 4), np.uint8)
    a[..., 0], a[..., 3] = 200, 255
    a[:, :4, 3] = 0
    for p in (Image.fromarray(a, "RGBA").quantize(), Image.fromarray(a, "RGBA").convert("P")):
        assert p.mode == "P" and "transparency" not in p.info  # the alpha is in the palette
        alpha = alpha_channel(p, (8, 8))  # was None: the result lost the transparency the content showed
        assert alpha is not None and np.array_equal(np.asarray(alpha), a[..., 3])
        p.save(tmp_path / "p.png")  # as a file it has a transparent palette entry: the same alpha
        assert np.array_equal(np.asarray(alpha_channel(tmp_path / "p.png", (8, 8))), a[..., 3])
    assert alpha_channel(Image.new("RGB", (8, 8)).convert("P"), (8, 8)) is None


def test_image_bytes_and_binary_files_are_read_as_their_path_is(tmp_path, monkeypatch):
    """An upload's bytes or file object: upright by its EXIF orientation, profile converted,
    held to the pixel limit, garbage a one-line ImageError (were an InputError: not a path)."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to show it
    path = saved(tmp_path, Image.new("RGB", (40, 20), (0, 255, 0)), "photo.jpg", SWAPPED, exif=exif)
    data = Path(path).read_bytes()
    want = load_image(path)
    assert want.shape == (1, 3, 40, 20)  # upright
    assert np.abs(want[0, :, 0, 0].numpy() * 255 - (255, 0, 0)).max() <= 3  # green as its profile says
    with open(path, "rb") as f:
        for image in (data, bytearray(data), memoryview(data), io.BytesIO(data), f):
            assert np.array_equal(load_image(image).numpy(), want.numpy()), type(image)
    with Image.open(path) as im:  # a PIL image is taken as it is, as the docstring says
        assert load_image(im).shape == (1, 3, 20, 40)
        assert load_image(ImageOps.exif_transpose(im)).shape == (1, 3, 40, 20)
    with pytest.raises(ImageError, match="^the file is not an image in a format Pillow reads$"):
        load_image(b"not an image" * 10)
    with pytest.raises(ImageError, match=r"^the file is empty \(0 bytes\)$"):
        load_image(io.BytesIO().getvalue())
    with pytest.raises(ImageError, match="^the file is too large to open safely: 40x20 = 800 pixels"):
        load_image(io.BytesIO(data), max_pixels=500)
    monkeypatch.setattr("PIL.Image.MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="too large to open"):
        load_image(png_claiming(3000, 3000))
    with open(path, "rb") as closed:
        pass
    with pytest.raises(ImageError, match="^the file is closed"):
        load_image(closed)
    with open(path) as text, pytest.raises(InputError, match="open image files with 'rb'"):
        load_image(text)


def test_a_binary_file_that_cannot_be_read_twice_is_refused(tmp_path):
    """The content is read again for its alpha channel (`stylize`): a pipe would be empty by then."""
    from wct.images import alpha_channel

    a = np.full((8, 8, 4), 255, np.uint8)
    a[:4, :, 3] = 0
    buf = io.BytesIO()
    Image.fromarray(a, "RGBA").save(buf, "PNG")
    assert load_image(buf).shape == (1, 3, 8, 8)
    assert np.array_equal(np.asarray(alpha_channel(buf, (8, 8))), a[..., 3])  # from the start again
    assert np.array_equal(np.asarray(alpha_channel(buf.getvalue(), (8, 8))), a[..., 3])

    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            return 0

    with pytest.raises(InputError, match="must be seekable: pass their bytes"):
        load_image(Pipe())


@pytest.mark.parametrize("mode", ["LA", "PA", "RGBA"])
def test_alpha_is_dropped_with_a_warning_for_formats_without_it(tmp_path, mode):
    from wct.images import atomic_save

    im = Image.new("RGBA", (8, 8), (200, 200, 200, 100)).convert(mode)
    with pytest.warns(UserWarning, match="JPEG has no alpha channel"):  # LA, PA: "cannot write mode"
        out = atomic_save(im, tmp_path / "out.jpg")
    with Image.open(out) as back:
        assert back.mode == ("L" if mode == "LA" else "RGB")
        assert np.abs(pixels(back.convert("RGB")) - 200).max() <= 2


def test_a_lab_image_opens_without_a_false_profile_warning(tmp_path):
    """Pillow's Lab images carry a Lab profile, which Pillow's own conversion to RGB applies."""
    lab = Image.new("RGB", (8, 8), (30, 120, 200)).convert("LAB")
    assert lab.info.get("icc_profile")
    lab.save(tmp_path / "lab.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # was "colour profile cannot be used: read as sRGB"
        for image in (lab, tmp_path / "lab.tif"):
            assert np.abs(load_image(image)[0, :, 0, 0].numpy() * 255 - (30, 120, 200)).max() <= 8


@pytest.mark.parametrize("suffix", [".png", ".tga", ".ico", ".webp"])
def test_formats_with_alpha_keep_it_without_a_warning(tmp_path, suffix):
    """TGA and ICO keep transparency (they were warned about, and lost it); a PA image, which
    Pillow's PNG writer refuses, is written as RGBA."""
    from wct.images import atomic_save

    for mode in ("RGBA", "PA"):
        im = Image.new("RGBA", (8, 8), (200, 100, 0, 100)).convert(mode)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = atomic_save(im, tmp_path / f"{mode}{suffix}")
        with Image.open(out) as back:
            assert back.mode == "RGBA" and np.abs(pixels(back)[..., 3].astype(int) - 100).max() <= 1


def test_an_empty_path_is_said_to_be_empty_not_a_directory():
    for read in (load_image, decode, read_mask):
        with pytest.raises(ImageError, match="the image path is empty"):  # was ". is a directory"
            read("")


def test_an_animated_images_warning_points_at_the_code_that_loaded_it(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (16, 16), c) for c in ("red", "blue")]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="animated") as caught:
        load_image(path)
    assert [w.filename for w in caught] == [__file__]  # was wct/images.py
