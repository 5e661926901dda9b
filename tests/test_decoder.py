import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wct.decoder import Decoder, average_decoders, decoder_layers, load_decoder, save_decoder
from wct.encoder import VGG19_MD5
from wct.errors import InputError, WeightsError
from wct.train import warm_start

from .conftest import gradient_image


def test_decoders_mirror_the_encoder():
    convs = [m for m in decoder_layers(3) if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (256, 128),
        (128, 128),
        (128, 64),
        (64, 64),
        (64, 3),
    ]
    ups = [m for m in decoder_layers(5) if isinstance(m, torch.nn.Upsample)]
    assert len(ups) == 4
    assert len(decoder_layers(1)) == 1


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_decoder_output_size(level):
    f = torch.rand(1, Decoder(level).mean.numel(), 5, 7)
    y = Decoder(level)(f)
    assert y.shape == (1, 3, 5 * 2 ** (level - 1), 7 * 2 ** (level - 1))
    assert y.min() >= 0 and y.max() <= 1


def test_save_load_round_trip_and_refusals(tmp_path):
    dec = Decoder(2)
    dec.mean.uniform_(1, 3)
    dec.whiten.mul_(0.5)
    path = tmp_path / "relu2_1.safetensors"
    save_decoder(dec, path, {"encoder": VGG19_MD5, "steps": 3})
    loaded = load_decoder(2, "cpu", path=path)
    f = torch.rand(1, 128, 4, 4)
    torch.testing.assert_close(loaded(f), dec(f), atol=2e-3, rtol=0)
    assert loaded.metadata["steps"] == "3"
    assert load_decoder(None, "cpu", path=path).level == 2  # the level the file names
    with pytest.raises(WeightsError, match="trained for encoder"):
        load_decoder(2, "cpu", encoder_id="0" * 32, path=path)
    with pytest.raises(WeightsError, match="level"):
        load_decoder(3, "cpu", path=path)
    other = tmp_path / "other.safetensors"
    save_decoder(dec, other, {"encoder": "deadbeef"})
    with pytest.raises(WeightsError, match="trained for encoder"):
        load_decoder(2, "cpu", path=other)


def test_corrupt_and_truncated_files_are_refused(tmp_path):
    path = tmp_path / "relu1_1.safetensors"
    save_decoder(Decoder(1), path, {"encoder": VGG19_MD5})
    data = path.read_bytes()
    flipped = bytearray(data)
    flipped[-5] ^= 0x01
    path.write_bytes(bytes(flipped))
    with pytest.raises(WeightsError, match="corrupt"):
        load_decoder(1, "cpu", path=path)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=str(path.name)):
        load_decoder(1, "cpu", path=path)


def test_warm_start_copies_the_shared_tail(tmp_path):
    small = Decoder(2)
    path = tmp_path / "relu2_1.safetensors"
    save_decoder(small, path, {"encoder": VGG19_MD5})
    big = Decoder(3)
    assert warm_start(big, path) == 6  # all three convs of decoder 2, weight and bias
    torch.testing.assert_close(big.net[-1].weight, small.net[-1].weight.half().float())
    torch.testing.assert_close(big.net[-3].weight, small.net[-3].weight.half().float())


def test_average_is_the_weighted_mean_and_refuses_what_cannot_be_averaged():
    torch.manual_seed(0)
    a, b = Decoder(2), Decoder(2)
    for d in (a, b):
        d.mean.fill_(2.0)
    avg = average_decoders([a, b], [1, 3])
    for name, w in avg.state_dict().items():
        torch.testing.assert_close(w, 0.25 * a.state_dict()[name] + 0.75 * b.state_dict()[name])
    assert not any(p.requires_grad for p in avg.parameters())
    f = torch.rand(1, 128, 4, 4)
    assert not torch.allclose(avg(f), a(f)) and not torch.allclose(avg(f), b(f))
    with pytest.raises(WeightsError, match="at least two"):
        average_decoders([a])
    with pytest.raises(WeightsError, match="relu2_1 and relu3_1"):
        average_decoders([a, Decoder(3)])
    with pytest.raises(WeightsError, match="whiten their inputs differently"):
        average_decoders([a, Decoder(2)])  # mean 0: trained on other data
    rounded = Decoder(2)
    rounded.load_state_dict(b.state_dict())
    rounded.mean.mul_(1 + 2e-7)  # a float32 round trip's rounding, as an int8 transport leaves
    average_decoders([a, rounded])
    for bad in ([1.0], [1.0, -1.0], [1.0, float("nan")], [0.0, 0.0], [1.0, "x"]):
        with pytest.raises(InputError):
            average_decoders([a, b], bad)


