"""Artists' controls: masks, style interpolation, texture synthesis, colour preservation, presets,
determinism. Tiny images (<= 64 px) keep the end-to-end runs cheap on the CPU."""

import hashlib
import subprocess
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from wct.checks import parse_size
from wct.controls import (
    fit_labels,
    parse_style_spec,
    preserve_color,
    read_mask,
    resize_labels,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)
from wct.errors import InputError
from wct.images import load_image, tensor_to_pil
from wct.transform import FeatureStats, feature_stats, transform, wct

from .conftest import gradient_image

RED = ([1.0, 0.3, 0.1], [0.6, 0.05, 0.05])
BLUE = ([0.1, 0.3, 1.0], [0.05, 0.05, 0.6])


def stripes(h: int, w: int, colours: tuple[list[float], list[float]]) -> torch.Tensor:
    """Diagonal stripes of two colours, (1, 3, h, w)."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    on = (((xx + yy) // 6) % 2).float()[None]
    a, b = (torch.tensor(c)[:, None, None] for c in colours)
    return (on * a + (1 - on) * b)[None]


def halves(h: int, w: int, values: tuple[int, ...]) -> Image.Image:
    """A grey mask of vertical bands with the given grey values, left to right."""
    im = Image.new("L", (w, h))
    step = w // len(values)
    for i, v in enumerate(values):
        im.paste(v, (i * step, 0, w if i == len(values) - 1 else (i + 1) * step, h))
    return im


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def mean_colour(x: torch.Tensor) -> torch.Tensor:
    return x.mean((0, 2, 3))


def cli(*args: str) -> int:
    """The CLI in-process, for module-scoped fixtures (the `wct_cli` fixture is per test)."""
    from wct.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    return e.value.code or 0


def assert_clean_error(r: subprocess.CompletedProcess, text: str) -> None:
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], r.stderr


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A flat grey-ish content, red and blue striped styles, and masks."""
    d = tmp_path_factory.mktemp("controls")
    f = {k: d / f"{k}.png" for k in ("content", "red", "blue", "mask", "mask3", "mask_small")}
    tensor_to_pil(0.5 + 0.3 * (gradient_image(64, 64) - 0.5)).save(f["content"])
    tensor_to_pil(stripes(48, 48, RED)).save(f["red"])
    tensor_to_pil(stripes(48, 48, BLUE)).save(f["blue"])
    halves(64, 64, (0, 255)).save(f["mask"])  # black (region 0) left, white (region 1) right
    halves(64, 64, (0, 128, 255)).save(f["mask3"])
    halves(24, 48, (0, 255)).save(f["mask_small"])  # another aspect ratio: resized with a warning
    return f


@pytest.fixture(scope="module")
def reference(files) -> Path:
    """CONTENT stylised with the red style, the plain positional way."""
    out = files["content"].parent / "reference.png"
    assert cli("stylize", str(files["content"]), str(files["red"]), "-o", str(out), "--size", "64") == 0
    return out


# ---------------------------------------------------------------- the pure transforms


def random_stats(c: int, n: int, seed: int) -> FeatureStats:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(c, c, generator=g, dtype=torch.float64)
    return feature_stats(a @ torch.randn(c, n, generator=g, dtype=torch.float64) + 5 * seed)


def test_a_mask_gives_each_region_its_own_style_statistics():
    c, h, w = 6, 8, 10
    f = torch.randn(c, h, w, dtype=torch.float64) * 3 + 1
    labels = torch.zeros(h, w, dtype=torch.long)
    labels[:, 5:] = 1
    styles = [random_stats(c, 200, 1), random_stats(c, 200, 2)]
    out = transform(f, styles, 1.0, labels=labels)
    for i, style in enumerate(styles):
        region = feature_stats(out[:, labels == i])
        torch.testing.assert_close(region.mean, style.mean)
        torch.testing.assert_close(region.cov, style.cov)
    # One region covering everything is plain WCT (content statistics over the whole map).
    torch.testing.assert_close(
        transform(f, styles, 0.7, labels=torch.zeros(h, w, dtype=torch.long)), wct(f, styles[0], 0.7)
    )
    with pytest.raises(InputError, match="labels"):
        transform(f, styles, 1.0, labels=labels + 1)
    with pytest.raises(InputError, match="do not combine"):
        transform(f, styles, 0.5, weights=[1, 1], labels=labels)


def test_style_weights_give_the_weighted_sum_and_checks_weights():
    f = torch.randn(5, 6, 7, dtype=torch.float64)
    s0, s1 = random_stats(5, 100, 3), random_stats(5, 100, 4)
    mixed = transform(f, [s0, s1], 0.8, [7, 3])
    torch.testing.assert_close(mixed, 0.7 * wct(f, s0, 0.8) + 0.3 * wct(f, s1, 0.8))
    assert torch.equal(transform(f, [s0, s1], 0.8, [1, 0]), wct(f, s0, 0.8))
    for bad, text in (([-1, 2], "non-negative"), ([0, 0], "zero"), ([float("nan"), 1], "non-negative")):
        with pytest.raises(InputError, match=text):
            transform(f, [s0, s1], 1.0, bad)


