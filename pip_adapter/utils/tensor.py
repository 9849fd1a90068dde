"""Small tensor/array helpers shared by the backbones, data, inference and training: size multiples."""
from __future__ import annotations

from typing import TypeVar

import torch.nn.functional as F
from torch import Tensor

Array = TypeVar("Array")


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


def center_crop_to_multiple(img: Array, multiple: int) -> Array:
    """Centre crop of an H×W[×C] array (numpy or tensor, spatial axes first) to multiples of ``multiple``."""
    h, w = img.shape[:2]
    nh, nw = h - h % multiple, w - w % multiple
    if nh == 0 or nw == 0:
        raise ValueError(f"an image of {h}x{w} pixels is smaller than the crop multiple {multiple}")
    top, left = (h - nh) // 2, (w - nw) // 2
    return img[top:top + nh, left:left + nw]
