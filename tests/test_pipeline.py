import platform

import pytest
import torch
from PIL import Image

import wct
from wct import transform
from wct.errors import ImageError, InputError
from wct.images import pil_to_tensor, tensor_to_pil
from wct.pipeline import pad_to_multiple

from .conftest import gradient_image


def stripes(h: int, w: int) -> torch.Tensor:
    """A high-contrast warm style: orange and dark red diagonal stripes."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    on = (((xx + yy) // 6) % 2).float()
    a, b = torch.tensor([1.0, 0.55, 0.1]), torch.tensor([0.45, 0.05, 0.05])
    return (on[None] * a[:, None, None] + (1 - on[None]) * b[:, None, None])[None]


def test_output_has_content_size_and_takes_style_colours(stylizer):
    content = gradient_image(90, 130)
    style = stripes(96, 96)
    out = wct.stylize(content[0], style[0], alpha=1.0, size=None)
    assert out.size == (130, 90)
    y = pil_to_tensor(out)
    d_before = (content.mean((2, 3)) - style.mean((2, 3))).abs().sum()
    d_after = (y.mean((2, 3)) - style.mean((2, 3))).abs().sum()
    assert d_after < 0.5 * d_before


def test_size_scales_the_longer_side_and_accepts_paths_and_pil(tmp_path):
    c = tmp_path / "c.png"
    tensor_to_pil(gradient_image(60, 100)).save(c)
    style = tensor_to_pil(stripes(64, 64))
    out = wct.stylize(c, style, size=48, levels=(3, 2, 1))
    assert out.size == (48, 29)
    for size, message in ((float("inf"), "positive number"), (10**9, "over the limit")):
        with pytest.raises(InputError, match=message):  # was an OverflowError / a 9e18-byte allocation
            wct.stylize(c, style, size=size, levels=(1,))
    fractional = [  # were stylised at 2x2, 65x65 (rounded), or with the style at 41 px
        lambda: wct.stylize(c, style, size=1.5, levels=(1,)),
        lambda: wct.stylize(c, style, size=64.7, levels=(1,)),
        lambda: wct.stylize(c, style, size=32, style_size=40.5, levels=(1,)),
        lambda: wct.texture(style, (32, 32), passes=1, levels=(1,), style_size=40.5),
        lambda: wct.pipeline.stylizer().style(style, 40.5),
    ]
    for call in fractional:
        with pytest.raises(InputError, match="size must be a whole positive number of pixels, got"):
            call()


def test_style_statistics_come_from_one_encoder_pass_and_are_reused(stylizer, monkeypatch):
    calls = []
    real = stylizer.encoder.extract
    monkeypatch.setattr(
        stylizer.encoder, "extract", lambda x, layers, *a: calls.append(list(layers)) or real(x, layers, *a)
    )
    style = stylizer.style(stripes(64, 64))
    assert len(calls) == 1 and len(calls[0]) == 5
    calls.clear()
    for seed in range(2):
        stylizer.stylize(gradient_image(48, 48, seed), style, 0.6, (5, 4, 3, 2, 1))
    assert len(calls) == 10
    assert all(len(c) == 1 for c in calls)


def test_a_styles_colouring_matrices_are_computed_once_for_many_contents(stylizer, monkeypatch):
    calls = []
    real = transform.coloring_matrix
    monkeypatch.setattr(transform, "coloring_matrix", lambda cov: calls.append(cov.shape[0]) or real(cov))
    style = stylizer.style(stripes(64, 64), levels=(3, 2, 1))
    outs = [stylizer.stylize(gradient_image(48, 48, seed), style, 0.6, (3, 2, 1)) for seed in range(3)]
    assert sorted(calls) == [64, 128, 256]  # one eigendecomposition per level, not per image
    assert not torch.equal(outs[0], outs[1])
    # The cached matrices give what fresh statistics give.
    fresh = stylizer.style(stripes(64, 64), levels=(3, 2, 1))
    torch.testing.assert_close(stylizer.stylize(gradient_image(48, 48, 2), fresh, 0.6, (3, 2, 1)), outs[2])


def test_alpha_zero_is_a_reconstruction(stylizer):
    x = gradient_image(64, 80)
    style = stylizer.style(stripes(64, 64))
    y = stylizer.stylize(x, style, alpha=0.0, levels=(1,))
    torch.testing.assert_close(y, stylizer.reconstruct(x, 1))
    assert 10 * torch.log10(1 / ((y - x) ** 2).mean()) > 30


def test_pad_to_multiple_handles_tiny_images():
    x, (h, w) = pad_to_multiple(torch.rand(1, 3, 5, 33))
    assert x.shape[-2:] == (16, 48) and (h, w) == (5, 33)


def test_texture_refuses_bad_passes_and_seeds(stylizer):
    style = stylizer.style(stripes(32, 32), levels=(1,))
    for passes in (2.5, "2", None, True):
        with pytest.raises(InputError, match="passes"):
            stylizer.texture(style, (16, 16), passes=passes, levels=(1,))
    for seed in ("a", None, 1.5, 2**70):
        with pytest.raises(InputError, match="seed"):
            stylizer.texture(style, (16, 16), seed=seed, passes=1, levels=(1,))
    ok = stylizer.texture(style, (16, 16), seed=-1, passes=1, levels=(1,))
    assert ok.shape == (1, 3, 16, 16) and torch.isfinite(ok).all()


def test_a_tiny_texture_is_made_at_16_px_and_scaled_down_warning_about_the_texture(stylizer):
    import warnings

    style = stylizer.style(stripes(32, 32), levels=(2, 1))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        y = stylizer.texture(style, (5, 20), seed=1, passes=2, levels=(2, 1))
        assert stylizer.texture(style, (16, 24), seed=1, passes=1, levels=(2, 1)).shape == (1, 3, 24, 16)
    assert y.shape == (1, 3, 20, 5) and torch.isfinite(y).all()
    assert [str(w.message) for w in said] == ["the texture is only 5x20 px: made at 16x20 and scaled down"]


def test_bad_api_inputs_raise_typed_errors(tmp_path):
    nan = torch.rand(3, 32, 32)
    nan[0, 0, 0] = float("nan")
    with pytest.raises(InputError):
        wct.stylize(nan, stripes(32, 32)[0])
    with pytest.raises(InputError):
        wct.stylize(stripes(32, 32)[0], stripes(32, 32)[0], alpha=1.5)
    with pytest.raises(InputError):
        wct.stylize(stripes(32, 32)[0], stripes(32, 32)[0], levels=(6,))
    bad = tmp_path / "x.jpg"
    bad.write_text("not an image")
    with pytest.raises(ImageError):
        wct.stylize(bad, stripes(32, 32)[0])
    with pytest.raises(ImageError):
        wct.stylize(tmp_path / "missing.jpg", stripes(32, 32)[0])


def test_stylizer_takes_batches_image_styles_and_refuses_bad_tensors(stylizer, tmp_path):
    a, b, style = gradient_image(48, 64), gradient_image(48, 64, seed=3).flip(-1), stripes(64, 64)
    st = stylizer.style(style, levels=(3, 2))
    one = [stylizer.stylize(x, st, 0.8, (3, 2)) for x in (a, b)]

    batch = stylizer.stylize(torch.cat([a, b]), st, 0.8, (3, 2))  # each image its own statistics

    assert batch.shape == (2, 3, 48, 64)
    assert torch.allclose(batch, torch.cat(one), atol=1e-5)
    assert not torch.allclose(batch[0], batch[1], atol=1e-2)
    path = tmp_path / "style.png"
    tensor_to_pil(style).save(path)
    for as_image in (style, style[0], path):  # a style image instead of a Style: the same result
        assert torch.allclose(stylizer.stylize(a, as_image, 0.8, (3, 2)), one[0], atol=1e-2)
    for bad in (a.mul(255).long(), a * 2, "missing.png"):  # uint8 is 0..255; other integers are refused
        with pytest.raises((InputError, ImageError)):
            stylizer.stylize(bad, st, 0.8, (3, 2))
    with pytest.raises(InputError):
        stylizer.stylize(a, [st, torch.rand(2, 3, 8, 8)], 0.8, (3, 2))
    assert torch.allclose(stylizer.reconstruct(path, 1), stylizer.reconstruct(style, 1), atol=1e-2)
    with pytest.raises(InputError):
        stylizer.encoder("photo.png", 1)


def test_images_of_any_mode_load_as_rgb(tmp_path):
    for mode in ("L", "P", "RGBA", "CMYK", "I;16"):
        im = Image.new(mode, (20, 10))
        p = tmp_path / f"{mode.replace(';', '')}.{'tiff' if mode in ('CMYK', 'I;16') else 'png'}"
        im.save(p)
        x = wct.images.load_image(p)
        assert x.shape == (1, 3, 10, 20)
    for mode, value in (("L", 40), ("I;16", 40 * 257), ("RGB", (40, 40, 40))):  # a transparent colour
        im = Image.new(mode, (20, 10), value)
        im.putpixel((0, 0), 0 if mode != "RGB" else (0, 0, 0))
        p = tmp_path / f"key_{mode.replace(';', '')}.png"
        im.save(p, transparency=value)
        x = wct.images.load_image(p)[0]
        assert x[:, 1:, :].min() == 1.0 and x[:, 0, 0].max() == 0.0  # composited on white, like RGBA
        alpha = wct.images.alpha_channel(p, (20, 10))  # what an output's alpha is made from
        assert alpha.getpixel((0, 0)) == 255 and alpha.getpixel((5, 5)) == 0


def test_bf16_stays_close_to_fp32_and_relu1_1_stays_fp32(stylizer, monkeypatch):
    import warnings

    import wct.encoder
    from wct.evaluate import psnr
    from wct.pipeline import Stylizer

    monkeypatch.setattr(wct.encoder, "cpu_has_fast_bf16", lambda: True)  # no warning: measure only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low = Stylizer("cpu", precision="bf16")
    # A smooth style: with the two-colour stripes, the fp32 cascade itself moves by 25 dB when the
    # content moves by +-0.5/255, so no precision could be "close" there.
    content, style = gradient_image(64, 80), gradient_image(96, 96, seed=5)
    y32 = stylizer.stylize(content, stylizer.style(style[0]), alpha=0.8)
    y16 = low.stylize(content, low.style(style[0]), alpha=0.8)
    assert y16.dtype == torch.float32 and y16.shape == y32.shape
    assert torch.isfinite(y16).all() and y16.min() >= 0 and y16.max() <= 1
    assert 40 < psnr(y16, y32) < 80  # close (measured 48 dB), but really computed in bf16
    assert low.decoder(2).amp == torch.bfloat16 and low.decoder(1).amp is None
    assert psnr(low.reconstruct(content, 1), stylizer.reconstruct(content, 1)) > 50  # 39 with it in bf16


def test_bad_precisions_raise_typed_errors_and_slow_bf16_warns(monkeypatch):
    import wct.encoder
    from wct.pipeline import Stylizer

    with pytest.raises(InputError, match="precision must be one of fp32, bf16, fp16"):
        Stylizer("cpu", precision="fp8")
    with pytest.raises(InputError, match="fp16 needs a CUDA GPU"):
        Stylizer("cpu", precision="fp16")
    for call in (wct.stylize, wct.texture):  # the cached Stylizer's key: was a TypeError (unhashable)
        with pytest.raises(InputError, match=r"precision must be one of .*, not \['bf16'\]"):
            call(stripes(32, 32)[0], stripes(32, 32)[0], precision=["bf16"])
    monkeypatch.setattr(wct.encoder, "cpu_has_fast_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no fast bf16 kernels"):
        Stylizer("cpu", precision="bf16")


def test_fp16_overflow_is_recomputed_in_fp32_never_nan():
    from wct.decoder import load_decoder
    from wct.encoder import load_encoder, low_precision

    encoder, decoder = load_encoder("cpu"), load_decoder(2, "cpu")
    x = gradient_image(64, 64) * 50  # activations 50x beyond any image's: past fp16's 65504
    features = encoder(x, 2, check_range=False)
    wanted = encoder(x, 4, check_range=False), decoder(features * 1e3)
    low_precision(encoder, torch.float16)
    low_precision(decoder, torch.float16)
    with pytest.warns(UserWarning, match="the encoder overflowed torch.float16"):
        f = encoder(x, 4, check_range=False)
    with pytest.warns(UserWarning, match="the relu2_1 decoder overflowed"):
        y = decoder(features * 1e3)
    assert torch.isfinite(f).all() and torch.allclose(f, wanted[0], rtol=1e-4, atol=1)
    assert torch.allclose(y, wanted[1], atol=1e-4)


def test_networks_and_helpers_check_their_inputs(stylizer):
    from wct.checks import texture_size
    from wct.pipeline import check_levels

    a = gradient_image(32, 48)
    assert stylizer.stylize(a[0], a, 0.5, (2,)).shape == (3, 32, 48)  # (3, H, W) in, (3, H, W) out
    assert stylizer.reconstruct(a[0], 2).shape == (3, 32, 48)
    assert stylizer.reconstruct(torch.cat([a, a.flip(-1)]), 2).shape == (2, 3, 32, 48)
    torch.testing.assert_close(stylizer.encoder(a.double(), 2), stylizer.encoder(a, 2))
    dec = stylizer.decoder(2)
    f = stylizer.encoder(a, 2)
    assert dec(f.half()).shape == (1, 3, 32, 48)
    bad_calls = [
        lambda: stylizer.encoder(a.mul(255).byte(), 1),  # integer pixels
        lambda: stylizer.encoder(a[..., :15, :], 5),  # relu5_1 needs 16 px
        lambda: dec(f[0]),  # (C, H, W): nn.Upsample would scale only the width
        lambda: dec(f[:, :64]),  # another level's channels
        lambda: dec(f * float("nan")),
        lambda: check_levels((3.5,)),
        lambda: check_levels("54321"),
        lambda: check_levels(True),
        lambda: check_levels((2, 2)),
        lambda: texture_size(32.5),
        lambda: texture_size((32, 32, 3)),
    ]
    for call in bad_calls:
        with pytest.raises(InputError):
            call()
    assert check_levels(3) == (3,) and texture_size(40) == (40, 40)
    b = a.mul(255).round().byte()  # uint8 is 0..255, as torchvision reads images
    want = stylizer.stylize(b.float() / 255, b.float() / 255, 0.5, (2,))
    torch.testing.assert_close(stylizer.stylize(b, b.float() / 255, 0.5, (2,)), want, rtol=0, atol=0)
    torch.testing.assert_close(stylizer.stylize(b[0], b, 0.5, (2,)), want[0], rtol=0, atol=0)
    dark = torch.randint(0, 2, (3, 32, 48), dtype=torch.uint8)  # 0 or 1 of 255: was read as 0..1
    assert stylizer.reconstruct(dark, 1).mean() < 0.05


def test_evaluation_refuses_what_it_cannot_score(tmp_path, encoder, stylizer):
    from wct.evaluate import load_val_images, psnr, reconstruction_scores, ssim

    a = gradient_image(32, 48)
    with pytest.raises(InputError):
        load_val_images(tmp_path / "missing")
    with pytest.raises(InputError):
        load_val_images(tmp_path, max_side=8)
    with pytest.raises(InputError):
        reconstruction_scores(encoder, stylizer.decoder(1), [])
    with pytest.raises(InputError):
        psnr(a, a[..., :16])
    with pytest.raises(InputError):
        ssim(a[..., :8, :8], a[..., :8, :8])
    assert psnr(a, a) == 100.0 and ssim(a, a) == pytest.approx(1.0)
    (tmp_path / "a_broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    for i in range(2):
        tensor_to_pil(gradient_image(32, 32, seed=i)).save(tmp_path / f"b{i}.png")
    with pytest.warns(UserWarning, match="a_broken.png"):
        assert len(load_val_images(tmp_path, limit=2)) == 2  # the first 2 readable images
    tensor_to_pil(gradient_image(8, 200)).save(tmp_path / "c_panorama.png")  # 384 x 15: no 16-px row
    with pytest.warns(UserWarning, match=r"skipped .*c_panorama.png: 200x8 px is 384x15 .* under the 16 px"):
        images = load_val_images(tmp_path)
    assert [tuple(x.shape[-2:]) for x in images] == [(384, 384), (384, 384)]  # 32 px scaled up to 384
    (tmp_path / "relu1_1.last.pt").write_bytes(b"PK\x03\x04 a torch checkpoint")
    from wct.errors import WeightsError

    with pytest.raises(WeightsError, match="training checkpoint"):
        wct.load_decoder(None, "cpu", path=tmp_path / "relu1_1.last.pt")


def test_outputs_get_the_permissions_of_a_plain_open(tmp_path):
    import os
    import stat

    from wct.decoder import Decoder, save_decoder
    from wct.images import atomic_save

    old = os.umask(0o022)
    try:
        atomic_save(tensor_to_pil(gradient_image(16, 16)), tmp_path / "a.png")
        save_decoder(Decoder(1), tmp_path / "d.safetensors", {"level": "1"})
    finally:
        os.umask(old)
    for name in ("a.png", "d.safetensors"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644  # mkstemp alone gives 0600


def test_api_inputs_found_by_the_audit_are_handled_or_refused(stylizer, encoder):
    import numpy as np

    from wct import controls, gatys
    from wct.evaluate import psnr, ssim
    from wct.video import TemporalFilter

    x, x2 = gradient_image(32, 48, seed=1), gradient_image(32, 48, seed=2)
    x2[..., :16, :] = x[..., :16, :]  # the top half does not move
    y, y2 = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)
    four, three = TemporalFilter(), TemporalFilter()
    four(x, y), three(x[0], y[0])
    torch.testing.assert_close(three(x2[0], y2[0]), four(x2, y2)[0])  # (3, H, W) frames: the same filter

    with pytest.raises(InputError, match="floats in"):
        ssim(x.mul(255).byte(), x2.mul(255).byte())  # a uint8 window was all zeros: SSIM 1.0
    with pytest.raises(InputError, match="floats in"):
        psnr(x.mul(255).byte(), x2.mul(255).byte())
    assert ssim(x.double(), x2) == pytest.approx(ssim(x, x2), abs=1e-6)

    style = stylizer.style(gradient_image(40, 40, seed=3))
    z = stylizer.stylize(x[0], style, 0.7, (1,))
    torch.testing.assert_close(controls.preserve_color(x[0], z), controls.preserve_color(x, z[None])[0])
    for bad in (x.mul(255).byte(), x * float("nan"), x * 255):
        with pytest.raises(InputError):
            controls.preserve_color(bad, z[None])
    with pytest.raises(InputError, match="RGB"):
        controls.preserve_color(x[:, :1], x[:, :1])

    labels = np.zeros((32, 48), np.int64)
    labels[:, 24:] = 1
    two = [stylizer.style(gradient_image(40, 40, seed=s)) for s in (4, 5)]
    want = stylizer.stylize(x, two, 0.8, (1,), mask=torch.from_numpy(labels))
    torch.testing.assert_close(stylizer.stylize(x, two, 0.8, (1,), mask=labels), want)
    assert wct.stylize(x[0], [x2[0], x[0]], mask=labels, levels=(1,), size=None).size == (48, 32)

    with torch.inference_mode():  # autograd is needed, and inference tensors cannot be saved for it
        a = gatys.gatys(encoder, x, x2, steps=2)
        inference_encoder = wct.load_encoder("cpu")
    torch.testing.assert_close(a.image, gatys.gatys(encoder, x, x2, steps=2).image)
    with pytest.raises(InputError, match="loaded under torch.inference_mode"):
        gatys.gatys(inference_encoder, x, x2, steps=1)

    la = tensor_to_pil(x).convert("LA").convert("La")
    assert wct.stylize(la, x2[0], levels=(1,), size=None).size == (48, 32)

    for kwargs in ({"alpha": None}, {"size": "48"}, {"alpha": True}):
        with pytest.raises(InputError):
            wct.stylize(x[0], x2[0], levels=(1,), **kwargs)
    assert stylizer.stylize(x, style, 0.5, np.array(1)).shape == x.shape
    small = wct.stylize(x[0], x2[0], alpha=np.array(0.5), size=np.array(24), levels=(1,))  # 0-d arrays
    assert small.size == (24, 16)
    big_endian = labels.astype(">i4")
    torch.testing.assert_close(stylizer.stylize(x, two, 0.8, (1,), mask=big_endian), want)
    with pytest.raises(InputError, match="dtype complex"):
        stylizer.stylize(x, two, 0.8, (1,), mask=labels.astype(complex))
    with pytest.raises(InputError, match="style weights"):
        stylizer.stylize(x, two, 0.5, (1,), weights=[None, 1])
    f = encoder(x, 1)[0]
    with pytest.raises(InputError, match="content statistics are FeatureStats"):
        wct.wct(f, f, content_stats=f)


def test_style_presets_levels_and_style_sizes_from_scripts(stylizer, tmp_path):
    style = stylizer.style(stripes(32, 32), levels=(2, 1))
    for bad in ("painting.jpg", stripes(32, 32)):  # was an AttributeError
        with pytest.raises(InputError, match="takes a Style"):
            stylizer.save_style(bad, tmp_path / "p.safetensors")
    for meta in ("source", {"source": 1}, {1: "x"}):  # were TypeErrors from safetensors
        with pytest.raises(InputError, match="metadata"):
            stylizer.save_style(style, tmp_path / "p.safetensors", metadata=meta)
    assert list(tmp_path.iterdir()) == []
    stylizer.save_style(style, tmp_path / "p.safetensors", metadata={"source": "stripes"})

    x = gradient_image(32, 32)
    want = stylizer.stylize(x, style, 0.8, (2, 1))
    torch.testing.assert_close(stylizer.stylize(x, style, 0.8, torch.tensor([2, 1])), want)  # "unknown level"
    with pytest.warns(UserWarning, match="style size does not apply"):  # was silently ignored
        wct.stylize(x[0], style, 0.8, (2, 1), size=None, style_size=64)


def test_a_preset_name_too_long_is_an_output_error(stylizer, tmp_path):
    from wct.errors import OutputError

    style = stylizer.style(stripes(32, 32), levels=(1,))
    long = "x" * 300 + ".safetensors"
    for path in (tmp_path / long, tmp_path / "new" / long):  # was a bare OSError for the first
        with pytest.raises(OutputError, match="cannot write"):
            stylizer.save_style(style, path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("var", ["WCT_DECODERS", "WCT_VGG19_WEIGHTS"])
def test_the_cached_stylizer_follows_the_weights_variables(var, tmp_path, monkeypatch):
    from wct.errors import WeightsError

    style = stripes(32, 32)[0]
    assert wct.stylize(style, style, levels=(1,), size=None).size == (32, 32)  # caches a Stylizer
    monkeypatch.setenv(var, str(tmp_path / "elsewhere"))  # no weights there
    with pytest.raises(WeightsError, match="elsewhere"):  # the cached one kept the old weights
        wct.stylize(style, style, levels=(1,), size=None)


def test_the_cached_stylizer_is_loaded_again_only_where_a_relative_variable_names_other_files(
    tmp_path, monkeypatch
):
    import wct.pipeline as P

    monkeypatch.setattr(P, "Stylizer", lambda device, precision: object())
    monkeypatch.setattr(P, "_STYLIZERS", {})
    for var in ("WCT_DECODERS", "WCT_VGG19_WEIGHTS"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    first = P.stylizer("cpu")
    monkeypatch.chdir(tmp_path / "b")  # a batch job's folders: each loaded the weights again, kept
    assert P.stylizer("cpu") is first
    monkeypatch.setenv("WCT_DECODERS", "decoders")
    in_b = P.stylizer("cpu")
    monkeypatch.chdir(tmp_path / "a")
    in_a = P.stylizer("cpu")
    assert in_a is not in_b  # a/decoders, not b/decoders
    monkeypatch.setenv("WCT_DECODERS", str(tmp_path / "a" / "decoders"))
    assert P.stylizer("cpu") is in_a and len(P._STYLIZERS) == 3  # the same files, named absolutely


def test_fp32_cpu_networks_run_channels_last_and_hand_back_contiguous_results(stylizer, encoder):
    from wct.decoder import load_decoder

    x = gradient_image(48, 64)
    assert stylizer.encoder.layers[0].weight.is_contiguous(memory_format=torch.channels_last)
    f = stylizer.encoder(x, 3)
    assert f.is_contiguous() and not encoder.layers[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(f, encoder(x, 3), rtol=1e-5, atol=1e-2)  # features reach thousands
    y = stylizer.decoder(3)(f)
    assert y.is_contiguous()
    torch.testing.assert_close(y, load_decoder(3, "cpu")(f), rtol=0, atol=1e-5)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc")
def test_a_cpu_stylizer_reuses_freed_feature_maps_instead_of_faulting_them_in_afresh(stylizer):
    import resource

    x, style = gradient_image(512, 512), stylizer.style(gradient_image(64, 64, seed=5), levels=(1,))

    def page_faults() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        stylizer.stylize(x, style, 0.5, (1,))  # relu1_1 maps of 64 MiB, which glibc unmaps when freed
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    page_faults()
    # untuned: 229,644 (0.9 GB) each time, and 0.40 s against 0.14; tuned: 32,640 after the video
    # tests had run in the same process (a fragmented heap), far fewer alone
    assert page_faults() < 100_000


def test_styles_compare_by_identity_so_they_key_dicts_and_lists():
    f = stripes(32, 32).reshape(3, -1)
    a = wct.Style({5: transform.feature_stats(f)})
    b = wct.Style({5: transform.feature_stats(f)})
    assert a == a and a != b and [b, a].index(a) == 1
    assert {a: "a", b: "b"}[a] == "a"


def test_threads_asking_for_the_cached_stylizer_at_once_share_one_load(monkeypatch):
    import threading
    import time

    import wct.pipeline as P

    made = []

    class Slow:
        def __init__(self, device, precision):
            made.append(device)
            time.sleep(0.2)  # loading weights takes a while

    monkeypatch.setattr(P, "Stylizer", Slow)
    monkeypatch.setattr(P, "_STYLIZERS", {})
    got = []
    threads = [threading.Thread(target=lambda: got.append(P.stylizer("cpu"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and got[0] is got[1] is got[2]


def test_texture_encodes_a_style_image_once_not_at_every_pass(monkeypatch):
    s = wct.Stylizer("cpu")
    style = gradient_image(48, 40)
    calls = []
    real = wct.Stylizer.style
    monkeypatch.setattr(wct.Stylizer, "style", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    a = s.texture(style, (32, 32), passes=2, levels=(2, 1))
    assert len(calls) == 1
    assert torch.equal(a, s.texture(s.style(style, levels=(2, 1)), (32, 32), passes=2, levels=(2, 1)))


def test_style_weights_may_be_a_generator_read_once(stylizer):
    x = gradient_image(32, 48)
    two = [stylizer.style(gradient_image(40, 40, seed=s), levels=(2, 1)) for s in (4, 5)]
    want = stylizer.stylize(x, two, 0.8, (2, 1), weights=[1, 3])
    # each image's checks and transforms read the weights again: a generator was empty by then
    assert torch.equal(stylizer.stylize(x, two, 0.8, (2, 1), weights=(w for w in [1, 3])), want)
    assert wct.stylize(x[0], two, 0.8, (2, 1), size=None, weights=iter([1, 3])) == tensor_to_pil(want)
    assert wct.stylize(x[0], two, 0.8, (2, 1), size=None, tile=16, weights=iter([1, 3])).size == (48, 32)
    want = stylizer.texture(two, (32, 32), passes=2, levels=(2, 1), weights=[1, 3])  # each pass reads them
    assert torch.equal(stylizer.texture(two, (32, 32), passes=2, levels=(2, 1), weights=iter([1, 3])), want)


def test_a_style_prints_in_one_short_line(stylizer):
    style = stylizer.style(gradient_image(64, 64), levels=(2, 1))
    assert repr(style) == "Style(relu1_1: 4096 px, relu2_1: 1024 px)"
    assert repr(style[2]) == "FeatureStats(128 channels, 1024 px, torch.float64)"


def test_a_batch_given_as_a_style_is_refused_as_such(stylizer):
    with pytest.raises(InputError, match="a style is one image, got a batch of 2"):
        stylizer.style(torch.rand(2, 3, 64, 64))
    assert stylizer.style(torch.rand(1, 3, 64, 64), levels=(1,))[1].count == 64 * 64


def test_numpy_images_as_imageio_reads_them_work_wherever_pil_images_do(stylizer):
    import numpy as np

    a = (stripes(48, 64)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (H, W, 3)
    im = Image.fromarray(a)
    out = wct.stylize(a, a, levels=(2, 1), size=None)  # was an InputError, then a TypeError on alpha
    assert out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(wct.stylize(im, im, levels=(2, 1), size=None)))
    style = stylizer.style(a / 255, levels=(2, 1))
    y = stylizer.stylize(a, style, levels=(2, 1))
    assert y.shape == (1, 3, 48, 64)
    torch.testing.assert_close(y, stylizer.stylize(im, style, levels=(2, 1)))


def test_each_level_encodes_the_previous_levels_output_in_the_order_given(stylizer, monkeypatch):
    """The paper's cascade: the content is encoded once, at the first level; every later level
    encodes the previous decoder's output (not the content again), in the order of `levels`."""
    x = gradient_image(64, 64)
    style = stylizer.style(stripes(64, 64), levels=(5, 3, 1))
    encoded, decoded = [], []
    real_encoder = stylizer.encoder.forward
    monkeypatch.setattr(
        stylizer.encoder,
        "forward",
        lambda img, level, *a: encoded.append((level, img.clone())) or real_encoder(img, level, *a),
    )
    for level in (5, 3, 1):
        d = stylizer.decoder(level)
        monkeypatch.setattr(
            d, "forward", lambda f, d=d, real=d.forward: decoded.append(real(f)) or decoded[-1]
        )
    out = stylizer.stylize(x, style, 0.7, (5, 3, 1))
    assert [level for level, _ in encoded] == [5, 3, 1]
    assert torch.equal(encoded[0][1], x)
    assert all(torch.equal(img, y) for (_, img), y in zip(encoded[1:], decoded[:-1], strict=True))
    assert torch.equal(out, decoded[-1])


