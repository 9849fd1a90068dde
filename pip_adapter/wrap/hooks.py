"""The hooks of a wrapped model and the state of one forward (see :mod:`pip_adapter.wrap.wrapper`).

``forward`` makes a :class:`_Run` (ω, the levels, the tensors of this call) and publishes it on the wrapper;
the hooks read it there: :class:`_ProducerHook` on a module making ``Z`` returns ``Ẑ``, :class:`_SwapPreHook`
swaps ``Z`` and ``Ẑ`` in a consumer's arguments, and :class:`_InterceptMode` does the same inside plain
functions (a torch-function mode).  Nothing here outlives a forward.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .detect import op_raw_name

# DataParallel replicas (threads sharing the original's hooks): wrapper uid -> that thread's run
_REPLICA_RUNS = threading.local()


class _Run:
    """Everything one forward needs; dropped at its end."""

    __slots__ = ("omega", "levels", "z", "zhat", "applied", "counts", "seq", "paused", "pending", "opcounts")

    def __init__(self, omega: torch.Tensor, levels: nn.ModuleList, pending: Sequence[int]):
        n = len(levels)
        self.omega = omega
        self.levels = levels
        self.z: List[Optional[torch.Tensor]] = [None] * n
        self.zhat: List[Optional[torch.Tensor]] = [None] * n
        self.applied = [False] * n
        self.counts: Dict[int, int] = {}
        self.opcounts: Dict[str, int] = {}
        self.seq = [0] * n
        self.paused = False
        # hooked consumer calls still to come per level; at 0 the run lets go of Z (no extra memory held)
        self.pending = list(pending)

    def zhat_of(self, i: int) -> torch.Tensor:
        zh = self.zhat[i]
        if zh is None:
            self.paused = True   # the PIP level's own ops are not the model's (intercept counting)
            try:
                zh = self.levels[i](self.z[i], self.omega)
            finally:
                self.paused = False
            self.zhat[i] = zh
        self.applied[i] = True
        return zh


def _run_of(owner: nn.Module) -> Optional[_Run]:
    run = owner._run
    if run is None:
        runs = getattr(_REPLICA_RUNS, "runs", None)
        if runs:
            run = runs.get(owner._uid)
    return run


def _get_path(obj: Any, path: Tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def _set_path(obj: Any, path: Tuple[Any, ...], value: Any) -> Any:
    """A copy of ``obj`` with ``value`` at ``path`` (containers rebuilt, the caller's untouched)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        new = type(obj)(obj) if type(obj) is not dict else dict(obj)
        new[head] = _set_path(obj[head], rest, value)
        return new
    items = list(obj)
    items[head] = _set_path(obj[head], rest, value)
    if isinstance(obj, tuple):
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    return items


def _contains(obj: Any, target: torch.Tensor) -> bool:
    """Whether the tensor object ``target`` is (nested) in ``obj`` (identity, not values)."""
    if isinstance(obj, torch.Tensor):
        return obj is target
    if isinstance(obj, (list, tuple)):
        return any(_contains(o, target) for o in obj)
    if isinstance(obj, dict):
        return any(_contains(o, target) for o in obj.values())
    return False


def _replace(obj: Any, old: torch.Tensor, new: torch.Tensor) -> Any:
    """``obj`` with the tensor object ``old`` replaced by ``new`` (containers rebuilt only where needed)."""
    if isinstance(obj, torch.Tensor):
        return new if obj is old else obj
    if isinstance(obj, (list, tuple)):
        if not any(_contains(o, old) for o in obj):
            return obj
        out = [_replace(o, old, new) for o in obj]
        if isinstance(obj, tuple):
            return type(obj)(*out) if hasattr(obj, "_fields") else tuple(out)
        return out
    if isinstance(obj, dict):
        if not any(_contains(o, old) for o in obj.values()):
            return obj
        return {k: _replace(o, old, new) for k, o in obj.items()}
    return obj


@dataclass(frozen=True)
class CaptureEntry:
    """A forward-hook entry: call ``occurrence`` of the hooked module makes level ``level``'s Z at ``path``."""

    level: int
    occurrence: int
    path: Tuple[Any, ...]
    replace: bool          # ``producer`` insertion: the module returns Ẑ instead of Z


@dataclass(frozen=True)
class SwapEntry:
    """A pre-hook entry: ``"skip"`` gives the hooked module Ẑ instead of Z, ``"restore"`` Z instead of Ẑ."""

    level: int
    kind: str


@dataclass(frozen=True)
class OpCaptureEntry:
    """A function-made skip: call ``occurrence`` of ops named ``name`` makes level ``level``'s Z at ``path``."""

    level: int
    name: str
    occurrence: int
    path: Tuple[Any, ...]


class _ProducerHook:
    """Forward hook on a module making skip tensors: records Z (and returns Ẑ for ``producer`` levels)."""

    def __init__(self, owner: nn.Module, key: int, entries: Sequence[CaptureEntry]):
        self.owner = owner
        self.key = key            # index in the run's call counters
        self.entries = tuple(entries)

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        run = _run_of(self.owner)
        if run is None:
            return None
        k = run.counts.get(self.key, 0)
        run.counts[self.key] = k + 1
        changed = False
        for e in self.entries:
            if e.occurrence != k:
                continue
            run.z[e.level] = _get_path(output, e.path)
            if e.replace:
                output = _set_path(output, e.path, run.zhat_of(e.level))
                changed = True
        return output if changed else None


class _SwapPreHook:
    """Forward pre-hook: ``skip`` entries give this module Ẑ instead of Z, ``restore`` entries Z instead of Ẑ."""

    def __init__(self, owner: nn.Module, entries: Sequence[SwapEntry]):
        self.owner = owner
        self.entries = tuple(entries)

    def __call__(self, module: nn.Module, args: Any, kwargs: Any) -> Any:
        run = _run_of(self.owner)
        if run is None:
            return None
        changed = False
        for e in self.entries:
            z = run.z[e.level]
            if z is None:
                continue
            old = z if e.kind == "skip" else run.zhat[e.level]
            if old is None or not _contains((args, kwargs), old):
                continue
            new = run.zhat_of(e.level) if e.kind == "skip" else z
            args, kwargs = _replace(args, old, new), _replace(kwargs, old, new)
            changed = True
            run.pending[e.level] -= 1
            if run.pending[e.level] == 0:
                run.z[e.level] = None
        return (tuple(args), dict(kwargs)) if changed else None


class _InterceptMode(TorchFunctionMode):
    """Swaps Z for Ẑ in the operations the probe found on the skip branch (``intercept`` levels) and captures
    skips that a plain function makes."""

    def __init__(self, run: _Run, watch: Mapping[int, frozenset], captures: Sequence[OpCaptureEntry]):
        super().__init__()
        self.run = run
        self.watch = watch        # level -> indices (among the ops reading Z) that must read Ẑ
        self.captures = captures
        self.capture_names = frozenset(c.name for c in captures)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        run = self.run
        if run.paused:
            return func(*args, **kwargs)
        for level, idx in self.watch.items():
            z = run.z[level]
            if z is None or not _contains((args, kwargs), z):
                continue
            n = run.seq[level]
            run.seq[level] = n + 1
            if n in idx:
                zh = run.zhat_of(level)
                args, kwargs = _replace(args, z, zh), _replace(kwargs, z, zh)
        out = func(*args, **kwargs)
        if self.capture_names:
            name = op_raw_name(func)
            if name in self.capture_names:
                k = run.opcounts.get(name, 0)
                run.opcounts[name] = k + 1
                for c in self.captures:
                    if c.name == name and c.occurrence == k:
                        run.z[c.level] = _get_path(out, c.path)
        return out


def _first_tensor(obj: Any) -> Optional[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (list, tuple)):
        for o in obj:
            t = _first_tensor(o)
            if t is not None:
                return t
    if isinstance(obj, dict):
        for o in obj.values():
            t = _first_tensor(o)
            if t is not None:
                return t
    return None
