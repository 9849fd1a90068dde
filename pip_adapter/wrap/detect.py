"""Find the skip connections of a U-shaped network by running it once (the *probe*) and plan PIP's insertion.

:func:`probe_skips` traces one forward (:mod:`.tracing`), finds the skips in the data-flow graph (:mod:`.graph`) and
gives each an insertion plan (:mod:`.planning`: ``producer``, ``consumer`` or ``intercept``).  docs/WRAP.md ("What
is detected", "The probe, step by step", "How PIP is inserted") describes the method.  Nothing here keeps a
reference to the model's tensors once :func:`probe_skips` returns.
"""
from __future__ import annotations

import difflib
import logging
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .graph import _Graph
from .planning import (LevelPlan, ProbeResult, _nice_reduction, _op_producer, _plan_level, _plan_op_spec,
                       _Unplaceable, parse_level_spec)
from .tracing import Path, _Call, _iter_tensors, _Recorder, op_raw_name

__all__ = ["DEFAULT_PROBE_SIZE", "LevelPlan", "ProbeResult", "default_probe_input", "op_raw_name",
           "parse_level_spec", "probe_skips"]

logger = logging.getLogger(__name__)

#: default probe input (H, W): non-square on purpose (see module docstring), divisible by 64
DEFAULT_PROBE_SIZE: Tuple[int, int] = (64, 96)


def suggest_modules(typed: str, names: Iterable[str], skip_sources: Iterable[str] = (), k: int = 6) -> List[str]:
    """Up to ``k`` module names for a mistyped ``levels=`` entry: ranked by similarity to ``typed`` (difflib's
    ratio), with a bonus for modules whose output the probe saw feeding a skip (``skip_sources``), so that a
    typo of ``encoders.1`` suggests ``encoders.1`` and a wild guess suggests where PIP can go."""
    sources = set(skip_sources)
    typed = typed.lower()

    def score(name: str) -> Tuple[float, str]:
        ratio = difflib.SequenceMatcher(None, typed, name.lower()).ratio()
        return (-(ratio + (0.3 if name in sources else 0.0)), name)

    return sorted(names, key=score)[:k]


# --------------------------------------------------------------------------------------------- probe
def default_probe_input(model: nn.Module, size: Optional[Sequence[int]] = None) -> torch.Tensor:
    """A 1×C×H×W random input for ``model`` (C from its first conv, H×W = ``size`` or 64×96)."""
    channels = 3
    for m in model.modules():
        c = getattr(m, "in_channels", None)
        if isinstance(c, int) and c > 0:
            channels = c
            break
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    if size is None:
        hw = DEFAULT_PROBE_SIZE
        b = 1
    else:
        size = [int(s) for s in ([size] if isinstance(size, int) else size)]
        if len(size) == 1:
            hw, b = (size[0], size[0]), 1
        elif len(size) == 2:
            hw, b = (size[0], size[1]), 1
        elif len(size) == 3:
            channels, hw, b = size[0], (size[1], size[2]), 1
        elif len(size) == 4:
            b, channels, hw = size[0], size[1], (size[2], size[3])
        else:
            raise ValueError(f"example_input_size must be H, (H, W), (C, H, W) or (B, C, H, W), got {size}")
    gen = torch.Generator().manual_seed(0)
    return torch.rand(b, channels, *hw, generator=gen).to(device=device, dtype=dtype)


