"""The backbones reproduce the official state-dict layouts (tests/data/state_dict_manifests.json) exactly."""
from __future__ import annotations

import math

import pytest
import torch

from pip_adapter.backbones import NAFNet, Restormer, RestormerPIPRelease, build_backbone
from pip_adapter.backbones.restormer_release import (RELEASE_PIP_PREFIXES, RELEASE_UNUSED_CONVS,
                                                     release_unused_convs, split_release_state_dict)
from tests.paths import load_manifests

MANIFESTS = load_manifests()
NAFNET_ENTRIES = sorted(k for k in MANIFESTS if k.startswith("nafnet"))
# spec §7: the PIP modules alone, at Restormer's levels, in the release
PIP_RESTORMER_LEVELS_PARAMS = 3_125_330


def _is_release_extra(key: str) -> bool:
    return key.startswith(RELEASE_PIP_PREFIXES) or key.startswith("reduce_noise_channel_")


def _build(entry: str, device: str | torch.device = "meta") -> torch.nn.Module:
    cfg = MANIFESTS[entry]["config"]
    with torch.device(device):
        if entry.startswith("nafnet"):
            return NAFNet(**cfg)
        if entry == "restormer_default":
            return Restormer(**cfg)
        if entry == "pip_restormer_official":
            return RestormerPIPRelease()  # the release's backbone uses Restormer's defaults
    raise KeyError(entry)


def _expected_shapes(entry: str) -> dict[str, tuple[int, ...]]:
    sd = {k: tuple(v) for k, v in MANIFESTS[entry]["state_dict"].items()}
    if entry == "pip_restormer_official":
        sd = {k: v for k, v in sd.items() if not _is_release_extra(k)}
    return sd


def test_manifest_has_the_expected_entries():
    assert set(NAFNET_ENTRIES) == {"nafnet_sidd_width64", "nafnet_sidd_width32", "nafnet_gopro_width64"}
    assert {"restormer_default", "pip_restormer_official"} <= set(MANIFESTS)


@pytest.mark.parametrize("entry", NAFNET_ENTRIES + ["restormer_default", "pip_restormer_official"])
def test_keys_and_shapes_identical_and_strict_load(entry):
    model = _build(entry)  # meta device: shapes only, no memory, no init cost
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = _expected_shapes(entry)
    assert sorted(set(got) - set(want)) == [] and sorted(set(want) - set(got)) == []
    assert {k: v for k, v in got.items() if want[k] != v} == {}
    # strict=True checks keys and shapes: tensors of the manifest's shapes must load
    meta_sd = {k: torch.empty(v, device="meta") for k, v in want.items()}
    result = model.load_state_dict(meta_sd, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("entry", NAFNET_ENTRIES + ["restormer_default"])
def test_parameter_counts_equal_official(entry):
    model = _build(entry)
    assert sum(p.numel() for p in model.parameters()) == MANIFESTS[entry]["num_params"]


def test_release_parameter_accounting():
    entry = MANIFESTS["pip_restormer_official"]
    model = _build("pip_restormer_official")
    backbone = sum(p.numel() for p in model.parameters())
    unused = sum(math.prod(s) for s in RELEASE_UNUSED_CONVS.values())
    assert unused == 112_896  # spec §6
    pip_side = sum(math.prod(v) for k, v in entry["state_dict"].items() if k.startswith(RELEASE_PIP_PREFIXES))
    assert backbone + unused + pip_side == entry["num_params"]
    assert pip_side == PIP_RESTORMER_LEVELS_PARAMS
    # the variant differs from Restormer only on the latent -> level-3 path
    restormer = _build("restormer_default")
    diff = {k for k in restormer.state_dict()} ^ {k for k in model.state_dict()}
    assert diff == {"chnl_reduce3.weight"}


def test_release_unused_convs_match_manifest_and_formula():
    manifest = {k: tuple(v) for k, v in MANIFESTS["pip_restormer_official"]["state_dict"].items()
                if k.startswith("reduce_noise_channel_")}
    assert manifest == RELEASE_UNUSED_CONVS
    assert release_unused_convs() == RELEASE_UNUSED_CONVS
    assert release_unused_convs(8, (16, 16, 32))["reduce_noise_channel_3.weight"] == (32, 64, 1, 1)


def test_split_release_state_dict_routes_every_key():
    full = {k: torch.empty(tuple(v), device="meta")
            for k, v in MANIFESTS["pip_restormer_official"]["state_dict"].items()}
    backbone, pip, unused = split_release_state_dict(full)
    assert len(backbone) + len(pip) + len(unused) == len(full)
    assert set(unused) == set(RELEASE_UNUSED_CONVS)
    assert pip and all(k.startswith(("prompt", "low_prompt_interaction_level")) for k in pip)
    model = _build("pip_restormer_official")
    model.load_state_dict(backbone, strict=True, assign=True)

    bad = dict(full)
    bad["reduce_noise_channel_2.weight"] = torch.empty(96, 200, 1, 1, device="meta")
    with pytest.raises(ValueError, match="reduce_noise_channel_2"):
        split_release_state_dict(bad)


@pytest.mark.parametrize("entry", ["nafnet_sidd_width32", "restormer_default", "pip_restormer_official"])
def test_real_random_weights_load_strict_and_are_used(entry):
    """A real (not meta) load: values arrive in the model, and the model's output depends on them."""
    gen = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(tuple(v), generator=gen) * 0.02 for k, v in _expected_shapes(entry).items()}
    cfg = dict(MANIFESTS[entry]["config"])
    if entry == "pip_restormer_official":
        model = build_backbone({"type": "RestormerPIPRelease"})
    else:
        model = build_backbone({"type": "NAFNet" if entry.startswith("nafnet") else "Restormer", **cfg})
    model.load_state_dict(sd, strict=True)
    state = model.state_dict()
    for key in list(sd)[:: max(1, len(sd) // 25)]:
        assert torch.equal(state[key], sd[key]), key
    del sd, state
    x = torch.rand(1, 3, 16, 16, generator=gen)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.allclose(y, x)  # random (non-zero) weights change the image
