"""Built-in degradation models (seeded, documented; registered as the five default ω types).

Every model takes a clean uint8 H×W×3 RGB image and a ``numpy.random.Generator`` and draws its random
parameters from the given ranges, so one seed reproduces one result.

* ``noise``: additive white Gaussian noise as the PIP/PromptIR release does it,
  ``clip(x + σ·N(0, 1), 0, 255)`` then truncation to uint8 (σ on the 0–255 scale).
* ``rain``: rain streaks.  Sparse random seeds are smeared by an oriented line kernel (one main angle per
  image, each streak jittered around it), softened by a Gaussian blur and screen-blended over the image:
  ``out = 1 − (1 − x)(1 − s)``.
* ``haze``: atmospheric scattering ``I = J·t + A·(1 − t)``, ``t = exp(−β·d)``, ``d`` a depth map in [0, 1]
  (1 = far) rescaled to ``[d_min, 1]``; without a given depth a smooth prior is used (a vertical gradient,
  far at the top, plus low-frequency noise).
* ``blur``: defocus blur, a Gaussian point-spread function of random width σ (pixels), reflect padding.
* ``motion_blur`` (not a default type, for ``synthesizer: motion_blur``): a random camera-shake kernel (a
  random-walk trajectory with momentum, rasterised with bilinear splatting and normalised to sum 1).
* ``low_light``: exposure scaling and gamma ``y = e·x^γ`` on [0, 1], then Poisson shot noise at a random
  photon count and Gaussian read noise, rounded to uint8.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .registry import register_synthesizer

Range = Union[float, Sequence[float]]


def _draw(rng: np.random.Generator, value: Range) -> float:
    """A number: ``value`` itself, or uniform in ``[lo, hi]`` when given a pair."""
    if isinstance(value, (int, float)):
        return float(value)
    lo, hi = value
    return float(rng.uniform(lo, hi))


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- noise
@register_synthesizer("noise", variants=[{"sigma": 15}, {"sigma": 25}, {"sigma": 50}], online=True,
                      description="additive white Gaussian noise, sigma on the 0-255 scale")
def gaussian_noise(img: np.ndarray, rng: np.random.Generator, sigma: float = 25.0) -> np.ndarray:
    """Additive white Gaussian noise of std ``sigma`` (0–255 scale), clipped then truncated to uint8."""
    if sigma < 0:
        raise ValueError(f"noise sigma must be >= 0, got {sigma}")
    noisy = img.astype(np.float64) + float(sigma) * rng.standard_normal(img.shape)
    # truncation (not rounding) matches the release's ``.astype(np.uint8)`` after the clip
    return np.clip(noisy, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- rain
def _line_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A 1-px line of ``length`` pixels through the centre, ``angle_deg`` from vertical."""
    size = length if length % 2 else length + 1
    k = np.zeros((size, size), np.float32)
    c = size // 2
    a = np.deg2rad(angle_deg)
    dx, dy = np.sin(a) * (length - 1) / 2.0, np.cos(a) * (length - 1) / 2.0
    p0 = (int(round(c - dx)), int(round(c - dy)))
    p1 = (int(round(c + dx)), int(round(c + dy)))
    cv2.line(k, p0, p1, 1.0, thickness=1, lineType=cv2.LINE_AA)
    return k / max(float(k.max()), 1e-8)


@register_synthesizer("rain", description="rain streaks: oriented line kernels, blurred, screen-blended")
def rain_streaks(img: np.ndarray, rng: np.random.Generator, density: Range = (0.004, 0.012),
                 length: Range = (0.08, 0.2), angle: Range = (-25.0, 25.0), jitter: float = 6.0,
                 brightness: Range = (0.55, 0.9), blur_sigma: Range = (0.4, 1.0),
                 layers: int = 3) -> np.ndarray:
    """Rain streaks.

    ``density``: fraction of pixels seeding a streak (over all layers); ``length``: streak length as a
    fraction of the shorter image side (at least 3 px); ``angle``: the main direction in degrees from
    vertical; ``jitter``: per-layer deviation from it; ``brightness``: streak opacity; ``blur_sigma``:
    Gaussian softening in px; ``layers``: streak layers, each with its own length and angle.
    """
    h, w = img.shape[:2]
    x = img.astype(np.float32) / 255.0
    main_angle = _draw(rng, angle)
    total_density = _draw(rng, density)
    streaks = np.zeros((h, w), np.float32)
    for _ in range(max(1, int(layers))):
        seeds = (rng.random((h, w)) < total_density / max(1, int(layers))).astype(np.float32)
        seeds *= rng.uniform(0.6, 1.0, size=(h, w)).astype(np.float32)
        n = max(3, int(round(_draw(rng, length) * min(h, w))))
        kernel = _line_kernel(n, main_angle + rng.uniform(-jitter, jitter))
        streaks = np.maximum(streaks, cv2.filter2D(seeds, -1, kernel, borderType=cv2.BORDER_CONSTANT))
    sigma = _draw(rng, blur_sigma)
    if sigma > 0:
        streaks = cv2.GaussianBlur(streaks, (0, 0), sigmaX=sigma)
    peak = float(streaks.max())
    if peak > 0:
        streaks = np.clip(streaks / peak * 1.4, 0.0, 1.0)
    streaks *= _draw(rng, brightness)
    out = 1.0 - (1.0 - x) * (1.0 - streaks[..., None])
    return _to_uint8(out)


