"""Directional decoupled loss L_ddl (spec §4): keeps the T degradation prompts of each level apart."""
from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import nn

from .prompt_geometry import pairwise_cosine

_FORMS = ("paper", "release")


class DirectionalDecoupledLoss(nn.Module):
    """``loss_weight · Σ_levels L_level`` over the degradation prompts of every PIP level.

    ``form="paper"`` (default): ``L_level = 2/(T(T−1)) Σ_{i<j} max(0, θ_thre − θ_ij)``, θ_ij the angle
    between ``d_i`` and ``d_j`` **in radians** (the hinge is on angles; ``theta_thre`` is given in degrees
    and converted, so 90° → π/2 and two identical prompts cost π/2).  The cosine is clamped to
    ``±(1 − 1e-6)`` before ``acos`` so the gradient stays finite for (anti-)parallel prompts; this
    shifts the angle of identical prompts from 0 to about 1.4e-3 rad.
    ``form="release"``: ``L_level = 0.01 · Σ_{i<j} relu(cos θ_ij − cos θ_thre)``.
    Cosines use a denominator clamped at ``eps`` = 1e-8.  A level with T < 2 contributes 0.

    ``forward`` takes one T×D tensor per level (a 1×T×D×1×1 release-shaped tensor is accepted too).
    """

    def __init__(self, form: str = "paper", theta_thre: float = 90.0, loss_weight: float = 0.002,
                 eps: float = 1e-8) -> None:
        super().__init__()
        if form not in _FORMS:
            raise ValueError(f"DirectionalDecoupledLoss form must be one of {_FORMS}, got {form!r}")
        if not 0.0 <= theta_thre <= 180.0:
            raise ValueError(f"theta_thre is an angle in degrees in [0, 180], got {theta_thre}")
        self.form, self.theta_thre, self.loss_weight, self.eps = form, float(theta_thre), float(loss_weight), eps
        self.theta_rad = math.radians(self.theta_thre)
        self.cos_thre = math.cos(self.theta_rad)

    def level_loss(self, prompts: torch.Tensor) -> torch.Tensor:
        """The unweighted loss of one level's T×D prompts."""
        if prompts.dim() == 5 and prompts.shape[0] == 1 and prompts.shape[3:] == (1, 1):
            prompts = prompts.reshape(prompts.shape[1], prompts.shape[2])
        if prompts.dim() != 2:
            raise ValueError(f"degradation prompts must be T×D (or 1×T×D×1×1), got shape {tuple(prompts.shape)}")
        t = prompts.shape[0]
        if t < 2:
            return prompts.sum() * 0.0  # keeps the graph (and device/dtype) without adding anything
        cos = pairwise_cosine(prompts, self.eps)
        if self.form == "release":
            return 0.01 * torch.relu(cos - self.cos_thre).sum()
        theta = torch.acos(cos.clamp(-1.0 + 1e-6, 1.0 - 1e-6))
        return torch.relu(self.theta_rad - theta).sum() * (2.0 / (t * (t - 1)))

    def forward(self, prompts_per_level: Union[Sequence[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``loss_weight`` times the sum of the per-level losses."""
        if isinstance(prompts_per_level, torch.Tensor):
            prompts_per_level = [prompts_per_level]
        if len(prompts_per_level) == 0:
            raise ValueError("DirectionalDecoupledLoss needs the prompts of at least one level")
        total = sum(self.level_loss(p) for p in prompts_per_level)
        return total * self.loss_weight

    def extra_repr(self) -> str:
        return f"form={self.form}, theta_thre={self.theta_thre}°, loss_weight={self.loss_weight}"
