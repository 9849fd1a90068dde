"""Small tensor helpers shared by the backbones, inference and training: padding for size multiples."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def pad_bottom_right(x: Tensor, ph: int, pw: int) -> Tensor:
    """Pad the last two axes by ``ph`` rows at the bottom and ``pw`` columns at the right.

    Reflection keeps the border image-like; a side too small to reflect (pad >= size) is replicated instead.
    Returns ``x`` itself when nothing is needed, so inputs of the right size run the unpadded computation.
    """
    if ph <= 0 and pw <= 0:
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, max(pw, 0), 0, max(ph, 0)), mode=mode)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad right/bottom to multiples of ``multiple`` (see :func:`pad_bottom_right`); ``x`` itself if none needed."""
    if multiple <= 1:
        return x
    h, w = x.shape[-2:]
    return pad_bottom_right(x, (-h) % multiple, (-w) % multiple)
