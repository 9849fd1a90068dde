"""build_network: one builder over an ordered list of registries; the BasicSR glue adds ARCH_REGISTRY."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from pip_adapter import networks
from pip_adapter.backbones import BACKBONES, NAFNet
from pip_adapter.networks import NETWORKS, UnknownNetworkError, add_network_registry, build_network
from pip_adapter.restore.checkpoint import default_builder
from pip_adapter.restore.classifier import DegradationClassifier
from pip_adapter.utils.registry import Registry
from pip_adapter.wrap.pipnet import PIPNet

NAF = {"type": "NAFNet", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1], "dec_blk_nums": [1]}


class _Net(nn.Module):
    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 1)


def test_backbones_then_networks_and_one_function_for_every_caller():
    net = build_network(dict(NAF))
    assert type(net) is NAFNet and net.intro.out_channels == 8
    pip = build_network({"type": "PIPNet", "backbone": dict(NAF), "degradations": 3, "prompt_dims": 8,
                         "prompt_sizes": 4})
    assert type(pip) is PIPNet and len(pip.pip_levels) == 1
    assert NETWORKS["PIPNet"] is PIPNet and NETWORKS["DegradationClassifier"] is DegradationClassifier
    assert type(default_builder(dict(NAF))) is NAFNet   # the checkpoints' name for the same builder
    labels = [label for label, _ in networks.network_registries()]
    assert labels[:2] == ["pip_adapter BACKBONES", "pip_adapter NETWORKS"]


def test_unknown_type_names_type_registries_closest_and_what_to_do(monkeypatch):
    # as in a process that has not imported the BasicSR glue: only the two registries of our own
    monkeypatch.setattr(networks, "_SOURCES", list(networks._SOURCES[:2]))
    with pytest.raises(UnknownNetworkError) as info:
        build_network({"type": "NAFnet"})
    text = str(info.value)
    assert text.startswith("unknown network type 'NAFnet': not in pip_adapter BACKBONES, pip_adapter NETWORKS")
    assert "did you mean 'NAFNet'" in text and "import pip_adapter.bsr" in text and "register_backbone" in text
    assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)
    assert info.value.type_name == "NAFnet"
    with pytest.raises(ValueError, match=r"bad arguments for PIPNet .*unexpected keyword|bad arguments for NAFNet"):
        build_network({**NAF, "widht": 8})
    with pytest.raises(ValueError, match="option dict with a 'type'"):
        build_network({"width": 8})


def test_an_added_registry_is_searched_after_ours_once(monkeypatch):
    monkeypatch.setattr(networks, "_SOURCES", list(networks._SOURCES[:2]))
    extra = Registry("extra arch")
    extra.register(_Net, "ExtraNet")
    extra.register(_Net, "NAFNet")           # shadowed: BACKBONES comes first
    add_network_registry(extra, "extra")
    add_network_registry(extra, "extra again")   # idempotent
    assert [label for label, _ in networks.network_registries()][2:] == ["extra"]
    assert type(build_network({"type": "ExtraNet", "width": 3})) is _Net
    assert type(build_network(dict(NAF))) is NAFNet
    with pytest.raises(ValueError, match="has no 'in', get"):
        add_network_registry(object(), "bad")


def test_after_importing_the_glue_pipnet_wraps_a_basicsr_arch_in_python():
    import pip_adapter.bsr as bsr

    assert [label for label, _ in networks.network_registries()][-1] == "BasicSR ARCH_REGISTRY"
    assert "UNetDiscriminatorSN" not in BACKBONES and "UNetDiscriminatorSN" not in NETWORKS
    torch.manual_seed(0)
    model = PIPNet({"type": "UNetDiscriminatorSN", "num_in_ch": 3, "num_feat": 8}, prompt_dims=8, prompt_sizes=2,
                   example_input_size=32).eval()
    assert type(model.backbone).__name__ == "UNetDiscriminatorSN" and len(model.pip_levels) == 3
    assert model.pip_config()["backbone"]["type"] == "UNetDiscriminatorSN"
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32), "rain").shape == (1, 1, 32, 32)
    assert bsr.PIPNet is PIPNet and type(bsr.build_arch(dict(NAF))) is NAFNet
    with pytest.raises(UnknownNetworkError) as info:
        build_network({"type": "UNetDiscriminatorSM"})
    assert "BasicSR ARCH_REGISTRY" in str(info.value) and "did you mean 'UNetDiscriminatorSN'" in str(info.value)
    assert "import pip_adapter.bsr" not in str(info.value)


def test_the_cli_loads_basicsr_archs_only_when_a_network_needs_them(tmp_path):
    import pip_adapter.bsr  # noqa: F401  (this process: to write a checkpoint of a BasicSR arch)
    from pip_adapter.restore.checkpoint import make_meta, save_checkpoint
    from tests.helpers_train import subprocess_env

    torch.manual_seed(0)
    model = PIPNet({"type": "UNetDiscriminatorSN", "num_in_ch": 3, "num_feat": 8}, degradations=2, prompt_dims=8,
                   prompt_sizes=2, example_input_size=32)
    src, out = tmp_path / "disc.safetensors", tmp_path / "again.safetensors"
    save_checkpoint(str(src), model, make_meta(model))
    # a fresh interpreter: the first load meets an unknown type, imports the glue, and loads again
    code = ("import sys; from pip_adapter.cli import main; rc = main(['export', '-m', sys.argv[1], '--out', "
            "sys.argv[2]]); print('bsr loaded:', 'pip_adapter.bsr' in sys.modules); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(out)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bsr loaded: True" in proc.stdout and out.is_file()
    # and a network of our own registries never pays for BasicSR
    naf = tmp_path / "naf.safetensors"
    net = build_network(dict(NAF))
    save_checkpoint(str(naf), net, make_meta(net, dict(NAF)))
    proc = subprocess.run([sys.executable, "-c", code, str(naf), str(tmp_path / "naf2.safetensors")],
                          env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bsr loaded: False" in proc.stdout
