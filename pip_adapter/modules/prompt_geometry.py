"""Geometry of degradation prompts: pairwise cosines and angles, and initialising new prompts at >= 90° to the
trained ones (used by the directional decoupled loss and by the extension of ω with new types)."""
from __future__ import annotations

import logging
import math
from typing import Optional

import torch

from pip_adapter.utils.messages import warn

logger = logging.getLogger(__name__)


def cosine_matrix(vectors: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """T×T cosines of the rows of a T×D tensor, ``d_i·d_j / max(|d_i||d_j|, eps)`` (differentiable)."""
    if vectors.dim() != 2:
        raise ValueError(f"prompts must be a T×D matrix, got shape {tuple(vectors.shape)}")
    norms = torch.linalg.vector_norm(vectors, dim=1)
    return (vectors @ vectors.t()) / (norms.unsqueeze(1) * norms.unsqueeze(0)).clamp_min(eps)


def pairwise_cosine(prompts: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Cosines of all pairs i<j of the rows of ``prompts`` (T×D), in ``triu_indices`` order."""
    i, j = torch.triu_indices(prompts.shape[0], prompts.shape[0], offset=1, device=prompts.device)
    return cosine_matrix(prompts, eps)[i, j]


def angle_matrix(vectors: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """T×T angles in degrees between the rows of a T×D tensor, in float64 and without gradient."""
    cos = cosine_matrix(vectors.detach().to(torch.float64), eps)
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


# tilt (tan of the angle) of a single new prompt from the orthogonal complement towards the direction
# that is obtuse to every old prompt (see _analytic_init): about 100-110° to the old prompts
_TILT = 0.75


def prompt_angles(prompts: torch.Tensor) -> torch.Tensor:
    """Pairwise angles in degrees (T×T, diagonal 0) between the rows of a T×D prompt matrix."""
    ang = angle_matrix(prompts)
    ang.fill_diagonal_(0.0)
    return ang


def min_prompt_angle(prompts: torch.Tensor, from_index: int = 0) -> float:
    """Smallest angle (degrees) of any pair that involves a row ``>= from_index``; 180 if no pair."""
    t = prompts.shape[0]
    ang = prompt_angles(prompts)
    pair = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    pair[:, :from_index] = False  # (i, j) with i < j counts when j >= from_index
    return float(ang[pair].min()) if bool(pair.any()) else 180.0


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
    make L_ddl positive, and fine-tuning has a margin) the orthonormal set is half-centred (pairwise
    cos < 0) and every vector is tilted along ``u``, the vector of the old span with ``u·d_j = -1`` for
    all old ``d_j``.  Old and new prompts stay linearly independent, which keeps room for the next
    extension (a set of prompts with a positive linear dependency, such as a simplex, leaves no
    direction obtuse to all of them).
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
        eps = math.sqrt(0.5 * abs(pair))                     # keeps the new-new dot at pair/2 < 0
    else:
        eps = _TILT
    v = w + eps * u
    return v / v.norm(dim=1, keepdim=True)


def _optimised_init(existing: torch.Tensor, k: int, gen: torch.Generator, start: Optional[torch.Tensor] = None,
                    restarts: int = 4, steps: int = 300) -> torch.Tensor:
    """Unit new prompts maximising the smallest angle to the old prompts and to each other.

    ``start`` (k×D) is refined as the first candidate; the other restarts begin at random.
    """
    t, d = existing.shape
    iu = torch.triu_indices(k, k, offset=1)

    def max_cos(x: torch.Tensor) -> torch.Tensor:
        cos = cosine_matrix(torch.cat([existing, x]))[t:]          # k×(T+k): new vs old, new vs new
        parts = [cos[:, :t].reshape(-1)] if t else []
        if k > 1:
            parts.append(cos[:, t:][iu[0], iu[1]])
        return torch.cat(parts)

    best, best_val = None, float("inf")
    if start is not None:
        best, best_val = start.clone(), float(max_cos(start).max())
    for r in range(restarts):
        x0 = start if (start is not None and r == 0) else torch.randn(k, d, generator=gen, dtype=existing.dtype)
        x = x0.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=0.05)
        with torch.enable_grad():  # callers may hold torch.no_grad()
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
        warn(logger, msg, stacklevel=3)
    norm = float(scale) if scale is not None else _target_norm(ex)
    return (unit * norm).to(existing.dtype if existing.is_floating_point() else torch.float32)
