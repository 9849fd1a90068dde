"""A small U-Net with attention gates on its skip connections (a third-party-style backbone).

Attention gates (Oktay et al., "Attention U-Net", 2018) weight each skip feature by a map computed
from the skip and the coarser decoder feature before the two are concatenated.  Written here from
that description; nothing in it knows about PIP.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F


class ConvBlock(nn.Module):
    """Two 3×3 convolutions with GELU, and a residual when the widths agree."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.conv2(F.gelu(self.conv1(x)))


class AttentionGate(nn.Module):
    """``skip · σ(ψ(relu(W_x·skip + W_g·up(g))))``: a one-channel spatial gate on the skip feature."""

    def __init__(self, skip_ch: int, gate_ch: int, inter_ch: int) -> None:
        super().__init__()
        self.w_x = nn.Conv2d(skip_ch, inter_ch, 1, bias=False)
        self.w_g = nn.Conv2d(gate_ch, inter_ch, 1)
        self.psi = nn.Conv2d(inter_ch, 1, 1)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        if gate.shape[-2:] != skip.shape[-2:]:
            gate = F.interpolate(gate, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        a = torch.sigmoid(self.psi(F.relu(self.w_x(skip) + self.w_g(gate))))
        return skip * a


class UpStage(nn.Module):
    """Decoder stage: upsample, gate the skip, concatenate, convolve."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.gate = AttentionGate(skip_ch, in_ch, max(1, skip_ch // 2))
        self.fuse = ConvBlock(out_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        gated = self.gate(skip, x)
        return self.fuse(torch.cat([self.up(x), gated], dim=1))


class AttentionUNet(nn.Module):
    """Image-to-image U-Net with attention-gated skips and a global residual.

    Args:
        in_ch / out_ch: image channels.
        width: channels of the first stage; stage l has ``width · mults[l]``.
        mults: channel multipliers of the encoder stages (one skip per stage).
        mid_blocks: conv blocks at the bottleneck.
    Inputs must have H and W divisible by ``2 ** len(mults)`` (the image is padded otherwise).
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, width: int = 32,
                 mults: Sequence[int] = (1, 2, 4), mid_blocks: int = 1) -> None:
        super().__init__()
        chans = [width * int(m) for m in mults]
        self.levels = len(chans)
        self.stem = nn.Conv2d(in_ch, chans[0], 3, padding=1)
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        prev = chans[0]
        for i, c in enumerate(chans):
            self.encoders.append(ConvBlock(prev, c))
            nxt = chans[i + 1] if i + 1 < len(chans) else 2 * c
            self.downs.append(nn.Conv2d(c, nxt, 2, stride=2))
            prev = nxt
        self.middle = nn.Sequential(*[ConvBlock(prev, prev) for _ in range(max(1, mid_blocks))])
        self.decoders = nn.ModuleList()
        for c in reversed(chans):
            self.decoders.append(UpStage(prev, c, c))
            prev = c
        self.head = nn.Conv2d(prev, out_ch, 3, padding=1)
        self.residual = in_ch == out_ch

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        h, w = inp.shape[-2:]
        m = 2 ** self.levels
        x = F.pad(inp, (0, (m - w % m) % m, 0, (m - h % m) % m), mode="reflect")
        x = self.stem(x)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for dec, skip in zip(self.decoders, reversed(skips)):
            x = dec(x, skip)
        x = self.head(x)[..., :h, :w]
        return x + inp if self.residual else x
