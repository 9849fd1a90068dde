"""Token-major building blocks of the traced PIP level (``torch.compile`` / ``torch.export``).

A traced level works on B×N×C token tensors (N = H·W, channels innermost, i.e. the storage of a channels-last
map).  Every full-size tensor is made by a batched GEMM (1×1 convolutions, the attention's mixing) or by a
convolution on a channels-last view (depthwise 3×3, the 3×3 ``out_conv``), so its layout is fixed by the op
that writes it: the compiler's generated kernels then only do element-wise work and reductions on tensors of
one layout, and no layout conversion is left for it to choose.  Residual additions ride in the GEMMs
(``baddbmm``).  The numbers are the eager level's up to float rounding.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F


def weight_matrix(conv_weight: torch.Tensor) -> torch.Tensor:
    """A 1×1 convolution's O×I×1×1 weight as the O×I matrix."""
    return conv_weight.reshape(conv_weight.shape[0], conv_weight.shape[1])


def linear_tokens(x: torch.Tensor, weight: torch.Tensor, residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``x · weightᵀ (+ residual)`` for tokens ``x`` B×N×I and ``weight`` O×I (or B×O×I): B×N×O."""
    wt = weight.transpose(-1, -2)
    wt = wt.unsqueeze(0).expand(x.shape[0], -1, -1) if wt.dim() == 2 else wt
    return torch.bmm(x, wt) if residual is None else torch.baddbmm(residual, x, wt)


def depthwise_tokens(x: torch.Tensor, weight: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """3×3 depthwise convolution (padding 1) of tokens ``x`` B×N×C on their H×W grid; ``weight`` C×1×3×3."""
    b, n, c = x.shape
    h, w = size
    y = F.conv2d(x.view(b, h, w, c).permute(0, 3, 1, 2), weight, padding=1, groups=c)
    return y.permute(0, 2, 3, 1).reshape(b, n, c)


def _bilinear_taps(out_size, in_size, like: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two source indices and the weight of the second, per output index (align_corners=False)."""
    src = ((torch.arange(out_size, device=like.device, dtype=torch.float32) + 0.5) * in_size / out_size
           - 0.5).clamp_min(0)
    i0 = src.floor()
    lam = (src - i0).to(like.dtype)
    i0 = i0.long()
    return i0, (i0 + 1).clamp_max(in_size - 1), lam


def bilinear_matrix(out_size, in_size, like: torch.Tensor) -> torch.Tensor:
    """The out×in matrix of the same 1-D bilinear resize (two non-zeros a row), for resizes written as products."""
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
