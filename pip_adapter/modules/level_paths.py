"""Which forward a PIP level runs: four paths, each its own unit, and one dispatcher that picks among them.

Paths (all compute the same numbers up to float rounding; ``tests/test_level_paths.py`` holds them to it):

* ``"reference"`` — the level's modules on NCHW maps (head-major attention): the readable form, never chosen
  by ``"auto"``;
* ``"channels_last"`` — the same modules on channels-last maps (token-major attention views, in-place adds);
  in a traced graph (``torch.compile`` / ``torch.export``) its resizes are matrix products, so under
  ``torch.export`` this path is the export graph, which ONNX Runtime runs faster than the token one;
* ``"bands"`` — ``"channels_last"`` with P2F in row bands (``modules/level_bands.py``), eager calls only;
* ``"tokens"`` — the whole level token-major (``modules/level_tokens.py``), what ``torch.compile`` runs.

``level.path`` (``"auto"`` by default, or one of the names; :func:`set_level_path` sets a whole model) is the
one switch.  ``"auto"`` reads the call once (:class:`LevelCall`) and takes ``"tokens"`` under ``torch.compile``,
``"bands"`` in eager calls when ``set_p2f_chunking`` is on and the map is taller than one band, and
``"channels_last"`` otherwise (``torch.export``, jit tracing, eager).  A forced path that cannot serve a call
raises ``ValueError`` naming why.  :meth:`PIPLevel.choose_path` tells which path a call would take and why every
other one was not taken (a :class:`Dispatch`); inside ``with record_dispatch() as seen:`` every level call
appends its ``(level, Dispatch)``, also while ``torch.export`` traces (a recorder changes nothing else).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Tuple

import torch
from torch import nn

from .level_bands import band_rows, prompt_to_feature_bands
from .level_tokens import forward_tokens

AUTO = "auto"


@dataclass(frozen=True)
class LevelCall:
    """What the dispatcher reads about one call, once: the graph being built and the input's device and size."""

    graph: str        # "eager", "compile" (torch.compile), "export" (torch.export), "jit" (jit trace / script)
    device: str       # the skip feature's device type
    batch: int
    height: int
    width: int

    @classmethod
    def read(cls, z: torch.Tensor) -> "LevelCall":
        """The call context of a forward on ``z`` (B×C×H×W)."""
        if torch.compiler.is_exporting():
            graph = "export"
        elif torch.compiler.is_compiling():
            graph = "compile"
        elif torch.jit.is_tracing() or torch.jit.is_scripting():
            graph = "jit"
        else:
            graph = "eager"
        b, _, h, w = z.shape
        return cls(graph, z.device.type, b, h, w)

    @property
    def symbolic(self) -> bool:
        """A compiler's graph: sizes may be symbolic, so resizes are products and the batch is not unrolled."""
        return self.graph in ("compile", "export")

    @property
    def per_sample_gram(self) -> bool:
        """The attention's q·kᵀ one sample at a time: eager CPU calls with B > 1 (faster than a batched
        product over strided operands, docs/BENCHMARKS.md); a compiler's graph keeps one product so B stays symbolic."""
        return not self.symbolic and self.device == "cpu" and self.batch > 1


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    # channels-last: LayerNorm over channels becomes a contiguous reduction, the convs take their fast CPU
    # path and the attention reads B×HW×D views without copies
    return x.contiguous(memory_format=torch.channels_last)


