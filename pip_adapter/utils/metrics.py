"""Image-quality numbers shared by inference, training validation and the analysis: PSNR."""
from __future__ import annotations

import math
from typing import Union

import numpy as np
import torch

Array = Union[np.ndarray, torch.Tensor]


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
