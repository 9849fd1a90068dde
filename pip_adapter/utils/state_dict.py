"""State-dict helpers shared by checkpoint loading, training and extension."""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, TypeVar

V = TypeVar("V")


def strip_parallel_prefix(state: Mapping[str, V], prefix: str = "module.") -> "OrderedDict[str, V]":
    """A copy of ``state`` (same order) without the ``module.`` prefix DataParallel / DDP put on keys.

    Each key that starts with ``prefix`` loses it and the others are kept, as BasicSR's own loader does.
    """
    n = len(prefix)
    return OrderedDict((k[n:] if k.startswith(prefix) else k, v) for k, v in state.items())
