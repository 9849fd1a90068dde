"""State-dict helpers shared by checkpoint loading, training and extension: the DataParallel prefix and the one
report of how a state dict fits a model (:func:`state_dict_fit`)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Sequence, TypeVar

V = TypeVar("V")


def strip_parallel_prefix(state: Mapping[str, V], prefix: str = "module.") -> "OrderedDict[str, V]":
    """A copy of ``state`` (same order) without the ``module.`` prefix DataParallel / DDP put on keys.

    Each key that starts with ``prefix`` loses it and the others are kept, as BasicSR's own loader does.
    """
    n = len(prefix)
    return OrderedDict((k[n:] if k.startswith(prefix) else k, v) for k, v in state.items())


@dataclass(frozen=True)
class StateDictFit:
    """How a given state dict fits a model's: the one report every loader uses for its message.

    ``missing``: the model's keys the state lacks (model order); ``unexpected``: the state's keys the model lacks
    (state order); ``mismatched``: ``"key: <given> (shape) vs model (shape)"`` for keys in both.
    """

    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every key in both, every shape equal."""
        return not (self.missing or self.unexpected or self.mismatched)

    def fits(self, strict: bool = True) -> bool:
        """Loadable: shapes agree, and with ``strict`` the keys too."""
        return not self.mismatched and not (strict and (self.missing or self.unexpected))

    def describe(self, strict: bool = True) -> str:
        """``missing keys (n): a, b ... and k more; unexpected keys (n): ...; shape mismatches (n): ...`` (the key
        lists only with ``strict``); empty when there is nothing to say."""
        parts = []
        if strict and self.missing:
            parts.append(f"missing keys ({len(self.missing)}): {_show(self.missing, 8)}")
        if strict and self.unexpected:
            parts.append(f"unexpected keys ({len(self.unexpected)}): {_show(self.unexpected, 8)}")
        if self.mismatched:
            parts.append(f"shape mismatches ({len(self.mismatched)}): {_show(self.mismatched, 6)}")
        return "; ".join(parts)


def _show(items: Sequence[str], n: int) -> str:
    more = f" ... and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def state_dict_fit(own: Mapping[str, Any], given: Mapping[str, Any], given_name: str = "checkpoint") -> StateDictFit:
    """Compare ``given`` (a state dict to load) with ``own`` (the model's); ``given_name`` labels its shapes."""
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    mismatched = [f"{k}: {given_name} {tuple(given[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in own.items() if k in given and tuple(given[k].shape) != tuple(v.shape)]
    return StateDictFit(missing, unexpected, mismatched)
