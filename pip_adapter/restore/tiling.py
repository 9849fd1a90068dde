"""Running a restoration network on images of any size: padding to the network's multiple and tiling.

Tiles overlap and are blended with a smooth window (a raised-cosine ramp across each overlap, flat inside),
accumulated as weighted sums and divided by the summed weights, so seams do not show.  Only one tile's
features exist at a time; the full-size tensors are the input, the weighted output sum and a one-channel
weight map.
"""
from __future__ import annotations

import logging
import math
from typing import Callable, List, Optional, Tuple

import torch

from pip_adapter.utils import tensor as utils_tensor

logger = logging.getLogger(__name__)

TensorFn = Callable[[torch.Tensor], torch.Tensor]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """:func:`pip_adapter.utils.tensor.pad_to_multiple` of B×C×H×W, and the (H, W) to crop the output back to."""
    return utils_tensor.pad_to_multiple(x, multiple), (x.shape[-2], x.shape[-1])


def run_padded(fn: TensorFn, x: torch.Tensor, multiple: int) -> torch.Tensor:
    """``fn`` on ``x`` padded to ``multiple``, cropped back to the input size."""
    xp, (h, w) = pad_to_multiple(x, multiple)
    out = fn(xp)
    if out.shape[-2:] != xp.shape[-2:]:
        raise ValueError(f"the network changed the image size from {tuple(xp.shape[-2:])} to "
                         f"{tuple(out.shape[-2:])}; only same-size restoration networks are supported")
    return out[..., :h, :w]


