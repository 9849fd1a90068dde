"""pip_adapter.analysis on a toy PIP model: parameter split, prompt angles, U collection, wrong-prompt matrix."""
import math

import pytest
import torch
from torch import nn

from pip_adapter.analysis import (angle_matrix, collect_universal_prompts, level_prompt_angles, parameter_split,
                                  psnr, skip_level_rows, wrong_prompt_matrix)
from pip_adapter.analysis.prompts import random_crops
from pip_adapter.analysis.wrong_prompt import matrix_markdown
from pip_adapter.modules.pip_level import PIPLevel

pytestmark = pytest.mark.usefixtures("one_thread")


class ToyPIP(nn.Module):
    """Two skip levels with PIP, the smallest U-shape that calls PIPLevel(z, omega)."""

    def __init__(self) -> None:
        super().__init__()
        self.degradations = ["noise", "rain", "haze"]
        self.enc1 = nn.Conv2d(3, 6, 3, padding=1)
        self.enc2 = nn.Conv2d(6, 10, 3, stride=2, padding=1)
        self.pip = nn.ModuleList([PIPLevel(6, 8, 4, 3), PIPLevel(10, 8, 4, 3)])
        self.up = nn.ConvTranspose2d(10, 6, 2, stride=2)
        self.out = nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, x, omega):
        z1 = self.enc1(x)
        z2 = self.enc2(z1)
        y = self.up(self.pip[1](z2, omega)) + self.pip[0](z1, omega)
        return x + self.out(y)


@pytest.fixture()
def toy():
    torch.manual_seed(0)
    return ToyPIP().eval()


def test_angle_matrix_known_vectors():
    v = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 1.0]])
    a = angle_matrix(v)
    assert a.shape == (4, 4)
    assert torch.allclose(a, a.t())
    assert a[0, 1] == pytest.approx(90.0, abs=1e-4)
    assert a[0, 2] == pytest.approx(180.0, abs=1e-4)
    assert a[0, 3] == pytest.approx(45.0, abs=1e-4)
    assert torch.allclose(torch.diagonal(a), torch.zeros(4), atol=1e-3)
    with pytest.raises(ValueError, match="T×D"):
        angle_matrix(torch.zeros(3))


def test_parameter_split_and_levels(toy):
    split = parameter_split(toy)
    pip = sum(p.numel() for p in toy.pip.parameters())
    assert split["pip"] == pip
    assert split["backbone"] == split["total"] - pip > 0
    rows = skip_level_rows(toy)
    assert [r["channels"] for r in rows] == [6, 10]
    assert all(r["prompt_dim"] == 8 and r["num_types"] == 3 for r in rows)
    with pytest.raises(ValueError, match="no PIP level"):
        parameter_split(nn.Conv2d(3, 3, 1))


def test_level_prompt_angles_follow_the_prompts(toy):
    with torch.no_grad():
        toy.pip[0].degradation_prompt.copy_(torch.eye(3, 8))
        toy.pip[0].degradation_prompt[2] = -toy.pip[0].degradation_prompt[0]
    a0, a1 = level_prompt_angles(toy)
    assert a0[0, 1] == pytest.approx(90.0, abs=1e-3) and a0[0, 2] == pytest.approx(180.0, abs=1e-3)
    assert a1.shape == (3, 3)


def test_universal_prompts_per_level_and_depend_on_omega(toy):
    x = torch.rand(4, 3, 16, 16)
    same = collect_universal_prompts(toy, [(x, torch.tensor([0, 0, 0, 0]))])
    assert [u.shape for u in same] == [(4, 8), (4, 8)]
    direct = toy.pip[0].universal_prompt(toy.enc1(x), torch.eye(3)[[0, 0, 0, 0]]).mean(dim=(2, 3))
    assert torch.allclose(same[0], direct, atol=1e-5)
    other = collect_universal_prompts(toy, [(x[:2], torch.tensor([1, 1])), (x[2:], torch.tensor([2, 2]))])
    assert other[0].shape == (4, 8)
    assert not torch.allclose(same[0], other[0])
    assert not toy.pip[0]._forward_pre_hooks  # hooks are removed


def test_psnr_value():
    a = torch.zeros(1, 3, 4, 4)
    b = torch.full((1, 3, 4, 4), 0.1)
    assert psnr(b, a) == pytest.approx(20.0, abs=1e-6)
    with pytest.raises(ValueError, match="shape"):
        psnr(a, torch.zeros(1, 3, 4, 5))


def test_wrong_prompt_matrix_shape_and_diagonal(toy):
    gt = torch.rand(2, 3, 16, 16)
    samples = {"noise": ((gt + 0.1 * torch.randn_like(gt)).clamp(0, 1), gt), "rain": (gt.flip(-1), gt)}
    res = wrong_prompt_matrix(toy, samples, toy.degradations)
    assert res["psnr"].shape == (2, 3)
    assert res["rows"] == ["noise", "rain"] and res["cols"] == ["noise", "rain", "haze"]
    # each cell equals the PSNR of a direct restoration with that ω
    with torch.no_grad():
        out = toy(samples["rain"][0], torch.eye(3)[[2, 2]]).clamp(0, 1)
    assert float(res["psnr"][1, 2]) == pytest.approx(psnr(out, gt), abs=1e-4)
    assert float(res["input_psnr"][0]) == pytest.approx(psnr(samples["noise"][0], gt), abs=1e-6)
    md = matrix_markdown(res)
    assert md.count("\n") == 3 and md.count("**") == 4  # header, rule, two rows; one bold per row


def test_random_crops_upsizes_small_images():
    g = torch.Generator().manual_seed(0)
    crops = random_crops(torch.rand(3, 20, 30), 16, 5, g)
    assert crops.shape == (5, 3, 16, 16)
    small = random_crops(torch.rand(3, 8, 12), 16, 2, g)
    assert small.shape == (2, 3, 16, 16)
    assert not math.isnan(float(small.sum()))
