"""Release key mapping: whole-checkpoint prefixes, strict loading errors."""

import pytest
import torch

from pip_adapter.modules import (PIPLevel, load_release_level, ours_to_release_prefixed, release_level_to_ours,
                                 release_prefixed_to_ours, release_prefixes, split_prefixed)
from tests.paths import load_manifests

RESTORMER_LEVELS = [(48, 64, 64), (96, 128, 32), (192, 256, 16)]


def _manifest():
    return load_manifests()["pip_restormer_official"]["state_dict"]


def test_full_release_checkpoint_maps_onto_restormer_levels():
    full = {k: torch.empty(v, device="meta") for k, v in _manifest().items()}
    for i, (c, d, s) in enumerate(RESTORMER_LEVELS, 1):
        p2p_prefix, p2f_prefix = release_prefixes(i)
        ours = release_prefixed_to_ours(full, p2p_prefix, p2f_prefix)
        with torch.device("meta"):
            level = PIPLevel(c, d, s, 5)
        want = {k: tuple(v.shape) for k, v in level.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in ours.items()} == want
        back = ours_to_release_prefixed(ours, p2p_prefix, p2f_prefix)
        assert {k: tuple(v.shape) for k, v in back.items()} == \
            {k: tuple(v.shape) for k, v in full.items() if k.startswith((p2p_prefix, p2f_prefix))}


def test_strict_loading_lists_bad_keys():
    level = PIPLevel(6, 8, 4, 3)
    p2p, p2f = split_prefixed(ours_to_release_prefixed(level.state_dict(), "a.", "b."), "a.", "b.")
    load_release_level(PIPLevel(6, 8, 4, 3), p2p, p2f)  # round trip loads
    with pytest.raises(ValueError, match="p2p:LGM.extra"):
        release_level_to_ours({**p2p, "LGM.extra": torch.zeros(1)}, p2f)
    short = dict(p2f)
    short.pop("prompt_transformer_cross.reduce_channel.weight")
    with pytest.raises(ValueError, match="missing.*reduce_channel.weight"):
        load_release_level(PIPLevel(6, 8, 4, 3), p2p, short)
    with pytest.raises(ValueError, match="unexpected.*reduce_channel.weight"):
        load_release_level(PIPLevel(8, 8, 4, 3), p2p, p2f)  # C = D has no reduce_channel
    with pytest.raises(ValueError, match=r"does not fit this PIPLevel .*shape mismatches \(1\): "
                                         r"degradation_prompt: release \(3, 8\)"):
        load_release_level(PIPLevel(6, 8, 4, 4), p2p, p2f)  # T = 4 vs the release's 3
    with pytest.raises(ValueError, match="no keys under"):
        split_prefixed(p2p, "zzz.", "b.")


def test_extended_level_exports_all_types_and_reloads():
    level = PIPLevel(6, 8, 4, 3)
    level.add_degradation_prompts(torch.randn(2, 8))
    flat = ours_to_release_prefixed(level.state_dict(), "p.", "f.")
    assert flat["p.detask_prompt_param"].shape == (1, 5, 8, 1, 1)
    other = PIPLevel(**level.config())
    load_release_level(other, *split_prefixed(flat, "p.", "f."))
    for k, v in level.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