def test_style_specs_only_take_a_trailing_number_as_weight(tmp_path):
    assert parse_style_spec("a.jpg:0.7") == (Path("a.jpg"), 0.7)
    assert parse_style_spec("a.jpg") == (Path("a.jpg"), None)
    assert parse_style_spec("take:2/a.jpg:.5") == (Path("take:2/a.jpg"), 0.5)
    assert parse_style_spec("C:/art/a.jpg") == (Path("C:/art/a.jpg"), None)
    assert parse_style_spec("a.jpg:1e-1") == (Path("a.jpg"), 0.1)
    assert parse_style_spec("a.jpg:-1") == (Path("a.jpg"), -1.0)  # refused later, with a clear error
    assert parse_style_spec("a.jpg:heavy") == (Path("a.jpg:heavy"), None)
    odd = tmp_path / "s.png:3"
    odd.write_bytes(b"")
    assert parse_style_spec(str(odd)) == (odd, None)  # an existing file keeps its whole name
    real = tmp_path / "s.png"
    real.write_bytes(b"")
    for weight in ("nan", "inf", "heavy"):  # the file exists, so the suffix was meant as a weight
        with pytest.raises(InputError, match=f"the weight '{weight}' must be a number"):
            parse_style_spec(f"{real}:{weight}")
    assert parse_size("768x512") == (768, 512) and parse_size("64") == (64, 64)
    for bad in ("12by3", "0x5", "", "-4x4"):
        with pytest.raises(InputError, match="--size"):
            parse_size(bad)


def test_mask_values_label_regions_in_sorted_order():
    grey = read_mask(halves(4, 6, (200, 10, 90)))
    assert grey[0].tolist() == [2, 2, 0, 0, 1, 1]
    colours = Image.new("RGB", (3, 1))
    colours.putdata([(0, 0, 255), (255, 0, 0), (0, 255, 0)])
    assert read_mask(colours)[0].tolist() == [0, 2, 1]  # sorted by (R, G, B)
    with pytest.raises(InputError, match="3 regions"):
        read_mask(halves(4, 6, (200, 10, 90)), styles=2)
    labels = torch.zeros(40, 60, dtype=torch.long)
    labels[:, 30:] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = fit_labels(labels, (20, 30), scale=30)  # scaled like the content: no warning
    assert fitted.shape == (20, 30) and set(fitted.unique().tolist()) == {0, 1}
    with pytest.warns(UserWarning, match="resizing"):
        assert fit_labels(labels, (30, 30)).shape == (30, 30)
    scaled = r"is 60x40 \(30x20 scaled like the content\) but the content is 29x20"
    with pytest.warns(UserWarning, match=scaled):
        fit_labels(labels, (20, 29), scale=30)  # compared at the size the content was scaled to


def test_a_mask_downsampled_to_a_deep_level_takes_each_cells_centre():
    """`nearest` took each 16-px cell's top-left pixel: a cell 15/16 in region 1 was region 0, so
    at relu5_1 region 0 spilled up to 15 px right and down."""
    labels = torch.zeros(48, 256, dtype=torch.long)
    labels[:, 113:] = 1  # cell 7 (columns 112..127) lies almost all in region 1
    labels[20:, :] = 2  # cell row 1 (rows 16..31) mostly in region 2
    small = resize_labels(labels, (3, 16))
    assert small[0].tolist() == [0] * 7 + [1] * 9
    assert small[1:].eq(2).all()
    assert resize_labels(labels, (96, 512)).equal(labels.repeat_interleave(2, 0).repeat_interleave(2, 1))


def test_a_jpeg_mask_with_too_many_regions_says_why(tmp_path):
    """Few extra values (here 3 for 2 styles) from a JPEG mask still get the PNG hint."""
    path = tmp_path / "mask.jpg"
    halves(16, 24, (0, 128, 255)).save(path, quality=100)  # flat 8-px blocks: exactly 3 values
    for mask in (path, Image.open(path)):
        with pytest.raises(InputError, match="3 regions .*; save masks as PNG"):
            read_mask(mask, styles=2)
    with pytest.raises(InputError, match=r"style\(s\) were given$"):  # a PNG needs no hint
        read_mask(halves(16, 24, (0, 128, 255)), styles=2)


