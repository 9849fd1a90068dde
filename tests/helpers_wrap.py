"""Tiny networks for the wrapper tests (a plain module imported by tests/test_wrap*.py).

The networks cover the shapes of U-Net the probe must handle: additive merges (NAFNet-like), concatenation
+ 1×1 conv (Restormer-like), a functional U-Net (max-pool and cat in forward), an encoder returning a list of
features, skips through a gating module that also reads the decoder feature, padding and cropping inside
forward, and a plain network with no skip at all.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.sca = nn.Conv2d(c, c, 1)

    def forward(self, x):
        y = self.conv2(F.gelu(self.conv1(x)))
        y = y * self.sca(self.pool(y))     # channel attention: a broadcast 1×1 merge, not a skip
        return x + y                       # residual: not a skip


class TinyNAF(nn.Module):
    """NAFNet-shaped: padding, ``x = up(x) + skip``, global residual, crop."""

    def __init__(self, c: int = 4, depth: int = 2):
        super().__init__()
        self.intro = nn.Conv2d(3, c, 3, padding=1)
        self.encoders, self.downs, self.ups, self.decoders = (nn.ModuleList() for _ in range(4))
        ch = c
        for _ in range(depth):
            self.encoders.append(nn.Sequential(Block(ch)))
            self.downs.append(nn.Conv2d(ch, 2 * ch, 2, 2))
            ch *= 2
        self.middle = Block(ch)
        for _ in range(depth):
            self.ups.append(nn.Sequential(nn.Conv2d(ch, ch * 2, 1, bias=False), nn.PixelShuffle(2)))
            ch //= 2
            self.decoders.append(nn.Sequential(Block(ch)))
        self.ending = nn.Conv2d(c, 3, 3, padding=1)
        self.pad_to = 2 ** depth

    def forward(self, inp):
        h, w = inp.shape[-2:]
        inp = F.pad(inp, (0, (-w) % self.pad_to, 0, (-h) % self.pad_to))
        x = self.intro(inp)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        for dec, up, skip in zip(self.decoders, self.ups, skips[::-1]):
            x = up(x)
            x = x + skip
            x = dec(x)
        x = self.ending(x) + inp
        return x[:, :, :h, :w]

    def reference(self, inp, pips, omega):
        """The same forward with ``pips[i]`` applied on the skip right before the merge."""
        h, w = inp.shape[-2:]
        inp = F.pad(inp, (0, (-w) % self.pad_to, 0, (-h) % self.pad_to))
        x = self.intro(inp)
        skips = []
        for enc, down in zip(self.encoders, self.downs):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.middle(x)
        n = len(skips)
        for j, (dec, up, skip) in enumerate(zip(self.decoders, self.ups, skips[::-1])):
            x = up(x)
            x = x + pips[n - 1 - j](skip, omega)
            x = dec(x)
        x = self.ending(x) + inp
        return x[:, :, :h, :w]


class TinyCatUNet(nn.Module):
    """Restormer-shaped: ``cat([up(x), skip]) -> 1×1 conv`` at the two deeper levels, plain cat at level 1."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.embed = nn.Conv2d(3, c, 3, padding=1)
        self.enc1, self.enc2, self.enc3 = Block(c), Block(2 * c), Block(4 * c)
        self.down1 = nn.Sequential(nn.Conv2d(c, c // 2, 3, padding=1), nn.PixelUnshuffle(2))
        self.down2 = nn.Sequential(nn.Conv2d(2 * c, c, 3, padding=1), nn.PixelUnshuffle(2))
        self.down3 = nn.Sequential(nn.Conv2d(4 * c, 2 * c, 3, padding=1), nn.PixelUnshuffle(2))
        self.latent = Block(8 * c)
        self.up3 = nn.Sequential(nn.Conv2d(8 * c, 16 * c, 3, padding=1), nn.PixelShuffle(2))
        self.reduce3 = nn.Conv2d(8 * c, 4 * c, 1)
        self.dec3 = Block(4 * c)
        self.up2 = nn.Sequential(nn.Conv2d(4 * c, 8 * c, 3, padding=1), nn.PixelShuffle(2))
        self.reduce2 = nn.Conv2d(4 * c, 2 * c, 1)
        self.dec2 = Block(2 * c)
        self.up1 = nn.Sequential(nn.Conv2d(2 * c, 4 * c, 3, padding=1), nn.PixelShuffle(2))
        self.dec1 = Block(2 * c)
        self.out = nn.Conv2d(2 * c, 3, 3, padding=1)

    def forward(self, img, pips=None, omega=None):
        p = (lambda i, z: pips[i](z, omega)) if pips is not None else (lambda i, z: z)
        e1 = self.enc1(self.embed(img))
        e2 = self.enc2(self.down1(e1))
        e3 = self.enc3(self.down2(e2))
        lat = self.latent(self.down3(e3))
        d3 = self.dec3(self.reduce3(torch.cat([self.up3(lat), p(2, e3)], 1)))
        d2 = self.dec2(self.reduce2(torch.cat([self.up2(d3), p(1, e2)], 1)))
        d1 = self.dec1(torch.cat([self.up1(d2), p(0, e1)], 1))
        return self.out(d1) + img


class FunctionalUNet(nn.Module):
    """Max-pool and concatenation in forward (no module on either side of the skip), cropped skips."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.inc = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU())
        self.bott = nn.Sequential(nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU())
        self.up2 = nn.ConvTranspose2d(2 * c, 2 * c, 2, 2)
        self.dec2 = nn.Conv2d(4 * c, 2 * c, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 2, 2)
        self.dec1 = nn.Conv2d(2 * c, c, 3, padding=1)
        self.out = nn.Conv2d(c, 3, 1)

    def forward(self, x, pips=None, omega=None):
        p = (lambda i, z: pips[i](z, omega)) if pips is not None else (lambda i, z: z)
        x1 = self.inc(x)
        x2 = self.enc2(F.max_pool2d(x1, 2))
        b = self.bott(F.max_pool2d(x2, 2))
        u2 = self.up2(b)
        s2 = p(1, x2)[:, :, : u2.shape[2], : u2.shape[3]]     # crop the skip to the decoder size
        d2 = F.relu(self.dec2(torch.cat([u2, s2], dim=1)))
        u1 = self.up1(d2)
        d1 = F.relu(self.dec1(torch.cat([p(0, x1), u1], dim=1)))
        return self.out(d1)


class ListEncoder(nn.Module):
    def __init__(self, c: int = 4):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.stages = nn.ModuleList([Block(c), nn.Sequential(nn.Conv2d(c, 2 * c, 2, 2), Block(2 * c)),
                                     nn.Sequential(nn.Conv2d(2 * c, 4 * c, 2, 2), Block(4 * c))])

    def forward(self, x):
        feats = []
        x = self.stem(x)
        for st in self.stages:
            x = st(x)
            feats.append(x)
        return feats


class ListDecoder(nn.Module):
    def __init__(self, c: int = 4):
        super().__init__()
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, 2)
        self.fuse2 = nn.Conv2d(4 * c, 2 * c, 1)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 2, 2)
        self.fuse1 = nn.Conv2d(2 * c, c, 1)
        self.head = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, feats, pips=None, omega=None):
        p = (lambda i, z: pips[i](z, omega)) if pips is not None else (lambda i, z: z)
        f1, f2, f3 = feats
        x = self.fuse2(torch.cat([self.up2(f3), p(1, f2)], 1))
        x = self.fuse1(torch.cat([self.up1(x), p(0, f1)], 1))
        return self.head(x)


class ListUNet(nn.Module):
    """The encoder returns a list of multi-scale features; the decoder takes the list."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.encoder = ListEncoder(c)
        self.decoder = ListDecoder(c)

    def forward(self, x, pips=None, omega=None):
        return self.decoder(self.encoder(x), pips, omega) + x


class Gate(nn.Module):
    """Attention gate: reads the skip and the decoder feature, returns the gated skip."""

    def __init__(self, c: int):
        super().__init__()
        self.wx = nn.Conv2d(c, c, 1)
        self.wg = nn.Conv2d(c, c, 1)
        self.psi = nn.Conv2d(c, 1, 1)

    def forward(self, skip, g):
        a = torch.sigmoid(self.psi(F.relu(self.wx(skip) + self.wg(g))))
        return skip * a


class GatedUNet(nn.Module):
    """Skips pass through a gating module that also reads the decoder feature."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.enc2 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU())
        self.bott = nn.Sequential(nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU())
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.gate2 = Gate(2 * c)
        self.dec2 = nn.Conv2d(4 * c, c, 3, padding=1)
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.gate1 = Gate(c)
        self.dec1 = nn.Conv2d(2 * c, 3, 3, padding=1)

    def forward(self, x, pips=None, omega=None):
        p = (lambda i, z: pips[i](z, omega)) if pips is not None else (lambda i, z: z)
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bott(self.pool(e2))
        g2 = self.up2(b)
        d2 = self.dec2(torch.cat([self.gate2(p(1, e2), g2), g2], 1))
        g1 = self.up1(d2)
        return self.dec1(torch.cat([self.gate1(p(0, e1), g1), g1], 1))


class PlainNet(nn.Module):
    """No U-Net skip: a down-up path without skips, channel attention and a global residual."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(Block(c), Block(c))
        self.down = nn.Conv2d(c, c, 2, 2)
        self.up = nn.ConvTranspose2d(c, c, 2, 2)
        self.tail = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, x):
        y = self.up(self.down(self.body(self.head(x))))
        return self.tail(y) + x


class SharedPoolUNet(nn.Module):
    """One ``nn.MaxPool2d`` instance serves every level (a module called several times per forward)."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.pool = nn.MaxPool2d(2)
        self.enc1 = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU())
        self.bott = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.dec2 = nn.Conv2d(4 * c, c, 3, padding=1)
        self.dec1 = nn.Conv2d(2 * c, 3, 3, padding=1)

    def forward(self, x, pips=None, omega=None):
        p = (lambda i, z: pips[i](z, omega)) if pips is not None else (lambda i, z: z)
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        b = self.bott(self.pool(e2))
        d2 = self.dec2(torch.cat([self.up(b), p(1, e2)], 1))
        return self.dec1(torch.cat([self.up(d2), p(0, e1)], 1))


class MixedUNet(nn.Module):
    """Three skips that need the three insertion kinds: level 0 ``intercept`` (``F.max_pool2d`` down and
    ``torch.cat`` across, both in forward), level 1 ``consumer`` (a gate module reads the skip), level 2
    ``producer`` (modules on both sides, additive merge)."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.enc1 = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU())
        self.pool2 = nn.MaxPool2d(2)
        self.enc3 = nn.Sequential(nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU())
        self.down3 = nn.Conv2d(2 * c, 2 * c, 2, 2)
        self.bott = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.up3 = nn.ConvTranspose2d(2 * c, 2 * c, 2, 2)
        self.dec3 = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")
        self.gate2 = Gate(2 * c)
        self.dec2 = nn.Conv2d(4 * c, c, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(c, c, 2, 2)
        self.dec1 = nn.Conv2d(2 * c, 3, 3, padding=1)

    def forward(self, x, pips=None, omega=None):
        p = (lambda i, z: pips[i](z, omega)) if pips is not None else (lambda i, z: z)
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(self.pool2(e2))
        d3 = self.dec3(self.up3(self.bott(self.down3(e3))) + p(2, e3))
        g2 = self.up2(d3)
        d2 = self.dec2(torch.cat([self.gate2(p(1, e2), g2), g2], 1))
        return self.dec1(torch.cat([p(0, e1), self.up1(d2)], 1)) + x
