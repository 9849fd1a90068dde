"""Restormer (Zamir et al., "Restormer: Efficient Transformer for High-Resolution Image Restoration").

Pure PyTorch, written from the paper; constructor argument names and state-dict keys/shapes follow the
official release (``swz30/Restormer``, class ``Restormer``) so that its checkpoints load with ``strict=True``.

Forward, in the form the PIP wrapper relies on (``cat`` order is [upsampled decoder feature, skip])::

    e1 = encoder_level1(patch_embed(x))                      # skip 1 (dim channels)
    e2 = encoder_level2(down1_2(e1))                         # skip 2 (2·dim)
    e3 = encoder_level3(down2_3(e2))                         # skip 3 (4·dim)
    z  = latent(down3_4(e3))
    d3 = decoder_level3(reduce_chan_level3(cat([up4_3(z), e3])))
    d2 = decoder_level2(reduce_chan_level2(cat([up3_2(d3), e2])))
    d1 = decoder_level1(cat([up2_1(d2), e1]))               # no 1×1 reduce at level 1: runs at 2·dim
    out = output(refinement(d1)) + x

Padding (our convenience; the official model only accepts multiples of 8): inputs whose height/width
are not multiples of 8 are padded on the right/bottom with ``reflect`` padding — what the official test
scripts do before calling the model — falling back to ``replicate`` when a side is too small to reflect
(pad ≥ size). The output is cropped back, so any size works. Inputs that already are multiples of 8
are not touched, so such inputs give exactly the official computation.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pip_adapter.utils.tensor import pad_to_multiple

__all__ = ["RestormerLayerNorm", "TransposedAttention", "GDFN", "TransformerBlock", "OverlapPatchEmbed",
           "Downsample", "Upsample", "Restormer", "pad_to_multiple"]


class _BiasFreeLayerNorm(nn.Module):
    """Scale-only LayerNorm over the last axis: ``x / sqrt(var + eps) * weight`` (no mean subtraction)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        var = x.var(-1, keepdim=True, unbiased=False)
        return x / torch.sqrt(var + self.eps) * self.weight