def test_an_anti_aliased_png_mask_is_not_told_to_be_saved_as_png(tmp_path):
    """A PNG mask with soft edges was told "save masks as PNG, JPEG adds values"."""
    path = tmp_path / "soft.png"
    Image.linear_gradient("L").resize((16, 64)).save(path)  # 64 grey levels: a soft edge
    with pytest.raises(InputError, match="64 regions .*; paint masks with hard edges") as e:
        read_mask(path, styles=2)
    assert "JPEG adds values" not in str(e.value)


def test_shapes_on_a_transparent_layer_are_regions_and_unused_styles_are_named(tmp_path):
    """White painted on transparency was one white region: every pixel silently took style 1."""
    layer = Image.new("RGBA", (16, 8), (255, 255, 255, 0))
    layer.paste((255, 255, 255, 255), (8, 0, 16, 8))
    layer.save(tmp_path / "layer.png")
    labels = read_mask(tmp_path / "layer.png", styles=2)
    assert labels[:, :8].eq(0).all() and labels[:, 8:].eq(1).all()  # transparent first
    with pytest.warns(UserWarning, match=r"1 region\(s\) but 2 styles were given: style 2 is not used"):
        read_mask(Image.new("L", (16, 8), 255), styles=2)


def test_preserve_color_keeps_the_content_chroma_and_brightness():
    content = gradient_image(32, 40)
    stylised = stripes(32, 40, RED)
    out = preserve_color(content, stylised)
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(content)), content)
    inside = ((out > 0.01) & (out < 0.99)).all(1, keepdim=True).expand(-1, 2, -1, -1)
    torch.testing.assert_close(rgb_to_ycbcr(out)[:, 1:][inside], rgb_to_ycbcr(content)[:, 1:][inside])
    assert (mean_colour(out) - mean_colour(content)).abs().max() < 0.02
    luma = rgb_to_ycbcr(out)[:, 0]
    assert torch.corrcoef(torch.stack([luma.flatten(), rgb_to_ycbcr(stylised)[:, 0].flatten()]))[0, 1] > 0.99


# ---------------------------------------------------------------- end to end, through the CLI


def test_two_region_mask_gives_each_region_its_style(files, wct_cli, tmp_path):
    out = tmp_path / "masked.png"
    args = ["--mask", str(files["mask"]), "-o", str(out), "--size", "64", "--alpha", "1"]
    r = wct_cli(
        "stylize", str(files["content"]), "--style", str(files["red"]), "--style", str(files["blue"]), *args
    )
    assert r.returncode == 0, r.stderr
    y = load_image(out)
    assert y.shape[-2:] == (64, 64)
    red, blue = mean_colour(load_image(files["red"])), mean_colour(load_image(files["blue"]))
    left, right = mean_colour(y[..., :24]), mean_colour(y[..., 40:])  # away from the seam
    assert (left - red).abs().sum() < 0.5 * (left - blue).abs().sum()
    assert (right - blue).abs().sum() < 0.5 * (right - red).abs().sum()
    assert left[0] > left[2] + 0.4 and right[2] > right[0] + 0.4


def test_wrong_size_mask_is_resized_with_a_warning(files, wct_cli, tmp_path):
    out = tmp_path / "masked.png"
    with pytest.warns(UserWarning, match="the mask is 48x24 but the content is 48x48: resizing it"):
        r = wct_cli(
            "stylize",
            str(files["content"]),
            "--style",
            str(files["red"]),
            "--style",
            str(files["blue"]),
            "--mask",
            str(files["mask_small"]),
            "-o",
            str(out),
            "--size",
            "48",
            "--levels",
            "3,2,1",
        )
    assert r.returncode == 0, r.stderr
    assert Image.open(out).size == (48, 48)


def test_preserve_color_keeps_the_content_mean_colour(files, reference, wct_cli, tmp_path):
    out = tmp_path / "kept.png"
    r = wct_cli(
        "stylize",
        str(files["content"]),
        str(files["red"]),
        "-o",
        str(out),
        "--size",
        "64",
        "--preserve-color",
    )
    assert r.returncode == 0, r.stderr
    y, x = load_image(out), load_image(files["content"])
    assert (mean_colour(y) - mean_colour(x)).abs().max() < 0.02
    assert (mean_colour(load_image(reference)) - mean_colour(x)).abs().max() > 0.15  # without: red
    assert (y - x).abs().mean() > 0.01  # the style's texture did arrive


def test_interpolation_weights_one_zero_equal_the_single_style(files, reference, wct_cli, tmp_path):
    one_zero, half = tmp_path / "one_zero.png", tmp_path / "half.png"
    content, red, blue = (str(files[k]) for k in ("content", "red", "blue"))
    r = wct_cli(
        "stylize", content, "--style", f"{red}:1", "--style", f"{blue}:0", "-o", str(one_zero), "--size", "64"
    )
    assert r.returncode == 0, r.stderr
    # the same pixels; the files differ only in the settings they record
    assert torch.equal(load_image(one_zero), load_image(reference))
    r = wct_cli(
        "stylize", content, "--style", f"{red}:0.5", "--style", f"{blue}:0.5", "-o", str(half), "--size", "64"
    )
    assert r.returncode == 0, r.stderr
    mixed, only_red = mean_colour(load_image(half)), mean_colour(load_image(reference))
    assert mixed[0] < only_red[0] - 0.1 and mixed[2] > only_red[2] + 0.1