def test_the_contents_statistics_leave_out_the_padding(stylizer, monkeypatch):
    """The content is padded to multiples of 16 for the decoders; at relu{L}_1 (stride s) only the
    ceil(h/s) x ceil(w/s) cells covering the image count in its statistics, not the padded rows'
    duplicated border (a 68-row image's 12 padded rows moved one relu3_1 level by 32 dB), while
    every cell is still transformed. The first level's memo keeps those statistics."""
    import wct.pipeline as P

    x = gradient_image(68, 100)  # padded to 80 x 112
    style = stylizer.style(stripes(64, 64), levels=(5, 3, 1))
    mask = (torch.arange(100)[None, :] > 40).long().expand(68, 100)
    seen, real = [], P.region_stats
    monkeypatch.setattr(P, "region_stats", lambda f, lab, n: seen.append((f, lab)) or real(f, lab, n))
    y = stylizer.stylize(x, [style, style], 1.0, (5, 3, 1), mask=mask)
    assert y.shape == x.shape
    cells = [(5, 7), (17, 25), (68, 100)]  # ceil(68 / s) x ceil(100 / s) at strides 16, 4 and 1
    assert [f.shape[1:] for f, _ in seen] == [lab.shape for _, lab in seen] == cells

    styles, xp, hw, _ = P.prepare_inputs(x, [style], (3,), None, None)
    first: dict = {}
    stylizer.cascade(xp, styles, 0.5, (3,), first=first, hw=hw)
    f, _, own = first[3]
    assert f.shape[-2:] == (20, 28)
    want = transform.feature_stats(f[:, :17, :25])
    assert own[0].count == 17 * 25
    torch.testing.assert_close(own[0].mean, want.mean)
    torch.testing.assert_close(own[0].cov, want.cov)
    again = stylizer.cascade(xp, styles, 0.5, (3,), first=first, hw=hw)  # from the memo
    torch.testing.assert_close(again, stylizer.cascade(xp, styles, 0.5, (3,), hw=hw))


