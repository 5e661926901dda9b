"""Tiled stylisation (issue 5, part 5): exact streaming statistics, tiled output = untiled output."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import gradient_image
from wct.errors import InputError
from wct.tiling import (
    encoder_margin,
    needs_tiling,
    ramp,
    seam_metric,
    splits,
    stylize_any,
    stylize_tiled,
    tiles,
)
from wct.transform import feature_stats


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * torch.log10(1 / ((a - b) ** 2).mean().clamp_min(1e-20)).item()


pytestmark = pytest.mark.usefixtures("one_thread")


def texture_image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A statistically uniform test image: fine random texture over a smooth gradient."""
    g = torch.Generator().manual_seed(seed)
    fine = torch.nn.functional.avg_pool2d(torch.rand(1, 3, h + 2, w + 2, generator=g), 3, 1)
    return 0.5 * gradient_image(h, w, seed) + 0.5 * fine


@pytest.fixture(scope="module")
def style(stylizer):
    return stylizer.style(gradient_image(96, 96, seed=5))


def test_splits_cover_the_length_on_the_16_px_grid():
    for length, tile in ((320, 64), (2160, 1280), (48, 1000), (7680, 1280)):
        parts = splits(length, tile)
        assert parts[0][0] == 0 and parts[-1][1] == length
        assert all(a % 16 == 0 and b - a <= max(tile, 16) for a, b in parts)
        assert all(b == c for (_, b), (c, _) in zip(parts, parts[1:], strict=False))
    assert len(tiles(2160, 3840, 1280)) == 6


def test_cross_fade_weights_of_neighbours_sum_to_one():
    h, blend = 96, 8
    total = torch.zeros(h)
    for lo, hi in splits(h, 32):
        start, end = max(0, lo - blend), min(h, hi + blend)
        total[start:end] += ramp(start, end, lo, hi, blend)
    assert torch.allclose(total, torch.ones(h))


def test_streamed_statistics_equal_the_whole_map():
    f = torch.randn(8, 40, 56, dtype=torch.float64) * 3 + 5
    whole = feature_stats(f)
    shift = f[:, :16, :16].mean((1, 2))
    parts = [feature_stats(f[:, a:b, c:d], shift) for a, b in splits(40, 16) for c, d in splits(56, 16)]
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    assert total.count == whole.count
    assert torch.allclose(total.mean, whole.mean) and torch.allclose(total.cov, whole.cov)


