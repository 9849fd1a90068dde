"""Extending ω with new degradation types on a trained PIP model, and choosing what fine-tunes.

``extend_degradations(model, ["snow"])`` adds, at every PIP level, one degradation prompt per new
type.  The new prompts start at an angle of at least 90° to every existing prompt and to each
other, so the directional decoupled loss (spec §4, θ_thre = 90°) is zero at the start of
fine-tuning, and with the norm of the existing prompts.  The mean's divisor stays at the trained
T (``PIPLevel.prompt_divisor``), so the old types' outputs do not change.

``apply_trainable(model, "new_prompts")`` then freezes everything except the new prompts: the old
types' outputs stay bit-identical however long the new prompts train.
"""
from __future__ import annotations

import logging
import math
import warnings
from typing import List, Optional, Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)

TRAINABLE_MODES = ("new_prompts", "pip", "all")

# cos of the tilt that pushes new prompts strictly past 90° from the old ones (see _analytic_init)
_TILT = 0.25


def prompt_angles(prompts: torch.Tensor) -> torch.Tensor:
    """Pairwise angles in degrees (T×T, diagonal 0) between the rows of a T×D prompt matrix."""
    if prompts.dim() != 2:
        raise ValueError(f"prompts must be a T×D matrix, got shape {tuple(prompts.shape)}")
    p = prompts.detach().to(torch.float64)
    n = p.norm(dim=1).clamp_min(1e-12)
    cos = (p @ p.t()) / (n[:, None] * n[None, :])
    ang = torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))
    ang.fill_diagonal_(0.0)
    return ang


def min_prompt_angle(prompts: torch.Tensor, from_index: int = 0) -> float:
    """Smallest angle (degrees) of any pair that involves a row ``>= from_index``; 180 if no pair."""
    t = prompts.shape[0]
    ang = prompts.new_empty(0)
    ang = prompt_angles(prompts)
    best = 180.0
    for i in range(t):
        for j in range(i + 1, t):
            if j >= from_index:
                best = min(best, float(ang[i, j]))
    return best


def _target_norm(existing: torch.Tensor) -> float:
    if existing.shape[0] == 0:
        return math.sqrt(existing.shape[1])  # norm of an N(0, 1) D-vector, the PIPLevel init
    norms = existing.norm(dim=1)
    norm = float(norms.mean())
    return norm if norm > 0 else math.sqrt(existing.shape[1])


def _analytic_init(existing: torch.Tensor, k: int, gen: torch.Generator) -> Optional[torch.Tensor]:
    """Unit new prompts strictly past 90° from the old ones and from each other, when T+k <= D.

    Random vectors are projected onto the orthogonal complement of the old prompts' span and
    orthonormalised (QR = Gram–Schmidt).  To make the angles strictly obtuse (so rounding can never
    make L_ddl positive) the orthonormal set is centred (pairwise cos < 0) and every vector is tilted
    along ``u``, the vector of the old span with ``u·d_j = -1`` for all old ``d_j``.
    """
    t, d = existing.shape
    if existing.shape[0]:
        _, s, vh = torch.linalg.svd(existing, full_matrices=True)
        rank = int((s > s.max() * 1e-10).sum())
    else:
        vh = torch.eye(d, dtype=existing.dtype)
        rank = 0
    if rank + k > d:
        return None
    complement = vh[rank:]                                   # (D-rank)×D orthonormal rows
    g = torch.randn(k, complement.shape[0], generator=gen, dtype=existing.dtype)
    q, _ = torch.linalg.qr(g.t())                            # (D-rank)×k orthonormal columns
    ortho = q.t() @ complement                               # k×D, orthonormal, ⟂ old span
    gamma = 0.5
    w = ortho - gamma * ortho.mean(dim=0, keepdim=True)      # pairwise dot γ(γ-2)/k < 0
    w = w / w.norm(dim=1, keepdim=True)
    if t == 0:
        return w
    u = -torch.linalg.pinv(existing) @ torch.ones(t, dtype=existing.dtype)
    consistent = u.norm() > 0 and torch.allclose(existing @ u, -torch.ones(t, dtype=existing.dtype),
                                                 atol=1e-6, rtol=0)
    if not consistent:
        # the old prompts admit no common obtuse direction (e.g. d_1 = 2·d_2): exactly 90° it is
        logger.warning("the existing prompts are linearly dependent; new prompts start at exactly 90° "
                       "to them (rounding may leave L_ddl at ~1e-8 instead of 0)")
        return w
    u = u / u.norm()
    if k > 1:
        pair = float((w[0] @ w[1]))                          # the same for every pair by symmetry
        eps = min(_TILT, math.sqrt(0.5 * abs(pair)))
    else:
        eps = _TILT
    v = w + eps * u
    return v / v.norm(dim=1, keepdim=True)


def _optimised_init(existing: torch.Tensor, k: int, gen: torch.Generator,
                    restarts: int = 4, steps: int = 300) -> torch.Tensor:
    """Unit new prompts maximising the smallest angle to the old prompts and to each other."""
    t, d = existing.shape
    old = existing / existing.norm(dim=1, keepdim=True).clamp_min(1e-12) if t else existing
    iu = torch.triu_indices(k, k, offset=1)

    def max_cos(x: torch.Tensor) -> torch.Tensor:
        xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        parts = [(xn @ old.t()).reshape(-1)] if t else []
        if k > 1:
            parts.append((xn @ xn.t())[iu[0], iu[1]])
        return torch.cat(parts)

    best, best_val = None, float("inf")
    for _ in range(restarts):
        x = torch.randn(k, d, generator=gen, dtype=existing.dtype).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=0.05)
        for step in range(steps):
            temp = 0.1 * (0.05 ** (step / max(1, steps - 1)))   # anneal the soft max towards max
            loss = temp * torch.logsumexp(max_cos(x) / temp, dim=0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = float(max_cos(x).max())
            if val < best_val:
                best_val, best = val, x.detach().clone()
    return best / best.norm(dim=1, keepdim=True)


def orthogonal_prompt_init(existing: torch.Tensor, k: int, generator: Optional[torch.Generator] = None,
                           scale: Optional[float] = None) -> torch.Tensor:
    """k new prompt vectors (k×D) at >= 90° to every row of ``existing`` (T×D) and to each other.

    Scaled to the mean norm of the existing prompts (or ``scale``).  When T+k > D no such set
    exists in general: the minimum angle is maximised numerically and a warning says what it is.
    """
    if existing.dim() != 2:
        raise ValueError(f"existing prompts must be T×D, got shape {tuple(existing.shape)}")
    if k < 1:
        raise ValueError(f"the number of new prompts must be >= 1, got {k}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    ex = existing.detach().to("cpu", torch.float64)
    t, d = ex.shape
    unit = _analytic_init(ex, k, gen) if t + k <= d else None
    if unit is None:
        unit = _optimised_init(ex, k, gen)
        angle = min_prompt_angle(torch.cat([ex, unit]), from_index=t)
        msg = (f"prompt width D={d} is smaller than old+new types T+k={t + k} (or the old prompts fill "
               f"the space): new prompts cannot all be orthogonal; initialised to maximise the minimum "
               f"angle, which is {angle:.1f}°")
        if angle < 90.0:
            msg += " (< 90°: L_ddl starts above zero)"
        warnings.warn(msg, stacklevel=3)
        logger.warning(msg)
    norm = float(scale) if scale is not None else _target_norm(ex)
    return (unit * norm).to(existing.dtype if existing.is_floating_point() else torch.float32)
