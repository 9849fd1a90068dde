"""Feed-forward blocks of the PIP level: Restormer's GDFN (P2P) and the release's dual-gate FFN (P2F)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .tokens import depthwise_tokens, linear_tokens, weight_matrix


def hidden_width(dim: int, expansion: float) -> int:
    """Hidden width ``int(dim * expansion)`` (2.66 → 48 gives 127, 64 gives 170), as in Restormer."""
    return int(dim * expansion)


class _GatedFFN(nn.Module):
    """1×1 in (dim→2h) → 3×3 depthwise on 2h → gate → 1×1 out (h→dim); no bias anywhere."""

    def __init__(self, dim: int, expansion: float = 2.66, fused: bool = True) -> None:
        super().__init__()
        self.fused = fused   # an explicit flag (see modules.attention.set_fused), never inferred from hooks
        hidden = hidden_width(dim, expansion)
        if hidden < 1:
            raise ValueError(f"FFN hidden width int({dim}·{expansion}) must be >= 1")
        self.dim, self.hidden = dim, hidden
        self.project_in = nn.Conv2d(dim, 2 * hidden, kernel_size=1, bias=False)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, kernel_size=3, padding=1, groups=2 * hidden, bias=False)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=False)

    def gate(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        if channels_last and self.fused:
            # the two halves of a channels-last map would be interleaved (element-wise kernels on them run
            # several times slower); computing each half with its slice of the weights gives dense maps
            h = self.hidden
            w_in, w_dw = self.project_in.weight, self.dwconv.weight
            x1 = F.conv2d(F.conv2d(x, w_in[:h]), w_dw[:h], padding=1, groups=h)
            x2 = F.conv2d(F.conv2d(x, w_in[h:]), w_dw[h:], padding=1, groups=h)
        else:
            x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
            if channels_last:
                x1 = x1.contiguous(memory_format=torch.channels_last)
                x2 = x2.contiguous(memory_format=torch.channels_last)
        return self.project_out(self.gate(x1, x2))

    def hidden_tokens(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """The gated hidden tokens B×N×h for tokens ``x`` B×N×dim on an H×W grid (before ``project_out``).

        Each half is made by its own slice of the weights, so both are dense B×N×h tensors.
        """
        h = self.hidden
        w_in, w_dw = weight_matrix(self.project_in.weight), self.dwconv.weight
        x1 = depthwise_tokens(linear_tokens(x, w_in[:h]), w_dw[:h], size)
        x2 = depthwise_tokens(linear_tokens(x, w_in[h:]), w_dw[h:], size)
        return self.gate(x1, x2)


class GDFN(_GatedFFN):
    """Restormer's gated-Dconv FFN: ``gelu(x1) · x2`` (used in P2P)."""

    def gate(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        # in place on gelu's fresh output: one buffer fewer, and autograd keeps what the backward needs
        return F.gelu(x1).mul_(x2)


class DualGateFFN(_GatedFFN):
    """The release's dual-gate FFN: ``gelu(x2) · x1 + gelu(x1) · x2`` (used in P2F)."""

    def gate(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        # two buffers instead of four (each fresh full-size buffer costs page faults on CPU); the in-place
        # ops act on fresh gelu outputs, so autograd stays exact
        return F.gelu(x2).mul_(x1).addcmul_(F.gelu(x1), x2)
