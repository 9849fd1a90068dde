"""Bilinear resizes of the PIP level (align_corners=False, no antialias, the numbers of ``F.interpolate``).

Three forms of one resize, one per need: ``F.interpolate`` (eager NCHW / channels-last maps), two small
interpolation matrices (the channels-last graph under ``torch.compile`` / ``torch.export``: a symbolic H×W stays
symbolic, and ONNX Runtime runs two matrix products faster than gathers over a transposed map) and two gathers
on a B×H×W×C map (the token path: a compiler fuses them into one loop over the output).
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F


def resize_bilinear(x: torch.Tensor, size: Sequence[int], by_matrix: bool = False) -> torch.Tensor:
    """Bilinear resize of a B×C×H×W map to ``size``; ``by_matrix``: as two matrix products (compiler graphs).

    ``F.interpolate`` to or from a padded symbolic size fails in torch's scalar pass, so graphs with symbolic
    sizes take the products; the numbers agree up to rounding.
    """
    if not by_matrix:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    wh = bilinear_matrix(size[0], x.shape[-2], x)
    ww = bilinear_matrix(size[1], x.shape[-1], x)
    return wh @ x @ ww.transpose(0, 1)


def _bilinear_taps(out_size, in_size, like: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two source indices and the weight of the second, per output index (align_corners=False)."""
    src = ((torch.arange(out_size, device=like.device, dtype=torch.float32) + 0.5) * in_size / out_size
           - 0.5).clamp_min(0)
    i0 = src.floor()
    lam = (src - i0).to(like.dtype)
    i0 = i0.long()
    return i0, (i0 + 1).clamp_max(in_size - 1), lam


def bilinear_matrix(out_size, in_size, like: torch.Tensor) -> torch.Tensor:
    """The out×in matrix of the 1-D bilinear resize (two non-zeros a row), for resizes written as products."""
    i0, i1, lam = _bilinear_taps(out_size, in_size, like)
    grid = torch.arange(in_size, device=like.device)
    return (grid == i0[:, None]) * (1 - lam)[:, None] + (grid == i1[:, None]) * lam[:, None]


def resize_bilinear_hwc(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False, no antialias, as ``F.interpolate``) of a B×h×w×C map to H×W.

    Written as two gathers, so a compiler fuses it into one loop over the output and a symbolic size stays
    symbolic.
    """
    h0, h1, lh = _bilinear_taps(size[0], x.shape[1], x)
    w0, w1, lw = _bilinear_taps(size[1], x.shape[2], x)
    t = x[:, h0] * (1 - lh)[:, None, None] + x[:, h1] * lh[:, None, None]
    return t[:, :, w0] * (1 - lw)[:, None] + t[:, :, w1] * lw[:, None]
