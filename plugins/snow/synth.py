"""A snow degradation model: falling flakes (two depth layers, motion-streaked) over a bright veil."""
from __future__ import annotations

import math

import cv2
import numpy as np


def _motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised line kernel: the streak a flake draws while the shutter is open."""
    length = max(1, int(length))
    size = length if length % 2 else length + 1
    k = np.zeros((size, size), np.float32)
    c = size // 2
    dx, dy = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, num=max(2, 2 * length)):
        k[int(round(c + t * dy)), int(round(c + t * dx))] = 1.0
    return k / k.sum()


def _flake_layer(h: int, w: int, rng: np.random.Generator, density: float, radius: float,
                 streak: int, angle: float) -> np.ndarray:
    """H×W float mask in [0, 1] of one layer of flakes."""
    n = max(1, int(round(density * h * w)))
    layer = np.zeros((h, w), np.float32)
    ys = rng.integers(0, h, size=n)
    xs = rng.integers(0, w, size=n)
    # brightness of each flake, accumulated where flakes overlap
    np.add.at(layer, (ys, xs), rng.uniform(0.6, 1.0, size=n).astype(np.float32))
    sigma = max(0.3, float(radius))
    layer = cv2.GaussianBlur(layer, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    # a blurred impulse of unit mass peaks at 1/(2πσ²): rescale so a flake's centre is near white
    layer *= 2.0 * math.pi * sigma * sigma
    if streak > 1:
        layer = cv2.filter2D(layer, -1, _motion_kernel(streak, angle), borderType=cv2.BORDER_REFLECT)
        layer *= min(3.0, streak / 2.0)  # a streak spreads one flake's light over its length
    return np.clip(layer, 0.0, 1.0)


def add_snow(img: np.ndarray, rng: np.random.Generator, density: float = 0.006, veil: float = 0.12,
             flake_size: float = 1.0, streak: int = 5) -> np.ndarray:
    """Snow on a clean uint8 H×W×3 RGB image: small fast flakes, a few larger near ones, a white veil.

    ``density`` is flakes per pixel in the far layer (the near layer has a fifth of them, twice as
    large); ``veil`` whitens the scene like falling snow in the distance; ``streak`` is the motion
    length in pixels, along an angle drawn from ``rng`` (mostly downward).
    """
    h, w = img.shape[:2]
    x = img.astype(np.float32) / 255.0
    angle = float(rng.uniform(60.0, 120.0))  # degrees from the x axis, image y points down
    far = _flake_layer(h, w, rng, density, 0.6 * flake_size, streak, angle)
    near = _flake_layer(h, w, rng, density / 5.0, 1.4 * flake_size, max(1, streak // 2), angle)
    mask = np.clip(far + near, 0.0, 1.0)[..., None]
    x = x * (1.0 - veil) + veil * 0.9
    x = x + mask * (1.0 - x)  # screen blend: flakes brighten, never darken
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