def test_encoder_margins_cover_the_receptive_field(encoder):
    """Features of a crop grown by the margin equal the whole image's features in the crop's core."""
    assert [encoder_margin(v) for v in (1, 2, 3, 4, 5)] == [16, 16, 16, 48, 96]
    x = gradient_image(224, 224, seed=2)
    y0 = 96  # a 32 x 32 px core at (96, 96)
    for level in (2, 4):
        m, s = encoder_margin(level), 2 ** (level - 1)
        a = encoder(x, level)[..., y0 // s : (y0 + 32) // s, y0 // s : (y0 + 32) // s]
        crop = encoder(x[..., y0 - m : y0 + 32 + m, y0 - m : y0 + 32 + m], level)
        b = crop[..., m // s : (m + 32) // s, m // s : (m + 32) // s]
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * a.abs().max().item())


def test_tiled_matches_untiled_at_all_levels(stylizer, style):
    x = gradient_image(112, 144, seed=1)
    y0 = stylizer.stylize(x, style, 0.8)
    y1 = stylize_tiled(stylizer, x, style, 0.8, tile=80)  # 2 x 2 tiles
    assert y1.shape == y0.shape
    assert psnr(y0, y1) >= 50  # the issue asks 40 dB; the statistics are exact, so only rounding differs


def test_tiny_tiles_mask_and_mix_match_untiled(stylizer, style):
    other = stylizer.style(gradient_image(80, 80, seed=9).flip(1))
    x = gradient_image(128, 192, seed=4)
    levels = (3, 2, 1)
    y0 = stylizer.stylize(x, style, 1.0, levels)
    y1 = stylize_tiled(stylizer, x, style, 1.0, levels, tile=64)
    assert psnr(y0, y1) >= 50
    mask = (torch.arange(192)[None, :] > 90).long().expand(128, 192)
    y0 = stylizer.stylize(x, [style, other], 1.0, levels, mask=mask)
    y1 = stylize_tiled(stylizer, x, [style, other], 1.0, levels, tile=96, mask=mask)
    assert psnr(y0, y1) >= 50
    y0 = stylizer.stylize(x, [style, other], 0.7, levels, weights=[0.3, 0.7])
    y1 = stylize_tiled(stylizer, x, [style, other], 0.7, levels, tile=96, weights=[0.3, 0.7])
    assert psnr(y0, y1) >= 50
    y2 = stylize_tiled(stylizer, x, [style, other], 0.7, levels, tile=96, weights=iter([0.3, 0.7]))
    assert torch.equal(y2, y1)  # a generator is read once, not once per check and tile


def test_tiles_narrower_than_two_blend_bands_still_match_untiled(stylizer, style):
    """16- to 31-px tiles: the cross-fade band shrinks to half a tile, so the weights still sum to one."""
    x = gradient_image(64, 80, seed=2)
    y0 = stylizer.stylize(x, style, 1.0, (2, 1))
    for tile in (16, 24):
        assert psnr(y0, stylize_tiled(stylizer, x, style, 1.0, (2, 1), tile=tile)) >= 50


def test_no_seams_and_bounded_tiles(stylizer, style, monkeypatch):
    """Across tile borders pixels differ no more than along the same grid inside tiles, and no
    tile the encoder sees is larger than a tile plus its margins, whatever the image size."""
    x = texture_image(192, 192, seed=0)
    levels, tile = (2, 1), 64
    seen = []
    encode = stylizer.encoder.forward

    def spy(image, level):
        seen.append(max(image.shape[-2:]))
        return encode(image, level)

    monkeypatch.setattr(stylizer.encoder, "forward", spy)
    y = stylize_tiled(stylizer, x, style, 1.0, levels, tile=tile, cache_bytes=0)
    bound = tile + 2 * (max(encoder_margin(v) for v in levels) + 16 + 16)  # + decoder margin + blend
    assert seen and max(seen) <= bound < 192
    monkeypatch.undo()
    across, within = seam_metric(y, tile)
    ref_across, _ = seam_metric(stylizer.stylize(x, style, 1.0, levels), tile)
    assert across <= within
    assert abs(across - ref_across) < 1e-3


def test_a_batch_is_tiled_image_by_image(stylizer, style, tmp_path):
    a, b = gradient_image(64, 96, seed=2), gradient_image(64, 96, seed=6).flip(-1)
    levels = (2, 1)
    alone = [stylize_tiled(stylizer, x, style, 0.9, levels, tile=48) for x in (a, b)]
    batch = stylize_tiled(stylizer, torch.cat([a, b]), style, 0.9, levels, tile=48)
    assert batch.shape == (2, 3, 64, 96) and torch.allclose(batch, torch.cat(alone), atol=1e-5)
    assert stylize_any(stylizer, torch.cat([a, b]), style, 0.9, levels, tile=48).shape == (2, 3, 64, 96)
    one = stylize_tiled(stylizer, a[0], style, 0.9, levels, tile=48)  # (3, H, W) in, (3, H, W) out
    assert one.shape == (3, 64, 96) and torch.allclose(one, alone[0][0], atol=1e-5)
    path = tmp_path / "a.png"
    Image.fromarray((a[0].permute(1, 2, 0) * 255).round().byte().numpy()).save(path)
    assert psnr(stylize_any(stylizer, path, style, 0.9, levels, tile=48), alone[0]) > 35  # 8-bit copy


def test_a_large_style_is_encoded_in_tiles_with_the_same_statistics(stylizer, monkeypatch):
    import wct.tiling

    painting = texture_image(150, 200, seed=7)  # sides not multiples of 16
    whole = stylizer.style(painting, tile=0)
    seen = []
    extract = stylizer.encoder.extract
    monkeypatch.setattr(stylizer.encoder, "extract", lambda x, n: seen.append(x.shape[-2:]) or extract(x, n))
    monkeypatch.setattr(wct.tiling, "AUTO_TILE", 48)  # auto tiling above 48 px, as above 1280 in use
    tiled = stylizer.style(painting)
    assert len(seen) == len(splits(160, 48)) * len(splits(208, 48)) == 20  # one pass per tile
    assert max(max(s) for s in seen) <= 48 + 2 * encoder_margin(5)  # a tile and its margins
    for v in range(1, 6):
        a, b = whole[v], tiled[v]
        assert a.count == b.count
        torch.testing.assert_close(b.mean, a.mean, rtol=1e-5, atol=1e-6 * a.mean.abs().max().item())
        torch.testing.assert_close(b.cov, a.cov, rtol=1e-4, atol=1e-5 * a.cov.abs().max().item())
    with pytest.raises(InputError):
        stylizer.style(painting, tile=8)


def test_auto_tiling_and_bad_tiles(stylizer, style):
    assert not needs_tiling(1080, 1280, None) and needs_tiling(2160, 3840, None)
    assert not needs_tiling(4320, 7680, 0) and needs_tiling(200, 100, 64)
    x = gradient_image(48, 64)
    assert torch.equal(stylize_any(stylizer, x, style, 0.5, (1,)), stylizer.stylize(x, style, 0.5, (1,)))
    with pytest.raises(InputError):
        stylize_tiled(stylizer, x, style, 0.5, tile=8)


def test_tile_sizes_are_checked_everywhere(stylizer, style):
    """A tile that is not None, 0 or a whole number >= 16 is an InputError wherever it is taken,
    the style's statistics included (a negative one used to mean "never" there)."""
    x = gradient_image(48, 64)
    for bad in (-1, 8, 2.5, "512", True):
        with pytest.raises(InputError, match="tile size"):
            stylize_any(stylizer, x, style, 0.5, (1,), tile=bad)
        with pytest.raises(InputError, match="tile size"):
            stylizer.style(x, levels=(1,), tile=bad)
    for bad in (None, 0, "512"):
        with pytest.raises(InputError, match="tile size"):
            stylize_tiled(stylizer, x, style, 0.5, (1,), tile=bad)
    with pytest.raises(InputError, match="blend"):
        stylize_tiled(stylizer, x, style, 0.5, (1,), tile=32, blend=2.5)


def test_cli_tile_option(wct_cli, tmp_path):
    from wct.demo import landscape, painting

    landscape(160, 96).save(tmp_path / "c.png")
    painting(64, 64).save(tmp_path / "s.png")
    common = ("--levels", "2,1", "--size", "0", "--alpha", "1")
    for name, tile in (("a.png", "0"), ("b.png", "48")):
        r = wct_cli(
            "stylize",
            str(tmp_path / "c.png"),
            str(tmp_path / "s.png"),
            "-o",
            str(tmp_path / name),
            "--tile",
            tile,
            *common,
        )
        assert r.returncode == 0, r.stderr
    a, b = (
        torch.from_numpy(np.asarray(Image.open(tmp_path / n), np.float32) / 255) for n in ("a.png", "b.png")
    )
    assert psnr(a, b) >= 40
    r = wct_cli(
        "stylize",
        str(tmp_path / "c.png"),
        str(tmp_path / "s.png"),
        "-o",
        str(tmp_path / "x.png"),
        "--tile",
        "big",
    )
    assert r.returncode == 1 and "error: --tile" in r.stderr


def test_python_api_tiles_too():
    import wct
    from wct.images import tensor_to_pil

    content = tensor_to_pil(texture_image(96, 80, seed=3))
    paint = tensor_to_pil(texture_image(64, 64, seed=4))
    whole = wct.stylize(content, paint, alpha=1.0, levels=(2, 1), size=None, tile=0)
    tiled = wct.stylize(content, paint, alpha=1.0, levels=(2, 1), size=None, tile=48)
    a, b = (torch.from_numpy(np.asarray(im, dtype=np.float32) / 255) for im in (whole, tiled))
    assert whole.size == tiled.size == (80, 96)
    assert psnr(a, b) >= 40
    with pytest.raises(InputError):
        wct.stylize(content, paint, levels=(1,), size=None, tile=-1)


def test_a_low_contrast_mask_region_far_from_the_first_tile_matches_untiled(stylizer, style):
    """Statistics of a faint region in a later tile, about the first tile's mean, used to cancel
    in float32 (34 dB from untiled in the region)."""
    other = stylizer.style(gradient_image(80, 80, seed=9).flip(1))
    g = torch.Generator().manual_seed(0)
    x = torch.full((1, 3, 128, 192), 0.3)
    x[..., :64] = torch.rand(1, 3, 128, 64, generator=g)  # the first tile: noise
    x[..., 100:, 100:] += 0.01 * torch.rand(1, 3, 28, 92, generator=g)
    mask = torch.zeros(128, 192, dtype=torch.long)
    mask[96:128, 120:152] = 1
    y0 = stylizer.stylize(x, [style, other], 1.0, (1,), mask=mask)
    y1 = stylize_tiled(stylizer, x, [style, other], 1.0, (1,), tile=64, mask=mask)
    assert psnr(y0[..., 96:, 120:152], y1[..., 96:, 120:152]) >= 60


def test_a_size_off_the_16_px_grid_leaves_the_padding_out_of_the_statistics_as_untiled(stylizer, style):
    """Only the cells covering the unpadded image count in the statistics, tile cores cut at the
    image's edge as the untiled map is (a 68-row image has 12 padded rows)."""
    other = stylizer.style(gradient_image(80, 80, seed=9).flip(1))
    x = gradient_image(68, 100, seed=3)  # padded to 80 x 112: tiles of 48 end in the padding
    mask = (torch.arange(100)[None, :] > 60).long().expand(68, 100)
    levels, seen = (3, 2, 1), {}
    y0 = stylizer.stylize(x, [style, other], 1.0, levels, mask=mask)
    hook = lambda level, stats: seen.setdefault(level, stats)  # noqa: E731
    y1 = stylize_tiled(stylizer, x, [style, other], 1.0, levels, tile=48, mask=mask, hook=hook)
    assert [sum(st.count for st in seen[v]) for v in levels] == [17 * 25, 34 * 50, 68 * 100]
    assert psnr(y0, y1) >= 50
    y0 = stylizer.stylize(x, style, 0.8, levels)
    assert psnr(y0, stylize_tiled(stylizer, x, style, 0.8, levels, tile=48)) >= 50
