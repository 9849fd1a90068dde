"""Learning-rate schedule of the PIP recipes: linear warm-up, then cosine decay (spec §8).

Paper: warm-up from 0 to ``lr`` over N iterations, then cosine to 0 at the end of training
(``warmup_start_factor: 0``).  Release: warm-up from ``lr/10`` (``warmup_start_factor: 0.1``), cosine to 0
at a given iteration (``total_iter``), constant ``eta_min`` afterwards.

The rate is a closed-form function of the step count, so resuming from a saved ``state_dict`` (plain
numbers only: it loads with ``torch.load(..., weights_only=True)``) gives exactly the same curve.

A warm-up longer than the whole schedule (a run shortened with ``--force_yml train:total_iter=N
train:scheduler:total_iter=N`` below the option file's ``warmup_iter``) is cut to a twentieth of
``total_iter`` — the paper's ratio, 10 of 200 epochs — and the log says so.
"""
from __future__ import annotations

import math
from typing import List

import torch
from basicsr.utils import get_root_logger
from torch.optim.lr_scheduler import LRScheduler

# a warm-up that does not fit in total_iter becomes total_iter // WARMUP_FRACTION (paper: 10 of 200 epochs)
WARMUP_FRACTION = 20


def fit_warmup(warmup_iter: int, total_iter: int) -> int:
    """``warmup_iter``, or ``total_iter // WARMUP_FRACTION`` when it is longer than ``total_iter`` (logged)."""
    if warmup_iter <= total_iter:
        return warmup_iter
    fitted = total_iter // WARMUP_FRACTION
    get_root_logger().warning(
        f"LinearWarmupCosine: warmup_iter={warmup_iter} is longer than total_iter={total_iter} (a shortened run?); "
        f"warming up over {fitted} iterations instead (1/{WARMUP_FRACTION} of total_iter). Set "
        f"train:scheduler:warmup_iter to choose another.")
    return fitted


def warmup_cosine_factor(step: int, warmup_iter: int, total_iter: int, warmup_start_factor: float,
                         eta_min_factor: float) -> float:
    """Multiplier of the base rate at 0-based ``step`` (see the module docstring)."""
    if warmup_iter > 0 and step < warmup_iter:
        return warmup_start_factor + (1.0 - warmup_start_factor) * step / warmup_iter
    if step >= total_iter:
        return eta_min_factor
    span = max(1, total_iter - warmup_iter)
    progress = (step - warmup_iter) / span
    return eta_min_factor + (1.0 - eta_min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class LinearWarmupCosine(LRScheduler):
    """Linear warm-up over ``warmup_iter`` steps, then cosine annealing to ``eta_min`` at ``total_iter``.

    Args:
        optimizer: the optimizer whose groups' ``initial_lr`` is the peak rate.
        total_iter: step at which the cosine reaches ``eta_min`` (the release: 120 of 200 epochs).
        warmup_iter: length of the linear warm-up in steps (0: none); one longer than ``total_iter`` is cut to
            ``total_iter // 20`` with a warning (see :func:`fit_warmup`).
        warmup_start_factor: rate at step 0 as a fraction of the peak (paper 0, release 0.1).
        eta_min: final rate (absolute, like torch's ``CosineAnnealingLR``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_iter: int, warmup_iter: int = 0,
                 warmup_start_factor: float = 0.0, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        total_iter, warmup_iter = int(total_iter), int(warmup_iter)
        if total_iter < 1:
            raise ValueError(f"LinearWarmupCosine: total_iter must be >= 1, got {total_iter}")
        if warmup_iter < 0:
            raise ValueError(f"LinearWarmupCosine: warmup_iter must be >= 0 (0: no warm-up), got {warmup_iter}")
        warmup_iter = fit_warmup(warmup_iter, total_iter)
        if not 0.0 <= float(warmup_start_factor) <= 1.0:
            raise ValueError(f"LinearWarmupCosine: warmup_start_factor must lie in [0, 1], got {warmup_start_factor}")
        if float(eta_min) < 0:
            raise ValueError(f"LinearWarmupCosine: eta_min must be >= 0, got {eta_min}")
        self.total_iter = total_iter
        self.warmup_iter = warmup_iter
        self.warmup_start_factor = float(warmup_start_factor)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> List[float]:
        """Rates of every parameter group at the current step."""
        step = max(0, self.last_epoch)
        rates = []
        for base in self.base_lrs:
            eta_factor = self.eta_min / base if base > 0 else 0.0
            rates.append(base * warmup_cosine_factor(step, self.warmup_iter, self.total_iter,
                                                     self.warmup_start_factor, eta_factor))
        return rates