def tile_spans(length: int, tile: int, overlap: int, align: int = 1) -> List[Tuple[int, int]]:
    """(start, size) of tiles covering ``length``, evenly spread, overlapping by >= ``overlap``.

    Starts are multiples of ``align`` (the network's size multiple) so that every tile sees the same
    down-sampling grid as the whole image; the last tile runs to the end (it may exceed ``tile`` by < ``align``).
    """
    if tile >= length:
        return [(0, length)]
    align = max(1, int(align))
    step = tile - overlap - (align - 1)  # rounding starts down to ``align`` may widen a gap by align - 1
    if step <= 0:
        raise ValueError(f"tile overlap ({overlap}) must be smaller than the tile size ({tile})"
                         + (f" minus the size multiple ({align}) - 1" if align > 1 else ""))
    last = (length - tile) // align * align
    n = max(2, int(math.ceil((length - overlap) / step)))
    starts = sorted({(int(round(i * last / (n - 1))) // align) * align for i in range(n)})
    starts[-1] = last
    return [(s, tile if s != last else length - s) for s in starts]


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> List[int]:
    """Start offsets of :func:`tile_spans`."""
    return [s for s, _ in tile_spans(length, tile, overlap, align)]


def check_tiling(tile: int, overlap: int, multiple: int = 1) -> None:
    """Refuse a tile size / overlap pair that cannot tile with this size multiple, naming values that can.

    Tiles are rounded up to ``multiple`` and their starts aligned to it, so the overlap must leave a step:
    ``ceil(tile / multiple) * multiple > overlap + multiple - 1``.  ``tile`` 0 means no tiling.
    """
    tile, overlap, multiple = int(tile), int(overlap), max(1, int(multiple))
    if tile < 0 or overlap < 0:
        raise ValueError(f"--tile ({tile}) and --tile-overlap ({overlap}) must be >= 0")
    if tile == 0:
        return
    rounded = int(math.ceil(tile / multiple) * multiple)
    if rounded - overlap - (multiple - 1) > 0:
        return
    min_tile = int(math.ceil((overlap + multiple) / multiple) * multiple)
    max_overlap = max(0, rounded - multiple)
    or_less = " or less" if max_overlap > 0 else ""
    rounding = f" (rounded up to the model's size multiple {multiple}: {rounded})" if multiple > 1 else ""
    raise ValueError(f"--tile {tile}{rounding} leaves no room for --tile-overlap {overlap}: use --tile {min_tile} "
                     f"or more, or --tile-overlap {max_overlap}{or_less} "
                     "(a quarter of the tile is a good overlap)")


def ramp_window(size: int, ramp_before: int, ramp_after: int, dtype=torch.float32) -> torch.Tensor:
    """1-D weights: 0 on the outer quarter of each overlap, a raised-cosine ramp across its middle half, 1 inside.

    The zero margin drops the pixels nearest a tile border — the ones that saw padding instead of image — so
    a network whose receptive radius is below a quarter of the overlap gives exactly the whole-image result;
    the neighbouring tile has weight 1 there, so every pixel keeps a positive total weight.
    """
    w = torch.ones(size, dtype=dtype)
    for length, flip in ((ramp_before, False), (ramp_after, True)):
        length = min(length, size)
        if length <= 0:
            continue
        margin = length // 4 if length >= 4 else 0
        body = length - 2 * margin
        pos = (torch.arange(body, dtype=torch.float64) + 0.5) / body
        ramp = torch.cat([torch.zeros(margin, dtype=torch.float64), 0.5 - 0.5 * torch.cos(math.pi * pos),
                          torch.ones(margin, dtype=torch.float64)]).to(dtype)
        if flip:
            w[size - length:] = torch.minimum(w[size - length:], ramp.flip(0))
        else:
            w[:length] = torch.minimum(w[:length], ramp)
    return w


def count_tiles(height: int, width: int, tile: int, overlap: int, align: int = 1) -> int:
    """Number of tiles :func:`tiled_forward` runs for an image of this size."""
    return len(tile_spans(height, tile, overlap, align)) * len(tile_spans(width, tile, overlap, align))


def _windows(spans: List[Tuple[int, int]]) -> List[torch.Tensor]:
    """One 1-D window per span, ramping only where a neighbour overlaps it."""
    out = []
    for i, (start, size) in enumerate(spans):
        before = spans[i - 1][0] + spans[i - 1][1] - start if i > 0 else 0
        after = start + size - spans[i + 1][0] if i + 1 < len(spans) else 0
        out.append(ramp_window(size, before, after))
    return out


def tiled_forward(fn: TensorFn, x: torch.Tensor, tile: int, overlap: int = 32, multiple: int = 1,
                  device: Optional[torch.device] = None, out_channels: Optional[int] = None,
                  progress: Optional[Callable[[int], None]] = None, scale: float = 1.0) -> torch.Tensor:
    """Apply ``fn`` to 1×C×H×W ``x`` tile by tile and blend the tiles; the float32 result stays on ``x``'s device.

    ``fn`` receives each tile (padded to ``multiple``) on ``device`` as float32 times ``scale`` — so ``x`` may
    stay in its stored integer dtype and only one tile at a time is converted — and returns a same-size tensor.
    ``tile`` is rounded up to ``multiple``.  ``progress(n)`` is called after each tile.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"tiled_forward expects one image of shape 1×C×H×W, got {tuple(x.shape)}")
    if tile <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    if overlap < 0:
        raise ValueError(f"tile overlap must be >= 0, got {overlap}")
    if multiple > 1:
        tile = int(math.ceil(tile / multiple) * multiple)
    if overlap >= tile:
        raise ValueError(f"tile overlap ({overlap}) must be smaller than the tile size ({tile})")
    device = device or x.device
    _, c, h, w = x.shape
    c_out = out_channels or c
    acc = torch.zeros(1, c_out, h, w, dtype=torch.float32, device=x.device)
    weight = torch.zeros(1, 1, h, w, dtype=torch.float32, device=x.device)
    rows, cols = tile_spans(h, tile, overlap, multiple), tile_spans(w, tile, overlap, multiple)
    wys, wxs = _windows(rows), _windows(cols)
    for (top, th), wy in zip(rows, wys):
        for (left, tw), wx in zip(cols, wxs):
            patch = x[:, :, top:top + th, left:left + tw].to(device=device, dtype=torch.float32)
            if scale != 1.0:
                patch = patch * scale
            out = run_padded(fn, patch, multiple).to(device=x.device, dtype=torch.float32)
            if out.shape[1] != c_out:
                raise ValueError(f"the network returned {out.shape[1]} channels, expected {c_out}")
            win = (wy[:, None] * wx[None, :]).to(x.device)[None, None]
            acc[:, :, top:top + th, left:left + tw].addcmul_(out, win)
            weight[:, :, top:top + th, left:left + tw].add_(win)
            del out, patch
            if progress is not None:
                progress(1)
    if not bool((weight > 0).all()):  # cannot happen with the windows above; never divide by zero silently
        raise RuntimeError(f"tiling left pixels without weight (tile {tile}, overlap {overlap}, size {h}×{w})")
    return acc.div_(weight)
