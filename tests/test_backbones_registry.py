"""The BACKBONES registry: pre-registered classes, (re-)registration rules, build_backbone errors."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pip_adapter import backbones as bb
from pip_adapter.backbones import BACKBONES, NAFNet, Restormer, RestormerPIPRelease, build_backbone, register_backbone


@pytest.fixture
def clean_registry():
    """Restore BACKBONES after a test that registers throw-away classes."""
    before = dict(BACKBONES)
    yield
    BACKBONES.clear()
    BACKBONES.update(before)


class _Tiny(nn.Module):
    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


def test_builtin_backbones_are_registered():
    assert BACKBONES["NAFNet"] is NAFNet
    assert BACKBONES["Restormer"] is Restormer
    assert BACKBONES["RestormerPIPRelease"] is RestormerPIPRelease
    assert bb.NAFNet is NAFNet


def test_reregistering_same_class_is_a_noop(clean_registry):
    n = len(BACKBONES)
    assert register_backbone(NAFNet) is NAFNet
    assert register_backbone(_Tiny) is _Tiny
    assert register_backbone(_Tiny) is _Tiny
    assert len(BACKBONES) == n + 1 and BACKBONES["_Tiny"] is _Tiny


def test_different_class_under_taken_name_is_refused(clean_registry):
    class NAFNet(nn.Module):  # noqa: N801 - same name as the built-in on purpose
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_backbone(NAFNet)
    with pytest.raises(ValueError, match="already registered"):
        register_backbone(_Tiny, name="Restormer")
    assert BACKBONES["Restormer"] is Restormer


def test_decorator_and_alias_forms(clean_registry):
    @register_backbone
    class NetA(_Tiny):
        pass

    @register_backbone("net_b")
    class NetB(_Tiny):
        pass

    register_backbone(_Tiny, name="tiny_alias")
    assert BACKBONES["NetA"] is NetA and BACKBONES["net_b"] is NetB and BACKBONES["tiny_alias"] is _Tiny
    assert isinstance(build_backbone({"type": "net_b", "channels": 1}), NetB)


def test_register_rejects_non_modules():
    with pytest.raises(ValueError, match="nn.Module"):
        register_backbone(dict)
    with pytest.raises(ValueError, match="nn.Module"):
        register_backbone(_Tiny())


def test_build_backbone_passes_kwargs_and_leaves_opt_untouched():
    opt = {"type": "NAFNet", "width": 4, "enc_blk_nums": [1], "dec_blk_nums": [1], "middle_blk_num": 0}
    snapshot = {k: (list(v) if isinstance(v, list) else v) for k, v in opt.items()}
    net = build_backbone(opt)
    assert isinstance(net, NAFNet) and net.intro.out_channels == 4 and len(net.encoders) == 1
    assert opt == snapshot
    x = torch.rand(1, 3, 6, 6)
    assert net(x).shape == x.shape


def test_build_backbone_errors():
    with pytest.raises(ValueError, match=r"unknown backbone type 'UNetX'.*NAFNet.*Restormer"):
        build_backbone({"type": "UNetX"})
    with pytest.raises(ValueError, match="no 'type'"):
        build_backbone({"width": 4})
    with pytest.raises(ValueError, match="bad arguments for NAFNet"):
        build_backbone({"type": "NAFNet", "widht": 4})
    with pytest.raises(ValueError, match="expects a dict"):
        build_backbone("NAFNet")