def test_texture_is_deterministic_for_a_seed(files, wct_cli, tmp_path):
    outs = {name: tmp_path / f"{name}.png" for name in ("a", "b", "c")}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        r = wct_cli(
            "texture",
            str(files["red"]),
            "-o",
            str(outs[name]),
            "--size",
            "40x24",
            "--seed",
            seed,
            "--passes",
            "2",
            "--levels",
            "3,2,1",
        )
        assert r.returncode == 0, r.stderr
    assert digest(outs["a"]) == digest(outs["b"])
    assert digest(outs["a"]) != digest(outs["c"])
    y = load_image(outs["a"])
    assert y.shape[-2:] == (24, 40)
    assert mean_colour(y)[0] > mean_colour(y)[2] + 0.3  # the red style's colours


def test_texture_blends_several_styles_by_weight_as_stylize_does(files, wct_cli, tmp_path, recwarn):
    """`wct texture --style A:W --style B:W`, as `wct.texture(..., weights=)`; weights 1 and 0 give
    the first style's texture exactly."""
    red, blue = str(files["red"]), str(files["blue"])
    run = ("--size", "32x24", "--passes", "1", "--levels", "2,1")
    outs = {name: tmp_path / f"{name}.png" for name in ("red", "one_zero", "even", "blue")}
    for name, styles in (
        ("red", (red,)),
        ("one_zero", ("--style", f"{red}:1", "--style", f"{blue}:0")),
        ("even", ("--style", red, "--style", blue)),
        ("blue", ("--style", blue)),
    ):
        r = wct_cli("texture", *styles, "-o", str(outs[name]), *run)
        assert r.returncode == 0, r.stderr
    assert Image.open(outs["one_zero"]).tobytes() == Image.open(outs["red"]).tobytes()
    reds = [mean_colour(load_image(outs[k]))[0].item() for k in ("red", "even", "blue")]
    assert reds[0] > reds[1] + 0.1 > reds[2] + 0.2, reds  # the blend lies between the two
    out = str(tmp_path / "bad.png")
    assert_clean_error(wct_cli("texture", red, "--style", blue, "-o", out), "not both")
    assert_clean_error(wct_cli("texture", "-o", out), "give a STYLE")
    r = wct_cli("texture", "--style", f"{red}:-1", "--style", blue, "-o", out)
    assert_clean_error(r, "non-negative")
    assert not Path(out).exists()
    r = wct_cli("texture", "--style", f"{red}:2", "-o", out, *run)  # a lone weight: warned, no --alpha
    said = [str(w.message) for w in recwarn if "one style's does nothing" in str(w.message)]
    assert r.returncode == 0 and len(said) == 1 and "--alpha" not in said[0], said


def test_large_textures_are_tiled_like_large_photos(files, stylizer, monkeypatch):
    style = stylizer.style(load_image(files["red"]), levels=(2, 1))
    whole = stylizer.texture(style, (96, 64), seed=2, passes=2, levels=(2, 1), tile=0)
    tiled = stylizer.texture(style, (96, 64), seed=2, passes=2, levels=(2, 1), tile=48)
    assert tiled.shape == whole.shape == (1, 3, 64, 96)
    assert 10 * torch.log10(1 / (tiled - whole).pow(2).mean()) > 45  # exact statistics, rounding only
    monkeypatch.setattr("PIL.Image.MAX_IMAGE_PIXELS", 1000)  # Pillow's limit: 2000 px
    with pytest.raises(InputError, match="limit"):
        stylizer.texture(style, (50, 41), passes=1, levels=(2, 1))
    assert stylizer.texture(style, (50, 40), passes=1, levels=(2, 1)).shape == (1, 3, 40, 50)


def test_mask_tensors_are_whole_number_labels(stylizer):
    import wct

    a, b = (stylizer.style(gradient_image(48, 48, seed=k), levels=(2, 1)) for k in (1, 8))
    x = gradient_image(32, 48)
    labels = (torch.arange(48)[None, :] >= 24).expand(32, 48)
    y = stylizer.stylize(x, [a, b], 1.0, (2, 1), mask=labels.long())
    assert torch.equal(stylizer.stylize(x, [a, b], 1.0, (2, 1), mask=labels.float()), y)
    for bad in (labels.float() * 0.5, labels.long()[None]):  # a soft mask; an (1, H, W) mask
        with pytest.raises(InputError, match="whole-number"):
            stylizer.stylize(x, [a, b], 1.0, (2, 1), mask=bad)
        with pytest.raises(InputError, match="whole-number"):
            wct.stylize(x[0], [a, b], levels=(2, 1), mask=bad, size=None)


