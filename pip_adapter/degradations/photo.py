"""Degradations closer to real photos (the ``*_photo`` synthesisers, ``camera_noise`` and ``jpeg``).

The built-in synthesisers (``noise``, ``rain``, ``haze``, ``blur``, ``low_light``) stay as they are: the
quickstart data and the paper-style experiments depend on their outputs.  The models here draw every
parameter from a continuous range per image, so one training crop never looks like the last:

* ``noise_photo``: additive Gaussian noise with σ uniform in ``sigma`` (0–255 scale), or, with probability
  ``p_camera``, the camera-like noise of ``camera_noise``.
* ``camera_noise``: signal-dependent Poisson-Gaussian noise ``y = x + sqrt(a·x + b)·n``, with mild
  correlation between the colour channels (a shared component), as a demosaicked sensor gives.
* ``blur_photo``: a defocus disk, a Gaussian PSF or a short linear/curved motion kernel (one drawn per image).
* ``low_light_photo``: exposure and gamma on the luminance only (RGB scaled by the luminance ratio, so hue
  and saturation survive), then the shot and read noise a dark photo carries.
* ``haze_photo``: ``I = J·t + A·(1 − t)``, ``t = exp(−β·d)`` with a depth-like map (far at the top, darker and
  smoother regions pushed further away, plus low-frequency variation).
* ``rain_photo``: rain streaks of varied angle, density, length and width, with a light veil.
* ``jpeg``: JPEG compression at a random quality (``cv2.imencode``).

``compose(img, rng, steps)`` applies several in physical order (haze → rain → low light → blur → noise →
jpeg): the scene is hazy and rainy before the camera sees it, the exposure is set, the lens blurs, the
sensor adds noise and the file is compressed last.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from pip_adapter.omega import canonical_name

from .builtin import _draw, depth_prior, motion_kernel
from .registry import get_synthesizer, register_synthesizer

Range = Union[float, Sequence[float]]

# the order in which degradations happen between the scene and the saved file
PHYSICAL_ORDER: Tuple[str, ...] = ("haze", "rain", "low_light", "blur", "noise", "jpeg")

# the realistic synthesiser of each degradation type (the types' ω names stay the default ones)
PHOTO_SYNTHESIZERS: Dict[str, str] = {"noise": "noise_photo", "rain": "rain_photo", "haze": "haze_photo",
                                      "blur": "blur_photo", "low_light": "low_light_photo", "jpeg": "jpeg"}

# Rec. 601 luma weights (the JPEG/BT.601 convention) for the colour-preserving tone curve
_LUMA = np.array([0.299, 0.587, 0.114], np.float64)


def _f(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) / 255.0


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _check_range(value: Range, what: str, lo: float, hi: float = np.inf) -> None:
    vals = [value] if isinstance(value, (int, float)) else list(value)
    if not isinstance(value, (int, float)) and len(vals) != 2:
        raise ValueError(f"{what} must be a number or a [low, high] pair, got {value!r}")
    if any(not np.isfinite(v) or v < lo or v > hi for v in vals) or vals[0] > vals[-1]:
        raise ValueError(f"{what} must lie in [{lo:g}, {hi:g}] (low <= high), got {value!r}")


# ---------------------------------------------------------------- noise
def _camera_noise(x: np.ndarray, rng: np.random.Generator, a: float, b: float, corr: float) -> np.ndarray:
    std = np.sqrt(np.maximum(a * x + b, 0.0))
    n = rng.standard_normal(x.shape)
    if corr > 0:
        # demosaicking spreads each sensor sample over neighbouring colours: a shared component per pixel
        shared = rng.standard_normal(x.shape[:2] + (1,))
        n = np.sqrt(1.0 - corr) * n + np.sqrt(corr) * shared
    return x + std * n


@register_synthesizer("camera_noise", online=True,
                      description="signal-dependent Poisson-Gaussian noise with mild channel correlation")
def camera_noise(img: np.ndarray, rng: np.random.Generator, shot: Range = (0.002, 0.03),
                 read: Range = (0.01, 0.08), channel_corr: Range = (0.0, 0.35)) -> np.ndarray:
    """Camera-like noise ``y = x + sqrt(shot·x + read²)·n`` on [0, 1].

    ``shot``: the Poisson (signal-dependent) gain, variance per unit of signal; ``read``: the std of the
    signal-independent read noise; ``channel_corr``: the fraction of the noise variance shared by R, G
    and B.  Each is drawn uniformly per image from its range.
    """
    _check_range(shot, "camera_noise shot", 0.0)
    _check_range(read, "camera_noise read", 0.0)
    _check_range(channel_corr, "camera_noise channel_corr", 0.0, 1.0)
    a, r, c = _draw(rng, shot), _draw(rng, read), _draw(rng, channel_corr)
    return _u8(_camera_noise(_f(img), rng, a, r * r, c))


@register_synthesizer("noise_photo", online=True, variants=[{"sigma": 15}, {"sigma": 25}, {"sigma": 50}],
                      description="Gaussian noise with sigma drawn from a range, sometimes camera-like")
def noise_photo(img: np.ndarray, rng: np.random.Generator, sigma: Range = (5.0, 55.0),
                p_camera: float = 0.0, **camera: Any) -> np.ndarray:
    """Additive white Gaussian noise with σ (0–255 scale) uniform in ``sigma``, rounded to uint8.

    With probability ``p_camera`` the image gets ``camera_noise`` instead (extra keyword arguments go to it),
    so a model trained on both meets the signal-dependent noise of real sensors as well as the
    benchmark's Gaussian noise.
    """
    _check_range(sigma, "noise_photo sigma", 0.0)
    if not 0.0 <= float(p_camera) <= 1.0:
        raise ValueError(f"noise_photo p_camera must be a probability in [0, 1], got {p_camera!r}")
    if p_camera > 0 and rng.random() < p_camera:
        return camera_noise(img, rng, **camera)
    s = _draw(rng, sigma)
    return np.clip(np.rint(img.astype(np.float64) + s * rng.standard_normal(img.shape)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- blur
def disk_kernel(radius: float) -> np.ndarray:
    """A defocus (pillbox) kernel of ``radius`` pixels, anti-aliased at its rim, summing to 1."""
    r = max(float(radius), 0.5)
    half = int(np.ceil(r)) + 1
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    # 4× supersampling of the disk's coverage makes sub-pixel radii change the kernel smoothly
    sub = np.linspace(-0.375, 0.375, 4)
    cover = np.zeros_like(xx)
    for dy in sub:
        for dx in sub:
            cover += ((xx + dx) ** 2 + (yy + dy) ** 2 <= r * r)
    k = cover / cover.sum()
    return k.astype(np.float32)


def linear_motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A straight motion kernel of ``length`` pixels at ``angle_deg``, anti-aliased, summing to 1."""
    n = max(3, int(np.ceil(length)) | 1)
    k = np.zeros((n, n), np.float32)
    c = n // 2
    a = np.deg2rad(angle_deg)
    for t in np.linspace(-(length - 1) / 2.0, (length - 1) / 2.0, max(2, int(length * 4))):
        x, y = c + t * np.cos(a), c + t * np.sin(a)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                          (1, 1, fx * fy)):
            if 0 <= x0 + dx < n and 0 <= y0 + dy < n:
                k[y0 + dy, x0 + dx] += w
    return k / k.sum()