def test_texture_takes_weights_for_several_styles(stylizer):
    two = [stylizer.style(gradient_image(40, 40, seed=s), levels=(2, 1)) for s in (4, 5)]
    want = stylizer.texture(two, (32, 32), passes=1, levels=(2, 1), weights=[1, 3])
    got = wct.texture(two, (32, 32), passes=1, levels=(2, 1), weights=iter([1, 3]))
    assert got == tensor_to_pil(want)
    assert got != wct.texture(two, (32, 32), passes=1, levels=(2, 1))  # equal weights
    for bad, message in (([1], "2 styles but 1 weights"), ([1, -1], "non-negative"), ("ab", "numbers")):
        with pytest.raises(InputError, match=message):
            wct.texture(two, (32, 32), passes=1, levels=(2, 1), weights=bad)


def test_the_cached_stylizer_is_one_per_gpu_with_or_without_its_index(monkeypatch):
    """The device "cuda" is the current CUDA device: with "cuda:0" it loaded a second copy."""
    import wct.pipeline as P

    monkeypatch.setattr(P, "resolve_device", lambda device: torch.device(device))  # no GPU here
    monkeypatch.setattr(P, "Stylizer", lambda device, precision: object())
    monkeypatch.setattr(P, "_STYLIZERS", {})
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert P.stylizer("cuda") is P.stylizer("cuda:0") is P.stylizer(torch.device("cuda", 0))
    assert P.stylizer("cuda:1") is not P.stylizer("cuda")
    assert P.device_key(torch.device("cpu")) == "cpu"
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert P.stylizer("cuda") is P.stylizer("cuda:1")


