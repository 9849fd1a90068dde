"""Insertion plans: for each skip, which consumers of ``Z`` see ``Ẑ`` and by which mechanism (``consumer``,
``producer``, ``intercept``), as a typed :class:`LevelPlan`; level names (``levels=``) are parsed here."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from .graph import _Graph
from .tracing import _ADD_NAMES, _CAT_NAMES, Path, _Call


# --------------------------------------------------------------------------------------------- results
@dataclass
class LevelPlan:
    """How one skip is found at run time and where ``Ẑ`` goes (JSON-able through :meth:`to_dict`)."""

    producer: str                 # module whose output (at ``path``) is the skip tensor Z
    occurrence: int               # which call of that module in one forward (0 = first)
    path: Path                    # where Z sits in the producer's output (() = the whole output)
    strategy: str                 # "consumer" | "producer" | "intercept"
    skip_modules: List[str]       # consumer/intercept: module calls that must receive Ẑ
    restore_modules: List[str]    # producer: module calls that must receive Z back
    skip_op_indices: List[int]    # intercept: indices among the ops reading Z that must read Ẑ
    hooked_calls: int             # pre-hooked calls reading Z in one forward (after them the run drops Z)
    channels: int
    reduction: float
    shape: Tuple[int, ...]
    merge: str                    # "add" | "concat" | "other"
    merge_op: str
    merge_module: str             # innermost module running the merge ("" = the model's own forward)
    skip_consumers: List[str]     # readable names of the skip-branch consumers
    other_consumers: List[str]
    capture_op: str = ""          # function-made skip: ``__name__`` of the op making Z ("" = a module makes it)
    capture_occurrence: int = 0   # which call of ``capture_op`` (counted by that name) in one forward

    @property
    def spec(self) -> str:
        """Level name as accepted by ``levels=``: the module name plus ``[i]`` per output index, or for a skip
        made by a plain function ``"<function>#<n>"`` (its n-th call in the forward, from 0)."""
        if self.capture_op:
            return f"{self.producer}#{self.occurrence}" + "".join(f"[{p}]" for p in self.path)
        return self.producer + "".join(f"[{p}]" for p in self.path)

    def to_dict(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        d["path"] = list(self.path)
        d["shape"] = list(self.shape)
        d["spec"] = self.spec
        return d


@dataclass
class ProbeResult:
    levels: List[LevelPlan]
    input_shape: Tuple[int, ...]
    notes: List[str]


_SPEC_RE = re.compile(r"\[([^\]]*)\]")


def parse_level_spec(spec: Any) -> Tuple[str, Path]:
    """``"encoder[0]"`` → ``("encoder", (0,))``; a plain module name → ``(name, ())``."""
    if isinstance(spec, (tuple, list)) and len(spec) == 2 and isinstance(spec[0], str):
        path = spec[1] if isinstance(spec[1], (tuple, list)) else (spec[1],)
        return spec[0], tuple(path)
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a level must be a module name such as 'encoders.0' (optionally 'encoder[0]' for "
                         f"one element of a list output), got {spec!r}")
    base = spec.split("[", 1)[0]
    parts: List[Any] = []
    for item in _SPEC_RE.findall(spec[len(base):]):
        item = item.strip().strip("'\"")
        parts.append(int(item) if item.lstrip("-").isdigit() else item)
    return base, tuple(parts)


def _merge_kind(name: str) -> str:
    if name in _ADD_NAMES:
        return "add"
    if name in _CAT_NAMES:
        return "concat"
    return "other"


def _plan_level(g: _Graph, z: int, merges: List[Tuple[int, int, int]], producers: List[Tuple[_Call, Path]],
                notes: List[str]) -> LevelPlan:
    node = g.nodes[z]
    r = node.res if node.res is not None else 1.0
    skipset: set = set()
    downset: set = set()
    merge_ops = set()
    for eid, zp, y in merges:
        skipset |= g.flat_ancestors(zp, g.nodes[zp].res)
        downset |= g.reaching_coarse(y, g.nodes[zp].res)
        merge_ops.add(eid)
    # label every operation reading Z
    labels: Dict[int, str] = {}
    for e in g.consumers[z]:
        op = g.ops[e]
        if not op.outs:
            continue   # metadata (shape, size): not a real use
        s = e in merge_ops or any(o in skipset for o in op.outs)
        d = any(o in downset for o in op.outs)
        labels[e] = "mixed" if (s and d) else "skip" if s else "down" if d else "other"
    if not merges:
        labels = {e: "skip" for e in labels}
    # direct consumers: the outermost module call that received Z (expanding calls used both ways)
    expanded: set = set()
    while True:
        direct: Dict[Tuple[str, int], set] = {}
        for e, lab in labels.items():
            key = ("op", e)
            for cid in g.ops[e].stack:
                if cid not in expanded and z in g.calls[cid].in_nodes:
                    key = ("call", cid)
                    break
            direct.setdefault(key, set()).add(lab)
        mixed = [k for k, labs in direct.items()
                 if k[0] == "call" and ("skip" in labs or "mixed" in labs) and (labs - {"skip"})]
        if not mixed:
            break
        expanded.update(k[1] for k in mixed)
    dlabel = {k: ("skip" if ("skip" in labs or "mixed" in labs) else
                  "down" if "down" in labs else "other") for k, labs in direct.items()}

    skip_keys = [k for k, lab in dlabel.items() if lab == "skip"]
    other_keys = [k for k, lab in dlabel.items() if lab != "skip"]

    def k_time(k):
        return g.calls[k[1]].start if k[0] == "call" else g.ops[k[1]].time

    def name_of(k):
        if k[0] == "call":
            c = g.calls[k[1]]
            return c.name + (f"#{c.occurrence}" if c.occurrence else "")
        op = g.ops[k[1]]
        where = g.calls[op.stack[-1]].name if op.stack else ""
        return f"{op.qualname} in {where or 'forward'}"

    plan_kw: Dict[str, Any] = {}
    strategy = None
    producer, path = None, ()
    # consumer: all skip-branch consumers are module calls
    if skip_keys and all(k[0] == "call" for k in skip_keys):
        first = min(k_time(k) for k in skip_keys)
        ok = [(c, p) for c, p in producers if c.end < first]
        if ok:
            producer, path = max(ok, key=lambda cp: cp[0].end)
            strategy = "consumer"
            plan_kw = dict(skip_modules=sorted({g.calls[k[1]].name for k in skip_keys}), restore_modules=[],
                           skip_op_indices=[], hooked_calls=len(skip_keys))
    if strategy is None and skip_keys:
        for c, p in sorted(producers, key=lambda cp: -cp[0].end):
            if isinstance(c, _OpProducer) or any(k_time(k) < c.end for k in skip_keys):
                continue
            later_other = [k for k in other_keys if k_time(k) > c.end]
            if all(k[0] == "call" for k in later_other):
                producer, path, strategy = c, p, "producer"
                plan_kw = dict(skip_modules=[], restore_modules=sorted({g.calls[k[1]].name for k in later_other}),
                               skip_op_indices=[], hooked_calls=len(later_other))
                break
    if strategy is None and skip_keys:
        first = min(k_time(k) for k in skip_keys)
        ok = [(c, p) for c, p in producers if c.end < first]
        if ok:
            producer, path = max(ok, key=lambda cp: cp[0].end)
            skip_calls = {k[1] for k in skip_keys if k[0] == "call"}
            skip_ops = {k[1] for k in skip_keys if k[0] == "op"}
            # the ops reading Z at run time: every op after the capture, except inside skip module calls
            seq = [e for e in g.consumers[z]
                   if g.ops[e].time > producer.end and not (set(g.ops[e].stack) & skip_calls)]
            strategy = "intercept"
            plan_kw = dict(skip_modules=sorted({g.calls[c].name for c in skip_calls}), restore_modules=[],
                           skip_op_indices=[i for i, e in enumerate(seq) if e in skip_ops], hooked_calls=0)
    if strategy is None:
        raise _Unplaceable(f"the skip tensor of shape {list(node.shape)} is not the output of a sub-module "
                           "that returns before its skip-branch use")
    # describe the merge: prefer one that reads Z itself, else the earliest
    direct_merges = [m for m in merges if m[1] == z]
    main = min(direct_merges or merges, key=lambda m: m[0]) if merges else None
    if main is not None:
        mop = g.ops[main[0]]
        merge_kw = dict(merge=_merge_kind(mop.name), merge_op=mop.qualname,
                        merge_module=g.calls[mop.stack[-1]].name if mop.stack else "")
    else:
        merge_kw = dict(merge="other", merge_op="", merge_module="")
    if isinstance(producer, _OpProducer):
        plan_kw.update(capture_op=producer.raw, capture_occurrence=producer.raw_occurrence)
    return LevelPlan(producer=producer.name, occurrence=producer.occurrence, path=tuple(path), strategy=strategy,
                     channels=int(node.shape[1]), reduction=_nice_reduction(r), shape=tuple(node.shape),
                     skip_consumers=[name_of(k) for k in sorted(skip_keys, key=k_time)],
                     other_consumers=[name_of(k) for k in sorted(other_keys, key=k_time)],
                     **plan_kw, **merge_kw)


class _Unplaceable(Exception):
    pass


@dataclass
class _OpProducer:
    """A plain-function op making a skip tensor, shaped like a :class:`_Call` for :func:`_plan_level`."""

    name: str          # readable qualname (``F.leaky_relu``)
    occurrence: int    # its call index among ops of that qualname
    end: int           # recorder time of the op
    raw: str           # ``__name__`` matched at run time
    raw_occurrence: int


def _op_producer(g: "_Graph", eid: int) -> _OpProducer:
    op = g.ops[eid]
    occ = sum(1 for o in g.ops[:eid] if o.qualname == op.qualname)
    raw_occ = sum(1 for o in g.ops[:eid] if o.raw == op.raw)
    return _OpProducer(op.qualname, occ, op.time, op.raw, raw_occ)


def _nice_reduction(r: float) -> float:
    p = 2.0 ** round(math.log2(r)) if r > 0 else r
    if abs(r / p - 1) < 0.15:
        return int(p) if p >= 1 else p
    return round(r, 3)


def _plan_op_spec(g: "_Graph", spec: Any, name: str, path: Path, merges: Dict[int, list],
                  notes: List[str]) -> LevelPlan:
    """A ``levels=`` entry ``"<function>#<n>"``: the n-th call (from 0) of a plain function makes the skip."""
    func, _, occ = name.rpartition("#")
    if not occ.isdigit():
        raise ValueError(f"levels: {spec!r}: a function-made skip is written '<function>#<n>' (e.g. "
                         "'F.leaky_relu#2' for its third call), the part after '#' must be a number")
    ops = [o for o in g.ops if func in (o.qualname, o.name, o.raw)]
    if int(occ) >= len(ops):
        raise ValueError(f"levels: {spec!r}: the probe forward called {func} {len(ops)} time(s)")
    op = ops[int(occ)]
    outs = [n for n, p in zip(op.outs, op.out_paths) if p is not None and tuple(p) == tuple(path)]
    if not outs or g.nodes[outs[0]].res is None:
        raise ValueError(f"levels: {spec!r} does not give a B×C×H×W feature map")
    z = outs[0]
    try:
        return _plan_level(g, z, merges.get(z, []), [(_op_producer(g, op.eid), tuple(path))], notes)
    except _Unplaceable as exc:
        raise ValueError(f"levels: cannot place PIP on {spec!r}: {exc}") from None