@pytest.mark.parametrize("level", [1, 3, 5])
def test_odd_sizes_round_trip_at_the_same_size(stylizer, level):
    x = gradient_image(333, 517)
    y = stylizer.reconstruct(x, level)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_tensors_of_another_level_are_refused(tmp_path):
    from wct.encoder import write_signed

    path = tmp_path / "relu3_1.safetensors"
    tensors = {k: v.half() for k, v in Decoder(2).state_dict().items()}
    write_signed(tensors, {"encoder": VGG19_MD5, "level": "3"}, path)  # signed, but level 2 inside
    with pytest.raises(WeightsError, match="do not fit a relu3_1"):
        load_decoder(3, "cpu", path=path)


def test_levels_out_of_range_and_files_without_an_encoder_id_say_so(tmp_path):
    from wct.encoder import write_signed

    for level in (7, 0, True, "1", 2.5):
        with pytest.raises(InputError, match="level must be one of 1, 2, 3, 4, 5"):
            load_decoder(level, "cpu", path=tmp_path / "missing.safetensors")
    path = tmp_path / "relu1_1.safetensors"
    write_signed({k: v.half() for k, v in Decoder(1).state_dict().items()}, {"level": "1"}, path)
    with pytest.raises(WeightsError, match="does not say which encoder weights"):
        load_decoder(1, "cpu", path=path)
    assert load_decoder(1.0, "cpu").level == 1


def test_empty_feature_maps_are_refused():
    with pytest.raises(InputError, match="empty"):
        Decoder(1)(torch.rand(1, 64, 0, 4))


def test_a_file_that_is_not_a_decoder_says_so(tmp_path):
    from wct.encoder import write_signed

    path = tmp_path / "preset.safetensors"
    write_signed({"mean": torch.zeros(3)}, {"encoder": VGG19_MD5, "kind": "style"}, path)
    for level in (None, 2):
        with pytest.raises(WeightsError, match="not a decoder file"):
            load_decoder(level, "cpu", path=path)


def test_signed_files_with_nan_or_integer_weights_are_refused(tmp_path):
    from wct.encoder import write_signed

    path = tmp_path / "relu1_1.safetensors"
    for bad in (torch.full((3,), float("nan")), torch.zeros(3, dtype=torch.int32)):
        tensors = {**{k: v.half() for k, v in Decoder(1).state_dict().items()}, "net.0.bias": bad}
        write_signed(tensors, {"encoder": VGG19_MD5, "level": "1"}, path)  # a NaN image otherwise
        with pytest.raises(WeightsError, match=r"non-finite or non-float weights \(net.0.bias\)"):
            load_decoder(1, "cpu", path=path)


