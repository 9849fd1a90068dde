"""Directional decoupled loss: both forms, edge cases, gradients."""
import math

import pytest
import torch

from pip_adapter.modules import DirectionalDecoupledLoss


@pytest.mark.parametrize("form", ["paper", "release"])
def test_orthogonal_prompts_cost_nothing(form):
    loss = DirectionalDecoupledLoss(form=form)
    prompts = [torch.eye(5, 16), 3.0 * torch.eye(4, 8)]
    assert loss(prompts).item() == pytest.approx(0.0, abs=1e-7)


def test_identical_prompts_paper():
    loss = DirectionalDecoupledLoss(form="paper", loss_weight=0.5)
    d = torch.randn(1, 12, generator=torch.Generator().manual_seed(0))
    levels = [d.repeat(5, 1), 2.0 * d.repeat(3, 1)]
    # every pair sits at angle ~0 (acos of the clamped cosine), the mean over pairs is that hinge
    per_level = math.pi / 2 - math.acos(1.0 - 1e-6)
    assert loss(levels).item() == pytest.approx(0.5 * 2 * per_level, rel=1e-4)


def test_identical_prompts_release():
    loss = DirectionalDecoupledLoss(form="release", loss_weight=1.0)
    d = torch.randn(1, 12, generator=torch.Generator().manual_seed(1))
    pairs = 5 * 4 // 2
    assert loss([d.repeat(5, 1)]).item() == pytest.approx(0.01 * pairs * (1 - math.cos(math.pi / 2)), rel=1e-5)


def test_threshold_and_angle_units():
    # two prompts at 60°: hinge at 90° is 30° = π/6 rad; at 45° it is 0
    a = torch.tensor([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    assert DirectionalDecoupledLoss(loss_weight=1.0)([a]).item() == pytest.approx(math.pi / 6, rel=1e-5)
    assert DirectionalDecoupledLoss(theta_thre=45.0, loss_weight=1.0)([a]).item() == pytest.approx(0.0, abs=1e-7)
    rel = DirectionalDecoupledLoss(form="release", loss_weight=1.0)([a]).item()
    assert rel == pytest.approx(0.01 * 0.5, rel=1e-5)


@pytest.mark.parametrize("form", ["paper", "release"])
def test_gradient_flows(form):
    p = torch.randn(5, 16, generator=torch.Generator().manual_seed(2)).abs().requires_grad_()
    loss = DirectionalDecoupledLoss(form=form)([p, p[:3] * 2])
    assert loss.item() > 0
    loss.backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # identical prompts: the clamp keeps the gradient finite
    q = torch.ones(3, 4, requires_grad=True)
    DirectionalDecoupledLoss(form=form)([q]).backward()
    assert torch.isfinite(q.grad).all()


def test_single_type_and_bad_input():
    p = torch.randn(1, 8, requires_grad=True)
    loss = DirectionalDecoupledLoss()([p])
    assert loss.item() == 0.0
    loss.backward()
    # release-shaped prompts 1×T×D×1×1 are accepted
    r = torch.randn(1, 4, 8, 1, 1)
    assert DirectionalDecoupledLoss()(r).item() == pytest.approx(DirectionalDecoupledLoss()([r.reshape(4, 8)]).item())
    with pytest.raises(ValueError, match="T×D"):
        DirectionalDecoupledLoss()([torch.zeros(2, 3, 4)])
    with pytest.raises(ValueError, match="form"):
        DirectionalDecoupledLoss(form="other")
    with pytest.raises(ValueError, match="at least one level"):
        DirectionalDecoupledLoss()([])
