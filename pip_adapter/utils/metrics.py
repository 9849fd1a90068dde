"""Image-quality numbers shared by inference, evaluation, training validation and the analysis: PSNR and SSIM.

One policy everywhere (``pip-adapter restore --gt``, ``pip-adapter evaluate``, BasicSR's ``calculate_psnr_aio``
and ``calculate_ssim_aio``, the wrong-prompt matrix):

* images are float with values in [0, 1] and compared in float64;
* PSNR has peak 1 and is ``inf`` for identical images (:func:`mean_psnr` can cap it, for tables of means);
* SSIM is scikit-image's ``structural_similarity`` with a 7×7 uniform window and ``data_range=1``, averaged
  over colour channels (a single channel counts as a gray image).  **Small images:** an image under 7 px on a
  side uses the largest odd window that fits (5 or 3); under 3 px SSIM is undefined and is NaN (callers
  leave NaN out of averages).
"""
from __future__ import annotations

import math
from typing import Optional, Tuple, Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]
SSIM_WINDOW = 7  # scikit-image's default window, which the published tables use
SSIM_MIN_WINDOW = 3  # the smallest window scikit-image accepts


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB of a mean squared error of images with values up to ``peak``; ``inf`` when ``mse`` is 0."""
    return float("inf") if mse <= 0 else 10.0 * math.log10(peak * peak / mse)


def psnr(restored: Array, target: Array, peak: float = 1.0) -> float:
    """PSNR in dB of two same-shape images (NumPy arrays or tensors), computed in float64."""
    if tuple(restored.shape) != tuple(target.shape):
        raise ValueError(f"psnr inputs differ in shape: {tuple(restored.shape)} vs {tuple(target.shape)}")
    if isinstance(restored, torch.Tensor) or isinstance(target, torch.Tensor):
        diff = torch.as_tensor(restored).detach().double() - torch.as_tensor(target).detach().double()
        return psnr_from_mse(float(diff.square().mean()), peak)
    diff = np.asarray(restored, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    return psnr_from_mse(float(np.mean(diff * diff)), peak)


def mean_psnr(restored: torch.Tensor, target: torch.Tensor, max_db: Optional[float] = None) -> float:
    """Mean over a batch (first axis) of each image's :func:`psnr`; ``max_db`` caps each value (identical images
    would otherwise make the mean infinite)."""
    if tuple(restored.shape) != tuple(target.shape):
        raise ValueError(f"psnr inputs differ in shape: {tuple(restored.shape)} vs {tuple(target.shape)}")
    values = [psnr(a, b) for a, b in zip(restored, target)]
    if max_db is not None:
        values = [min(v, max_db) for v in values]
    return float(np.mean(values))


def ssim(restored: np.ndarray, target: np.ndarray) -> float:
    """SSIM of two same-shape float images H×W or H×W×C in [0, 1] (the module's policy, small images included)."""
    from skimage.metrics import structural_similarity  # scikit-image is imported only where SSIM is computed

    if restored.shape != target.shape:
        raise ValueError(f"ssim inputs differ in shape: {restored.shape} vs {target.shape}")
    a = np.asarray(restored, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    if a.ndim == 3 and a.shape[2] == 1:
        a, b = a[..., 0], b[..., 0]
    win = min(SSIM_WINDOW, a.shape[0], a.shape[1])
    win = win if win % 2 == 1 else win - 1
    if win < SSIM_MIN_WINDOW:
        return float("nan")
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=2 if a.ndim == 3 else None,
                                       win_size=win))


def image_metrics(restored: np.ndarray, gt: np.ndarray) -> Tuple[float, float]:
    """(PSNR, SSIM) of two float H×W×C images in [0, 1], by the module's policy."""
    if restored.shape != gt.shape:
        raise ValueError(f"restored image {restored.shape} and ground truth {gt.shape} differ in size")
    return psnr(restored, gt), ssim(restored, gt)
