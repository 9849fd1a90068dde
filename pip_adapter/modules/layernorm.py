"""Restormer-style LayerNorm for B×C×H×W maps: normalise over the channels of every pixel."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """Per-pixel LayerNorm over channels (Restormer's ``WithBias`` / ``BiasFree`` forms).

    ``with_bias=True`` ("WithBias"): ``(x - mean) / sqrt(var + eps) * weight + bias``.
    ``with_bias=False`` ("BiasFree"): ``x / sqrt(var + eps) * weight`` — the variance is still taken
    around the mean, only the centring of the output is dropped (as in Restormer).
    The variance is the biased one (divide by C), eps = 1e-5.  The output keeps the input's memory format;
    channels-last input takes the fused ``F.layer_norm`` path (much faster on CPU than a reduction over
    the channel axis of a contiguous NCHW map).

    The weight and bias are bare parameters (not an ``nn.LayerNorm``), which is also why a
    thop-style count skips them, like the release's LayerNorm.
    """

    def __init__(self, channels: int, with_bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"LayerNorm2d needs at least one channel, got {channels}")
        self.channels = channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if with_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"LayerNorm2d({self.channels}) expects B×{self.channels}×H×W, "
                             f"got shape {tuple(x.shape)}")
        if self.bias is not None and x.is_contiguous(memory_format=torch.channels_last):
            # channels are the innermost axis: the fused kernel reads the map once, no copy
            out = F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,), self.weight, self.bias, self.eps)
            return out.permute(0, 3, 1, 2)
        var, mu = torch.var_mean(x, dim=1, keepdim=True, correction=0)
        inv = torch.rsqrt(var + self.eps)
        w = self.weight.view(1, -1, 1, 1)
        if self.bias is None:
            return x * inv * w
        # (x - mu) * inv * w + b, with the per-pixel and per-channel factors kept apart so the
        # big tensor is touched by as few element-wise passes as possible
        return torch.addcmul(self.bias.view(1, -1, 1, 1), (x - mu) * inv, w)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The same normalisation for B×N×C tokens (channels last), as the PIP level's token path uses it."""
        if x.shape[-1] != self.channels:
            raise ValueError(f"LayerNorm2d({self.channels}) expects tokens with {self.channels} channels last, "
                             f"got shape {tuple(x.shape)}")
        if self.bias is not None:
            return F.layer_norm(x, (self.channels,), self.weight, self.bias, self.eps)
        var = x.var(dim=-1, keepdim=True, correction=0)
        return x * torch.rsqrt(var + self.eps) * self.weight

    def extra_repr(self) -> str:
        return f"{self.channels}, with_bias={self.bias is not None}, eps={self.eps}"
