"""The PIP level's band path: P2F computed in bands of whole rows, to bound the peak memory of big maps.

Full-resolution P2F sets the peak memory of a PIP level (the dual-gate FFN widens C channels to 2·⌊2.66·C⌋ at
H×W); in bands only one band's intermediates are alive at a time.  The attention's mixing matrix needs sums over
the whole map, so P2F runs in two passes over the bands, using the attention's own pieces
(:meth:`TransposedCrossAttention.query` / ``key`` / ``value``, :meth:`~TransposedCrossAttention.token_statistics`,
:meth:`~TransposedCrossAttention.mixing_matrix`):

1. q and k per band (one extra row on each side for their 3×3 depthwise convs), summing the attention's token
   statistics (per-head q·kᵀ and squared norms) band by band;
2. the mixing matrix once, then per band v, the attention output, the residual and the FFN (two extra rows: the
   v conv and the FFN's 3×3 conv).

The result equals the whole-map P2F up to float rounding (the c×c sums are taken band by band).  Eager calls
only: in a compiled, exported or jit-traced graph the loop over bands would be unrolled over the input size (``modules/level_paths.py``).
"""
from __future__ import annotations

from typing import List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# at least 8 rows a band: each band recomputes 2 rows on each side for the 3×3 convs
MIN_BAND_ROWS = 8


def band_rows(pixels: int, height: int, width: int) -> int:
    """Rows per band for about ``pixels`` pixels a band (at least :data:`MIN_BAND_ROWS`, at most ``height``)."""
    return min(height, max(MIN_BAND_ROWS, pixels // max(1, width)))


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _tokens(x: torch.Tensor) -> torch.Tensor:
    """B×C×r×W → B×(r·W)×C (a view of a channels-last map)."""
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, x.shape[1])


def prompt_to_feature_bands(level: nn.Module, z: torch.Tensor, u: torch.Tensor, rows: int) -> torch.Tensor:
    """The P2F of ``level`` (a :class:`~pip_adapter.modules.PIPLevel`) in bands of ``rows`` rows.

    ``z``: the skip feature B×C×H×W, ``u``: the universal prompt B×D×H×W; returns B×C×H×W channels-last.
    """
    attn = level.p2f_attn
    c, dim = level.channels, level.prompt_dim
    b, _, h, w = z.shape
    cq = min(c, dim)  # C < D: the query is zero-padded implicitly; C > D: only the first D channels attend
    bands: List[Tuple[int, int]] = [(r, min(h, r + rows)) for r in range(0, h, rows)]

    stats = None
    for r0, r1 in bands:
        lo, hi = max(0, r0 - 1), min(h, r1 + 1)
        q = attn.query(level.p2f_norm_feature(_channels_last(z[:, :, lo:hi]))[:, :cq])[:, :, r0 - lo:r1 - lo]
        k = attn.key(level.p2f_norm_prompt(_channels_last(u[:, :, lo:hi])))[:, :, r0 - lo:r1 - lo]
        part = attn.token_statistics(_tokens(q), _tokens(k), "heads")
        stats = part if stats is None else tuple(s + p for s, p in zip(stats, part))
    # float32 until each band's product, as the whole-map attention keeps its c×c map
    mix = attn.mixing_matrix(stats, torch.float32, fold_projection=attn.fused)

    out = None
    for r0, r1 in bands:
        lo, hi = max(0, r0 - 2), min(h, r1 + 2)     # rows read
        a0, a1 = max(0, r0 - 1), min(h, r1 + 1)     # rows of the FFN's input that must be exact
        zn = level.p2f_norm_feature(_channels_last(z[:, :, a0:a1]))
        v = attn.value(level.p2f_norm_prompt(_channels_last(u[:, :, lo:hi])))[:, :, a0 - lo:a1 - lo]
        vt = _tokens(v)
        a = (vt @ mix.to(vt.dtype).transpose(-1, -2)).view(b, a1 - a0, w, dim).permute(0, 3, 1, 2)
        if not attn.fused:
            a = attn.project_out(a)
        if c < dim:
            a = a + F.pad(zn, (0, 0, 0, 0, 0, dim - c))
        else:
            a = a + zn[:, :dim]
        if level.reduce_channel is not None:
            a = level.reduce_channel(a)
        elif c > dim:
            a = torch.cat([a, zn[:, dim:].to(a.dtype)], dim=1)
        y = level.p2f_ffn(level.p2f_norm_ffn(a)) + a
        y = y[:, :, r0 - a0:r1 - a0]
        if out is None:
            out = torch.empty(b, c, h, w, dtype=y.dtype, device=y.device, memory_format=torch.channels_last)
        out[:, :, r0:r1] = y
    return out