def in_layout_of(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``out`` in ``ref``'s memory format, so callers get back the layout they gave."""
    if ref.is_contiguous(memory_format=torch.channels_last) and not ref.is_contiguous():
        return out
    return out.contiguous()


_GRAPH_NAMES = {"compile": "torch.compile", "export": "torch.export", "jit": "jit tracing", "eager": "eager"}


class LevelPath:
    """One forward of a PIP level: ``not_supported_reasons`` says when it cannot run a call, ``run`` runs it."""

    name = ""

    def not_supported_reasons(self, level: nn.Module, call: LevelCall) -> List[str]:
        """Why this path cannot run ``call`` (empty: it can)."""
        return []

    def run(self, level: nn.Module, z: torch.Tensor, omega: torch.Tensor, call: LevelCall) -> torch.Tensor:
        raise NotImplementedError


class ReferencePath(LevelPath):
    """The modules on NCHW maps: head-major attention, ``F.interpolate`` in eager calls."""

    name = "reference"

    def run(self, level, z, omega, call):
        zc = z.contiguous()
        u = level._universal_prompt(zc, omega, call)
        return in_layout_of(level.prompt_to_feature(zc, u), z)


class ChannelsLastPath(LevelPath):
    """The modules on channels-last maps; under torch.export this is the exported graph."""

    name = "channels_last"

    def run(self, level, z, omega, call):
        zc = to_channels_last(z)
        u = level._universal_prompt(zc, omega, call)
        return in_layout_of(level.prompt_to_feature(zc, u, per_sample_gram=call.per_sample_gram), z)


class BandsPath(LevelPath):
    """``channels_last`` with P2F in row bands of about ``level.p2f_chunk_pixels`` pixels."""

    name = "bands"

    def not_supported_reasons(self, level, call):
        reasons = []
        if call.graph != "eager":
            reasons.append(f"bands run in eager calls only, not under {_GRAPH_NAMES[call.graph]} (the loop over "
                           "bands would be unrolled over the input size)")
        if not level.p2f_chunk_pixels:
            reasons.append("bands are off (level.set_p2f_chunking(pixels) with pixels > 0 turns them on)")
        return reasons

    def run(self, level, z, omega, call):
        zc = to_channels_last(z)
        u = level._universal_prompt(zc, omega, call)
        rows = band_rows(level.p2f_chunk_pixels, call.height, call.width)
        return in_layout_of(prompt_to_feature_bands(level, zc, u, rows), z)


class TokensPath(LevelPath):
    """The whole level token-major; returns a channels-last view whatever the input's layout."""

    name = "tokens"

    def run(self, level, z, omega, call):
        return forward_tokens(level, z, omega)


PATHS: Dict[str, LevelPath] = {p.name: p for p in (ReferencePath(), ChannelsLastPath(), BandsPath(), TokensPath())}
CHOICES: Tuple[str, ...] = (AUTO,) + tuple(PATHS)


@dataclass(frozen=True)
class Dispatch:
    """One call's choice: the path taken, the call it was read from and why each other path was not taken."""

    path: str
    call: LevelCall
    refused: Dict[str, str] = field(default_factory=dict)


def _auto_reason(name: str, level: nn.Module, call: LevelCall) -> str:
    """Why ``"auto"`` passes over a path that could run the call ('' when it takes it)."""
    if name == "tokens" and call.graph != "compile":
        return "auto takes it under torch.compile only (eager and exported graphs run channels_last faster)"
    if name == "bands" and band_rows(level.p2f_chunk_pixels, call.height, call.width) >= call.height:
        return "one band would be the whole map"
    if name == "reference":
        return "auto never takes the reference (the readable NCHW form, slower)"
    return ""


# auto's preference: the first path that can run the call and that auto does not pass over
_AUTO_ORDER = ("tokens", "bands", "channels_last", "reference")


def dispatch(level: nn.Module, call: LevelCall) -> Dispatch:
    """The path ``level`` runs ``call`` with (its ``path`` setting, or auto's choice); raises for a forced path
    that cannot run it."""
    refused = {n: "; ".join(p.not_supported_reasons(level, call)) for n, p in PATHS.items()}
    forced = level.path
    if forced != AUTO:
        if refused[forced]:
            raise ValueError(f"PIPLevel path {forced!r} cannot run this call: {refused[forced]}; "
                             f"set level.path = 'auto' (or another of {', '.join(PATHS)})")
        others = {n: r or f"path forced to {forced!r}" for n, r in refused.items() if n != forced}
        return Dispatch(forced, call, others)
    chosen = ""
    for name in _AUTO_ORDER:
        if not refused[name] and not chosen:
            refused[name] = _auto_reason(name, level, call)
            if not refused[name]:
                chosen = name
        elif not refused[name]:
            refused[name] = f"auto prefers {chosen!r}"
    del refused[chosen]
    return Dispatch(chosen, call, refused)


_RECORDERS: List[List[Tuple[nn.Module, Dispatch]]] = []


@contextlib.contextmanager
def record_dispatch() -> Iterator[List[Tuple[nn.Module, Dispatch]]]:
    """Inside this block every PIP level call appends ``(level, Dispatch)`` to the list it yields.

    Works in eager calls and while ``torch.export`` traces; under ``torch.compile`` a recorder makes the
    compiled graph recompile as the list grows, so use it to inspect, not while timing.
    """
    seen: List[Tuple[nn.Module, Dispatch]] = []
    _RECORDERS.append(seen)
    try:
        yield seen
    finally:
        _RECORDERS.remove(seen)


def run_level(level: nn.Module, z: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """The dispatcher's one entry: read the call once, choose the path, run it."""
    choice = dispatch(level, LevelCall.read(z))
    if _RECORDERS:
        for seen in _RECORDERS:
            seen.append((level, choice))
    return PATHS[choice.path].run(level, z, omega, choice.call)


def check_path(path: str) -> str:
    """``path`` if it names a level path (or ``"auto"``), else a ValueError listing them."""
    if path not in CHOICES:
        raise ValueError(f"unknown PIPLevel path {path!r}; use one of {', '.join(CHOICES)}")
    return path
