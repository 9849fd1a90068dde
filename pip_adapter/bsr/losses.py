"""Losses the PIP recipes need that BasicSR 1.4.2 lacks (registered in ``LOSS_REGISTRY``)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F


class SmoothL1Loss(nn.Module):
    """Smooth L1 (Huber with ``beta``) pixel loss, the release's ``L_pix`` (β = 1), BasicSR ``pixel_opt`` style.

    Args:
        loss_weight: multiplier of the loss.
        reduction: ``mean`` | ``sum`` | ``none``.
        beta: threshold between the quadratic and the linear part.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", beta: float = 1.0) -> None:
        super().__init__()
        if reduction not in ("none", "mean", "sum"):
            raise ValueError(f"SmoothL1Loss: reduction must be none, mean or sum, got {reduction!r}")
        if beta < 0:
            raise ValueError(f"SmoothL1Loss: beta must be >= 0, got {beta}")
        self.loss_weight = float(loss_weight)
        self.reduction = reduction
        self.beta = float(beta)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None,
                **kwargs) -> torch.Tensor:
        """Weighted smooth-L1 between ``pred`` and ``target``."""
        if weight is None:
            loss = F.smooth_l1_loss(pred, target, reduction=self.reduction, beta=self.beta)
        else:
            loss = F.smooth_l1_loss(pred, target, reduction="none", beta=self.beta) * weight
            if self.reduction == "mean":
                loss = loss.mean()
            elif self.reduction == "sum":
                loss = loss.sum()
        return self.loss_weight * loss
