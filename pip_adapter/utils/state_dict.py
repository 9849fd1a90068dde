"""State-dict helpers shared by checkpoint loading, training and extension."""
from __future__ import annotations

from collections import OrderedDict
from typing import Mapping, TypeVar

V = TypeVar("V")

PARALLEL_PREFIX = "module."


def strip_parallel_prefix(state: Mapping[str, V]) -> "OrderedDict[str, V]":
    """A copy of ``state`` without the ``module.`` prefix that DataParallel / DDP put on every key.

    The prefix is removed only when every key has it, so a network whose own submodule is called ``module``
    keeps its keys.  The copy keeps the key order.
    """
    n = len(PARALLEL_PREFIX)
    if state and all(k.startswith(PARALLEL_PREFIX) for k in state):
        return OrderedDict((k[n:], v) for k, v in state.items())
    return OrderedDict(state.items())
