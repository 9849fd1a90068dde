"""Restore/export/classifier helpers for the tests (a plain module): a tiny ω-conditioned network, images.

Importing it registers ``ToyOmegaUNet`` as a backbone.
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn

from pip_adapter.backbones import BACKBONES, register_backbone
from pip_adapter.omega import normalise_names
from pip_adapter.image_io import write_image



class ToyOmegaUNet(nn.Module):
    """A two-scale conv net whose output depends on ω (one 'level' on its skip, like PIP), for fast tests.

    ``forward(x, omega)``; it needs inputs that are multiples of 2 (it downsamples once) and exposes
    ``pip_levels`` and ``degradations`` as a wrapped model does.
    """

    def __init__(self, width: int = 4, degradations=None) -> None:
        super().__init__()
        self.degradations = normalise_names(degradations)
        self.width = width
        self.enc = nn.Conv2d(3, width, 3, padding=1)
        self.down = nn.Conv2d(width, width, 2, stride=2)
        self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.out = nn.Conv2d(width, 3, 3, padding=1)
        self.pip_levels = nn.ModuleList([nn.Linear(len(self.degradations), width, bias=False)])

    def forward(self, x: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            raise ValueError(f"ToyOmegaUNet needs even sizes, got {tuple(x.shape)}")
        skip = torch.relu(self.enc(x))
        scale = self.pip_levels[0](omega)[:, :, None, None]
        deep = self.up(torch.relu(self.down(skip)))
        return x + 0.1 * self.out(deep + skip * scale)


if "ToyOmegaUNet" not in BACKBONES:
    register_backbone(ToyOmegaUNet)


TOY_NETWORK = {"type": "ToyOmegaUNet", "width": 4, "degradations": ["noise", "rain", "haze", "blur", "low_light"]}


def make_toy(seed: int = 0) -> ToyOmegaUNet:
    """A toy network with random, seeded weights."""
    torch.manual_seed(seed)
    net = ToyOmegaUNet(width=4, degradations=TOY_NETWORK["degradations"])
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.5)
    return net.eval()


def write_png(path, arr):
    """Write an RGB(A)/gray uint8/uint16 array with the project's writer."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    write_image(str(path), arr, overwrite=True)
    return str(path)


def rand_image(h, w, c=3, dtype=np.uint8, seed=0):
    """Random image of the given shape and dtype."""
    rng = np.random.default_rng(seed)
    hi = 256 if dtype == np.uint8 else 65536
    shape = (h, w) if c == 1 else (h, w, c)
    return rng.integers(0, hi, size=shape).astype(dtype)


def crafted_safetensors(src: str, tmp_path, edit, name: str = "crafted.safetensors") -> str:
    """A copy of the exported model ``src`` whose metadata ``edit`` changed in place (or replaced: a returned
    string is written as the metadata text as it is)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(src, framework="pt") as fh:
        meta = json.loads(fh.metadata()["pip_adapter"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    text = edit(meta)
    out = str(tmp_path / name)
    save_file(tensors, out, metadata={"pip_adapter": text if isinstance(text, str) else json.dumps(meta)})
    return out