def test_a_scalar_tensor_or_no_digest_is_a_weights_error(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "relu1_1.safetensors"
    save_file({"x": torch.tensor(1.0)}, str(path), metadata={"sha256": "0" * 64})
    with pytest.raises(WeightsError, match="corrupt"):
        load_decoder(1, "cpu", path=path)
    save_file(Decoder(1).state_dict(), str(path), metadata={"encoder": VGG19_MD5, "level": "1"})
    with pytest.raises(WeightsError, match="no digest"):
        load_decoder(1, "cpu", path=path)


def test_a_decoder_folder_under_home_is_found(tmp_path, monkeypatch):
    from wct.decoder import available

    save_decoder(Decoder(1), tmp_path / "relu1_1.safetensors", {"encoder": VGG19_MD5, "steps": 1})
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WCT_DECODERS", "~")
    assert load_decoder(1, "cpu").level == 1
    assert available()[1]["steps"] == "1"
    with pytest.raises(
        WeightsError, match=r"relu2_1.safetensors not found \(WCT_DECODERS=~\): run only the levels"
    ):
        load_decoder(2, "cpu")
    save_decoder(Decoder(2), tmp_path / "relu2_1.final.safetensors", {"encoder": VGG19_MD5})  # no --val
    with pytest.raises(
        WeightsError, match=r"\(it holds relu2_1.final.safetensors, a run's last decoder: copy"
    ):
        load_decoder(2, "cpu")
    save_decoder(Decoder(2), tmp_path / "relu2_1.best.safetensors", {"encoder": VGG19_MD5})  # a run's --out
    with pytest.raises(
        WeightsError, match=r"there \(it holds relu2_1.best.safetensors: point WCT_DECODERS at"
    ):
        load_decoder(2, "cpu")


def test_available_reports_a_file_of_another_level_as_an_error(tmp_path, monkeypatch):
    from wct.decoder import available

    save_decoder(Decoder(1), tmp_path / "relu3_1.safetensors", {"encoder": VGG19_MD5, "val_psnr": 43})
    monkeypatch.setenv("WCT_DECODERS", str(tmp_path))
    assert available() == {3: {"error": f"decoder {tmp_path}/relu3_1.safetensors is for level 1, not 3"}}


def test_available_reports_a_decoder_for_other_encoder_weights_as_load_decoder_refuses_it(
    tmp_path, monkeypatch
):
    from wct.decoder import available

    save_decoder(Decoder(1), tmp_path / "relu1_1.safetensors", {"encoder": "0" * 32, "val_psnr": 43})
    monkeypatch.setenv("WCT_DECODERS", str(tmp_path))
    with pytest.raises(WeightsError) as refused:
        load_decoder(1, "cpu")
    assert available() == {1: {"error": str(refused.value)}}
    assert "was trained for encoder weights '000" in str(refused.value)


def test_an_installed_wheel_carries_the_shipped_decoders(tmp_path):
    """`pip install .` (not only -e) must find the decoders: they travel inside the wheel."""
    pytest.importorskip("setuptools")
    root, src = Path(__file__).resolve().parent.parent, tmp_path / "src"  # no stale build/ in src
    shutil.copytree(root / "wct", src / "wct", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "decoders"):
        (src / name).symlink_to(root / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", src, "--no-deps", "--no-build-isolation", "-w", tmp_path], check=True)
    (wheel,) = tmp_path.glob("wct-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)
    probe = "import wct.decoder as d; print(d.DECODER_DIR); print(sorted(d.available()))"
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("WCT_DECODERS", None)
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True)
    where, levels = out.stdout.splitlines()
    assert Path(where) == site / "wct" / "decoders"
    assert levels == "[1, 2, 3, 4, 5]"


def test_a_decoders_variable_naming_no_folder_or_an_empty_one_says_so(tmp_path, monkeypatch):
    """The hint was "run only the levels it holds" for a folder that holds none or does not exist."""
    (tmp_path / "file").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    for folder, text in (
        ("nowhere", f"WCT_DECODERS={tmp_path}/nowhere: no such folder; point it at a folder"),
        ("file", f"WCT_DECODERS={tmp_path}/file is a file, not a folder; point it at a folder"),
        ("empty", "it holds no relu{X}_1.safetensors: add relu3_1.safetensors there, or unset it"),
    ):
        monkeypatch.setenv("WCT_DECODERS", str(tmp_path / folder))
        with pytest.raises(WeightsError, match=re.escape(text)):
            load_decoder(3, "cpu")
    for level in (1, 2):
        save_decoder(
            Decoder(level), tmp_path / "empty" / f"relu{level}_1.safetensors", {"encoder": VGG19_MD5}
        )
    with pytest.raises(WeightsError, match=r"run only the levels it holds \(--levels 2,1\), or add relu3_1"):
        load_decoder(3, "cpu")


def test_available_reports_what_load_decoder_refuses_in_its_words(tmp_path, monkeypatch):
    """A style preset renamed as a decoder was listed as "for level None"; a file whose tensors do not
    fit its level was listed as a good decoder, and refused only by stylize."""
    from wct.decoder import available
    from wct.encoder import write_signed

    monkeypatch.setenv("WCT_DECODERS", str(tmp_path))
    write_signed(
        {"x": torch.zeros(3)},
        {"encoder": VGG19_MD5, "format": "wct-style-stats"},
        tmp_path / "relu1_1.safetensors",
    )
    write_signed(
        {"x": torch.zeros(3)}, {"encoder": VGG19_MD5, "level": "2"}, tmp_path / "relu2_1.safetensors"
    )
    for level, text in (
        (1, "is not a decoder file: its metadata names no level"),
        (2, "do not fit a relu2_1"),
    ):
        with pytest.raises(WeightsError, match=text) as refused:
            load_decoder(level, "cpu")
        assert available()[level] == {"error": str(refused.value)}
