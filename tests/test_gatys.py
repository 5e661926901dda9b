import math

import pytest
import torch

from wct import gatys as G
from wct.errors import InputError

from .conftest import gradient_image


def stripes(h: int, w: int) -> torch.Tensor:
    """A high-frequency coloured style image (1, 3, h, w) in [0, 1], unlike gradient_image."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    s = (torch.sin(xx * 0.9 + yy * 0.3) + 1) / 2
    return torch.stack([s, 1 - s, (xx % 7 < 3).float()])[None].float()


@pytest.fixture(scope="module")
def pair():
    return gradient_image(64, 64, seed=0), stripes(64, 64)


def test_gram_matches_hand_computed_values():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # (1, 2, 2, 2)
    # plain: F Fᵀ / (H*W) = [[1+4+9+16, 0+2+0+4], [., 0+1+0+1]] / 4
    assert torch.allclose(G.gram(f), torch.tensor([[[7.5, 1.5], [1.5, 0.5]]]))
    # centred: means 2.5 and 0.5 -> [[5, 1], [1, 1]] / 4
    assert torch.allclose(G.gram(f, centered=True), torch.tensor([[[1.25, 0.25], [0.25, 0.25]]]))


def test_centered_gram_of_zero_mean_features_is_the_plain_gram():
    f = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    f = f - f.mean(dim=(2, 3), keepdim=True)
    assert torch.allclose(G.gram(f, centered=True), G.gram(f), atol=1e-6)


def test_style_loss_is_zero_on_its_own_targets_and_both_adds_the_two_terms(encoder, pair):
    content, style = pair
    with torch.no_grad():
        fs = encoder.extract(style, G.STYLE_LAYERS)
        fc = encoder.extract(content, G.STYLE_LAYERS)
        losses = {k: G.style_loss(fc, G.style_targets(fs, k), k) for k in G.GRAMS}
        assert G.style_loss(fs, G.style_targets(fs, "both"), "both") == 0
    assert losses["plain"] > 0 and losses["centered"] > 0
    assert torch.allclose(losses["both"], losses["plain"] + losses["centered"], rtol=1e-5)
    with pytest.raises(InputError):
        G.style_loss(fc, G.style_targets(fs, "plain"), "both")


def test_tv_loss_is_zero_for_a_flat_image_and_positive_for_noise():
    assert G.tv_loss(torch.full((1, 3, 8, 8), 0.3)) == 0
    assert G.tv_loss(torch.rand(1, 3, 8, 8)) > 0


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_gatys_lowers_its_total_loss(encoder, pair, optimizer):
    content, style = pair
    result = G.gatys(encoder, content, style, steps=10, optimizer=optimizer)
    h = result.history
    assert [e["step"] for e in h] == list(range(11))  # the start, then after each step
    assert set(h[0]) == {"step", "content", "style", "tv", "total", "seconds"}
    assert h[0]["seconds"] == 0 and all(a["seconds"] < b["seconds"] for a, b in zip(h, h[1:], strict=False))
    assert result.best["total"] < h[0]["total"]  # (L-BFGS's step 10 may be one step 11 would undo)
    assert math.isclose(h[-1]["total"], h[-1]["content"] + h[-1]["style"] + h[-1]["tv"], rel_tol=1e-4)
    assert result.image.shape == (1, 3, 64, 64)
    assert result.image.min() >= 0 and result.image.max() <= 1


def test_gatys_accepts_non_contiguous_images_and_style_init(encoder, pair):
    content, style = pair
    content = content.contiguous(memory_format=torch.channels_last)
    result = G.gatys(encoder, content, style[..., :48, :40], steps=2, init="style", gram="both")
    assert result.image.shape == (1, 3, 64, 64) and len(result.history) == 3


def test_lbfgs_memory_gets_the_step_actually_taken_after_clamping():
    x = torch.full((4,), 0.9, requires_grad=True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=1)

    def closure():
        opt.zero_grad()
        loss = (x - 3).square().sum()
        loss.backward()
        return loss

    before = x.detach().clone()
    opt.step(closure)  # first step: t = 1 / |g|_1 = 1 / 16.8, d = 4.2, so x goes to 1.15
    with torch.no_grad():
        x.clamp_(0, 1)
        G._match_lbfgs_step(opt, x - before)
    state = opt.state[x]
    assert torch.allclose(state["d"] * state["t"], torch.full((4,), 0.1))


def test_texture_synthesis_returns_the_requested_size(encoder, pair):
    result = G.gatys(encoder, None, pair[1], steps=3, size=(48, 32))  # (width, height), as PIL's
    assert result.image.shape == (1, 3, 32, 48)
    assert all(e["content"] == 0 for e in result.history)


def test_same_seed_gives_identical_output(encoder, pair):
    a, b, c = (G.gatys(encoder, None, pair[1], steps=3, size=(32, 32), seed=s).image for s in (5, 5, 6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_seeds_take_the_range_of_torch_generators_as_wct_textures_do():
    # torch.Generator.manual_seed takes -2**63 .. 2**64 - 1 (2**64 - 1 is -1 as 64 bits)
    assert [G.Options(seed=s).checked().seed for s in (-(2**63), -1, 2**64 - 1)] == [-(2**63), -1, 2**64 - 1]
    assert torch.equal(G._noise((4, 4), -1, "cpu"), G._noise((4, 4), 2**64 - 1, "cpu"))
    for bad in (-(2**63) - 1, 2**64):
        with pytest.raises(InputError, match=r"seed \(--seed\) must be a whole number from -2\*\*63"):
            G.Options(seed=bad).checked()


def test_callback_gets_every_step_and_images_every_save_every(encoder, pair):
    calls = []
    G.gatys(
        encoder,
        None,
        pair[1],
        steps=4,
        size=(32, 32),
        save_every=2,
        callback=lambda step, image, losses: calls.append((step, image, losses["total"])),
    )
    assert [c[0] for c in calls] == [0, 1, 2, 3, 4]
    assert [c[1] is not None for c in calls] == [False, False, True, False, True]
    assert calls[2][1].shape == (1, 3, 32, 32)


def test_invert_lowers_its_loss(encoder, pair):
    result = G.invert(encoder, pair[0], layer="relu2_1", steps=10)
    assert result.image.shape == (1, 3, 64, 64)
    assert result.history[-1]["total"] < result.history[0]["total"]
    assert result.history[0]["style"] == 0
    default = G.invert(encoder, pair[0], layer="relu2_1", steps=1, tv_weight=None).history[0]
    assert default == G.invert(encoder, pair[0], layer="relu2_1", steps=1).history[0]  # None: invert's 1e4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"optimizer": "sgd"},
        {"init": "random"},
        {"gram": "fancy"},
        {"steps": 0},
        {"steps": 2.5},
        {"content_weight": -1.0},
        {"style_weight": float("nan")},
        {"tv_weight": -1e-3},
        {"lr": 0.0},
        {"optimizer": "adam", "lr": 1e38},  # torch's Adam overflowed: a RuntimeError
        {"save_every": -1},
        {"seed": "a"},
        {"seed": 2**64},
        {"normalise": "yes"},
        {"style_layers": ("conv1_1",)},
        {"style_layers": ()},
        {"style_layers": ("relu1_1", "relu1_1")},
        {"content_layer": "pool4"},
        {"callback": 3},
        {"size": (32, 32)},
        {"size": 64},
    ],
)
def test_bad_arguments_raise_input_error(encoder, pair, kwargs):
    with pytest.raises(InputError):
        G.gatys(encoder, pair[0], pair[1], **{"steps": 1, **kwargs})


def test_bad_images_and_layers_raise_input_error(encoder, pair):
    content, style = pair
    nan = content.clone()
    nan[0, 0, 0, 0] = float("nan")
    for bad in (
        lambda: G.gatys(encoder, nan, style, steps=1),
        lambda: G.gatys(encoder, content, nan, steps=1),
        lambda: G.gatys(encoder, content * 2, style, steps=1),
        lambda: G.gatys(encoder, content[..., :8, :8], style, steps=1),
        lambda: G.gatys(encoder, content[:, :1], style, steps=1),
        lambda: G.gatys(encoder, None, style, steps=1, init="content"),
        lambda: G.gatys(encoder, None, style, steps=1, size=(8, 64)),
        lambda: G.invert(encoder, content, layer="relu9_1", steps=1),
        lambda: G.invert(encoder, nan, steps=1),
        lambda: G.invert(encoder, content, steps=0),
        lambda: G.gram(torch.ones(2, 3)),
    ):
        with pytest.raises(InputError):
            bad()


def test_history_holds_the_losses_of_the_image_each_step_made(encoder, pair):
    content, style = pair
    seen = {}
    result = G.gatys(
        encoder, content, style, steps=3, save_every=1, callback=lambda k, image, e: seen.update({k: image})
    )
    o = G.Options(steps=3).checked()
    losses = G.objective(encoder, content, style, o, G.channel_means(encoder))
    with torch.no_grad():
        assert math.isclose(result.history[0]["total"], losses(content)["total"].item(), rel_tol=1e-4)
        for k in (1, 2, 3):  # entry k scores the image after k steps, the one saved at step k
            assert math.isclose(result.history[k]["total"], losses(seen[k])["total"].item(), rel_tol=1e-4)
    assert torch.equal(seen[3], result.image)


def test_normalised_vgg_balances_the_style_layers(encoder):
    """Raw Caffe features let relu4_1 make nearly all the style loss; normalised, several layers count."""
    from wct.images import load_image

    from .conftest import SHARED

    content = load_image(SHARED / "content" / "skimage__chelsea.jpg", 128)
    style = load_image(SHARED / "styles" / "neuralstyle__examples_inputs_the_scream.jpg", 128)
    shares = {}
    with torch.no_grad():
        for name, means in (("raw", None), ("normalised", G.channel_means(encoder))):
            fs = G.extract(encoder, style, G.STYLE_LAYERS, means)
            fc = G.extract(encoder, content, G.STYLE_LAYERS, means)
            share = torch.stack([G.style_loss(fc, G.style_targets({k: fs[k]})) for k in G.STYLE_LAYERS])
            shares[name] = share / share.sum()
    assert shares["raw"][G.STYLE_LAYERS.index("relu4_1")] > 0.9
    assert shares["normalised"].max() < 0.75 and (shares["normalised"] > 0.05).sum() >= 3


def test_channel_means_make_each_channel_average_about_one(encoder):
    from wct.images import list_images, load_image

    from .conftest import SHARED

    photos = list_images(SHARED / "val")[:4]  # held-out photos: the means came from train/

    means = G.channel_means(encoder)
    with torch.no_grad():
        feats = [
            G.extract(encoder, load_image(p, 256), ["relu1_1", "relu3_1", "relu5_1"], means) for p in photos
        ]
    for layer in ("relu1_1", "relu3_1", "relu5_1"):
        avg = torch.stack([f[layer].mean() for f in feats]).mean().item()
        assert 0.5 < avg < 2, (layer, avg)


def test_normalise_needs_the_weights_the_means_were_measured_on(pair):
    from wct.encoder import Encoder

    with pytest.raises(InputError, match="normalise=False"):
        G.gatys(Encoder(), pair[0], pair[1], steps=1)
    assert G.gatys(Encoder(), pair[0], pair[1], steps=1, normalise=False).image.shape == (1, 3, 64, 64)


def test_style_and_content_layers_can_be_chosen(encoder, pair):
    """Gatys et al. Fig. 3: style from subsets of layers; the content at another layer."""
    content, style = pair
    one = G.gatys(encoder, None, style, steps=2, size=(32, 32), style_layers=("relu1_1",))
    full = G.gatys(encoder, None, style, steps=2, size=(32, 32))
    assert one.history[0]["style"] < full.history[0]["style"]  # one term of the five
    layers = {"style_layers": ("relu1_1", "relu2_1"), "content_layer": "relu2_2"}
    r = G.gatys(encoder, content, style, steps=1, init="style", **layers)
    o = G.Options(**layers).checked()
    with torch.no_grad():
        expected = G.objective(encoder, content, style, o, G.channel_means(encoder))(style)
        default = G.objective(encoder, content, style, G.Options().checked(), G.channel_means(encoder))(style)
    assert r.history[0]["content"] > 0 and r.history[0]["content"] != default["content"].item()
    for k in ("content", "style"):
        assert math.isclose(r.history[0][k], expected[k].item(), rel_tol=1e-4)


@pytest.mark.parametrize("optimizer, lr", [("lbfgs", 1.0), ("adam", 0.05)])
def test_the_result_is_the_image_with_the_lowest_loss(optimizer, lr):
    target = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 0.5  # not all in reach
    seen = []

    def objective(x: torch.Tensor) -> dict[str, torch.Tensor]:
        seen.append(x.detach().clone())
        total = ((x - target) ** 2).sum() * (50 if len(seen) in (4, 9) else 1)  # after steps 3 and 8
        zero = total.new_zeros(())
        return {"content": total, "style": zero, "tv": zero, "total": total}

    result = G._optimise(torch.full((1, 3, 8, 8), 0.5), objective, 8, optimizer, lr, 0, None)
    totals = [e["total"] for e in result.history]
    assert len(seen) == 9 and totals[8] > totals[7] and totals[3] > totals[2]  # the last is not the best
    low = min(range(9), key=totals.__getitem__)
    assert result.best_step == low and low not in (3, 8) and torch.equal(result.image, seen[low])
    assert result.best == result.history[low]


def test_an_lbfgs_step_that_raises_the_loss_much_is_undone_and_lbfgs_restarts():
    g = torch.Generator().manual_seed(1)
    target, weight = torch.rand(1, 3, 8, 8, generator=g), 10 ** (2 * torch.rand(1, 3, 8, 8, generator=g))
    seen = []

    def objective(x: torch.Tensor) -> dict[str, torch.Tensor]:  # ill-conditioned: many steps
        seen.append(x.detach().clone())
        total = (weight * (x - target) ** 2).sum() * (50 if len(seen) == 4 else 1)  # after step 3
        zero = total.new_zeros(())
        return {"content": total, "style": zero, "tv": zero, "total": total}

    result = G._optimise(torch.full((1, 3, 8, 8), 0.5), objective, 8, "lbfgs", 1.0, 0, None)
    totals = [e["total"] for e in result.history]
    assert totals[3] > 10 * totals[2]
    assert torch.equal(seen[4], seen[2])  # step 4 began from step 2's image again
    fresh = G._optimise(seen[2].clone(), objective, 1, "lbfgs", 1.0, 0, None).image
    assert torch.allclose(seen[5], fresh.clamp(0, 1))  # with L-BFGS's first, memoryless step
    assert totals[-1] < totals[2]  # and the run went on from there
    seen.clear()
    G._optimise(torch.full((1, 3, 8, 8), 0.5), objective, 8, "adam", 0.05, 0, None)
    assert not torch.equal(seen[4], seen[2])  # Adam has no such rule


def test_an_lbfgs_step_that_raises_the_loss_less_than_twofold_is_kept():
    g = torch.Generator().manual_seed(1)
    target, weight = torch.rand(1, 3, 8, 8, generator=g), 10 ** (2 * torch.rand(1, 3, 8, 8, generator=g))
    seen = []

    def objective(x: torch.Tensor) -> dict[str, torch.Tensor]:
        seen.append(x.detach().clone())
        total = (weight * (x - target) ** 2).sum() * (1.9 if len(seen) == 4 else 1)
        zero = total.new_zeros(())
        return {"content": total, "style": zero, "tv": zero, "total": total}

    result = G._optimise(torch.full((1, 3, 8, 8), 0.5), objective, 8, "lbfgs", 1.0, 0, None)
    totals = [e["total"] for e in result.history]
    assert 1.1 * totals[2] < totals[3] < 2 * totals[2]  # a rise L-BFGS recovers from by itself
    assert not torch.equal(seen[4], seen[2])  # so step 4 went on from step 3's image
    assert result.best_step == len(totals) - 1


def quadratic(target: torch.Tensor, seen: list, nan_at: int = 0):
    """An objective for _optimise: squared distance to `target`, NaN at evaluation `nan_at`."""

    def objective(x: torch.Tensor) -> dict[str, torch.Tensor]:
        seen.append(x.detach().clone())
        total = ((x - target) ** 2).sum() * (math.nan if len(seen) == nan_at else 1)
        zero = total.new_zeros(())
        return {"content": total, "style": zero, "tv": zero, "total": total}

    return objective


def test_an_lbfgs_step_from_a_fresh_start_that_must_be_undone_raises_diverged():
    """Restarting would take the same memoryless step again: the run could only repeat it."""
    start = torch.full((1, 3, 8, 8), 0.5)
    target = start + 0.05 * torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    seen = []
    with pytest.raises(G.Diverged, match=r"at step 1: .* lower lr \(--lr\) 1e\+06, e.g. to 100000") as e:
        G._optimise(start, quadratic(target, seen), 20, "lbfgs", 1e6, 0, None)
    assert isinstance(e.value, InputError) and len(seen) == 2  # not 20 steps back and forth
    r = e.value.result
    assert r.best_step == 0 and torch.equal(r.image, start)
    assert r.history[1]["total"] > 2 * r.history[0]["total"]


@pytest.mark.parametrize("optimizer, lr", [("lbfgs", 1.0), ("adam", 0.05)])
def test_a_loss_that_stops_being_finite_raises_diverged_with_the_best_image_so_far(optimizer, lr):
    start = torch.full((1, 3, 8, 8), 0.5)
    target = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    seen = []
    with pytest.raises(G.Diverged, match=r"the loss became nan at step 3: .* lr \(--lr\)") as e:
        G._optimise(start, quadratic(target, seen, nan_at=4), 8, optimizer, lr, 0, None)
    r = e.value.result
    assert [h["step"] for h in r.history] == [0, 1, 2] and r.best_step > 0
    assert r.best == min(r.history, key=lambda h: h["total"]) and torch.equal(r.image, seen[r.best_step])
    with pytest.raises(G.Diverged) as e:  # at the start: no result
        G._optimise(start, quadratic(target, [], nan_at=1), 8, optimizer, lr, 0, None)
    assert e.value.result is None


def test_a_run_that_never_goes_below_its_start_warns_that_lr_may_be_too_large():
    import warnings

    start = torch.full((1, 3, 8, 8), 0.5)
    near = start + 0.01 * torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match=r"no step went below .* lr \(--lr\) 5 may be too large"):
        r = G._optimise(start, quadratic(near, []), 2, "adam", 5.0, 0, None)
    assert r.best_step == 0 and torch.equal(r.image, start)
    far = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert G._optimise(start, quadratic(far, []), 2, "adam", 0.05, 0, None).best_step > 0


def test_a_run_whose_steps_never_move_a_pixel_warns_that_lr_may_be_too_small():
    start = torch.full((1, 3, 8, 8), 0.5)
    far = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for optimizer in ("lbfgs", "adam"):
        with pytest.warns(UserWarning, match=r"lr \(--lr\) 1e-30 may be too small: no step changed the loss"):
            r = G._optimise(start, quadratic(far, []), 3, optimizer, 1e-30, 0, None)
        assert r.best_step == 0 and len({h["total"] for h in r.history}) == 1


def test_an_infinite_loss_at_the_start_blames_the_weights_not_lr():
    start = torch.full((1, 3, 8, 8), 0.5)

    def objective(x: torch.Tensor) -> dict[str, torch.Tensor]:  # a weight float32 cannot hold
        total = ((x - 0.2) ** 2).sum() * torch.tensor(1e300, dtype=torch.float32)
        zero = total.new_zeros(())
        return {"content": total, "style": zero, "tv": zero, "total": total}

    with pytest.raises(G.Diverged, match=r"the loss became inf at step 0: lower the weights$") as e:
        G._optimise(start, objective, 3, "lbfgs", 1.0, 0, None)
    assert e.value.result is None


def test_a_conv_content_layer_is_refused_as_one_layer_not_a_tuple():
    with pytest.raises(InputError) as e:
        G.Options(content_layer="conv4_2").checked()
    said = str(e.value)
    assert said.startswith("content_layer (--content-layer) takes one ReLU layer (relu1_1, ")
    assert said.endswith("got 'conv4_2'") and "distinct" not in said and "('conv4_2',)" not in said


def test_adam_learning_rates_are_capped_where_a_step_is_meaningless():
    assert G.Options(optimizer="adam", lr=G.ADAM_MAX_LR).checked().lr == G.ADAM_MAX_LR
    assert G.Options(optimizer="lbfgs", lr=1e38).checked().lr == 1e38  # L-BFGS's first step is L1-normalised
    with pytest.raises(InputError, match=r"lr \(--lr\) must be at most 1000 with adam"):
        G.Options(optimizer="adam", lr=1001).checked()


def test_images_without_pixels_raise_input_error(encoder, pair):
    content, style = pair
    for bad in (
        lambda: G.gatys(encoder, content[..., :0, :], style, steps=1),
        lambda: G.gatys(encoder, content, style[..., :0], steps=1),
        lambda: G.invert(encoder, content[0, :, :0, :0], steps=1),
    ):
        with pytest.raises(InputError, match="pixels"):
            bad()


def test_weights_that_ignore_the_images_raise_input_error(encoder, pair):
    """Only TV (or nothing) left to minimise: the run would return its start image, or a blur."""
    content, style = pair
    with pytest.raises(InputError, match="both 0"):
        G.gatys(encoder, content, style, steps=1, content_weight=0, style_weight=0)
    with pytest.raises(InputError, match="without content"):
        G.gatys(encoder, None, style, steps=1, style_weight=0.0, size=(32, 32))
    with pytest.raises(InputError):
        G.Options(content_weight=0.0, style_weight=0.0, tv_weight=0.0).checked()
    assert G.gatys(encoder, content, style, steps=1, style_weight=0).image.shape == (1, 3, 64, 64)
    assert G.gatys(encoder, content, style, steps=1, content_weight=0).image.shape == (1, 3, 64, 64)


def test_a_texture_over_the_pixel_limit_raises_input_error_before_allocating(encoder, pair):
    with pytest.raises(InputError, match="over the limit"):
        G.gatys(encoder, None, pair[1], steps=1, size=(2**20, 2**20))


def test_a_single_row_or_column_has_a_finite_tv_loss_and_can_be_optimised(encoder, pair):
    """relu1_1 needs one pixel: an image one pixel high has horizontal neighbours only."""
    row = torch.tensor([[[[0.0, 1.0, 0.0]]]]).expand(1, 3, 1, 3)
    assert G.tv_loss(row) == 1 and G.tv_loss(row.transpose(2, 3)) == 1 and G.tv_loss(row[..., :1]) == 0
    content, style = pair
    layers = {"style_layers": ("relu1_1",), "content_layer": "relu1_1"}
    result = G.gatys(encoder, content[..., :1, :], style, steps=2, **layers)
    assert result.image.shape == (1, 3, 1, 64) and math.isfinite(result.best["total"])
    assert math.isfinite(G.invert(encoder, content[..., :1], layer="relu1_1", steps=1).best["total"])


def test_numpy_integer_sizes_are_taken(encoder, pair):
    """A size equal to the content's, or a texture's, may be numpy integers (e.g. from an array's
    shape), as wct's other sizes may."""
    import numpy as np

    content, style = pair
    h, w = (np.int64(v) for v in content.shape[-2:])
    assert G.gatys(encoder, content, style, steps=1, size=(w, h)).image.shape == content.shape
    texture = G.gatys(encoder, None, style, steps=1, size=(np.int32(48), np.int64(32)))
    assert texture.image.shape == (1, 3, 32, 48)