# ---------------------------------------------------------------- haze
def depth_prior(shape: Tuple[int, int], rng: np.random.Generator, noise_scale: float = 0.35,
                cells: int = 4) -> np.ndarray:
    """A smooth depth map in [0, 1] (1 = far): vertical gradient (far at the top) + low-frequency noise."""
    h, w = shape
    grad = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None].repeat(w, axis=1)
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    smooth = cv2.GaussianBlur(smooth, (0, 0), sigmaX=max(1.0, min(h, w) / (2.0 * cells)))
    spread = float(smooth.std()) or 1.0
    d = grad + noise_scale * smooth / spread * 0.5
    lo, hi = float(d.min()), float(d.max())
    return ((d - lo) / max(hi - lo, 1e-6)).astype(np.float32)


@register_synthesizer("haze", description="atmospheric scattering I = J t + A (1 - t), t = exp(-beta d)")
def haze(img: np.ndarray, rng: np.random.Generator, beta: Range = (1.0, 2.5), airlight: Range = (0.7, 0.95),
         tint: float = 0.04, d_min: float = 0.15, depth: Optional[np.ndarray] = None) -> np.ndarray:
    """Atmospheric scattering haze.

    ``beta``: scattering coefficient per unit depth; ``airlight``: global atmospheric light A (0–1),
    with a per-channel ``tint`` jitter; ``d_min``: depth of the nearest point, so the foreground is hazed a
    little too; ``depth``: H×W map in [0, 1] (1 = far), a smooth prior when omitted.
    """
    h, w = img.shape[:2]
    if depth is None:
        depth = depth_prior((h, w), rng)
    depth = np.asarray(depth, np.float32)
    if depth.shape != (h, w):
        raise ValueError(f"haze: depth must have shape {(h, w)}, got {depth.shape}")
    if not np.isfinite(depth).all():
        raise ValueError("haze: depth contains NaN or infinite values")
    d = d_min + (1.0 - d_min) * np.clip(depth, 0.0, 1.0)
    t = np.exp(-_draw(rng, beta) * d)[..., None]
    a = _draw(rng, airlight) * (1.0 + rng.uniform(-tint, tint, size=3))
    x = img.astype(np.float32) / 255.0
    out = x * t + a.astype(np.float32)[None, None, :] * (1.0 - t)
    return _to_uint8(out)


# ---------------------------------------------------------------- blur
def motion_kernel(rng: np.random.Generator, size: int, steps: int = 64, momentum: float = 0.8,
                  shake: float = 0.6) -> np.ndarray:
    """A random camera-shake kernel of ``size``×``size`` (odd), non-negative, summing to 1."""
    size = max(3, int(size) | 1)
    pos = np.zeros(2)
    vel = rng.standard_normal(2)
    vel /= np.linalg.norm(vel) + 1e-8
    pts = [pos.copy()]
    for _ in range(steps - 1):
        vel = momentum * vel + shake * rng.standard_normal(2) * (1 - momentum) * 2
        vel /= np.linalg.norm(vel) + 1e-8
        pos = pos + vel
        pts.append(pos.copy())
    traj = np.asarray(pts)
    traj -= traj.mean(axis=0)
    extent = np.abs(traj).max()
    if extent > 0:
        traj *= (size / 2.0 - 1.0) / extent
    traj += size // 2
    k = np.zeros((size, size), np.float64)
    for x, y in traj:  # bilinear splat keeps sub-pixel motion
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                            (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = x0 + dx, y0 + dy
            if 0 <= xi < size and 0 <= yi < size:
                k[yi, xi] += wgt
    return (k / k.sum()).astype(np.float32)


@register_synthesizer("blur", description="defocus blur: a Gaussian point-spread function")
def defocus_blur(img: np.ndarray, rng: np.random.Generator, sigma: Range = (1.0, 2.5)) -> np.ndarray:
    """Defocus blur: a Gaussian PSF of standard deviation ``sigma`` pixels (drawn per image).

    The built-in ``blur`` type.  A small network learns to invert an isotropic PSF within the quickstart's
    minutes; with ``motion_blur`` it did not beat the blurred input there (docs/DATA.md has the figures).
    """
    s = _draw(rng, sigma)
    if s <= 0:
        raise ValueError(f"blur: sigma must be > 0 pixels, got {s}")
    out = cv2.GaussianBlur(img.astype(np.float32), (0, 0), s, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@register_synthesizer("motion_blur", description="motion blur with a random camera-shake kernel")
def motion_blur(img: np.ndarray, rng: np.random.Generator, kernel_size: Range = (0.04, 0.1),
                min_size: int = 5, max_size: int = 31) -> np.ndarray:
    """Motion blur.

    ``kernel_size``: kernel extent as a fraction of the shorter image side, clamped to
    ``[min_size, max_size]`` px (and to the image); the trajectory is a random walk with momentum.
    """
    h, w = img.shape[:2]
    size = int(round(_draw(rng, kernel_size) * min(h, w)))
    size = int(np.clip(size, min_size, max_size))
    size = min(size, (min(h, w) - 1) | 1)
    k = motion_kernel(rng, size)
    out = cv2.filter2D(img.astype(np.float32), -1, k, borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- low light
@register_synthesizer("low_light", description="exposure scaling + gamma + Poisson/Gaussian noise")
def low_light(img: np.ndarray, rng: np.random.Generator, exposure: Range = (0.08, 0.3),
              gamma: Range = (1.3, 2.0), photons: Range = (150.0, 800.0),
              read_noise: Range = (0.002, 0.01)) -> np.ndarray:
    """Low light: ``y = exposure·x^gamma`` on [0, 1], Poisson noise with ``photons`` counts at full
    scale, Gaussian read noise of std ``read_noise`` (0–1 scale), rounded to uint8."""
    x = img.astype(np.float64) / 255.0
    y = _draw(rng, exposure) * np.power(x, _draw(rng, gamma))
    peak = _draw(rng, photons)
    y = rng.poisson(y * peak) / peak
    y = y + _draw(rng, read_noise) * rng.standard_normal(y.shape)
    return _to_uint8(y)
