"""Metrics of the all-in-one restoration protocol (spec §8), registered beside BasicSR's own.

Both take BasicSR's metric arguments (``img``, ``img2`` in [0, 255], BGR channel order as BasicSR's
``tensor2img`` produces, ``crop_border``, ``input_order``, ``test_y_channel``) so they can be named in
``val.metrics`` like ``calculate_psnr``.  Unlike BasicSR's functions they are meant for unrounded float
images (the published tables measure float RGB in [0, 1]).

* ``calculate_psnr_aio``: PSNR with peak 1 on the image scaled to [0, 1].
* ``calculate_ssim_aio``: scikit-image's ``structural_similarity`` with its default 7×7 uniform window,
  over the three colour channels (BasicSR's ``calculate_ssim`` uses an 11×11 Gaussian window and gives
  different values).

Both are the policy of :mod:`pip_adapter.utils.metrics` (small images included), so a validation during
training and ``pip-adapter restore --gt`` / ``evaluate`` give the same numbers for the same images.
"""
from __future__ import annotations

import numpy as np
from basicsr.metrics.metric_util import reorder_image, to_y_channel

from pip_adapter.utils.metrics import psnr, ssim


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int, input_order: str,
             test_y_channel: bool) -> tuple:
    if img.shape != img2.shape:
        raise ValueError(f"metric inputs differ in shape: {img.shape} vs {img2.shape}")
    if input_order not in ("HWC", "CHW"):
        raise ValueError(f"input_order must be 'HWC' or 'CHW', got {input_order!r}")
    img = reorder_image(img, input_order=input_order)
    img2 = reorder_image(img2, input_order=input_order)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border, ...]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border, ...]
    if test_y_channel:
        img, img2 = to_y_channel(img), to_y_channel(img2)
    return img.astype(np.float64) / 255.0, img2.astype(np.float64) / 255.0


def calculate_psnr_aio(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, input_order: str = "HWC",
                       test_y_channel: bool = False, **kwargs) -> float:
    """PSNR (dB) of two images given in [0, 255], computed on [0, 1] floats."""
    return psnr(*_prepare(img, img2, crop_border, input_order, test_y_channel))


def calculate_ssim_aio(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, input_order: str = "HWC",
                       test_y_channel: bool = False, **kwargs) -> float:
    """SSIM with scikit-image's defaults (7×7 uniform window) on [0, 1] floats, averaged over channels; images
    under 7 px as :func:`pip_adapter.utils.metrics.ssim` says (a smaller window; NaN under 3 px)."""
    return ssim(*_prepare(img, img2, crop_border, input_order, test_y_channel))