def test_numpy_scalars_are_taken_for_counts_and_weights(encoder, pair):
    """Steps, seed and weights from a numpy sweep (np.arange, np.float32) are integers and numbers
    like any other, and the settings come back as Python numbers (the CLI's history is JSON)."""
    import json
    from dataclasses import asdict

    import numpy as np

    kwargs = {"steps": np.int64(2), "seed": np.int32(3), "style_weight": np.float32(10)}
    kwargs["lr"] = np.float32(0.5)
    o = G.Options(init="noise", **kwargs).checked()
    assert (o.steps, o.seed, o.style_weight, o.lr) == (2, 3, 10.0, 0.5)
    json.dumps(asdict(o))
    result = G.gatys(encoder, pair[0], pair[1], init="noise", **kwargs)
    assert len(result.history) == 3
    with pytest.raises(InputError, match="integer"):
        G.Options(steps=np.float64(2.0)).checked()


def test_channel_means_first_read_under_inference_mode_still_work_with_gatys(encoder, pair):
    """The means are cached for the process: scoring an image under torch.inference_mode() first
    (as one scores WCT's output) must not leave inference tensors that gatys cannot backpropagate."""
    G._stored_means.cache_clear()
    try:
        with torch.inference_mode():
            G.channel_means(encoder)
        assert len(G.gatys(encoder, pair[0], pair[1], steps=1).history) == 2
    finally:
        G._stored_means.cache_clear()