@register_synthesizer("blur_photo",
                      description="defocus disk, Gaussian or small motion blur (one kind drawn per image)")
def blur_photo(img: np.ndarray, rng: np.random.Generator, kinds: Sequence[str] = ("defocus", "gaussian", "motion"),
               weights: Optional[Sequence[float]] = None, radius: Range = (1.0, 3.5), sigma: Range = (0.8, 2.5),
               length: Range = (3.0, 11.0), shake: float = 0.5) -> np.ndarray:
    """Blur of one kind drawn from ``kinds`` (probabilities ``weights``, equal by default).

    ``defocus``: a disk of ``radius`` px; ``gaussian``: a Gaussian PSF of std ``sigma`` px; ``motion``: a
    motion of ``length`` px, straight (at a random angle) or, with probability ``shake``, a short
    random-walk camera shake.  Reflect padding at the borders, rounded to uint8.
    """
    kinds = [str(k) for k in ([kinds] if isinstance(kinds, str) else kinds)]
    bad = sorted(set(kinds) - {"defocus", "gaussian", "motion"})
    if bad or not kinds:
        raise ValueError(f"blur_photo kinds must be a non-empty list of defocus, gaussian, motion; got {kinds!r}")
    p = None
    if weights is not None:
        p = np.asarray(weights, np.float64)
        if p.shape != (len(kinds),) or (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"blur_photo weights must be {len(kinds)} non-negative numbers, got {weights!r}")
        p = p / p.sum()
    kind = kinds[int(rng.choice(len(kinds), p=p))]
    x = img.astype(np.float32)
    if kind == "gaussian":
        _check_range(sigma, "blur_photo sigma", 1e-3)
        out = cv2.GaussianBlur(x, (0, 0), _draw(rng, sigma), borderType=cv2.BORDER_REFLECT)
    else:
        if kind == "defocus":
            _check_range(radius, "blur_photo radius", 0.5)
            k = disk_kernel(_draw(rng, radius))
        else:
            _check_range(length, "blur_photo length", 2.0)
            n = _draw(rng, length)
            if rng.random() < shake:
                k = motion_kernel(rng, int(round(n)))
            else:
                k = linear_motion_kernel(n, rng.uniform(0.0, 180.0))
        h, w = img.shape[:2]
        if k.shape[0] >= min(h, w):
            raise ValueError(f"blur_photo: a {k.shape[0]} px kernel does not fit a {h}×{w} image; "
                             "use a larger image or smaller radius/length")
        out = cv2.filter2D(x, -1, k, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- low light
def darken_preserving_colour(x: np.ndarray, exposure: float, gamma: float) -> np.ndarray:
    """``x`` (H×W×3 in [0, 1]) darkened by the tone curve ``L' = exposure·L^gamma`` on its luminance L; RGB
    is scaled by ``L'/L`` so the chromaticity (hue, saturation) of every pixel is kept."""
    lum = x @ _LUMA
    new = exposure * np.power(np.maximum(lum, 0.0), gamma)
    ratio = new / np.maximum(lum, 1e-6)
    return x * ratio[..., None]


@register_synthesizer("low_light_photo",
                      description="exposure + gamma on luminance (colour kept) + shot/read noise of a dark photo")
def low_light_photo(img: np.ndarray, rng: np.random.Generator, exposure: Range = (0.08, 0.35),
                    gamma: Range = (1.2, 2.0), shot: Range = (0.0005, 0.006), read: Range = (0.002, 0.012),
                    channel_corr: Range = (0.0, 0.3)) -> np.ndarray:
    """Low light that keeps colour: ``L' = exposure·L^gamma`` on the luminance, RGB scaled by ``L'/L``, then
    Poisson-Gaussian sensor noise (``shot``: variance per unit of signal; ``read``: std; ``channel_corr``:
    shared fraction of the variance), rounded to uint8.  All drawn per image from their ranges.
    """
    _check_range(exposure, "low_light_photo exposure", 1e-4, 1.0)
    _check_range(gamma, "low_light_photo gamma", 0.1)
    _check_range(shot, "low_light_photo shot", 0.0)
    _check_range(read, "low_light_photo read", 0.0)
    _check_range(channel_corr, "low_light_photo channel_corr", 0.0, 1.0)
    y = darken_preserving_colour(_f(img), _draw(rng, exposure), _draw(rng, gamma))
    a, r, c = _draw(rng, shot), _draw(rng, read), _draw(rng, channel_corr)
    return _u8(_camera_noise(np.clip(y, 0.0, 1.0), rng, a, r * r, c))


# ---------------------------------------------------------------- haze
def photo_depth(img: np.ndarray, rng: np.random.Generator, detail: float = 0.35) -> np.ndarray:
    """A depth-like map in [0, 1] (1 = far) for a photo without depth: the smooth prior (far at the top, with
    low-frequency variation) plus a cue from the image itself (bright, low-contrast regions such as sky
    tend to be far), smoothed so it does not copy texture."""
    h, w = img.shape[:2]
    prior = depth_prior((h, w), rng)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    s = max(2.0, min(h, w) / 24.0)
    mean = cv2.GaussianBlur(grey, (0, 0), s)
    var = cv2.GaussianBlur(grey * grey, (0, 0), s) - mean * mean
    contrast = np.sqrt(np.maximum(var, 0.0))
    cue = mean - 2.0 * contrast
    cue = (cue - cue.min()) / max(float(cue.max() - cue.min()), 1e-6)
    d = (1.0 - detail) * prior + detail * cv2.GaussianBlur(cue, (0, 0), s)
    lo, hi = float(d.min()), float(d.max())
    return ((d - lo) / max(hi - lo, 1e-6)).astype(np.float32)


@register_synthesizer("haze_photo", description="haze with a depth-like transmission and tinted airlight")
def haze_photo(img: np.ndarray, rng: np.random.Generator, beta: Range = (0.6, 2.2), airlight: Range = (0.65, 0.95),
               tint: Range = (0.0, 0.06), d_min: Range = (0.05, 0.3),
               depth: Optional[np.ndarray] = None) -> np.ndarray:
    """Atmospheric scattering ``I = J·t + A·(1 − t)``, ``t = exp(−β·d)``.

    ``d`` = ``d_min + (1 − d_min)·depth``; ``depth`` (H×W in [0, 1], 1 = far) is given or made by
    ``photo_depth``.  ``airlight``: A's brightness; ``tint``: how far A's colour leans to blue or yellow.
    """
    _check_range(beta, "haze_photo beta", 0.0)
    _check_range(airlight, "haze_photo airlight", 0.0, 1.0)
    _check_range(tint, "haze_photo tint", 0.0, 0.5)
    _check_range(d_min, "haze_photo d_min", 0.0, 1.0)
    h, w = img.shape[:2]
    if depth is None:
        depth = photo_depth(img, rng)
    depth = np.asarray(depth, np.float64)
    if depth.shape != (h, w) or not np.isfinite(depth).all():
        raise ValueError(f"haze_photo: depth must be a finite {h}×{w} map, got shape {depth.shape}")
    dm = _draw(rng, d_min)
    d = dm + (1.0 - dm) * np.clip(depth, 0.0, 1.0)
    t = np.exp(-_draw(rng, beta) * d)[..., None]
    lean = _draw(rng, tint) * rng.choice([-1.0, 1.0])  # + bluish (clear-sky scattering), − yellowish (smog)
    a = _draw(rng, airlight) * np.array([1.0 - lean, 1.0, 1.0 + lean])
    return _u8(_f(img) * t + np.clip(a, 0.0, 1.0)[None, None, :] * (1.0 - t))


# ---------------------------------------------------------------- rain
@register_synthesizer("rain_photo", description="rain streaks of varied angle, density, length and width")
def rain_photo(img: np.ndarray, rng: np.random.Generator, density: Range = (0.002, 0.02),
               length: Range = (8.0, 40.0), angle: Range = (-30.0, 30.0), width: Range = (1.0, 2.5),
               opacity: Range = (0.35, 0.85), veil: Range = (0.0, 0.12)) -> np.ndarray:
    """Rain: 1–3 layers of streaks (``density``: fraction of pixels seeding a streak; ``length``: in pixels,
    so a training crop and a whole photo get streaks of the same size; ``angle``: degrees from vertical, shared by the layers up to a few degrees;
    ``width``: px; ``opacity``), screen-blended, plus a faint bright ``veil`` (the haze of distant rain).
    """
    for what, v, lo, hi in (("density", density, 0.0, 1.0), ("length", length, 2.0, 1e4),
                            ("angle", angle, -89.0, 89.0), ("width", width, 0.5, 20.0),
                            ("opacity", opacity, 0.0, 1.0), ("veil", veil, 0.0, 1.0)):
        _check_range(v, f"rain_photo {what}", lo, hi)
    h, w = img.shape[:2]
    x = _f(img)
    main = _draw(rng, angle)
    total = _draw(rng, density)
    layers = int(rng.integers(1, 4))
    streaks = np.zeros((h, w), np.float32)
    for i in range(layers):
        seeds = (rng.random((h, w)) < total / layers).astype(np.float32)
        seeds *= rng.uniform(0.5, 1.0, size=(h, w)).astype(np.float32)
        n = max(3.0, _draw(rng, length) * (1.0 - 0.25 * i))  # far layers: shorter streaks
        k = linear_motion_kernel(n, 90.0 + main + rng.uniform(-4.0, 4.0))
        layer = cv2.filter2D(seeds, -1, k / k.max(), borderType=cv2.BORDER_CONSTANT)
        wd = _draw(rng, width)
        if wd > 1.0:
            layer = cv2.GaussianBlur(layer, (0, 0), (wd - 1.0) * 0.6 + 0.3)
        streaks = np.maximum(streaks, layer * (1.0 - 0.2 * i))
    peak = float(streaks.max())
    if peak > 0:
        streaks = np.clip(streaks / peak * 1.3, 0.0, 1.0) * _draw(rng, opacity)
    v = _draw(rng, veil)
    x = x * (1.0 - v) + 0.85 * v
    return _u8(1.0 - (1.0 - x) * (1.0 - streaks[..., None].astype(np.float64)))


# ---------------------------------------------------------------- JPEG
@register_synthesizer("jpeg", online=True, variants=[{"quality": 30}, {"quality": 60}],
                      description="JPEG compression at a quality drawn from a range")
def jpeg(img: np.ndarray, rng: np.random.Generator, quality: Range = (30.0, 90.0)) -> np.ndarray:
    """JPEG compression (OpenCV's encoder, 4:2:0 chroma) at an integer quality drawn from ``quality``."""
    _check_range(quality, "jpeg quality", 1.0, 100.0)
    q = int(round(_draw(rng, quality)))
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode a {img.shape} image at quality {q}")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------- composites
def physical_order(types: Sequence[str]) -> List[str]:
    """``types`` sorted in the order they happen (haze → rain → low light → blur → noise → jpeg); types not
    in that list keep their given order after the known ones."""
    names = [canonical_name(t) for t in types]
    rank = {n: i for i, n in enumerate(PHYSICAL_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), names.index(n)))


def compose(img: np.ndarray, rng: np.random.Generator,
            steps: Sequence[Tuple[str, Optional[str], Mapping[str, Any]]]) -> np.ndarray:
    """Apply several degradations in physical order.

    ``steps``: ``(type, synthesiser name or None, params)``; ``None`` picks ``PHOTO_SYNTHESIZERS[type]`` when
    there is one, else the synthesiser registered under the type's name.
    """
    if not steps:
        raise ValueError("compose needs at least one (type, synthesiser, params) step")
    by_type = {canonical_name(t): (s, dict(p or {})) for t, s, p in steps}
    if len(by_type) != len(steps):
        raise ValueError(f"compose: each degradation type may appear once, got {[t for t, _, _ in steps]}")
    out = img
    for t in physical_order(list(by_type)):
        synth_name, params = by_type[t]
        synth = get_synthesizer(synth_name or PHOTO_SYNTHESIZERS.get(t, t))
        out = synth(out, rng, **params)
    return out
