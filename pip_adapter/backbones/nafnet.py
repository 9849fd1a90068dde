"""NAFNet (Chen et al., "Simple Baselines for Image Restoration"), pure PyTorch.

Written from the paper's description; constructor argument names and state-dict keys/shapes follow
the official release (``megvii-research/NAFNet``, class ``NAFNet``) so that its checkpoints load with
``strict=True``.

Forward, in the form the PIP wrapper relies on::

    x = intro(pad(inp))
    for encoder, down in zip(encoders, downs):
        x = encoder(x)          # `encoders.i` produces skip i (level i+1, shallowest first)
        skips.append(x)
        x = down(x)
    x = middle_blks(x)
    for decoder, up, skip in zip(decoders, ups, reversed(skips)):
        x = up(x) + skip        # additive merge: PIP goes on `skip`, before this `+`
        x = decoder(x)
    out = crop(ending(x) + inp)

Inputs of any size are accepted: they are zero-padded on the right/bottom to a multiple of
``2 ** len(enc_blk_nums)`` (what the official ``check_image_size`` does) and the output is cropped back.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LayerNorm2d", "SimpleGate", "NAFBlock", "NAFNet"]


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a B×C×H×W tensor, independently at each pixel.

    Biased variance, ``eps`` added inside the square root (1e-6 as in NAFNet); keys ``weight``/``bias``.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        y = (x - mu) / torch.sqrt(var + self.eps)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them (NAFNet's replacement for the activation)."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """One NAFNet block: gated depthwise branch with simplified channel attention, then a gated FFN.

    Both branches are added through learnable per-channel scales ``beta``/``gamma`` initialised to 0,
    so a freshly built block is the identity.
    """

    def __init__(self, c: int, DW_Expand: int = 2, FFN_Expand: int = 2, drop_out_rate: float = 0.0) -> None:
        super().__init__()
        dw = c * DW_Expand
        ffn = c * FFN_Expand
        self.conv1 = nn.Conv2d(c, dw, 1, bias=True)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw, bias=True)
        self.conv3 = nn.Conv2d(dw // 2, c, 1, bias=True)
        # simplified channel attention: global average -> 1×1 conv -> channel-wise product
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1, bias=True))
        self.sg = SimpleGate()
        self.conv4 = nn.Conv2d(c, ffn, 1, bias=True)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1, bias=True)
        self.norm1 = LayerNorm2d(c)
        self.norm2 = LayerNorm2d(c)
        self.dropout1 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.dropout2 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, inp: Tensor) -> Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = x * self.sca(x)
        x = self.dropout1(self.conv3(x))
        y = inp + x * self.beta
        x = self.conv5(self.sg(self.conv4(self.norm2(y))))
        x = self.dropout2(x)
        return y + x * self.gamma


def _check_counts(name: str, values: Sequence[int]) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"NAFNet: {name} must be a list of non-negative ints, got {list(values)!r}")
        out.append(v)
    return out


class NAFNet(nn.Module):
    """NAFNet with the official constructor and state-dict layout.

    Args:
        img_channel: image channels in and out.
        width: channels after ``intro``; doubled at each encoder level.
        middle_blk_num: NAFBlocks in the bottleneck.
        enc_blk_nums: NAFBlocks per encoder level (its length is the number of skip levels).
        dec_blk_nums: NAFBlocks per decoder level, deepest first; same length as ``enc_blk_nums``.
    """

    def __init__(self, img_channel: int = 3, width: int = 16, middle_blk_num: int = 1,
                 enc_blk_nums: Sequence[int] = (), dec_blk_nums: Sequence[int] = ()) -> None:
        super().__init__()
        enc = _check_counts("enc_blk_nums", enc_blk_nums)
        dec = _check_counts("dec_blk_nums", dec_blk_nums)
        if len(enc) != len(dec):
            raise ValueError(f"NAFNet: enc_blk_nums ({enc}) and dec_blk_nums ({dec}) must have the same length "
                             "(one decoder level per encoder level)")
        if img_channel < 1 or width < 1 or middle_blk_num < 0:
            raise ValueError(f"NAFNet: img_channel and width must be >= 1 and middle_blk_num >= 0, got "
                             f"img_channel={img_channel}, width={width}, middle_blk_num={middle_blk_num}")
        self.img_channel = img_channel
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1, bias=True)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1, bias=True)
        self.encoders = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.middle_blks = nn.Sequential()
        self.ups = nn.ModuleList()
        self.downs = nn.ModuleList()

        chan = width
        for num in enc:
            self.encoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2))
            chan *= 2
        self.middle_blks = nn.Sequential(*[NAFBlock(chan) for _ in range(middle_blk_num)])
        for num in dec:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, chan * 2, 1, bias=False), nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*[NAFBlock(chan) for _ in range(num)]))

        self.padder_size = 2 ** len(self.encoders)

    def forward(self, inp: Tensor) -> Tensor:
        """Restore ``inp`` (B×img_channel×H×W, any H, W); returns a tensor of the same shape."""
        if inp.dim() != 4 or inp.shape[1] != self.img_channel:
            raise ValueError(f"NAFNet expects a B×{self.img_channel}×H×W tensor, got shape {tuple(inp.shape)}")
        h, w = inp.shape[-2:]
        inp = self.check_image_size(inp)

        x = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, skips[::-1]):
            x = up(x) + skip
            x = decoder(x)
        x = self.ending(x) + inp
        return x[:, :, :h, :w]

    def check_image_size(self, x: Tensor) -> Tensor:
        """Zero-pad right/bottom to a multiple of ``padder_size`` (no copy when already a multiple)."""
        h, w = x.shape[-2:]
        ph = (-h) % self.padder_size
        pw = (-w) % self.padder_size
        if ph == 0 and pw == 0:
            return x
        return F.pad(x, (0, pw, 0, ph))
