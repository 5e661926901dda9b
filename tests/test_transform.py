import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wct.errors import InputError
from wct.transform import coloring_matrix, feature_stats, transform, wct, whitening_matrix


def cov(f: torch.Tensor) -> torch.Tensor:
    f = f.reshape(f.shape[0], -1).double()
    f = f - f.mean(1, keepdim=True)
    return f @ f.T / (f.shape[1] - 1)


def correlated(c: int, n: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(c, c, generator=g, dtype=torch.float64)
    base = torch.randn(c, n, generator=g, dtype=torch.float64)
    return ((mix @ base) * scale + torch.randn(c, 1, generator=g, dtype=torch.float64) * 5).float()


def test_output_has_style_covariance_and_mean():
    content, style = correlated(16, 4000, 0), correlated(16, 3000, 1, scale=3.0)
    out = wct(content.reshape(16, 50, 80), style, alpha=1.0)
    rel = (cov(out) - cov(style)).norm() / cov(style).norm()
    assert rel < 1e-3
    torch.testing.assert_close(out.reshape(16, -1).mean(1), style.mean(1), atol=1e-3, rtol=1e-4)


def test_alpha_zero_returns_content():
    content, style = correlated(8, 500, 2), correlated(8, 500, 3)
    assert torch.equal(wct(content, style, alpha=0.0), content)


def test_alpha_blends_linearly():
    content, style = correlated(8, 500, 2), correlated(8, 500, 3)
    full = wct(content, style, alpha=1.0)
    torch.testing.assert_close(
        wct(content, style, alpha=0.3), 0.3 * full + 0.7 * content, atol=1e-4, rtol=1e-4
    )


def test_whitening_gives_identity_covariance():
    f = correlated(12, 2000, 4)
    w = whitening_matrix(cov(f))
    white = w @ (f.double() - f.double().mean(1, keepdim=True))
    torch.testing.assert_close(cov(white), torch.eye(12, dtype=torch.float64), atol=1e-8, rtol=0)
    c = coloring_matrix(cov(f))
    torch.testing.assert_close(c @ c.T, cov(f), atol=1e-6, rtol=1e-6)


def test_flat_style_and_constant_content_are_finite():
    content = torch.full((8, 10, 10), 3.0)
    flat_style = torch.ones(8, 20, 20) * torch.arange(8.0)[:, None, None]
    out = wct(content, flat_style, alpha=1.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.mean((1, 2)), torch.arange(8.0))
    out2 = wct(correlated(8, 100, 5), flat_style, alpha=0.6)
    assert torch.isfinite(out2).all()


def test_single_pixel_and_rank_deficient_maps_are_finite():
    one = torch.randn(16, 1, 1)
    assert torch.isfinite(wct(one, correlated(16, 300, 6))).all()
    assert torch.isfinite(wct(correlated(16, 300, 7), one)).all()
    low_rank = torch.randn(16, 2) @ torch.randn(2, 400)
    assert torch.isfinite(wct(low_rank, low_rank * 1e6)).all()


def test_bad_inputs_raise_typed_errors():
    f = correlated(4, 50, 8)
    for alpha in (-0.1, 1.5):
        try:
            wct(f, f, alpha)
        except InputError:
            pass
        else:
            raise AssertionError("alpha out of range accepted")
    bad = f.clone()
    bad[0, 0] = float("nan")
    try:
        wct(bad, f)
    except InputError:
        pass
    else:
        raise AssertionError("NaN features accepted")


def test_stats_accumulate_over_tiles_exactly():
    f = correlated(6, 1000, 9) + 100
    parts = [feature_stats(f[:, i : i + 250]) for i in range(0, 1000, 250)]
    total = parts[0]
    for p in parts[1:]:
        total = total + p
    whole = feature_stats(f)
    torch.testing.assert_close(total.cov, whole.cov, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(total.mean, whole.mean, atol=1e-6, rtol=1e-7)
    assert total.count == 1000


@settings(max_examples=60, deadline=None)
@given(
    c=st.integers(1, 12),
    n=st.integers(1, 300),
    rank=st.integers(0, 12),
    scale=st.sampled_from([1e-6, 1e-2, 1.0, 1e3, 1e5]),
    alpha=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_transform_is_always_finite_and_matches_full_rank_styles(c, n, rank, scale, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(c, n, generator=g) * scale
    r = min(rank, c)
    style = (torch.randn(c, r, generator=g) @ torch.randn(r, 4 * c + 50, generator=g)) * scale
    style = style + torch.randn(c, 1, generator=g) * scale
    out = wct(content, style, alpha)
    assert torch.isfinite(out).all()
    if r == c and n > 4 * c and alpha == 1.0 and scale > 1e-6:  # at 1e-6, variances reach ABS_EPS: flat
        rel = (cov(out) - cov(style)).norm() / cov(style).norm()
        assert rel < 1e-2


def test_half_precision_features_give_the_float32_result():
    # float16 sums of x xᵀ overflow on VGG-sized features (about 1e9 here); the stats are float32+.
    content, style = correlated(16, 3000, 10, scale=300.0), correlated(16, 2000, 11, scale=400.0)
    full = wct(content, style)
    for dtype in (torch.float16, torch.bfloat16):
        out = wct(content.to(dtype), style.to(dtype))
        assert out.dtype == dtype
        rel = (out.float() - full).abs().max() / full.abs().max()
        assert rel < (2e-3 if dtype == torch.float16 else 2e-2), (dtype, rel)
    huge = correlated(4, 500, 12) * 1e20  # float32 squares overflow: summed in float64 instead
    assert torch.isfinite(feature_stats(huge).cov).all()


def test_malformed_features_and_statistics_raise_typed_errors():
    f = correlated(4, 50, 13)
    cases = [
        lambda: wct(f.long(), f),  # integers would truncate the affine map
        lambda: wct(f, f[:, :0]),  # a style with no pixels
        lambda: wct(f.reshape(1, 4, 5, 10), f),  # a batch, not one feature map
        lambda: wct(f, f, content_stats=feature_stats(f[:3])),
        lambda: feature_stats(f) + feature_stats(f[:3]),
        lambda: feature_stats(f, shift=torch.zeros(3, dtype=torch.float64)),
    ]
    for case in cases:
        with pytest.raises(InputError):
            case()


def test_alpha_zero_checks_the_input_and_returns_a_copy():
    f = correlated(4, 50, 14)
    out = wct(f, f, alpha=0.0)
    out += 1
    assert not torch.equal(out, f)
    bad = f.clone()
    bad[1, 2] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        wct(bad, f, alpha=0.0)


def test_fractional_labels_are_refused():
    f = correlated(4, 100, 15).reshape(4, 10, 10)
    labels = torch.zeros(10, 10)
    labels[:5] = 1.0
    out = transform(f, [f, f * 2], 1.0, labels=labels)
    assert torch.isfinite(out).all()
    labels[0, 0] = 0.5
    with pytest.raises(InputError, match="whole numbers"):
        transform(f, [f, f * 2], 1.0, labels=labels)


def test_half_precision_keeps_low_contrast_content():
    # A low-contrast map (mean 200, std 5) coloured by a strong style: T x and b nearly cancel,
    # so applying the map in bfloat16 itself lost 13% of the result; now only output rounding.
    g = torch.Generator().manual_seed(16)
    content = torch.randn(64, 32, 32, generator=g) * 5 + 200
    style = torch.randn(64, 32, 32, generator=g) * 50 + 100
    for dtype, tol in ((torch.bfloat16, 8e-3), (torch.float16, 1e-3)):
        x, s = content.to(dtype), style.to(dtype)
        ref = wct(x.double(), s.double())
        out = wct(x, s)
        assert out.dtype == dtype
        spread = (ref - ref.mean((1, 2), keepdim=True)).norm()
        assert (out.double() - ref).norm() / spread < tol, dtype


def test_labels_and_features_of_the_wrong_shape_are_refused():
    f = correlated(4, 24, 17).reshape(4, 4, 6)
    for labels in (torch.zeros(6, 4), torch.zeros(24), torch.zeros(1, 4, 6), torch.zeros(4, 6).numpy()):
        with pytest.raises(InputError, match="labels"):
            transform(f, [f], 1.0, labels=labels)
    with pytest.raises(InputError, match=r"\(C, H, W\)"):
        wct(f[None], f)  # a batch: not "1 channel"
    with pytest.raises(InputError):
        wct(f[:0], f[:0])
    flat = correlated(4, 24, 18)
    assert transform(flat, [flat], 1.0, labels=torch.zeros(24, dtype=torch.long)).shape == flat.shape


def test_huge_style_weights_are_normalised_not_zeroed():
    from wct.transform import check_weights, normalise_weights

    assert normalise_weights([1e308, 1e308]) == [0.5, 0.5]
    assert normalise_weights([3e307, 1e307]) == pytest.approx([0.75, 0.25])
    with pytest.raises(InputError, match="2 styles but 3 weights"):
        check_weights([1, 1, 1], 2)
    with pytest.raises(InputError, match="do not combine"):
        check_weights([1, 1], 2, masked=True)


def test_features_whose_covariance_overflows_are_an_input_error():
    f = torch.randn(4, 50, dtype=torch.float64) * 1e200
    with pytest.raises(InputError, match="covariance"):
        wct(f, f)


def test_the_eigenvalue_cut_is_relative_and_a_one_pixel_region_gets_the_style_mean():
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
    for scale in (1e-6, 1.0, 1e6):  # the same directions are kept at any scale of the features
        cov = scale * (q * torch.tensor([1.0, 1e-4, 1e-6], dtype=torch.float64)) @ q.T
        assert torch.linalg.matrix_rank(whitening_matrix(cov), rtol=1e-12) == 2
    torch.manual_seed(0)
    content, style_a, style_b = torch.rand(8, 6, 6), torch.rand(8, 30) * 5, torch.rand(8, 30) + 2
    labels = torch.zeros(6, 6, dtype=torch.long)
    labels[2, 3] = 1
    out = transform(content, [style_a, style_b], 1.0, labels=labels)
    torch.testing.assert_close(out[:, 2, 3], style_b.mean(1), rtol=1e-4, atol=1e-4)


def test_statistics_of_a_large_map_are_as_accurate_as_those_of_its_tiles():
    # One float32 product over 4 M pixels was off by 4e-4 of the largest entry (a whole 3000 px
    # image then disagreed with its own tiles at 62 dB); chunks added in float64 stay near 1e-6.
    torch.manual_seed(0)
    f = torch.rand(8, 2000, 2000) * 3
    x = f.reshape(8, -1).double()
    x = x - x.mean(1, keepdim=True)
    reference = x @ x.T
    error = (feature_stats(f).outer - reference).abs().max() / reference.abs().max()
    assert error < 1e-5


def test_a_faint_content_coloured_by_a_huge_style_stays_finite():
    # T = coloring @ whitening reaches 1e39 here, over float32's range although the result is not.
    content, style = correlated(4, 300, 19, scale=1e-3), correlated(4, 400, 20, scale=1e36)
    out = wct(content, style)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    ref = wct(content.double(), style.double())
    assert (out.double() - ref).norm() / ref.norm() < 1e-5


def test_statistics_keep_the_exact_mean_of_float32_features():
    # The default shift (a float64 mean) is rounded to float32 before it is subtracted: the shift
    # recorded must be that rounded one, or the mean is off by up to half a float32 step (5e-4 here,
    # 5% of the spread), in a single map and in sums of tiles with different shifts alike.
    f = correlated(3, 500, 21, scale=1e-2) + 1e4
    reference = f.double().mean(1)
    spread = f.double().std(1).min()
    assert (feature_stats(f).mean - reference).abs().max() < 1e-6 * spread
    total = feature_stats(f[:, :200]) + feature_stats(f[:, 200:])
    assert (total.mean - reference).abs().max() < 1e-6 * spread
    torch.testing.assert_close(total.cov, cov(f), rtol=1e-6, atol=1e-6 * spread.item() ** 2)


def test_weights_shifts_and_content_statistics_of_the_wrong_kind_are_input_errors():
    from wct.transform import region_stats

    f = correlated(4, 50, 22)
    labels = torch.arange(50) % 3
    for own in ([], region_stats(f, labels, 3)[:2]):
        with pytest.raises(InputError, match="content statistics"):
            transform(f, [f, f, f], 1.0, labels=labels, own=own)
    for weights in (0.5, torch.tensor(0.5), "1", {1: 2, 3: 4}, {1, 3}):  # a dict was read as its keys
        with pytest.raises(InputError, match="sequence of numbers"):
            transform(f, [f, f], 1.0, weights)
    for weights, text in (([], "must not be empty"), ([float("inf"), 1], "finite, non-negative")):
        with pytest.raises(InputError, match=text):
            transform(f, [f], 1.0, weights)
    g = correlated(4, 50, 23)
    once = transform(f, [f, g], 0.7, (w for w in (1, 3)))  # a generator is read once
    torch.testing.assert_close(once, transform(f, [f, g], 0.7, [1, 3]), rtol=0, atol=0)
    for shift in ([0.0] * 4, torch.full((4,), float("nan"))):
        with pytest.raises(InputError, match="shift"):
            feature_stats(f, shift)


def test_all_finite_finds_nan_and_inf_anywhere_in_any_layout():
    from wct.transform import all_finite

    x = torch.randn(2, 8, 9, 7)
    views = [x, x.contiguous(memory_format=torch.channels_last), x.transpose(1, 3), x[..., ::2]]
    views += [x.half(), x.bfloat16(), x.double(), torch.empty(3, 0)]
    for v in views:
        assert all_finite(v)
        for bad in (float("nan"), float("inf"), -float("inf")):
            for i in {0, v.numel() // 2, v.numel() - 1} if v.numel() else ():
                w = v.clone()  # in v's layout
                w[torch.unravel_index(torch.tensor(i), w.shape)] = bad
                assert not all_finite(w), (v.dtype, v.stride(), bad, i)
    f = correlated(4, 50, 23)
    f[3, 49] = -float("inf")
    with pytest.raises(InputError, match="NaN or Inf"):
        feature_stats(f)
    with pytest.raises(InputError, match="NaN or Inf"):  # content statistics given: checked all the same
        transform(f, [correlated(4, 50, 24)], 0.5, own=[feature_stats(correlated(4, 50, 25))])


def test_the_eigendecomposition_runs_on_one_thread_and_gives_the_count_back(monkeypatch):
    seen, real = [], torch.linalg.eigh
    monkeypatch.setattr(torch.linalg, "eigh", lambda c: seen.append(torch.get_num_threads()) or real(c))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(8, 100, dtype=torch.float64)
        w = whitening_matrix(x @ x.T / 100)
        assert seen == [1] and torch.get_num_threads() == 2
        assert torch.allclose(w @ (x @ x.T / 100) @ w.T, torch.eye(8, dtype=torch.float64), atol=1e-8)
    finally:
        torch.set_num_threads(before)


def test_feature_stats_compare_by_identity_and_add_only_statistics():
    a, b = feature_stats(correlated(8, 100, 6)), feature_stats(correlated(8, 100, 7))
    assert a == a and a != b and a in [b, a]  # field-wise == would ask bool() of a tensor
    assert {a: 1, b: 2}[b] == 2
    with pytest.raises(TypeError):
        a + 1


def test_statistics_about_a_far_shift_are_those_about_the_own_mean():
    # Tiles share one shift (the first tile's mean). A low-contrast mask region in another tile lies
    # far from it: float32 products about that shift cancelled in cov, and rounding noise became
    # some 30 spurious directions, which whitening blew up to unit variance (tiled != untiled).
    from wct.transform import eig

    g = torch.Generator().manual_seed(27)
    f = torch.rand(64, 1, generator=g) * 200 + 0.1 * torch.randn(64, 3, generator=g)
    shift = f.double().mean(1) + 1000 * torch.randn(64, generator=g, dtype=torch.float64)
    far, own = feature_stats(f, shift), feature_stats(f)
    assert len(eig(far.cov)[0]) == len(eig(own.cov)[0]) == 2
    torch.testing.assert_close(far.cov, cov(f), rtol=1e-6, atol=1e-6 * cov(f).abs().max().item())
    torch.testing.assert_close(far.mean, f.double().mean(1), rtol=1e-12, atol=1e-9)


def test_a_result_that_overflows_the_features_dtype_is_an_input_error():
    # float16 tops out at 65504: a style with features near it coloured an outlier pixel of the
    # content to 85,000 here, which became inf, silently (float32 alike near 3.4e38).
    content, style = correlated(8, 200, 28), correlated(8, 300, 29)
    content[:, 0] += 30
    style = style / style.abs().max()
    assert torch.isfinite(wct(content, style)).all()
    with pytest.raises(InputError, match="overflow torch.float16"):
        wct(content.half(), (style * 56000).half())
    with pytest.raises(InputError, match="overflow torch.float32"):
        wct(content, style * 3e38)


def test_float8_features_are_refused_by_the_transform_and_checked_by_all_finite():
    from wct.transform import all_finite

    f = correlated(4, 50, 26)
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):  # were RuntimeError / NotImplementedError
        f8 = f.to(dtype)
        for call, args in ((feature_stats, (f8,)), (wct, (f8, f)), (wct, (f, f8))):
            with pytest.raises(InputError, match=f"16 bits or more, got {dtype}"):
                call(*args)
        assert all_finite(f.to(dtype))  # the decoders check their features with it
        assert not all_finite(torch.tensor([1.0, float("nan")]).to(dtype))


def conditioned(c: int, n: int, rank: int, seed: int) -> torch.Tensor:
    """(C, N) float64 features of covariance rank `rank` (<= min(C, N - 1)), its nonzero
    eigenvalues within a factor 100 of each other: far from the eigenvalue cut."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(c, rank, generator=g, dtype=torch.float64))
    v = torch.randn(n, rank, generator=g, dtype=torch.float64)
    v, _ = torch.linalg.qr(v - v.mean(0))  # centred: the columns span no constant direction
    sv = torch.linspace(1, 10, rank, dtype=torch.float64)
    return (u * sv) @ v.T + torch.randn(c, 1, generator=g, dtype=torch.float64) * 3


@settings(max_examples=40, deadline=None)
@given(
    c=st.integers(1, 12),
    n=st.integers(2, 60),
    rank=st.integers(1, 12),
    alpha=st.floats(0, 1),
    scale=st.floats(1e-3, 1e3),
    seed=st.integers(0, 2**16),
)
def test_wct_is_the_papers_zca_transform_at_any_scale_and_rank(c, n, rank, alpha, scale, seed):
    """Li et al.'s WCT whitens with E D^-1/2 Eᵀ (ZCA) and blends with the content itself, so: a
    rescaled, shifted content gives the same result (no absolute eps or + I ridge), rotating content
    and style alike rotates the result (not PCA whitening D^-1/2 Eᵀ), and a content coloured with its
    own statistics is unchanged at any alpha (not blended with the centred content), N < C too."""
    f = conditioned(c, n, min(rank, c, n - 1), seed)
    s = conditioned(c, 3 * c + 20, c, seed + 1) * 2 + 1
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(c, c, generator=g, dtype=torch.float64))  # a rotation

    def spread(x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(1, keepdim=True)).abs().max()

    tol = 1e-6 * (spread(s) + spread(f))
    assert (wct(f * scale + 7, s) - wct(f, s)).abs().max() < tol
    assert (wct(q @ f, q @ s, alpha) - q @ wct(f, s, alpha)).abs().max() < tol
    assert (wct(f, f, alpha) - f).abs().max() < 1e-6 * spread(f)


@settings(max_examples=40, deadline=None)
@given(
    c=st.integers(1, 8),
    h=st.integers(1, 8),
    w=st.integers(1, 8),
    regions=st.integers(1, 3),
    alpha=st.floats(0, 1),
    flat=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float16]),
    seed=st.integers(0, 2**16),
)
def test_a_masked_transform_is_wct_of_each_region_alone(c, h, w, regions, alpha, flat, dtype, seed):
    """Region i of the labels gets exactly what WCT of its own pixels with style i gives, in every
    dtype: one-pixel, empty and flat regions included, finite throughout."""
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(c, h, w, generator=g) * 4 + 2
    if flat:
        f[:, : h // 2] = 1.5  # a flat band: a region inside it has zero covariance
    labels = torch.randint(0, regions, (h, w), generator=g)
    styles = [torch.randn(c, 20, generator=g) * (i + 1) + i for i in range(regions)]
    f, styles = f.to(dtype), [s.to(dtype) for s in styles]
    out = transform(f, styles, alpha, labels=labels)
    assert out.dtype == dtype and out.shape == f.shape and torch.isfinite(out).all()
    for i in range(regions):
        region = labels == i
        if region.any():
            torch.testing.assert_close(out[:, region], wct(f[:, region], styles[i], alpha), rtol=0, atol=0)


def test_complex_and_float8_labels_are_checked_like_the_others():
    # Complex labels raised NotImplementedError ("min_all"), float8 ones too ("round").
    f = correlated(4, 6, 30).reshape(4, 2, 3)
    styles = [correlated(4, 30, 31), correlated(4, 30, 32)]
    labels = torch.tensor([[0, 1, 1], [0, 0, 1]])
    with pytest.raises(InputError, match="whole numbers"):
        transform(f, styles, 1.0, labels=labels.to(torch.complex64))
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        out = transform(f, styles, 1.0, labels=labels.to(dtype))
        torch.testing.assert_close(out, transform(f, styles, 1.0, labels=labels), rtol=0, atol=0)
        with pytest.raises(InputError, match="whole numbers"):
            transform(f, styles, 1.0, labels=(labels * 0.5).to(dtype))


def test_an_eigensolver_failure_is_an_input_error_and_the_basis_signs_and_order_do_not_matter(monkeypatch):
    """The SVD/eigh failures peer implementations crash on are one typed error; and the ZCA square
    roots E D^±1/2 Eᵀ do not depend on the eigenvectors' signs or order (what --temporal relies on)."""
    import wct.transform as T

    f, s = correlated(6, 40, 1), correlated(6, 50, 2)
    expected = wct(f, s, 0.7)
    real = T.eigh

    def flipped(cov):  # the same decomposition, vectors negated in turn and listed in reverse
        values, vectors = real(cov)
        signs = torch.tensor([(-1.0) ** i for i in range(len(values))], dtype=vectors.dtype)
        return values.flip(0), (vectors * signs).flip(1)

    monkeypatch.setattr(T, "eigh", flipped)
    torch.testing.assert_close(wct(f, s, 0.7), expected, rtol=1e-5, atol=1e-5)

    def fails(cov):
        raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")

    monkeypatch.setattr(T, "eigh", fails)
    with pytest.raises(InputError, match="too ill-conditioned to decompose"):
        wct(f, s, 0.7)
