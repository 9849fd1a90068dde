"""Token-major building blocks: the PIP level's token path (what ``torch.compile`` runs, ``modules/level_tokens.py``).

The token path works on B×N×C token tensors (N = H·W, channels innermost, i.e. the storage of a channels-last
map).  Every full-size tensor is made by a batched GEMM (1×1 convolutions, the attention's mixing) or by a
convolution on a channels-last view (depthwise 3×3, the 3×3 ``out_conv``), so its layout is fixed by the op
that writes it: the compiler's generated kernels then only do element-wise work and reductions on tensors of
one layout, and no layout conversion is left for it to choose.  Residual additions ride in the GEMMs
(``baddbmm``).  ``torch.export`` does not take this path (see ``modules/level_paths.py``).
"""
from __future__ import annotations

from typing import Optional, Sequence

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
