"""The PIP level's token path: the whole level token-major, every full-size tensor made by a GEMM or a conv.

This is the path ``torch.compile`` runs (``modules/level_paths.py`` chooses it).  The channels-last path's
layout tricks (channels-last copies, in-place adds, row bands) are choices a compiler makes again on its own, and
badly at the layout boundaries; here the skip feature is read as B×N×C tokens (a view when the compiler keeps the
backbone channels-last), the linear maps that follow an attention fold into its mixing matrix
(:meth:`TransposedCrossAttention.mix_tokens`), residuals ride in the GEMMs, both resizes are gathers
(``resize_bilinear_hwc``) and the result is handed back as a channels-last view.  The numbers are the other
paths' up to float rounding.  The level's parts are used through their token forms (``forward_tokens``,
``hidden_tokens``, ``mix_tokens``); nothing here reads another module's weights except the 1×1 and 3×3 convs
that the token form replaces by a GEMM or calls as a convolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resize import resize_bilinear_hwc
from .tokens import linear_tokens, weight_matrix


def forward_tokens(level: nn.Module, z: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """``Ẑ`` of ``level`` (a :class:`~pip_adapter.modules.PIPLevel`) for ``z`` B×C×H×W and a checked B×T ``omega``.

    Returns a channels-last view (B×C×H×W with channels innermost), whatever ``z``'s layout.
    """
    c, dim, s = level.channels, level.prompt_dim, level.prompt_size
    b, _, h, w = z.shape
    x = z.permute(0, 2, 3, 1)                                   # B×H×W×C
    # P2P at s×s
    zs = resize_bilinear_hwc(x[..., :dim] if c > dim else x, (s, s))
    if level.degradation_prompt is not None:
        zs = zs * level.degradation_vector(omega)[:, None, None, :zs.shape[-1]]
    if c < dim:
        zs = F.pad(zs, (0, dim - c))
    zs = zs.reshape(b, s * s, dim)
    if level.basic_prompt is not None:
        query = level.basic_prompt.reshape(1, dim, s * s).transpose(1, 2)
    else:
        query = zs
    m, v = level.p2p_attn.mix_tokens(level.p2p_norm_query.forward_tokens(query),
                                     level.p2p_norm_kv.forward_tokens(zs), (s, s))
    p = linear_tokens(v, m, query.expand(b, -1, -1))
    ffn = level.p2p_ffn
    p = linear_tokens(ffn.hidden_tokens(level.p2p_norm_ffn.forward_tokens(p), (s, s)),
                      weight_matrix(ffn.project_out.weight), p)
    # U: upsample (always, so a symbolic H×W is not specialised to s), then the 3×3 conv channels-last
    up = resize_bilinear_hwc(p.view(b, s, s, dim), (h, w))
    u = F.conv2d(up.permute(0, 3, 1, 2), level.out_conv.weight, padding=1)
    un = level.p2f_norm_prompt.forward_tokens(u.permute(0, 2, 3, 1).reshape(b, h * w, dim))
    # P2F
    zn = level.p2f_norm_feature.forward_tokens(x.reshape(b, h * w, c))
    m, v = level.p2f_attn.mix_tokens(zn[..., :dim] if c > dim else zn, un, (h, w))
    if level.reduce_channel is not None:
        # C < D: R·(attention + zero-padded zn) = v·(R·M)ᵀ + zn·R[:, :C]ᵀ, without the D-channel sum
        r = weight_matrix(level.reduce_channel.weight)
        a = linear_tokens(v, r @ m, linear_tokens(zn, r[:, :c]))
    elif c > dim:
        a = torch.cat([linear_tokens(v, m, zn[..., :dim]), zn[..., dim:]], dim=-1)
    else:
        a = linear_tokens(v, m, zn)
    ffn = level.p2f_ffn
    out = linear_tokens(ffn.hidden_tokens(level.p2f_norm_ffn.forward_tokens(a), (h, w)),
                        weight_matrix(ffn.project_out.weight), a)
    return out.view(b, h, w, c).permute(0, 3, 1, 2)