def test_uint8_images_are_read_as_0_to_255_as_load_image_reads_them(encoder, pair):
    """gatys refused uint8 tensors, which load_image and Stylizer take as 0..255 (torchvision's)."""
    content, style = (x.mul(255).round() for x in pair)
    want = G.gatys(encoder, content / 255, style / 255, steps=2)
    got = G.gatys(encoder, content.to(torch.uint8)[0], style.to(torch.uint8), steps=2)
    assert torch.equal(got.image, want.image) and got.best_step == want.best_step
    assert got.history[0]["total"] == want.history[0]["total"]
    inverted = G.invert(encoder, content.to(torch.uint8), layer="relu1_1", steps=1)
    assert inverted.history[0] == G.invert(encoder, content / 255, layer="relu1_1", steps=1).history[0]
    for bad in (torch.int16, torch.int64, torch.bool):
        with pytest.raises(InputError, match=f"floats in \\[0, 1\\] or uint8 in 0..255, got {bad}"):
            G.gatys(encoder, content.to(bad), style / 255, steps=1)


def test_the_options_and_layers_are_checked_without_torch_as_the_encoder_names_them():
    """The CLI checks the options (layers included) before torch loads: wct.checks knows the
    encoder's layers, and the smallest sides they need, without it."""
    import subprocess
    import sys

    from wct import checks, encoder

    assert tuple(encoder.NAMES) == checks.VGG19_NAMES
    assert [checks.min_side(n) for n in checks.VGG19_NAMES] == [encoder.min_side(n) for n in encoder.NAMES]
    assert G.Options is checks.Options and G.STYLE_LAYERS == checks.STYLE_LAYERS
    code = (
        "import sys\nfrom wct.checks import Options\n"
        "Options(style_layers=('relu1_1', 'relu5_1'), content_layer='relu3_2').checked()\n"
        "print('torch' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert r.stdout.strip() == "False", r.stderr