def test_a_weights_file_or_preset_path_that_is_not_a_path_is_an_input_error(stylizer):
    with pytest.raises(InputError, match="vgg_weights must be a path"):  # was a bare TypeError
        wct.Stylizer("cpu", vgg_weights=5)
    style = stylizer.style(stripes(32, 32), levels=(1,))
    with pytest.raises(InputError, match="save_style's path must be a path"):
        stylizer.save_style(style, 5)


def test_a_mask_image_is_read_once_for_a_whole_batch(stylizer, tmp_path, monkeypatch):
    import warnings

    from wct import controls

    path = tmp_path / "mask.png"
    Image.new("L", (32, 32)).save(path)  # one region for two styles: a warning each time it is read
    two = [stylizer.style(stripes(32, 32), levels=(1,)), stylizer.style(gradient_image(32, 32), levels=(1,))]
    reads = []
    real = controls.read_mask
    monkeypatch.setattr(controls, "read_mask", lambda *a: reads.append(1) or real(*a))
    batch = torch.cat([gradient_image(32, 32, seed=s) for s in range(3)])
    from wct.tiling import stylize_tiled

    for run in (stylizer.stylize, lambda *a, **k: stylize_tiled(stylizer, *a, tile=16, **k)):  # tiled too
        reads.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = run(batch, two, 0.8, (1,), mask=path)
        assert len(reads) == 1 and [str(w.message) for w in caught] == [
            "the mask has 1 region(s) but 2 styles were given: style 2 is not used"
        ]
        torch.testing.assert_close(
            y.to(stylizer.device), stylizer.stylize(batch, two[0], 0.8, (1,)), atol=1e-3, rtol=0
        )


