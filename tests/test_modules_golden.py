"""PIPLevel reproduces the authors' release on the golden fixtures (tests/data/golden/README.md)."""

import pytest
import torch

from pip_adapter.modules import PIPLevel, load_release_level, split_prefixed
from tests.paths import GOLDEN_DIR

CASES = {"c12_below_d": 12, "c16_equal_d": 16, "c24_above_d": 24}
TOL = 1e-5


def _golden(case):
    return torch.load(GOLDEN_DIR / f"pip_level_{case}.pt", weights_only=True)


def _level(case):
    g = _golden(case)
    level = PIPLevel(CASES[case], 16, 8, 5, p2p_heads=2, p2f_heads=4)
    load_release_level(level, *split_prefixed(g, "p2p.", "p2f."))
    return level.eval(), g


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_release_outputs(case):
    level, g = _level(case)
    with torch.no_grad():
        for omega_key, suffix in (("omega_onehot", ""), ("omega_mix", "_mix")):
            u = level.universal_prompt(g["Z"], g[omega_key])
            zhat = level(g["Z"], g[omega_key])
            assert u.shape == g["U" + suffix].shape and zhat.shape == g["Zhat" + suffix].shape
            torch.testing.assert_close(u, g["U" + suffix], rtol=0, atol=TOL)
            torch.testing.assert_close(zhat, g["Zhat" + suffix], rtol=0, atol=TOL)
    # the mixed ω really is a different input (otherwise the second check proves nothing new)
    assert (g["Zhat"] - g["Zhat_mix"]).abs().max() > 1e-3


@pytest.mark.parametrize("case", sorted(CASES))
def test_labels_equal_one_hot(case):
    level, g = _level(case)
    with torch.no_grad():
        by_label = level(g["Z"], g["labels"])
        by_onehot = level(g["Z"], g["omega_onehot"])
    torch.testing.assert_close(by_label, by_onehot, rtol=0, atol=0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_parameter_gets_a_gradient(case):
    level, g = _level(case)
    level.train()
    # every type weighted, so every degradation prompt takes part
    omega = torch.rand(2, 5, generator=torch.Generator().manual_seed(1)) + 0.1
    target = torch.randn(g["Z"].shape, generator=torch.Generator().manual_seed(2))
    (level(g["Z"], omega) * target).sum().backward()
    for name, p in level.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_release_state_round_trip():
    level, g = _level("c12_below_d")
    from pip_adapter.modules import ours_to_release_level
    p2p, p2f = ours_to_release_level(level.state_dict())
    want_p2p, want_p2f = split_prefixed(g, "p2p.", "p2f.")
    assert set(p2p) == set(want_p2p) and set(p2f) == set(want_p2f)
    for k in want_p2p:
        assert torch.equal(p2p[k], want_p2p[k]), k
    for k in want_p2f:
        assert torch.equal(p2f[k], want_p2f[k]), k