def test_16_bit_label_masks_keep_their_labels(tmp_path):
    """Labels 0, 1, 2 saved from an integer array as a 16-bit PNG are three regions, not one
    (converted to 8 bits, 0..2 / 257 all round to 0)."""
    import numpy as np

    a = np.zeros((4, 6), np.uint16)
    a[:, 2:4], a[:, 4:] = 1, 2
    Image.fromarray(a).save(tmp_path / "labels.png")
    assert Image.open(tmp_path / "labels.png").mode == "I;16"
    assert read_mask(tmp_path / "labels.png")[0].tolist() == [0, 0, 1, 1, 2, 2]
    assert read_mask(Image.fromarray(a.astype(np.int32)))[0].tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(InputError, match="3 regions"):
        read_mask(tmp_path / "labels.png", styles=2)


def test_empty_or_unreadable_masks_raise_typed_errors_and_stylizer_takes_mask_images(stylizer):
    import wct

    a, b = (stylizer.style(gradient_image(48, 48, seed=k), levels=(2, 1)) for k in (1, 8))
    x = gradient_image(32, 48)
    for bad in (torch.zeros(0, 0, dtype=torch.long), torch.zeros(32, 0, dtype=torch.long)):
        with pytest.raises(InputError, match="whole-number"):
            stylizer.stylize(x, [a, b], 1.0, (2, 1), mask=bad)
        with pytest.raises(InputError, match="whole-number"):
            wct.stylize(x[0], [a, b], levels=(2, 1), mask=bad, size=None)
    with pytest.raises(InputError, match="a mask is"):
        wct.stylize(x[0], [a, b], levels=(2, 1), mask=[[0, 1]], size=None)
    y = stylizer.stylize(x, [a, b], 1.0, (2, 1), mask=read_mask(halves(32, 48, (0, 255))))
    assert torch.equal(stylizer.stylize(x, [a, b], 1.0, (2, 1), mask=halves(32, 48, (0, 255))), y)


def test_presets_round_trip_and_refuse_another_encoder(files, reference, wct_cli, tmp_path):
    preset, out = tmp_path / "red.safetensors", tmp_path / "from_preset.png"
    r = wct_cli("style-stats", str(files["red"]), "-o", str(preset))
    assert r.returncode == 0, r.stderr
    with safe_open(str(preset), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    assert meta["format"] == "wct-style-stats" and meta["version"] == "1" and meta["levels"] == "1,2,3,4,5"
    assert len(meta["encoder"]) == 32 and tensors["relu5_1.outer"].shape == (512, 512)
    r = wct_cli("stylize", str(files["content"]), str(preset), "-o", str(out), "--size", "64")
    assert r.returncode == 0, r.stderr
    assert Image.open(out).tobytes() == Image.open(reference).tobytes()  # the PNG texts name other inputs
    out2 = tmp_path / "sized.png"
    with pytest.warns(UserWarning, match="is a preset: .* size does not apply"):
        r = wct_cli("stylize", str(files["content"]), str(preset), "-o", str(out2), "--style-size", "32")
    assert r.returncode == 0, r.stderr

    other = tmp_path / "other.safetensors"
    save_file(tensors, str(other), metadata={**meta, "encoder": "0" * 32})
    r = wct_cli("stylize", str(files["content"]), "--style", str(other), "-o", str(tmp_path / "x.png"))
    assert_clean_error(r, "encoder")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(preset.read_bytes()[:1000])
    assert_clean_error(wct_cli("texture", str(broken), "-o", str(tmp_path / "t.png")), "broken.safetensors")
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "t.png").exists()


def test_same_inputs_give_byte_identical_outputs(files, reference, wct_cli, tmp_path):
    again = tmp_path / "again.png"
    r = wct_cli("stylize", str(files["content"]), str(files["red"]), "-o", str(again), "--size", "64")
    assert r.returncode == 0, r.stderr
    assert again.read_bytes() == reference.read_bytes()