def test_warnings_point_at_the_code_that_called_wct(stylizer, tmp_path):
    tiny, style = gradient_image(8, 12), stylizer.style(stripes(32, 32), levels=(1,))
    preset = stylizer.save_style(style, tmp_path / "p.safetensors")
    flat, mask = gradient_image(32, 16), tmp_path / "m.png"
    Image.new("L", (16, 16)).save(mask)  # one region for two styles, and a square for a 16x32 content
    calls = {  # each pointed inside wct: pipeline.py, torch's no_grad wrapper
        "the content is only 12x8": lambda: stylizer.stylize(tiny, style, 0.8, (1,)),
        "the style is only 12x8": lambda: stylizer.style(tiny, levels=(1,)),
        "the content is only 12x8 ": lambda: wct.stylize(tiny[0], style, 0.8, (1,), size=None),
        "is a preset": lambda: stylizer.style(preset, 64, levels=(1,)),
        "is a preset ": lambda: wct.stylize(tiny[0], preset, 0.8, (1,), size=32, style_size=64),
        "the mask has 1 region": lambda: stylizer.stylize(flat, [style, style], 0.8, (1,), mask=mask),
        "the mask is 16x16": lambda: wct.stylize(flat[0], [style, style], 0.8, (1,), size=None, mask=mask),
    }
    for match, call in calls.items():
        with pytest.warns(UserWarning, match=match.strip()) as caught:
            call()
        assert [w.filename for w in caught if match.strip() in str(w.message)] == [__file__]