class _WithBiasLayerNorm(nn.Module):
    """Standard LayerNorm over the last axis (biased variance, eps 1e-5)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


class RestormerLayerNorm(nn.Module):
    """Restormer's LayerNorm of a B×C×H×W tensor over C at each pixel; parameters live in ``body``."""

    def __init__(self, dim: int, LayerNorm_type: str = "WithBias") -> None:
        super().__init__()
        if LayerNorm_type == "BiasFree":
            self.body: nn.Module = _BiasFreeLayerNorm(dim)
        elif LayerNorm_type == "WithBias":
            self.body = _WithBiasLayerNorm(dim)
        else:
            raise ValueError(f"LayerNorm_type must be 'WithBias' or 'BiasFree', got {LayerNorm_type!r}")

    def forward(self, x: Tensor) -> Tensor:
        # channels-last so the norm runs over C; permute back afterwards
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TransposedAttention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA): a c×c attention map per head across channels.

    ``q, k, v = split(DW3×3(Conv1×1(x)))``; q and k are L2-normalised over pixels, scaled by the learnable
    per-head ``temperature``; ``softmax(q kᵀ · τ) v`` then a 1×1 ``project_out``.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by the number of heads {num_heads}")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1)
        q = F.normalize(q.reshape(b, self.num_heads, c // self.num_heads, h * w), dim=-1)
        k = F.normalize(k.reshape(b, self.num_heads, c // self.num_heads, h * w), dim=-1)
        v = v.reshape(b, self.num_heads, c // self.num_heads, h * w)
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        return self.project_out(out.reshape(b, c, h, w))


class GDFN(nn.Module):
    """Gated-Dconv feed-forward: 1×1 to 2h, depthwise 3×3, ``gelu(x1) · x2``, 1×1 back (h = int(dim·factor))."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))`` then ``+ ffn(norm2(·))``."""

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool,
                 LayerNorm_type: str) -> None:
        super().__init__()
        self.norm1 = RestormerLayerNorm(dim, LayerNorm_type)
        self.attn = TransposedAttention(dim, num_heads, bias)
        self.norm2 = RestormerLayerNorm(dim, LayerNorm_type)
        self.ffn = GDFN(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """3×3 conv embedding of the image (key ``proj``)."""

    def __init__(self, in_c: int = 3, embed_dim: int = 48, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, 3, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve the resolution, double the channels: 3×3 conv to n/2 then PixelUnshuffle(2)."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False), nn.PixelUnshuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution, halve the channels: 3×3 conv to 2n then PixelShuffle(2)."""

    def __init__(self, n_feat: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False), nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def _stage(n: int, dim: int, heads: int, ffn_expansion_factor: float, bias: bool, ln: str) -> nn.Sequential:
    return nn.Sequential(*[TransformerBlock(dim, heads, ffn_expansion_factor, bias, ln) for _ in range(n)])


def _check_list(name: str, values: Sequence[int], length: int, minimum: int) -> list[int]:
    vals = list(values)
    if len(vals) != length or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in vals):
        raise ValueError(f"Restormer: {name} must be a list of {length} ints >= {minimum}, got {vals!r}")
    return vals


class Restormer(nn.Module):
    """Restormer with the official constructor and state-dict layout (4 levels, 3 skips).

    Args:
        inp_channels, out_channels: image channels (6 in, 3 out for the dual-pixel deblurring task).
        dim: channels at level 1 (levels 2/3/4 use 2/4/8·dim).
        num_blocks: transformer blocks at levels 1..4 (level 4 = ``latent``); decoders reuse levels 1..3.
        num_refinement_blocks: blocks after ``decoder_level1`` (at 2·dim).
        heads: attention heads at levels 1..4.
        ffn_expansion_factor: GDFN hidden width factor.
        bias: bias in all convs of the transformer blocks and the 1×1 reduces.
        LayerNorm_type: ``'WithBias'`` or ``'BiasFree'``.
        dual_pixel_task: if True, the global residual is ``skip_conv(patch_embed(x))`` added before
            ``output`` instead of adding the input image after it.
    """

    pad_multiple = 8

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, dim: int = 48,
                 num_blocks: Sequence[int] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: Sequence[int] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66, bias: bool = False,
                 LayerNorm_type: str = "WithBias", dual_pixel_task: bool = False) -> None:
        super().__init__()
        nb = _check_list("num_blocks", num_blocks, 4, 0)
        hd = _check_list("heads", heads, 4, 1)
        if LayerNorm_type not in ("WithBias", "BiasFree"):
            raise ValueError(f"Restormer: LayerNorm_type must be 'WithBias' or 'BiasFree', got {LayerNorm_type!r}")
        if dim < 2 or dim % 2:
            raise ValueError(f"Restormer: dim must be an even int >= 2 (Downsample halves it), got {dim}")
        if not dual_pixel_task and inp_channels != out_channels:
            raise ValueError(f"Restormer: inp_channels ({inp_channels}) must equal out_channels ({out_channels}) "
                             "for the global residual unless dual_pixel_task=True")
        self.inp_channels = inp_channels
        self.dual_pixel_task = dual_pixel_task
        f, ln = ffn_expansion_factor, LayerNorm_type

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.encoder_level1 = _stage(nb[0], dim, hd[0], f, bias, ln)
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = _stage(nb[1], dim * 2, hd[1], f, bias, ln)
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = _stage(nb[2], dim * 4, hd[2], f, bias, ln)
        self.down3_4 = Downsample(dim * 4)
        self.latent = _stage(nb[3], dim * 8, hd[3], f, bias, ln)

        self._build_level3_merge(dim, bias)
        self.decoder_level3 = _stage(nb[2], dim * 4, hd[2], f, bias, ln)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias)
        self.decoder_level2 = _stage(nb[1], dim * 2, hd[1], f, bias, ln)
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = _stage(nb[0], dim * 2, hd[0], f, bias, ln)
        self.refinement = _stage(num_refinement_blocks, dim * 2, hd[0], f, bias, ln)
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, dim * 2, 1, bias=bias)
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias)

    def _build_level3_merge(self, dim: int, bias: bool) -> None:
        """Modules between ``latent`` and ``decoder_level3`` (the release variant overrides this)."""
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.inp_channels:
            raise ValueError(f"{type(self).__name__} expects a B×{self.inp_channels}×H×W tensor, "
                             f"got shape {tuple(x.shape)}")

    def _reduce_latent(self, latent: Tensor) -> Tensor:
        # the official Restormer upsamples the latent as it is; the PIP release reduces it first
        return latent

    def forward(self, inp_img: Tensor) -> Tensor:
        """Restore ``inp_img`` (B×inp_channels×H×W, any H, W); returns B×out_channels×H×W."""
        self._check_input(inp_img)
        h, w = inp_img.shape[-2:]
        inp_img = pad_to_multiple(inp_img, self.pad_multiple)

        inp_enc_level1 = self.patch_embed(inp_img)
        out_enc_level1 = self.encoder_level1(inp_enc_level1)
        out_enc_level2 = self.encoder_level2(self.down1_2(out_enc_level1))
        out_enc_level3 = self.encoder_level3(self.down2_3(out_enc_level2))
        latent = self._reduce_latent(self.latent(self.down3_4(out_enc_level3)))

        x = torch.cat([self.up4_3(latent), out_enc_level3], 1)
        x = self.decoder_level3(self.reduce_chan_level3(x))
        x = torch.cat([self.up3_2(x), out_enc_level2], 1)
        x = self.decoder_level2(self.reduce_chan_level2(x))
        x = torch.cat([self.up2_1(x), out_enc_level1], 1)
        x = self.refinement(self.decoder_level1(x))

        if self.dual_pixel_task:
            out = self.output(x + self.skip_conv(inp_enc_level1))
        else:
            out = self.output(x) + inp_img
        return out[:, :, :h, :w]
