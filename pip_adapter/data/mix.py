"""Degradation-Mix (spec §9): train on images whose halves carry different degradations."""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from pip_adapter.omega import labels_to_omega


def degradation_mix(lq: torch.Tensor, gt: torch.Tensor, omega: torch.Tensor,
                    generator: Optional[torch.Generator] = None,
                    num_types: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a collated batch into halves along a random axis, shuffle second halves, mix the labels.

    ``lq``, ``gt``: B×C×H×W.  ``omega``: integer labels of shape (B,) (``num_types`` then gives T, default
    ``max + 1``) or non-negative weights B×T.  One axis (H or W) is drawn for the batch; the first half of
    every sample is kept and its second half (``H//2`` rows or ``W//2`` columns onward) comes from the
    sample at the same index of a random permutation, in both ``lq`` and ``gt``.  The returned soft ω is
    area-weighted: ``a·ω_i + (1 − a)·ω_perm(i)`` with ``a`` the kept fraction, after normalising each input
    row to sum 1, so every returned row sums to 1.  Inputs are not modified.  Randomness comes only
    from ``generator`` (on the CPU), so a seeded generator gives the same mix.
    """
    if lq.dim() != 4 or gt.dim() != 4 or lq.shape[0] != gt.shape[0] or lq.shape[-2:] != gt.shape[-2:]:
        raise ValueError(f"degradation_mix needs lq and gt of shape B×C×H×W with the same B, H, W; "
                         f"got {tuple(lq.shape)} and {tuple(gt.shape)}")
    b, _, h, w = lq.shape
    if omega.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        t = int(num_types) if num_types is not None else int(omega.max().item()) + 1
        weights = labels_to_omega(omega.reshape(-1), t).to(lq.device)
    else:
        weights = omega.to(device=lq.device, dtype=torch.float32)
        if weights.dim() != 2:
            raise ValueError(f"omega must be labels (B,) or weights B×T, got shape {tuple(omega.shape)}")
        sums = weights.sum(dim=1, keepdim=True)
        if (weights < 0).any() or (sums <= 0).any():
            raise ValueError("omega weights must be non-negative with a positive sum per row")
        weights = weights / sums
    if weights.shape[0] != b:
        raise ValueError(f"omega has {weights.shape[0]} rows but the batch has {b} samples")
    axis = 2 if int(torch.randint(0, 2, (1,), generator=generator).item()) == 0 else 3
    size = h if axis == 2 else w
    cut = size // 2
    if cut == 0:  # 1-pixel side: nothing to split
        return lq.clone(), gt.clone(), weights
    perm = torch.randperm(b, generator=generator).to(lq.device)
    lq_out, gt_out = lq.clone(), gt.clone()
    if axis == 2:
        lq_out[:, :, cut:] = lq[perm, :, cut:]
        gt_out[:, :, cut:] = gt[perm, :, cut:]
    else:
        lq_out[:, :, :, cut:] = lq[perm, :, :, cut:]
        gt_out[:, :, :, cut:] = gt[perm, :, :, cut:]
    kept = cut / size
    mixed = kept * weights + (1.0 - kept) * weights[perm]
    return lq_out, gt_out, mixed
