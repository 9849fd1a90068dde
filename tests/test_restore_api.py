"""Restorer from Python: every way of giving ω, image kinds, tiling, bad ω."""
import numpy as np
import pytest
import torch

from pip_adapter.omega import parse_omega_spec
from pip_adapter.restore.restorer import Restorer, image_metrics
from tests.helpers_restore import make_toy, rand_image

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["noise", "rain", "haze", "blur", "low_light"]


def _manual(net, img_u8, omega_row):
    x = torch.from_numpy(img_u8.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = net(x, torch.tensor([omega_row], dtype=torch.float32)).clamp(0, 1)
    return np.round(out[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def test_every_way_of_giving_omega(toy_net):
    r = Restorer(toy_net, NAMES, multiple=2, device="cpu")
    img = rand_image(16, 20)
    by_name = r(img, degradation="rain")
    np.testing.assert_array_equal(by_name, _manual(toy_net, img, [0, 1, 0, 0, 0]))
    assert r.last_omega == {"noise": 0.0, "rain": 1.0, "haze": 0.0, "blur": 0.0, "low_light": 0.0}
    mix = r(img, omega={"rain": 0.7, "noise": 0.3})
    np.testing.assert_array_equal(mix, _manual(toy_net, img, [0.3, 0.7, 0, 0, 0]))
    np.testing.assert_array_equal(r(img, degradation="rain=0.7,noise=0.3"), mix)
    np.testing.assert_array_equal(r(img, omega=torch.tensor([0.3, 0.7, 0, 0, 0])), mix)
    assert not np.array_equal(by_name, r(img, degradation="haze"))  # ω really steers the output
    assert r(img, degradation="Low-Light").shape == img.shape  # aliases as omega.py spells them


def test_auto_uses_classifier_probabilities(toy_net):
    class FixedClassifier(torch.nn.Module):
        degradations = NAMES

        def predict_proba(self, image, scale=1.0):
            seen = image.float() * scale
            assert image.shape == (1, 3, 8, 8) and 0 <= seen.min() and seen.max() <= 1  # the image, in [0, 1]
            return torch.tensor([0.1, 0.6, 0.1, 0.1, 0.1])

    r = Restorer(toy_net, NAMES, multiple=2, device="cpu", classifier=FixedClassifier())
    img = rand_image(8, 8)
    out = r(img, degradation="auto")  # default: argmax, one-hot on the top type
    np.testing.assert_array_equal(out, _manual(toy_net, img, [0, 1, 0, 0, 0]))
    assert r.last_choice.startswith("auto:rain") and r.last_omega == {n: float(n == "rain") for n in NAMES}
    out = r(img, degradation="auto", auto_mode="weights")  # the probabilities as ω
    np.testing.assert_array_equal(out, _manual(toy_net, img, [0.1, 0.6, 0.1, 0.1, 0.1]))
    assert r.last_choice.startswith("auto:rain")
    with pytest.raises(ValueError, match="unknown auto mode 'mean'"):
        r(img, degradation="auto", auto_mode="mean")
    with pytest.raises(ValueError, match="classifier"):
        Restorer(toy_net, NAMES, multiple=2, device="cpu")(img, degradation="auto")


def test_bad_omega_refused(toy_net):
    r = Restorer(toy_net, NAMES, multiple=2, device="cpu")
    img = rand_image(8, 8)
    with pytest.raises(ValueError, match="snow.*knows: noise, rain, haze, blur, low_light"):
        r(img, degradation="snow")
    with pytest.raises(ValueError, match="non-negative"):
        r(img, omega={"rain": -0.5, "noise": 1})
    with pytest.raises(ValueError, match="NaN"):
        r(img, degradation="rain=nan")
    with pytest.raises(ValueError, match="all zero"):
        r(img, omega="rain=0,noise=0")
    with pytest.raises(ValueError, match="say which degradation"):
        r(img)
    with pytest.raises(ValueError, match="name=weight"):
        parse_omega_spec("rain:0.5")


@pytest.mark.parametrize("shape,dtype", [((13, 17, 3), np.uint8), ((13, 17), np.uint16), ((9, 11, 4), np.uint8),
                                         ((10, 12, 3), np.float32), ((7, 5, 1), np.uint16)])
def test_any_size_dtype_and_channels(toy_net, shape, dtype):
    r = Restorer(toy_net, NAMES, multiple=4, device="cpu")
    rng = np.random.default_rng(0)
    img = rng.random(shape, dtype=np.float32) if dtype == np.float32 else \
        rng.integers(0, np.iinfo(dtype).max + 1, size=shape).astype(dtype)
    out = r(img, degradation="noise")
    assert out.shape == img.shape and out.dtype == img.dtype
    if len(shape) == 3 and shape[2] == 4:
        np.testing.assert_array_equal(out[:, :, 3], img[:, :, 3])


def test_tiled_close_to_whole_for_a_model(toy_net):
    r = Restorer(toy_net, NAMES, multiple=2, device="cpu")
    img = rand_image(40, 52, seed=4)
    whole = r(img, degradation="rain").astype(int)
    tiled = r(img, degradation="rain", tile=24, tile_overlap=16).astype(int)
    assert np.abs(whole - tiled).max() <= 1  # receptive radius 4 ≤ overlap/4: equal up to rounding


def test_image_metrics_known_values():
    a = np.zeros((16, 16, 3), np.float32)
    b = a + 0.1
    psnr, ssim = image_metrics(a, b)
    assert abs(psnr - 20.0) < 1e-4 and ssim < 1
    assert image_metrics(a, a)[0] == float("inf")
    with pytest.raises(ValueError, match="differ in size"):
        image_metrics(a, np.zeros((8, 8, 3), np.float32))


def test_plain_backbone_ignores_omega():
    from pip_adapter.backbones import NAFNet
    torch.manual_seed(0)
    net = NAFNet(img_channel=3, width=4, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])
    r = Restorer(net, NAMES, multiple=2, device="cpu")
    assert not r.uses_omega
    img = rand_image(10, 10)
    np.testing.assert_array_equal(r(img, degradation="rain"), r(img, degradation="haze"))
    assert make_toy(0) is not None


def test_omega_text_is_parsed_in_omega_py_and_still_importable_from_the_restorer():
    from pip_adapter.restore import parse_omega_spec as package_name
    from pip_adapter.restore.restorer import parse_omega_spec as old_path

    assert old_path is package_name is parse_omega_spec
    assert parse_omega_spec(" rain=0.7, noise=.3,") == {"rain": 0.7, "noise": 0.3}
    with pytest.raises(ValueError, match="names 'rain' twice"):
        parse_omega_spec("rain=1,rain=2")


def test_omega_values_are_checked_once_per_image_not_per_tile(monkeypatch):
    """ω is validated on the host before tiling; the wrapper's forwards (one per tile) check its shape only."""
    from pip_adapter import omega as omega_mod
    from pip_adapter.backbones import NAFNet
    from pip_adapter.wrap.wrapper import wrap_with_pip

    torch.manual_seed(0)
    net = wrap_with_pip(NAFNet(img_channel=3, width=4, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1]),
                        degradations=NAMES, prompt_dims=8, prompt_sizes=4).eval()
    r = Restorer(net, NAMES, multiple=2, device="cpu", tile=16, tile_overlap=4)
    checks = []
    real = omega_mod._check_values
    monkeypatch.setattr(omega_mod, "_check_values", lambda w: checks.append(tuple(w.shape)) or real(w))
    img = rand_image(40, 40)
    assert r.num_steps(40, 40) >= 4
    r(img, degradation="rain")
    assert checks == [(1, 5)]
    checks.clear()
    r.restore_tensor(torch.rand(1, 3, 40, 40), torch.tensor([[0.0, 1, 0, 0, 0]]))
    assert checks == [(1, 5)]
    with pytest.raises(ValueError, match="NaN"):  # refused before any tile runs
        r.restore_tensor(torch.rand(1, 3, 40, 40), torch.tensor([[float("nan"), 1, 0, 0, 0]]))
    # outside the restorer, every call checks values; values_checked() alone turns that off
    with pytest.raises(ValueError, match="non-negative"):
        net(torch.rand(1, 3, 8, 8), torch.tensor([[-1.0, 1, 0, 0, 0]]))
    with omega_mod.values_checked():
        assert omega_mod.to_omega(torch.tensor([[-1.0, 1, 0, 0, 0]]), NAMES).shape == (1, 5)
        with pytest.raises(ValueError, match="T=5"):  # shapes are still checked
            omega_mod.to_omega(torch.tensor([[1.0, 0]]), NAMES)
    with pytest.raises(ValueError, match="non-negative"):
        omega_mod.to_omega(torch.tensor([[-1.0, 1, 0, 0, 0]]), NAMES)