def test_python_api_takes_masks_weights_presets_and_colour(files, tmp_path):
    import wct

    content, red, blue = files["content"], files["red"], files["blue"]
    labels = torch.zeros(64, 64, dtype=torch.long)
    labels[:, 32:] = 1
    by_path = wct.stylize(content, [red, blue], levels=(2, 1), size=48, mask=files["mask"])
    by_labels = wct.stylize(content, [red, blue], levels=(2, 1), size=48, mask=labels)
    assert by_path.size == (48, 48) and by_path.tobytes() == by_labels.tobytes()
    gaps = labels * 5  # labels 0 and 5 are two regions, but label 5 has no style
    with pytest.raises(InputError, match="the mask has label 5, but labels pick styles 0..1"):
        wct.stylize(content, [red, blue], levels=(2, 1), size=48, mask=gaps)
    s = wct.pipeline.stylizer()
    preset = s.save_style(s.style(red), tmp_path / "red.safetensors")
    one_zero = wct.stylize(content, [preset, blue], levels=(2, 1), size=48, weights=[1, 0])
    assert one_zero.tobytes() == wct.stylize(content, red, levels=(2, 1), size=48).tobytes()
    kept = wct.stylize(content, red, levels=(2, 1), size=48, preserve_color=True)
    x = load_image(content, 48)
    assert (mean_colour(load_image(kept)) - mean_colour(x)).abs().max() < 0.02
    tex = wct.texture(red, (32, 16), seed=3, passes=1, levels=(2, 1))
    assert tex.size == (32, 16) and tex.tobytes() == wct.texture(red, (32, 16), 3, 1, (2, 1)).tobytes()


def test_bad_inputs_fail_cleanly(files, wct_cli, tmp_path):
    content, red, blue = (str(files[k]) for k in ("content", "red", "blue"))
    out = str(tmp_path / "o.png")
    two = ("--style", red, "--style", blue)
    cases = [
        (("stylize", content, *two, "--mask", str(files["mask3"]), "-o", out), "3 regions"),
        (("stylize", content, "--style", f"{red}:-1", "--style", blue, "-o", out), "non-negative"),
        (("stylize", content, "--style", f"{red}:0", "--style", f"{blue}:0", "-o", out), "zero"),
        (
            (
                "stylize",
                content,
                "--style",
                f"{red}:0.5",
                "--style",
                blue,
                "--mask",
                str(files["mask"]),
                "-o",
                out,
            ),
            "combine",
        ),
        (("stylize", content, red, "--style", blue, "-o", out), "not both"),
        (("stylize", content, "-o", out), "give a STYLE"),
        (
            ("stylize", content, "--style", str(tmp_path / "missing.png"), "--style", blue, "-o", out),
            "does not exist",
        ),
        (("texture", red, "-o", out, "--size", "12by3"), "--size"),
        (("texture", red, "-o", out, "--size", "0x5"), "--size"),
        (("texture", red, "-o", out, "--passes", "0"), "--passes"),
        (("texture", red, "-o", out, "--tile", "8"), "--tile"),
        (("texture", red, "-o", out, "--size", "20000x20000"), "limit"),  # refused before any work
        (("style-stats", red, "-o", str(tmp_path / "stats.png")), ".safetensors"),
    ]
    for args, text in cases:
        assert_clean_error(wct_cli(*args), text)
    assert not Path(out).exists()


def test_save_style_never_replaces_a_file_silently(tmp_path):
    from wct.demo import painting
    from wct.errors import OutputError
    from wct.pipeline import Stylizer

    s = Stylizer("cpu")
    style = s.style(painting(32, 32))
    photo = tmp_path / "photo.jpg"
    painting(32, 32).save(photo)
    before = photo.read_bytes()
    with pytest.raises(OutputError, match=".safetensors"):
        s.save_style(style, photo, overwrite=True)  # style() would not read it back as a preset
    (tmp_path / "d.safetensors").mkdir()
    with pytest.raises(OutputError, match="d.safetensors is a directory"):
        s.save_style(style, tmp_path / "d.safetensors", overwrite=True)
    preset = s.save_style(style, tmp_path / "p.safetensors")
    with pytest.raises(OutputError, match="exists"):
        s.save_style(style, preset)
    assert s.save_style(style, preset, overwrite=True) == preset and photo.read_bytes() == before


def test_16_bit_label_masks_with_a_transparent_value_keep_their_labels(tmp_path):
    """A 16-bit label PNG with a transparent value went through 8 bits: labels 0, 1, 3 merged."""
    import numpy as np

    Image.fromarray(np.array([[0, 1, 2, 3]], np.uint16)).save(tmp_path / "labels.png", transparency=2)
    assert Image.open(tmp_path / "labels.png").mode == "I;16"
    assert read_mask(tmp_path / "labels.png")[0].tolist() == [1, 2, 0, 3]  # transparent first


def test_preserve_color_keeps_low_precision_images_to_their_rounding():
    """bf16 / fp16 images were converted and summed in bf16 / fp16: 4x the result's rounding."""
    content, stylised = gradient_image(64, 64), stripes(64, 64, RED)
    for dtype, step in ((torch.bfloat16, 2**-8), (torch.float16, 2**-11)):
        c, s = content.to(dtype), stylised.to(dtype)
        out = preserve_color(c, s)
        exact = preserve_color(c.double(), s.double())
        assert out.dtype == dtype and (out.double() - exact).abs().max() <= step  # was 2 to 4 steps
    for c, s in ((torch.zeros(1, 3, 0, 8), torch.zeros(1, 3, 0, 8)), ([1.0], [1.0])):
        with pytest.raises(InputError, match="colour preservation"):
            preserve_color(c, s)


