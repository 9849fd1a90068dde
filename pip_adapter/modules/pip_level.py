"""One Prompt-In-Prompt level (spec §2): P2P builds the universal prompt U, selective P2F modulates Z."""
from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..omega import labels_to_omega
from .attention import TransposedCrossAttention
from .ffn import GDFN, DualGateFFN
from .layernorm import LayerNorm2d
from .tokens import bilinear_matrix, linear_tokens, resize_bilinear_hwc, weight_matrix

logger = logging.getLogger(__name__)

_REDUCES = ("mean", "sum")


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    # the level computes channels-last: LayerNorm over channels becomes a contiguous reduction, the convs
    # take their fast CPU path and the attention reads B×HW×D views without copies
    return x.contiguous(memory_format=torch.channels_last)


def _like(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``out`` in ``ref``'s memory format, so callers get back the layout they gave."""
    if ref.is_contiguous(memory_format=torch.channels_last) and not ref.is_contiguous():
        return out
    return out.contiguous()


def resize_bilinear(x: torch.Tensor, size) -> torch.Tensor:
    """Bilinear resize of a B×C×H×W map to ``size`` (align_corners=False, no antialias).

    Eager calls use ``F.interpolate``.  Traced calls (torch.compile / export) multiply by two small
    interpolation matrices instead: the same numbers up to rounding, a symbolic H×W stays symbolic
    (``F.interpolate`` to or from a padded symbolic size fails in torch's scalar pass), and an exported graph
    gets two matrix products, which ONNX Runtime runs faster than gathers over a transposed map.
    """
    if not torch.compiler.is_compiling():
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)
    wh = bilinear_matrix(size[0], x.shape[-2], x)
    ww = bilinear_matrix(size[1], x.shape[-1], x)
    return wh @ x @ ww.transpose(0, 1)