def probe_skips(model: nn.Module, example_input: Optional[Any] = None,
                levels: Optional[Sequence[Any]] = None) -> ProbeResult:
    """Run ``model`` once and return one :class:`LevelPlan` per skip, shallowest first.

    ``example_input``: a tensor (or a tuple of positional arguments whose first item is the image batch);
    default a 1×C×64×96 random tensor.  ``levels``: module names (``"enc.0"``, or ``"encoder[1]"`` for one
    element of a list output) that replace detection.  Raises ``ValueError`` when no skip is found.
    """
    if example_input is None:
        example_input = default_probe_input(model)
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    x0 = args[0]
    if not isinstance(x0, torch.Tensor) or x0.dim() != 4:
        raise ValueError(f"example_input must be a B×C×H×W tensor (or a tuple starting with one), got "
                         f"{type(x0).__name__}{'' if not isinstance(x0, torch.Tensor) else list(x0.shape)}")
    rec = _Recorder((int(x0.shape[-2]), int(x0.shape[-1])), int(x0.shape[0]))
    modes = {m: m.training for m in model.modules()}
    handles = []
    try:
        for name, m in model.named_modules():
            handles.append(m.register_forward_pre_hook(rec.pre_hook(name), with_kwargs=True))
            handles.append(m.register_forward_hook(rec.post_hook(name), with_kwargs=True))
        model.eval()   # no BatchNorm statistics update, no dropout, during the probe
        for a in args:
            for _, t in _iter_tensors(a):
                rec._new(t, (), None, "input")
        with torch.no_grad(), rec:
            model(*args)
    except Exception as exc:
        raise ValueError(f"probing {type(model).__name__} on an input of shape {list(x0.shape)} failed "
                         f"({type(exc).__name__}: {exc}); pass example_input= (or example_input_size=) that "
                         "the model accepts") from exc
    finally:
        for h in handles:
            h.remove()
        for m, t in modes.items():
            m.training = t
    rec.keep.clear()
    rec.cur.clear()
    g = _Graph(rec)
    notes: List[str] = []
    if g.global_ups:
        notes.append(f"{g.global_ups} operation(s) bring a 1×1 feature back to a larger size; that is taken as "
                     "global context, not as a U-Net level (if the bottleneck is 1×1 at this probe size, give a "
                     "larger example_input)")
    merges = g.find_merges(notes)

    def producers_of(nid: int) -> List[Tuple[_Call, Path]]:
        out = []
        for c in g.calls:
            if c.parent is None:
                continue   # the model itself: its output is not a skip
            for p, n in c.outs:
                if n == nid:
                    out.append((c, p))
        return out

    def op_producer_of(nid: int) -> List[Tuple[Any, Path]]:
        """A skip no module returns: the op that made it (its last write, for in-place ops)."""
        eid = g.nodes[nid].op
        if eid is None:
            return []
        op = g.ops[eid]
        path = op.out_paths[op.outs.index(nid)] if nid in op.outs else None
        return [] if path is None else [(_op_producer(g, eid), tuple(path))]

    plans: List[LevelPlan] = []
    if levels is not None:
        names = {n for n, _ in model.named_modules()}
        for spec in levels:
            name, path = parse_level_spec(spec)
            if "#" in name:
                plans.append(_plan_op_spec(g, spec, name, path, merges, notes))
                continue
            if name not in names or name == "":
                sources = {c.name for z in merges for c, _ in producers_of(z)}
                raise ValueError(f"levels: {name!r} is not a sub-module of {type(model).__name__}; did you mean "
                                 f"{', '.join(repr(n) for n in suggest_modules(name, names - {''}, sources))}? "
                                 "(closest names first, outputs that feed a skip ahead of the rest)")
            calls = [c for c in g.calls if c.name == name]
            if not calls:
                raise ValueError(f"levels: module {name!r} was not called during the probe forward")
            outs = [n for p, n in calls[0].outs if tuple(p) == tuple(path)]
            if not outs:
                raise ValueError(f"levels: {spec!r}: module {name!r} returns "
                                 f"{[list(p) for p, _ in calls[0].outs]} (tensor positions), not {list(path)}; "
                                 "add [i] to pick one element of a list output")
            z = outs[0]
            if g.nodes[z].res is None:
                raise ValueError(f"levels: {spec!r} gives a tensor of shape {list(g.nodes[z].shape)}, "
                                 "not a B×C×H×W feature map")
            prods = [(c, p) for c, p in producers_of(z)]
            chosen = [(c, p) for c, p in prods if c.name == name] or prods
            mz = merges.get(z, [])
            if not mz:
                notes.append(f"{spec}: no merge found; PIP output replaces this module's output everywhere")
            try:
                plan = _plan_level(g, z, mz, chosen, notes)
            except _Unplaceable as exc:
                raise ValueError(f"levels: cannot place PIP on {spec!r}: {exc}") from None
            plans.append(plan)
    else:
        for z in sorted(merges, key=lambda n: (g.nodes[n].res, n)):
            prods = producers_of(z) or op_producer_of(z)
            if not prods:
                notes.append(f"skip of shape {list(g.nodes[z].shape)} is not the output of a module or of one "
                             "operation: not wrapped (pass levels= with a module name)")
                continue
            try:
                plans.append(_plan_level(g, z, merges[z], prods, notes))
            except _Unplaceable as exc:
                notes.append(f"skip of shape {list(g.nodes[z].shape)} not wrapped: {exc}")
        if not plans:
            resolutions = sorted({_nice_reduction(n.res) for n in g.nodes if n.res is not None})
            candidates = sorted({c.name for c in g.calls if c.parent is not None and any(
                g.nodes[n].res is not None and len(g.consumers[n]) > 1 for _, n in c.outs)})[:12]
            raise ValueError(
                f"no U-Net skip connection found in {type(model).__name__}: the probe on an input of shape "
                f"{list(x0.shape)} ran {len(g.ops)} operations in {len(g.calls)} module calls and saw feature "
                f"maps at reductions {resolutions}"
                + (f"; {'; '.join(notes)}" if notes else "")
                + ". A skip is an encoder feature that is merged (added / concatenated) with a decoder feature "
                "of the same size after the network went to a coarser resolution and came back. If this "
                "model has skips the probe cannot see, pass levels=[module names] (modules whose output is "
                f"the skip tensor), e.g. from: {candidates}")
    for n in notes:  # the wrapper reports them once, with what it built (describe() keeps them)
        logger.debug("skip detection: %s", n)
    return ProbeResult(plans, tuple(x0.shape), notes)