def test_presets_with_bad_metadata_or_a_newer_version_are_clear_weights_errors(tmp_path):
    """The digest covers the tensors only: an edited `levels` was a KeyError or a ValueError."""
    from wct.controls import load_style_stats, save_style_stats
    from wct.errors import WeightsError

    stats = {3: feature_stats(torch.randn(256, 4, 4)), 1: feature_stats(torch.randn(64, 4, 4))}
    preset = save_style_stats(stats, tmp_path / "p.safetensors", "md5", {"source": "a.jpg"})
    assert sorted(load_style_stats(preset, "md5")) == [1, 3]
    with safe_open(str(preset), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    cases = [({"levels": "3,2,1"}, "its levels '3,2,1' do not match"), ({"levels": "a"}, "corrupt")]
    cases += [({"levels": None}, "corrupt"), ({"version": "2"}, "format version '2', but this wct reads")]
    for i, (change, text) in enumerate(cases):
        edited = {k: v for k, v in {**meta, **change}.items() if v is not None}
        save_file(tensors, str(tmp_path / f"{i}.safetensors"), metadata=edited)
        with pytest.raises(WeightsError, match=text):
            load_style_stats(tmp_path / f"{i}.safetensors", "md5")
    (tmp_path / "d.safetensors").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        load_style_stats(tmp_path / "d.safetensors", "md5")


def test_unusable_statistics_are_refused_when_saved_and_when_read(tmp_path):
    """Wrong channels, no pixels, NaN or no level: refused at save, and a file holding them (its
    digest valid) is a WeightsError naming it, not a later 'content has 256 channels...'."""
    from wct.controls import load_style_stats, save_style_stats
    from wct.encoder import write_signed
    from wct.errors import WeightsError

    good = feature_stats(torch.randn(64, 4, 4))
    nan = FeatureStats(good.count, good.total * float("nan"), good.outer, good.shift)
    empty = FeatureStats(0, good.total, good.outer, good.shift)
    cases = [({3: good}, "relu3_1 sums are not those of 256 channels"), ({1: nan}, "not finite")]
    cases += [({1: empty}, "count no pixels"), ({}, "holds no level"), ({7: good}, "levels are 1 to 5")]
    for stats, text in cases:
        with pytest.raises(InputError, match=text):
            save_style_stats(stats, tmp_path / "p.safetensors", "md5")
        assert not (tmp_path / "p.safetensors").exists()
    tensors = {
        "relu3_1.count": torch.tensor([16]),
        **{f"relu3_1.{k}": getattr(good, k).double() for k in ("total", "outer", "shift")},
    }
    meta = {"format": "wct-style-stats", "version": "1", "encoder": "md5", "levels": "3"}
    bad = write_signed(tensors, meta, tmp_path / "bad.safetensors")
    with pytest.raises(WeightsError, match=r"style preset .*bad.safetensors is unusable: its relu3_1 sums"):
        load_style_stats(bad, "md5")


def test_a_preset_whose_count_is_not_one_finite_number_is_a_weights_error(tmp_path):
    """An empty or infinite count (a digest-valid file from another writer) raised a bare
    IndexError or OverflowError, and one of several numbers was read as its first."""
    from wct.controls import load_style_stats
    from wct.encoder import write_signed
    from wct.errors import WeightsError

    good = feature_stats(torch.randn(64, 4, 4))
    meta = {"format": "wct-style-stats", "version": "1", "encoder": "md5", "levels": "1"}
    for count in (torch.tensor([16, 16]), torch.tensor([]), torch.tensor([float("inf")])):
        tensors = {
            "relu1_1.count": count,
            **{f"relu1_1.{k}": getattr(good, k) for k in ("total", "outer", "shift")},
        }
        path = write_signed(tensors, meta, tmp_path / "p.safetensors")
        with pytest.raises(WeightsError, match="p.safetensors is corrupt"):
            load_style_stats(path, "md5")


def test_a_weight_without_a_path_is_not_taken_for_an_existing_file():
    """'' is '.', which exists: ':0.5' was refused for its weight '0.5'."""
    assert parse_style_spec(":0.5") == (Path(":0.5"), None)  # then "does not exist"


def test_save_style_names_the_python_argument_and_the_cli_its_option(files, wct_cli, tmp_path):
    """save_style told Python users to "pass --overwrite", a CLI option."""
    from wct.errors import OutputError
    from wct.pipeline import Stylizer

    s = Stylizer("cpu")
    preset = s.save_style(s.style(files["red"], levels=(1,)), tmp_path / "p.safetensors")
    with pytest.raises(OutputError, match="exists: pass overwrite=True to replace it") as e:
        s.save_style(s.style(files["red"], levels=(1,)), preset)
    assert "--overwrite" not in str(e.value)
    assert_clean_error(wct_cli("style-stats", str(files["red"]), "-o", str(preset)), "pass --overwrite")


def test_style_stats_of_a_preset_keeps_its_record_and_refuses_style_size(files, wct_cli, tmp_path):
    """A preset's copy recorded the --style-size given (unused) and the preset as its source."""
    preset, copy = tmp_path / "red.safetensors", tmp_path / "copy.safetensors"
    assert wct_cli("style-stats", str(files["red"]), "-o", str(preset), "--style-size", "48").returncode == 0
    r = wct_cli("style-stats", str(preset), "-o", str(copy), "--style-size", "32")
    assert_clean_error(r, "--style-size does not apply to")
    assert not copy.exists()
    assert wct_cli("style-stats", str(preset), "-o", str(copy)).returncode == 0
    with safe_open(str(copy), "pt") as f:
        meta = f.metadata()
    assert (meta["source"], meta["style_size"]) == ("red.png", "48")


def test_a_single_style_weight_warns_that_it_does_nothing(files):
    from wct.controls import parse_styles

    red, blue = str(files["red"]), str(files["blue"])
    with pytest.warns(UserWarning, match="one style's does nothing"):
        assert parse_styles(None, [f"{red}:0.5"]) == ([files["red"]], None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_styles(None, [red])
        parse_styles(None, [f"{red}:0.5", blue])


def test_complex_and_float8_mask_tensors_are_checked_like_the_others():
    # A complex mask lost its imaginary part with only a torch warning; a float8 one raised
    # NotImplementedError ("round").
    from wct.controls import check_mask

    labels = torch.tensor([[0, 1, 1], [0, 0, 1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match="complex64"):
            check_mask(labels.to(torch.complex64) + 1j)
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        assert torch.equal(check_mask(labels.to(dtype)), labels)
        with pytest.raises(InputError, match=f"whole-number.*{dtype}"):
            check_mask((labels * 0.5).to(dtype))


def test_a_mask_as_bytes_or_a_file_object_is_read_as_its_path_is(tmp_path):
    """Masks take what images take (a web backend's upload): the same labels; a JPEG's bytes
    with too many values still get the PNG hint from their format."""
    import io

    from wct.controls import as_labels

    path = tmp_path / "mask.png"
    halves(16, 24, (0, 255)).save(path)
    expected = as_labels(path, 2)
    data = path.read_bytes()
    with open(path, "rb") as f:
        for mask in (data, bytearray(data), memoryview(data), io.BytesIO(data), f):
            assert torch.equal(as_labels(mask, 2), expected)
    jpeg = io.BytesIO()
    halves(16, 24, (0, 128, 255)).save(jpeg, "JPEG", quality=100)
    with pytest.raises(InputError, match="3 regions .*; save masks as PNG"):
        as_labels(jpeg.getvalue(), 2)


def test_preserve_color_matches_the_visible_part_of_a_transparent_content():
    """A cut-out's hidden pixels, composited on white, counted in the luma it is matched to: its
    visible part came out washed out (brighter) and over-contrasted."""
    import numpy as np

    import wct

    rgb = tensor_to_pil(gradient_image(64, 64)[0] * 0.4)  # a dark photo
    alpha = Image.new("L", (64, 64), 0)
    alpha.paste(255, (0, 0, 32, 64))  # its left half shown, the right half hidden
    content = rgb.copy()
    content.putalpha(alpha)
    style = tensor_to_pil(stripes(64, 64, RED)[0])
    out = wct.stylize(content, style, alpha=1.0, levels=(3, 2, 1), size=None, preserve_color=True)
    assert out.mode == "RGBA"
    luma = lambda im: np.asarray(im.convert("RGB").convert("L"), dtype=float)[:, :32]  # noqa: E731
    assert abs(luma(out).mean() - luma(rgb).mean()) < 4  # was 94 levels brighter
    assert luma(out).std() < 1.5 * luma(rgb).std() + 4


def test_preserve_colors_weight_is_checked_like_its_images():
    import numpy as np

    content, stylised = gradient_image(8, 8)[0], stripes(8, 8, RED)[0]
    for weight in (
        np.ones((8, 8)),
        torch.ones(4, 4),
        torch.full((8, 8), float("inf")),
        torch.ones(8, 8) * -1,
    ):
        with pytest.raises(InputError, match="weight must be an"):  # were AttributeErrors, or NaN pixels
            preserve_color(content, stylised, weight)
    half = torch.zeros(8, 8)
    half[:, :4] = 1
    assert torch.isfinite(preserve_color(content, stylised, half)).all()
