"""The PIP level's forward paths compute one function, and the dispatcher picks and refuses paths as documented.

Every path is forced through ``level.path`` (modules/level_paths.py) and compared with the NCHW reference path,
in values (1e-5) and gradients (1e-4), for C < D, C = D and C > D and each option that changes the level's graph.
"""
import pytest
import torch

from pip_adapter.modules import PIPLevel, record_dispatch, set_level_path
from pip_adapter.modules.level_paths import CHOICES, PATHS

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = {
    "default": {},
    "no_basic_prompt": {"use_basic_prompt": False},        # P2P as self-attention on S
    "no_degradation_prompt": {"use_degradation_prompt": False},
    "plain_softmax": {"selective": False},
    "sum": {"prompt_reduce": "sum"},
}
CHANNELS = {"c<d": 5, "c=d": 8, "c>d": 11}      # D = 8: reduce_channel / plain / channels kept aside


def _level(c, **options):
    torch.manual_seed(5)
    level = PIPLevel(c, 8, 4, 3, p2p_heads=2, p2f_heads=2, **options)
    with torch.no_grad():
        for p in level.parameters():        # away from the initial values (ones, zeros, 0.2): every weight matters
            p.add_(0.1 * torch.randn_like(p))
    # bands of 8 rows (the minimum) over 19 rows: three bands, the last one short
    level.set_p2f_chunking(1)
    return level


def _run(level, path, z, omega):
    level.path = path
    level.zero_grad()
    zg = z.clone().requires_grad_(True)
    with record_dispatch() as seen:
        out = level(zg, omega)
    assert [d.path for _, d in seen] == [path]
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in level.named_parameters() if p.grad is not None}
    return out.detach(), zg.grad, grads


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("case", list(CHANNELS))
@pytest.mark.parametrize("path", ["channels_last", "bands", "tokens"])
def test_every_path_equals_the_reference(path, case, option):
    c = CHANNELS[case]
    level = _level(c, **OPTIONS[option])
    g = torch.Generator().manual_seed(16)
    z = torch.randn(2, c, 19, 7, generator=g)
    omega = torch.tensor([[0.2, 0.0, 1.0], [0.0, 3.0, 0.5]])
    ref, ref_dz, ref_grads = _run(level, "reference", z, omega)
    out, dz, grads = _run(level, path, z, omega)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dz, ref_dz, rtol=1e-4, atol=1e-5)
    assert grads.keys() == ref_grads.keys()
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-4, msg=name)


def test_auto_in_eager_calls():
    level = _level(8)
    z, omega = torch.randn(2, 8, 19, 7), torch.tensor([0, 2])
    level.set_p2f_chunking(0)
    choice = level.choose_path(z)
    assert choice.path == "channels_last" and choice.call.graph == "eager"
    assert "bands are off" in choice.refused["bands"] and "torch.compile only" in choice.refused["tokens"]
    level.set_p2f_chunking(1)
    assert level.choose_path(z).path == "bands"
    assert level.choose_path(z[:, :, :8]).path == "channels_last"      # one band would be the whole map
    assert "whole map" in level.choose_path(z[:, :, :8]).refused["bands"]
    with torch.no_grad(), record_dispatch() as seen:
        level(z, omega)
        level(z[:, :, :8], omega)
    assert [(lv, d.path) for lv, d in seen] == [(level, "bands"), (level, "channels_last")]


def test_auto_takes_the_token_path_under_torch_compile():
    level = _level(8).eval()
    z, omega = torch.randn(1, 8, 19, 7), torch.tensor([[0.0, 1.0, 0.0]])
    compiled = torch.compile(level, fullgraph=True, backend="eager")
    with torch.no_grad(), record_dispatch() as seen:
        out = compiled(z, omega)
        ref = level(z, omega)
    assert [(d.call.graph, d.path) for _, d in seen] == [("compile", "tokens"), ("eager", "bands")]
    assert "eager calls only, not under torch.compile" in seen[0][1].refused["bands"]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_forced_paths_refuse_what_they_cannot_run_and_names_are_checked():
    level = _level(8)
    z, omega = torch.randn(1, 8, 19, 7), torch.tensor([1])
    level.set_p2f_chunking(0)
    level.path = "bands"
    with pytest.raises(ValueError, match=r"path 'bands' cannot run this call: bands are off"):
        level(z, omega)
    level.path = "tokens"
    choice = level.choose_path(z)
    assert choice.path == "tokens" and set(choice.refused) == set(PATHS) - {"tokens"}
    assert "path=tokens" in repr(level)
    with pytest.raises(ValueError, match=r"unknown PIPLevel path 'fast'; use one of auto, reference"):
        level.path = "fast"
    model = torch.nn.ModuleList([_level(5), torch.nn.Conv2d(1, 1, 1), _level(11)])
    assert set_level_path(model, "reference") == 2 and [m.path for m in model[::2]] == ["reference"] * 2
    with pytest.raises(ValueError, match="unknown PIPLevel path"):
        set_level_path(model, "nchw")
    assert CHOICES[0] == "auto" and level.config() == PIPLevel(**level.config()).config()   # path: not config
