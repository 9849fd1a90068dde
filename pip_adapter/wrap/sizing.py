"""Prompt sizes per skip level: the paper's tables for NAFNet and Restormer, a documented rule otherwise.

Tables (PIP spec §5), used when the backbone's class is one of these and the number of detected levels matches:

=====================================  ======================  ==================
backbone                               D (prompt channels)     s (prompt size)
=====================================  ======================  ==================
Restormer / RestormerPIPRelease        64, 128, 256            64, 32, 16
NAFNet                                 64, 96, 128, 128        64, 32, 16, 16
=====================================  ======================  ==================

Rule for any other backbone (from a level's skip channels C and reduction r):

* ``D = clamp(round_up(C, 16), 16, max_prompt_dim=128)``, then rounded up to a multiple of both head counts
  (P2P 2 heads, P2F 4 heads by default) so the attention splits evenly;
* ``s = max(4, round(patch_size / (2·r)))`` with ``patch_size`` the training crop (default 128): the release's
  rule "patch 128 → level-1 feature 128² → s = 64", halved again at each coarser level.

``prompt_dims`` / ``prompt_sizes`` override either: one int for every level or one value per level.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

PAPER_TABLES: Dict[str, Tuple[Tuple[int, ...], Tuple[int, ...]]] = {
    "Restormer": ((64, 128, 256), (64, 32, 16)),
    "RestormerPIPRelease": ((64, 128, 256), (64, 32, 16)),
    "NAFNet": ((64, 96, 128, 128), (64, 32, 16, 16)),
}

DEFAULT_PATCH_SIZE = 128
DEFAULT_MAX_PROMPT_DIM = 128
MIN_PROMPT_DIM = 16
MIN_PROMPT_SIZE = 4

IntOrList = Union[int, Sequence[int], None]


def rule_prompt_dim(channels: int, max_prompt_dim: int = DEFAULT_MAX_PROMPT_DIM, heads: Sequence[int] = (2, 4)) -> int:
    """D for a skip of ``channels`` channels when the backbone has no table (see the module docstring)."""
    d = int(math.ceil(channels / 16.0) * 16)
    d = max(MIN_PROMPT_DIM, min(int(max_prompt_dim), d))
    step = 1
    for h in heads:
        step = step * int(h) // math.gcd(step, int(h))
    return int(math.ceil(d / step) * step)


def rule_prompt_size(reduction: float, patch_size: int = DEFAULT_PATCH_SIZE) -> int:
    """s for a level at ``reduction`` (input size / feature size) when training on ``patch_size`` crops."""
    return max(MIN_PROMPT_SIZE, int(round(patch_size / (2.0 * float(reduction)))))


def _expand(name: str, value: IntOrList, n: int) -> Optional[List[int]]:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or a list of {n} ints, got {value!r}")
    if isinstance(value, int):
        vals = [value] * n
    else:
        vals = list(value)
        if len(vals) != n:
            raise ValueError(f"{name} has {len(vals)} entries but {n} skip levels were found; give one value "
                             f"per level (shallowest first) or a single int")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} entries must be positive ints, got {vals}")
    return vals


def level_sizes(backbone_type: str, channels: Sequence[int], reductions: Sequence[float],
                prompt_dims: IntOrList = None, prompt_sizes: IntOrList = None,
                patch_size: int = DEFAULT_PATCH_SIZE, max_prompt_dim: int = DEFAULT_MAX_PROMPT_DIM,
                heads: Sequence[int] = (2, 4)) -> Tuple[List[int], List[int], str]:
    """``(dims, sizes, source)`` for the detected levels; ``source`` says where the numbers came from."""
    n = len(channels)
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size (the training crop size used to size prompts) must be a positive int, "
                         f"got {patch_size!r}")
    dims = _expand("prompt_dims", prompt_dims, n)
    sizes = _expand("prompt_sizes", prompt_sizes, n)
    table = PAPER_TABLES.get(backbone_type)
    source = []
    if table is not None and len(table[0]) == n:
        if dims is None:
            dims = list(table[0])
            source.append(f"D from the paper's {backbone_type} table")
        if sizes is None:
            sizes = list(table[1])
            source.append(f"s from the paper's {backbone_type} table")
    if dims is None:
        dims = [rule_prompt_dim(c, max_prompt_dim, heads) for c in channels]
        source.append(f"D = clamp(round_up(C, 16), {MIN_PROMPT_DIM}, {max_prompt_dim})")
    elif not any(s.startswith("D ") for s in source):
        source.append("D given")
    if sizes is None:
        sizes = [rule_prompt_size(r, patch_size) for r in reductions]
        source.append(f"s = max({MIN_PROMPT_SIZE}, patch {patch_size} / (2·reduction))")
    elif not any(s.startswith("s ") for s in source):
        source.append("s given")
    return dims, sizes, "; ".join(source)
