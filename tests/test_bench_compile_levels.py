"""bench/compile_levels.py: the skip features it times the levels on, and its table (the timing itself is a benchmark)."""
import pytest
import torch

from bench import compile_levels as cl
from pip_adapter.backbones import NAFNet
from pip_adapter.wrap import wrap_with_pip

pytestmark = pytest.mark.usefixtures("one_thread")


def test_skip_features_are_what_each_level_receives_and_hooks_are_removed():
    net = NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])
    pip = wrap_with_pip(net, degradations=cl.TYPES, prompt_dims=8, prompt_sizes=4).eval()
    x, om = torch.rand(1, 3, 16, 16), torch.tensor([[0.0, 1.0, 0.0]])
    feats = cl.skip_features(pip, x, om)
    assert [tuple(f.shape) for f in feats] == [(1, 8, 16, 16), (1, 16, 8, 8)]
    assert all(not lv._forward_hooks for lv in pip.pip_levels)
    with torch.no_grad():  # the skip of level 1 is the first encoder's output
        assert torch.equal(feats[0], pip.backbone.encoders[0](pip.backbone.intro(x)))


def test_render_rows_and_speedups():
    ms = {"bare eager": 100.0, "bare compiled": 50.0, "PIP eager": 160.0, "PIP compiled": 120.0,
          "L1 eager": 40.0, "L1 compiled": 50.0, "L2 eager": 20.0, "L2 compiled": 10.0}
    text = cl.render({"ms": ms, "shapes": [(32, 64, 64, (256, 256)), (64, 96, 32, (128, 128))], "size": 256,
                      "repeats": 3, "backend": "inductor", "width": 32})
    assert "| NAFNet-32 (bare) | 100.0 | 50.0 | 2.00× |" in text
    assert "| PIP level 1 alone (C 32, D 64, s 64, at 256×256) | 40.0 | 50.0 | 0.80× |" in text
    assert "| the 2 levels | 60.0 | 60.0 | 1.00× |" in text
    assert "| PIP-NAFNet − NAFNet (what PIP adds inside the model) | 60.0 | 70.0 | 0.86× |" in text
