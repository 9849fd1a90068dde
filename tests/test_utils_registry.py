"""The one Registry class: lookup errors that help, BasicSR's call forms, and the glue's public registration."""
from __future__ import annotations

import pytest
from torch import nn

from pip_adapter import bsr
from pip_adapter.backbones import BACKBONES, build_backbone
from pip_adapter.degradations import get_synthesizer
from pip_adapter.restore.checkpoint import NETWORKS, default_builder
from pip_adapter.restore.classifier import DegradationClassifier
from pip_adapter.utils.registry import Registry, RegistryError
from pip_adapter.wrap.pipnet import PIPNet


def test_unknown_name_says_given_known_closest_and_what_to_do():
    reg = Registry("widget", hint="Register one with register_widget.")
    reg.register(dict, "alpha")
    reg.register(list, "beta")
    with pytest.raises(RegistryError) as info:
        reg.get("alpah")
    text = str(info.value)
    assert "'alpah'" in text and "did you mean 'alpha'" in text and "known: alpha, beta" in text
    assert text.endswith("Register one with register_widget.")
    # bad input for ValueError handlers (the CLI), a missing key for code written against BasicSR's KeyError
    assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)
    assert reg.get("gamma", None) is None and "gamma" not in reg and len(reg) == 2


def test_register_forms_clashes_and_normalised_keys():
    reg = Registry("thing", normalise=str.lower)

    @reg.register
    class Foo:
        pass

    @reg.register("Bar")
    class Other:
        pass

    assert reg.register(Foo) is Foo  # the same object again: no-op
    with pytest.raises(RegistryError, match="already registered"):
        reg.register(Other, "foo")
    reg.register(Other, "FOO", overwrite=True)
    assert reg["foo"] is Other and reg.get("BAR") is Other and reg.names() == ["bar", "foo"]
    reg.unregister("Bar")
    assert dict(reg) == {"foo": Other}


def test_item_assignment_is_register_with_its_checks():
    def only_classes(obj):
        if not isinstance(obj, type):
            raise ValueError(f"a class, not {obj!r}")

    reg = Registry("thing", normalise=str.lower, check=only_classes)
    reg["Foo"] = dict
    assert reg["foo"] is dict and reg.names() == ["foo"]   # normalised like register
    reg["FOO"] = dict                                       # the same object again: no-op
    with pytest.raises(RegistryError, match="already registered"):
        reg["foo"] = list                                   # no silent replacement
    with pytest.raises(ValueError, match="a class"):
        reg["bar"] = 3                                      # the kind check runs
    assert dict(reg) == {"foo": dict}


def test_backbone_and_synthesiser_lookups_suggest_the_close_name():
    with pytest.raises(ValueError, match=r"did you mean 'NAFNet'"):
        build_backbone({"type": "NAFnet"})
    with pytest.raises(ValueError, match=r"did you mean 'noise'"):
        get_synthesizer("nosie")


def test_glue_registers_aliases_through_basicsr_public_api():
    class _AliasNet(nn.Module):
        def __init__(self, width: int = 2) -> None:
            super().__init__()
            self.width = width

    BACKBONES.register(_AliasNet, "renov13_alias_net")
    try:
        bsr.register_all()
        net = bsr.ARCH_REGISTRY.get("renov13_alias_net")(width=3)
        assert isinstance(net, _AliasNet) and net.width == 3
        bsr.register_all()  # idempotent: BasicSR's register would assert on a second registration
    finally:
        BACKBONES.unregister("renov13_alias_net")


def test_checkpoint_networks_registry_builds_pipnet_and_the_classifier_types():
    assert NETWORKS["PIPNet"] is PIPNet and NETWORKS["DegradationClassifier"] is DegradationClassifier
    net = default_builder({"type": "PIPNet", "backbone": {"type": "NAFNet", "width": 8, "middle_blk_num": 1,
                                                          "enc_blk_nums": [1], "dec_blk_nums": [1]},
                           "degradations": 3, "prompt_dims": 8, "prompt_sizes": 4})
    assert isinstance(net, PIPNet) and len(net.pip_levels) == 1
