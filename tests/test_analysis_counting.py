"""Counting: true parameters, thop-style parameters/MACs, all MACs."""
import pytest
import torch
from torch import nn

from pip_adapter.modules import PIPLevel
from pip_adapter.analysis.counting import count_model

RESTORMER_LEVELS = [(48, 64, 64, 256), (96, 128, 32, 128), (192, 256, 16, 64)]  # C, D, s, H=W at 256² input


def _levels(device="cpu"):
    with torch.device(device):
        return [PIPLevel(c, d, s, 5) for c, d, s, _ in RESTORMER_LEVELS]


def test_pip_restormer_levels_true_parameters():
    assert sum(count_model(lv, (torch.zeros(1, c, 8, 8), torch.tensor([0])), all_macs=False).params
               for lv, (c, *_) in zip(_levels(), RESTORMER_LEVELS)) == 3_125_330


def test_pip_restormer_levels_thop_style_matches_paper():
    thop_params = macs = all_macs = true = 0
    for level, (c, _, _, h) in zip(_levels("meta"), RESTORMER_LEVELS):
        with torch.device("meta"):
            rep = count_model(level, (torch.empty(1, c, h, h), torch.empty(1, 5)))
        thop_params += rep.thop_params
        macs += rep.macs
        all_macs += rep.all_macs
        true += rep.params
        # thop-style = true minus every bare parameter
        # (prompts, LayerNorm weights, temperatures, top-m scalars: everything not held by a conv)
        bare = sum(p.numel() for m in level.modules() if not isinstance(m, nn.Conv2d)
                   for p in m.parameters(recurse=False))
        assert bare > 0
        assert rep.thop_params == rep.params - bare
    assert true == 3_125_330
    assert round(thop_params / 1e6, 2) == 2.66  # spec §7
    assert round(macs / 1e9, 2) == 15.78  # spec §7
    assert all_macs > macs  # the attention products come on top


def test_rules_on_a_toy_model():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
            self.fc = nn.Linear(8, 4)
            self.bare = nn.Parameter(torch.ones(4, 4))

        def forward(self, x):
            y = self.dw(self.conv(x)).mean((2, 3))
            return self.fc(y) @ self.bare

    rep = count_model(Toy(), (2, 3, 5, 5))
    assert rep.params == 3 * 8 * 9 + 8 + 8 * 9 + 8 * 4 + 4 + 16
    assert rep.thop_params == rep.params - 16
    conv = 2 * 8 * 25 * 3 * 9
    dw = 2 * 8 * 25 * 9
    fc = 2 * 4 * 8
    assert rep.macs == conv + dw + fc
    assert rep.all_macs == conv + dw + fc + 2 * 4 * 4  # + the bare matmul
    assert rep.params_per_module == {"conv": 224, "dw": 72, "fc": 36, "bare": 16}
    assert rep.thop_per_module["conv"] == (224, conv)
    assert "thop-style MACs" in rep.summary() and rep.get("macs") == rep.thop_macs


def test_counting_restores_mode_and_accepts_kwargs():
    level = PIPLevel(4, 8, 4, 3).train()
    z = torch.randn(1, 4, 8, 8)
    rep = count_model(level, (z,), kwargs={"omega": torch.tensor([1])}, all_macs=False)
    assert level.training and rep.all_macs is None and rep.macs > 0
    with pytest.raises(ValueError, match="input size"):
        count_model(level, 3)
