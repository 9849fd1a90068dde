"""The realistic synthesisers (``*_photo``, ``camera_noise``, ``jpeg``) and composites in physical order."""
import numpy as np
import pytest

from pip_adapter.degradations import (PHOTO_SYNTHESIZERS, PHYSICAL_ORDER, compose, get_synthesizer, gaussian_noise,
                                      physical_order)
from pip_adapter.degradations.photo import darken_preserving_colour, disk_kernel, linear_motion_kernel

PHOTO_NAMES = ["noise_photo", "camera_noise", "blur_photo", "low_light_photo", "haze_photo", "rain_photo", "jpeg"]


def _scene(h=64, w=80, seed=0):
    """A smooth colourful image with an edge (texture-free, so residuals are the degradation's)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.7 - 0.4 * xx * yy], -1)
    img[:, w // 2:] *= 0.6
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_photo_synthesisers_are_seeded_and_keep_shape(name):
    s = get_synthesizer(name)
    img = _scene()
    a = s(img, np.random.default_rng(3))
    b = s(img, np.random.default_rng(3))
    c = s(img, np.random.default_rng(4))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, img)
    if name != "jpeg":  # a smooth image compresses to the same bytes at most qualities
        assert not np.array_equal(a, c)


def test_default_synthesisers_are_untouched_by_the_photo_family():
    assert get_synthesizer("noise").fn is gaussian_noise
    assert set(PHOTO_SYNTHESIZERS) == set(PHYSICAL_ORDER)
    for t, n in PHOTO_SYNTHESIZERS.items():
        assert get_synthesizer(n).name == n
    assert all(PHOTO_SYNTHESIZERS[t] != t for t in ("noise", "rain", "haze", "blur", "low_light"))


def test_noise_photo_draws_sigma_from_the_range():
    img = np.full((128, 128, 3), 128, np.uint8)
    stds = [float((get_synthesizer("noise_photo")(img, np.random.default_rng(i)).astype(float) - 128).std())
            for i in range(40)]
    assert 4.0 < min(stds) and max(stds) < 57.0
    assert max(stds) - min(stds) > 25.0  # continuous over [5, 55], not one level
    fixed = [float((get_synthesizer("noise_photo")(img, np.random.default_rng(i), sigma=25).astype(float)
                    - 128).std()) for i in range(3)]
    assert all(abs(s - 25.0) < 1.0 for s in fixed)


def test_camera_noise_grows_with_the_signal():
    dark = np.full((96, 96, 3), 20, np.uint8)
    bright = np.full((96, 96, 3), 220, np.uint8)
    s = get_synthesizer("camera_noise")
    kw = dict(shot=0.02, read=0.005, channel_corr=0.0)
    sd_dark = (s(dark, np.random.default_rng(0), **kw).astype(float) - 20).std()
    sd_bright = (s(bright, np.random.default_rng(0), **kw).astype(float) - 220).std()
    assert sd_bright > 2.5 * sd_dark


def test_camera_noise_channel_correlation():
    img = np.full((128, 128, 3), 128, np.uint8)
    s = get_synthesizer("camera_noise")

    def corr(c):
        n = s(img, np.random.default_rng(1), shot=0.0, read=0.05, channel_corr=c).astype(float) - 128
        return np.corrcoef(n[..., 0].ravel(), n[..., 1].ravel())[0, 1]

    assert abs(corr(0.0)) < 0.05
    assert 0.4 < corr(0.5) < 0.6


def test_low_light_keeps_colour():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.05, 1.0, (32, 32, 3))
    y = darken_preserving_colour(x, 0.2, 1.6)
    chroma = x / x.sum(-1, keepdims=True)
    assert np.allclose(y / y.sum(-1, keepdims=True), chroma, atol=1e-9)
    assert y.mean() < 0.25 * x.mean()
    # through the synthesiser without noise: hue survives quantisation on a saturated colour
    img = np.zeros((32, 32, 3), np.uint8)
    img[...] = (230, 180, 20)  # yellow petals
    out = get_synthesizer("low_light_photo")(img, np.random.default_rng(0), exposure=0.3, gamma=1.3, shot=0.0,
                                             read=0.0).astype(float)
    r, g, b = out[..., 0].mean(), out[..., 1].mean(), out[..., 2].mean()
    assert r > g > b and abs(g / r - 180 / 230) < 0.05 and out.mean() < 70


def test_blur_photo_kinds_and_kernels():
    for r in (0.7, 1.5, 3.2):
        k = disk_kernel(r)
        assert abs(k.sum() - 1) < 1e-5 and np.allclose(k, k[::-1, ::-1])
    k = linear_motion_kernel(7.0, 0.0)
    assert abs(k.sum() - 1) < 1e-5 and np.count_nonzero(k.sum(axis=1)) == 1  # one row: horizontal
    img = np.zeros((48, 48, 3), np.uint8)
    img[:, 24:] = 255
    for kind in ("defocus", "gaussian", "motion"):
        out = get_synthesizer("blur_photo")(img, np.random.default_rng(5), kinds=[kind], shake=0.0)
        row = out[24, :, 0].astype(int)
        assert (np.diff(row) >= -1).all()  # a blurred step stays monotone
        if kind != "motion":  # a motion along the edge may leave it sharp
            assert 0 < row[23] < 255 or 0 < row[24] < 255
    with pytest.raises(ValueError, match="kinds"):
        get_synthesizer("blur_photo")(img, np.random.default_rng(0), kinds=["box"])


def test_haze_photo_whitens_far_regions_more():
    img = np.full((64, 64, 3), 60, np.uint8)
    depth = np.zeros((64, 64), np.float32)
    depth[:32] = 1.0  # top far
    out = get_synthesizer("haze_photo")(img, np.random.default_rng(0), depth=depth).astype(float)
    assert out[:32].mean() > out[32:].mean() > 60


def test_rain_photo_adds_bright_streaks_with_a_direction():
    img = np.full((96, 96, 3), 50, np.uint8)
    out = get_synthesizer("rain_photo")(img, np.random.default_rng(2), angle=0.0, density=0.004, veil=0.0,
                                        length=30.0, width=1.0).astype(float)[..., 0] - 50
    assert out.min() >= 0 and out.max() > 60
    # vertical streaks: neighbours along columns agree more than along rows
    v = np.corrcoef(out[1:].ravel(), out[:-1].ravel())[0, 1]
    h = np.corrcoef(out[:, 1:].ravel(), out[:, :-1].ravel())[0, 1]
    assert v > h + 0.3


def test_jpeg_quality_controls_the_error():
    rng = np.random.default_rng(0)
    grain = rng.normal(0, 12, _scene().shape[:2] + (1,))  # grey texture: chroma subsampling is not the error
    img = np.clip(_scene().astype(float) + grain, 0, 255).astype(np.uint8)
    s = get_synthesizer("jpeg")
    low = np.abs(s(img, rng, quality=10).astype(float) - img).mean()
    high = np.abs(s(img, rng, quality=95).astype(float) - img).mean()
    assert low > 2 * high
    with pytest.raises(ValueError, match="quality"):
        s(img, rng, quality=0)


def test_physical_order_and_compose():
    assert physical_order(["jpeg", "noise", "blur", "haze"]) == ["haze", "blur", "noise", "jpeg"]
    assert physical_order(["noise", "snow", "low-light"]) == ["low_light", "noise", "snow"]
    img = _scene()
    # low light then noise: the noise is not darkened (std near σ); the reverse order would shrink it
    flat = np.full((64, 64, 3), 200, np.uint8)
    out = compose(flat, np.random.default_rng(0), [("noise", None, {"sigma": 20}),
                                                  ("low_light", None, {"exposure": 0.2, "gamma": 1.0, "shot": 0.0,
                                                                       "read": 0.0})])
    assert 15 < out.astype(float).std() < 25
    same = compose(img, np.random.default_rng(1), [("haze", None, {}), ("blur", None, {})])
    assert np.array_equal(same, compose(img, np.random.default_rng(1), [("blur", None, {}), ("haze", None, {})]))
    with pytest.raises(ValueError, match="once"):
        compose(img, np.random.default_rng(0), [("noise", None, {}), ("noise", None, {})])


@pytest.mark.parametrize("name,params,match", [
    ("noise_photo", {"sigma": [30, 5]}, "sigma"),
    ("noise_photo", {"p_camera": 2.0}, "p_camera"),
    ("low_light_photo", {"exposure": [0.0, 2.0]}, "exposure"),
    ("rain_photo", {"angle": [-120, 0]}, "angle"),
    ("haze_photo", {"airlight": [0.5, 1.5]}, "airlight"),
])
def test_bad_parameters_name_what_is_wrong(name, params, match):
    with pytest.raises(ValueError, match=match):
        get_synthesizer(name)(_scene(), np.random.default_rng(0), **params)