class PIPLevel(nn.Module):
    """PIP on one skip connection: ``Ẑ = PIP(Z, ω)`` for ``Z`` B×C×H×W and ``ω`` B×T.

    Args:
        channels: C, the skip feature's channels.
        prompt_dim: D, the prompt channels (the width the attention runs at).
        prompt_size: s, the basic prompt is D×s×s and Z is resized to s×s for P2P.
        num_types: T0, the number of degradation types the level is built (trained) with.
        p2p_heads / p2f_heads: attention heads of P2P (2) and P2F (4).
        ffn_expansion: hidden width factor of both FFNs (2.66).
        prompt_reduce: ``"mean"`` (release): ``d(ω) = Σ_t ω_t d_t / prompt_divisor``; ``"sum"``: the plain
            ``Σ_t ω_t d_t`` (the paper's product).
        prompt_divisor: divisor of the mean; defaults to T0 and must stay the trained T0 when types are
            added later, so the old types' outputs do not move (spec §2.1).
        use_degradation_prompt / use_basic_prompt / selective: the paper's ablation switches.  Without the
            degradation prompts, S = resized Z (ω is still checked but has no effect); without the basic
            prompt, P2P runs as self-attention on S (query = S); ``selective=False`` uses plain softmax
            attention in P2F instead of the top-m one.
        num_added_types: degradation prompts added after training (see :meth:`add_degradation_prompts`);
            only needed to rebuild an extended level from :meth:`config`.

    Parameters: ``degradation_prompt`` (T0×D, N(0,1)), ``added_prompts`` (1×D each), ``basic_prompt``
    (D×s×s, N(0,1)), the P2P block (``p2p_*``), ``out_conv`` (3×3 D→D) and the P2F block (``p2f_*``,
    ``reduce_channel`` when C < D).  No bias anywhere except the LayerNorms'.
    """

    def __init__(self, channels: int, prompt_dim: int, prompt_size: int, num_types: int,
                 p2p_heads: int = 2, p2f_heads: int = 4, ffn_expansion: float = 2.66,
                 prompt_reduce: str = "mean", prompt_divisor: Optional[int] = None,
                 use_degradation_prompt: bool = True, use_basic_prompt: bool = True, selective: bool = True,
                 num_added_types: int = 0) -> None:
        super().__init__()
        for name, val in (("channels", channels), ("prompt_dim", prompt_dim), ("prompt_size", prompt_size),
                          ("num_types", num_types)):
            if not isinstance(val, int) or val < 1:
                raise ValueError(f"PIPLevel: {name} must be a positive int, got {val!r}")
        if prompt_reduce not in _REDUCES:
            raise ValueError(f"PIPLevel: prompt_reduce must be one of {_REDUCES}, got {prompt_reduce!r}")
        if prompt_reduce == "mean":
            prompt_divisor = num_types if prompt_divisor is None else prompt_divisor
            if not isinstance(prompt_divisor, int) or prompt_divisor < 1:
                raise ValueError(f"PIPLevel: prompt_divisor must be a positive int, got {prompt_divisor!r}")
        elif prompt_divisor is not None:
            raise ValueError("PIPLevel: prompt_divisor only applies to prompt_reduce='mean'")
        if num_added_types < 0:
            raise ValueError(f"PIPLevel: num_added_types must be >= 0, got {num_added_types}")
        c, d = channels, prompt_dim
        self.channels, self.prompt_dim, self.prompt_size = c, d, prompt_size
        self.p2p_heads, self.p2f_heads, self.ffn_expansion = p2p_heads, p2f_heads, ffn_expansion
        self.prompt_reduce, self.prompt_divisor = prompt_reduce, prompt_divisor
        self.use_degradation_prompt, self.use_basic_prompt = use_degradation_prompt, use_basic_prompt
        self.selective = selective
        # 0: P2F runs on the whole map; > 0: eager forwards run it in row bands (see set_p2f_chunking)
        self.p2f_chunk_pixels = 0
        self._trained_types = num_types
        self._added_types = 0

        self.degradation_prompt = nn.Parameter(torch.randn(num_types, d)) if use_degradation_prompt else None
        self.added_prompts = nn.ParameterList()
        self.basic_prompt = nn.Parameter(torch.randn(d, prompt_size, prompt_size)) if use_basic_prompt else None

        # P2P: query B (or S), key/value S, then GDFN, then the 3×3 conv after upsampling
        self.p2p_norm_query = LayerNorm2d(d)
        self.p2p_norm_kv = LayerNorm2d(d)
        self.p2p_attn = TransposedCrossAttention(d, p2p_heads, topm=False)
        self.p2p_norm_ffn = LayerNorm2d(d)
        self.p2p_ffn = GDFN(d, ffn_expansion)
        self.out_conv = nn.Conv2d(d, d, kernel_size=3, padding=1, bias=False)

        # P2F: query from the feature, key/value from U, at width D
        self.p2f_norm_feature = LayerNorm2d(c)
        self.p2f_norm_prompt = LayerNorm2d(d)
        self.p2f_attn = TransposedCrossAttention(d, p2f_heads, topm=selective)
        self.reduce_channel = nn.Conv2d(d, c, kernel_size=1, bias=False) if c < d else None
        self.p2f_norm_ffn = LayerNorm2d(c)
        self.p2f_ffn = DualGateFFN(c, ffn_expansion)

        if num_added_types:
            self.add_degradation_prompts(torch.zeros(num_added_types, d))

    # ---- degradation types -------------------------------------------------------------------------
    @property
    def num_types(self) -> int:
        """T: the trained types plus the ones added later."""
        return self._trained_types + self._added_types

    def all_degradation_prompts(self) -> torch.Tensor:
        """All degradation prompts as a T×D tensor (0×D when the level has none)."""
        if self.degradation_prompt is None:
            ref = next(self.parameters())
            return ref.new_zeros(0, self.prompt_dim)
        if not len(self.added_prompts):
            return self.degradation_prompt
        return torch.cat([self.degradation_prompt, *self.added_prompts], dim=0)

    @torch.no_grad()
    def add_degradation_prompts(self, init: torch.Tensor) -> None:
        """Append k new degradation types, their prompts initialised from ``init`` (k×D).

        The mean's divisor stays ``prompt_divisor`` and the old prompts are untouched, so outputs for the
        old types do not change (the new terms are exact zeros for them).
        """
        init = torch.as_tensor(init)
        if init.dim() == 1:
            init = init.unsqueeze(0)
        if init.dim() != 2 or init.shape[1] != self.prompt_dim:
            raise ValueError(f"new degradation prompts must have shape k×{self.prompt_dim} (k×D), "
                             f"got {tuple(init.shape)}")
        ref = next(self.parameters())
        if self.degradation_prompt is not None:
            for row in init:
                self.added_prompts.append(nn.Parameter(row.detach().reshape(1, -1).to(ref).clone()))
        self._added_types += int(init.shape[0])

    def config(self) -> dict:
        """Constructor kwargs that rebuild this level (including added types)."""
        return dict(channels=self.channels, prompt_dim=self.prompt_dim, prompt_size=self.prompt_size,
                    num_types=self._trained_types, p2p_heads=self.p2p_heads, p2f_heads=self.p2f_heads,
                    ffn_expansion=self.ffn_expansion, prompt_reduce=self.prompt_reduce,
                    prompt_divisor=self.prompt_divisor, use_degradation_prompt=self.use_degradation_prompt,
                    use_basic_prompt=self.use_basic_prompt, selective=self.selective,
                    num_added_types=self._added_types)

    # ---- checks ------------------------------------------------------------------------------------
    def _check_inputs(self, z: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.dim() != 4 or z.shape[1] != self.channels:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"PIPLevel expects a skip feature of shape B×{self.channels}×H×W (C={self.channels}), "
                             f"got {shape}")
        if not isinstance(omega, torch.Tensor):
            raise ValueError(f"omega must be a tensor (B×T weights or B labels), got {type(omega).__name__}; "
                             "use pip_adapter.omega.to_omega for names, dicts and lists")
        t = self.num_types
        if not omega.is_floating_point() and omega.dim() == 1:
            omega = labels_to_omega(omega, t)
        if omega.dim() != 2:
            raise ValueError(f"omega must be 2-D (B×T with T={t}), got shape {tuple(omega.shape)}")
        if omega.shape[1] != t:
            raise ValueError(f"omega must have T={t} columns (one per degradation type), "
                             f"got shape {tuple(omega.shape)}")
        b = z.shape[0]
        if omega.shape[0] != b:
            if omega.shape[0] != 1:
                raise ValueError(f"omega has {omega.shape[0]} rows but the feature batch has {b} samples")
            omega = omega.expand(b, t)
        dtype = self.degradation_prompt.dtype if self.degradation_prompt is not None else z.dtype
        return omega.to(device=z.device, dtype=dtype)

    # ---- P2P ---------------------------------------------------------------------------------------
    def degradation_vector(self, omega: torch.Tensor) -> torch.Tensor:
        """``d(ω)``, B×D: the ω-weighted degradation prompts, reduced by ``prompt_reduce``."""
        t0 = self._trained_types
        # element-wise products summed over T (not a matmul) so the old types' sum is the very same
        # operation before and after an extension; the added types then contribute exact zeros
        d = (omega[:, :t0].unsqueeze(-1) * self.degradation_prompt).sum(dim=1)
        if len(self.added_prompts):
            added = torch.cat(list(self.added_prompts), dim=0)
            d = d + (omega[:, t0:].unsqueeze(-1) * added).sum(dim=1)
        if self.prompt_reduce == "mean":
            d = d / self.prompt_divisor
        return d

    def _universal_prompt(self, z: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        c, dim, s = self.channels, self.prompt_dim, self.prompt_size
        h, w = z.shape[-2:]
        # the resize is per channel, so dropping channels first is exact and cheaper
        zs = z[:, :dim] if c > dim else z
        zs = resize_bilinear(zs, (s, s))
        if self.degradation_prompt is not None:
            d = self.degradation_vector(omega)
            zs = zs * d[:, :zs.shape[1], None, None]
        if c < dim:
            zs = F.pad(zs, (0, 0, 0, 0, 0, dim - c))
        kv = self.p2p_norm_kv(zs)
        if self.basic_prompt is not None:
            # the query path does not depend on the sample: run it once and broadcast over the batch
            query = self.basic_prompt.unsqueeze(0)
            if zs.is_contiguous(memory_format=torch.channels_last):
                query = query.contiguous(memory_format=torch.channels_last)
            x = query + self.p2p_attn(self.p2p_norm_query(query), kv)
        else:
            x = zs + self.p2p_attn(self.p2p_norm_query(zs), kv)
        x = x + self.p2p_ffn(self.p2p_norm_ffn(x))
        # traced: always resize (an exact identity at s×s), so a symbolic H×W is not specialised to s
        if torch.compiler.is_compiling() or (h, w) != (s, s):
            x = resize_bilinear(x, (h, w))
        return self.out_conv(x)

    def universal_prompt(self, z: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        """U, B×D×H×W: the universal restoration prompt after the 3×3 out-conv."""
        omega = self._check_inputs(z, omega)
        return _like(self._universal_prompt(_channels_last(z), omega), z)

    # ---- P2F ---------------------------------------------------------------------------------------
    def prompt_to_feature(self, z: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Selective P2F: modulate ``z`` (B×C×H×W) with the universal prompt ``u`` (B×D×H×W)."""
        c, dim = self.channels, self.prompt_dim
        zn = self.p2f_norm_feature(z)
        un = self.p2f_norm_prompt(u)
        rest = None
        if c > dim:
            query, rest = zn[:, :dim], zn[:, dim:]
        else:
            query = zn  # C < D: the attention zero-pads the query implicitly
        # the attention's and the FFN's outputs are fresh tensors that no backward needs: adding in place
        # saves two full-size buffers and is autograd-safe, so there is one code path for training,
        # inference and tracing
        a = self.p2f_attn(query, un)
        if c < dim:
            a[:, :c].add_(zn)
        else:
            a = a.add_(query)
        if self.reduce_channel is not None:
            a = self.reduce_channel(a)
        elif rest is not None:
            a = torch.cat([a, rest], dim=1)
        out = self.p2f_ffn(self.p2f_norm_ffn(a))
        return out.add_(a)

    def set_p2f_chunking(self, pixels: int) -> None:
        """Run P2F in bands of whole rows, about ``pixels`` pixels (at least 8 rows) each; 0: off (the default).

        Full-resolution P2F sets the peak memory of a PIP level (the dual-gate FFN widens C channels to
        2·⌊2.66·C⌋ at H×W); in bands only one band's intermediates are alive at a time.  The result equals the
        unchunked one up to float rounding (the attention's c×c products are summed band by band).  Only eager
        forwards use it: under ``torch.compile`` / ``torch.export`` / tracing the level runs unchunked, so the
        graph has no loop over the input size.  Gradients flow through either path.
        """
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 0:
            raise ValueError(f"p2f chunk size must be an int >= 0 (pixels per band, 0 = off), got {pixels!r}")
        self.p2f_chunk_pixels = pixels

    def _chunk_rows(self, h: int, w: int) -> int:
        """Rows per P2F band, or 0 when P2F runs on the whole map."""
        if not self.p2f_chunk_pixels or torch.compiler.is_compiling() or torch.jit.is_tracing() \
                or torch.jit.is_scripting():
            return 0
        # at least 8 rows: each band recomputes 2 rows on each side for the 3×3 convs
        rows = max(8, self.p2f_chunk_pixels // max(1, w))
        return rows if rows < h else 0

    def _prompt_to_feature_bands(self, z: torch.Tensor, u: torch.Tensor, rows: int) -> torch.Tensor:
        """:meth:`prompt_to_feature` computed band by band (``rows`` rows each), in two passes.

        Pass 1 sums the attention's per-head q·kᵀ and the squared norms of q and k over the bands (q and k need
        one extra row on each side for their 3×3 depthwise convs); pass 2 builds v, the attention output, the
        residual and the FFN per band (two extra rows: the v conv and the FFN's 3×3 conv).  The k and v halves
        of the key/value convs are computed separately, each only in the pass that needs it.
        """
        attn = self.p2f_attn
        c, dim = self.channels, self.prompt_dim
        b, _, h, w = z.shape
        heads, hc = attn.num_heads, attn.head_dim
        cq = min(c, dim)  # C < D: the query is zero-padded implicitly, only its first C weight columns act
        w_q, w_qdw = attn.q.weight[:, :cq], attn.q_dwconv.weight
        w_k, w_v = attn.kv.weight[:dim], attn.kv.weight[dim:]
        w_kdw, w_vdw = attn.kv_dwconv.weight[:dim], attn.kv_dwconv.weight[dim:]
        bands = [(r, min(h, r + rows)) for r in range(0, h, rows)]

        def dw(x: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
            return F.conv2d(x, wt, padding=1, groups=x.shape[1])

        def tokens(x: torch.Tensor) -> torch.Tensor:  # B×dim×r×W → B×(r·W)×dim
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])

        gram = qn2 = kn2 = None
        for r0, r1 in bands:
            lo, hi = max(0, r0 - 1), min(h, r1 + 1)
            zs = _channels_last(z[:, :, lo:hi])
            us = _channels_last(u[:, :, lo:hi])
            q = dw(F.conv2d(self.p2f_norm_feature(zs)[:, :cq], w_q), w_qdw)[:, :, r0 - lo:r1 - lo]
            k = dw(F.conv2d(self.p2f_norm_prompt(us), w_k), w_kdw)[:, :, r0 - lo:r1 - lo]
            qt, kt = tokens(q), tokens(k)
            # the c×c products and norms are summed in float32 (as the unchunked attention keeps them)
            g = (qt.unflatten(-1, (heads, hc)).permute(0, 2, 3, 1) @ kt.unflatten(-1, (heads, hc)).permute(0, 2, 1, 3))
            sq, sk = qt.square().sum(dim=1, dtype=torch.float32), kt.square().sum(dim=1, dtype=torch.float32)
            g = g.float()
            gram, qn2, kn2 = (g, sq, sk) if gram is None else (gram + g, qn2 + sq, kn2 + sk)
        qn = qn2.sqrt().clamp_min(1e-12).view(b, heads, hc)
        kn = kn2.sqrt().clamp_min(1e-12).view(b, heads, hc)
        mix = attn.mix_weights(gram / (qn.unsqueeze(-1) * kn.unsqueeze(-2)) * attn.temperature.float())
        eye = torch.eye(heads, dtype=mix.dtype, device=mix.device)
        block = (mix.unsqueeze(3) * eye.view(1, heads, 1, heads, 1)).reshape(b, dim, dim)
        block = attn.project_out.weight.view(dim, dim).to(block.dtype) @ block   # B×dim×dim: heads + projection

        out = None
        for r0, r1 in bands:
            lo, hi = max(0, r0 - 2), min(h, r1 + 2)     # rows read
            a0, a1 = max(0, r0 - 1), min(h, r1 + 1)     # rows of the FFN's input that must be exact
            zs = _channels_last(z[:, :, a0:a1])
            zn = self.p2f_norm_feature(zs)
            v = dw(F.conv2d(self.p2f_norm_prompt(_channels_last(u[:, :, lo:hi])), w_v), w_vdw)[:, :, a0 - lo:a1 - lo]
            vt = tokens(v)
            a = (vt @ block.to(vt.dtype).transpose(-1, -2)).view(b, a1 - a0, w, dim).permute(0, 3, 1, 2)
            if c < dim:
                a = a + F.pad(zn, (0, 0, 0, 0, 0, dim - c))
            else:
                a = a + zn[:, :dim]
            if self.reduce_channel is not None:
                a = self.reduce_channel(a)
            elif c > dim:
                a = torch.cat([a, zn[:, dim:].to(a.dtype)], dim=1)
            y = self.p2f_ffn(self.p2f_norm_ffn(a)) + a
            y = y[:, :, r0 - a0:r1 - a0]
            if out is None:
                out = torch.empty(b, c, h, w, dtype=y.dtype, device=y.device, memory_format=torch.channels_last)
            out[:, :, r0:r1] = y
        return out

    # ---- traced forward (torch.compile / torch.export) ---------------------------------------------
    def _forward_traced(self, z: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` inside ``torch.compile``: token-major, every full-size tensor made by a GEMM or a conv.

        The eager path's layout tricks (channels-last copies, in-place adds, row bands) are choices a compiler
        makes again on its own, and badly at the layout boundaries; here the skip feature is read as B×N×C
        tokens (a view when the compiler keeps the backbone channels-last), the linear maps that follow the
        attention fold into its mixing matrix, residuals ride in the GEMMs, and the result is handed back as a
        channels-last view.  Same numbers as the eager path up to float rounding.
        """
        c, dim, s = self.channels, self.prompt_dim, self.prompt_size
        b, _, h, w = z.shape
        x = z.permute(0, 2, 3, 1)                                   # B×H×W×C
        # P2P at s×s
        zs = resize_bilinear_hwc(x[..., :dim] if c > dim else x, (s, s))
        if self.degradation_prompt is not None:
            zs = zs * self.degradation_vector(omega)[:, None, None, :zs.shape[-1]]
        if c < dim:
            zs = F.pad(zs, (0, dim - c))
        zs = zs.reshape(b, s * s, dim)
        if self.basic_prompt is not None:
            query = self.basic_prompt.reshape(1, dim, s * s).transpose(1, 2)
        else:
            query = zs
        m, v = self.p2p_attn.mix_tokens(self.p2p_norm_query.forward_tokens(query),
                                        self.p2p_norm_kv.forward_tokens(zs), (s, s))
        p = linear_tokens(v, m, query.expand(b, -1, -1))
        ffn = self.p2p_ffn
        p = linear_tokens(ffn.hidden_tokens(self.p2p_norm_ffn.forward_tokens(p), (s, s)),
                          weight_matrix(ffn.project_out.weight), p)
        # U: upsample (always, so a symbolic H×W is not specialised to s), then the 3×3 conv channels-last
        up = resize_bilinear_hwc(p.view(b, s, s, dim), (h, w))
        u = F.conv2d(up.permute(0, 3, 1, 2), self.out_conv.weight, padding=1)
        un = self.p2f_norm_prompt.forward_tokens(u.permute(0, 2, 3, 1).reshape(b, h * w, dim))
        # P2F
        zn = self.p2f_norm_feature.forward_tokens(x.reshape(b, h * w, c))
        m, v = self.p2f_attn.mix_tokens(zn[..., :dim] if c > dim else zn, un, (h, w))
        if self.reduce_channel is not None:
            # C < D: R·(attention + zero-padded zn) = v·(R·M)ᵀ + zn·R[:, :C]ᵀ, without the D-channel sum
            r = weight_matrix(self.reduce_channel.weight)
            a = linear_tokens(v, r @ m, linear_tokens(zn, r[:, :c]))
        elif c > dim:
            a = torch.cat([linear_tokens(v, m, zn[..., :dim]), zn[..., dim:]], dim=-1)
        else:
            a = linear_tokens(v, m, zn)
        ffn = self.p2f_ffn
        out = linear_tokens(ffn.hidden_tokens(self.p2f_norm_ffn.forward_tokens(a), (h, w)),
                            weight_matrix(ffn.project_out.weight), a)
        return out.view(b, h, w, c).permute(0, 3, 1, 2)

    def forward(self, z: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        """``Ẑ`` (B×C×H×W) from the skip feature ``z`` and ``omega`` (B×T float weights or B int labels)."""
        omega = self._check_inputs(z, omega)
        # torch.compile: the token-major graph.  torch.export keeps the channels-last graph: its consumers
        # (ONNX Runtime) pick layouts themselves and run it faster (docs/BENCHMARKS.md, fast paths)
        if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
            return self._forward_traced(z, omega)
        zc = _channels_last(z)
        u = self._universal_prompt(zc, omega)
        rows = self._chunk_rows(*z.shape[-2:])
        if rows:
            return _like(self._prompt_to_feature_bands(zc, u, rows), z)
        return _like(self.prompt_to_feature(zc, u), z)

    def extra_repr(self) -> str:
        return (f"C={self.channels}, D={self.prompt_dim}, s={self.prompt_size}, T={self.num_types}, "
                f"reduce={self.prompt_reduce}/{self.prompt_divisor}, selective={self.selective}"
                + (f", p2f_chunk_pixels={self.p2f_chunk_pixels}" if self.p2f_chunk_pixels else ""))


def set_p2f_chunking(model: nn.Module, pixels: int) -> int:
    """Set :meth:`PIPLevel.set_p2f_chunking` on every PIP level of ``model``; returns how many levels there are."""
    levels = [m for m in model.modules() if isinstance(m, PIPLevel)]
    for level in levels:
        level.set_p2f_chunking(pixels)
    return len(levels)
