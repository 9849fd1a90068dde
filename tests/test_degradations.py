"""Synthesiser registry and the built-in degradation models."""
import numpy as np
import pytest

from pip_adapter.degradations import (depth_prior, get_synthesizer, list_synthesizers, motion_kernel,
                                      register_synthesizer, unregister_synthesizer)
from pip_adapter.omega import DEFAULT_DEGRADATIONS


def _photo(h=48, w=56, seed=0):
    rng = np.random.default_rng(seed)
    # smooth content plus texture, like a photo: blur must visibly change it
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 80 * np.sin(xx / 5.0), 128 + 80 * np.cos(yy / 4.0), 100 + xx + yy], -1)
    return np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


def test_defaults_are_registered_and_reproducible():
    img = _photo()
    assert set(DEFAULT_DEGRADATIONS) <= set(list_synthesizers())
    for name in DEFAULT_DEGRADATIONS:
        s = get_synthesizer(name)
        a = s(img, np.random.default_rng(1))
        b = s(img, np.random.default_rng(1))
        c = s(img, np.random.default_rng(2))
        assert a.dtype == np.uint8 and a.shape == img.shape, name
        assert np.array_equal(a, b), f"{name} is not reproducible from its seed"
        assert not np.array_equal(a, c), f"{name} ignores its rng"
        assert not np.array_equal(a, img), f"{name} left the image unchanged"


def test_noise_matches_release_formula():
    img = _photo()
    out = get_synthesizer("noise")(img, np.random.default_rng(5), sigma=25)
    n = np.random.default_rng(5).standard_normal(img.shape)
    expected = np.clip(img.astype(np.float64) + 25 * n, 0, 255).astype(np.uint8)  # truncation, not rounding
    assert np.array_equal(out, expected)
    assert [v["sigma"] for v in get_synthesizer("noise").variants] == [15, 25, 50]
    assert get_synthesizer("noise").online and not get_synthesizer("rain").online


def test_physical_properties():
    img = _photo(64, 64)
    rng = np.random.default_rng(0)
    # haze: far pixels (depth 1) move towards the airlight more than near ones
    depth = np.zeros((64, 64), np.float32)
    depth[:32] = 1.0
    hz = get_synthesizer("haze")(img, rng, depth=depth, beta=2.0, airlight=0.9, tint=0.0).astype(float)
    gap_far = np.abs(hz[:32] - 0.9 * 255).mean()
    gap_near = np.abs(hz[32:] - 0.9 * 255).mean()
    assert gap_far < gap_near
    # low light: much darker
    assert get_synthesizer("low_light")(img, rng).mean() < 0.4 * img.mean()
    # rain: screen blending only brightens (up to rounding)
    rain = get_synthesizer("rain")(img, rng).astype(int)
    assert (rain >= img.astype(int) - 1).all() and rain.mean() > img.mean()
    # blur (defocus) and motion blur: a normalised kernel keeps the mean, reduces high-frequency energy
    for name in ("blur", "motion_blur"):
        bl = get_synthesizer(name)(img, rng).astype(float)
        assert abs(bl.mean() - img.mean()) < 3.0, name
        assert np.abs(np.diff(bl, axis=1)).mean() < np.abs(np.diff(img.astype(float), axis=1)).mean(), name
    # defocus is isotropic: a wider σ blurs more, equally along both axes
    soft = get_synthesizer("blur")(img, np.random.default_rng(0), sigma=1.0).astype(float)
    softer = get_synthesizer("blur")(img, np.random.default_rng(0), sigma=3.0).astype(float)
    assert np.abs(np.diff(softer, axis=0)).mean() < np.abs(np.diff(soft, axis=0)).mean()
    with pytest.raises(ValueError, match="sigma must be > 0"):
        get_synthesizer("blur")(img, rng, sigma=0.0)
    k = motion_kernel(np.random.default_rng(3), 15)
    assert k.shape == (15, 15) and abs(k.sum() - 1) < 1e-5 and (k >= 0).all()
    d = depth_prior((40, 30), np.random.default_rng(0))
    assert d.shape == (40, 30) and d.min() >= 0 and d.max() <= 1
    assert d[:5].mean() > d[-5:].mean()  # far at the top


def test_registry_errors_and_plugins():
    with pytest.raises(ValueError, match="no synthesiser registered.*known"):
        get_synthesizer("definitely_not_a_type")

    @register_synthesizer("test_snow", variants=[{"amount": 10}])
    def snow(img, rng, amount=5):
        return np.clip(img.astype(int) + amount, 0, 255).astype(np.uint8)

    try:
        s = get_synthesizer("Test-Snow")  # canonical names, like omega
        assert s.name == "test_snow" and s.variants == [{"amount": 10}]
        assert int(s(np.zeros((4, 4, 3), np.uint8), np.random.default_rng(0), amount=3).max()) == 3
        with pytest.raises(ValueError, match="already registered"):
            register_synthesizer("test_snow")(lambda img, rng: img)

        @register_synthesizer("test_bad")
        def bad(img, rng):
            return img[:2]

        with pytest.raises(ValueError, match="must return a uint8 array"):
            get_synthesizer("test_bad")(np.zeros((4, 4, 3), np.uint8), np.random.default_rng(0))
        with pytest.raises(ValueError, match="uint8 H×W×3"):
            s(np.zeros((4, 4), np.uint8), np.random.default_rng(0))
    finally:
        unregister_synthesizer("test_snow")
        unregister_synthesizer("test_bad")
    assert "test_snow" not in list_synthesizers()


def test_motorcycle_depth_from_disparity():
    from pip_adapter.data.builtin import load_photo, motorcycle_depth

    left, right = motorcycle_depth("left"), motorcycle_depth("right")
    img = load_photo("motorcycle_left.png")
    assert left.shape == right.shape == img.shape[:2]
    for d in (left, right):
        assert np.isfinite(d).all() and d.min() >= 0 and d.max() <= 1 and d.std() > 0.05
    # the right view's depth is the left one shifted by the disparity: close, not identical
    assert not np.array_equal(left, right)
    assert np.corrcoef(left.ravel(), right.ravel())[0, 1] > 0.5
