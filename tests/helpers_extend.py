"""Extension helpers for the tests (a plain module): a tiny PIP-NAFNet (two skip levels) and one-hot ω."""
from __future__ import annotations

import copy

import torch

from pip_adapter.wrap.pipnet import PIPNet



TINY_NET = {"type": "PIPNet", "degradations": ["noise", "rain", "haze"],
            "backbone": {"type": "NAFNet", "img_channel": 3, "width": 8, "middle_blk_num": 1,
                         "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]},
            "prompt_dims": [16, 16], "prompt_sizes": [8, 4]}


def tiny_pipnet(seed: int = 0, **overrides):
    """A fresh tiny PIPNet (weights from ``seed``); ``overrides`` replace keys of TINY_NET."""
    opt = copy.deepcopy(TINY_NET)
    opt.update(overrides)
    opt.pop("type")
    torch.manual_seed(seed)
    return PIPNet(**opt)


def one_hot(names, name, batch=1):
    """ω rows selecting ``name`` among ``names``."""
    w = torch.zeros(batch, len(names))
    w[:, list(names).index(name)] = 1.0
    return w
