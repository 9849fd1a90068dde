"""Find the skip connections of a U-shaped network by running it once (the *probe*).

How it works
------------
The model runs once on a small input with a forward pre-hook and a forward hook on every sub-module and a
:class:`torch.overrides.TorchFunctionMode` that records every torch operation (``+``, ``torch.cat``,
``F.conv2d`` ...).  That gives a data-flow graph of tensors (nodes) and operations, each operation tagged with
the stack of module calls it ran in.  A tensor is *spatial* when it is 4-D and its last two sizes scale like the
input's (the default probe input is deliberately non-square, 64×96, so that channel×channel attention maps and
convolution weights do not look like feature maps); its *reduction* is input size / feature size.

A **skip** is found from where it ends: an operation ``M`` (the *merge*) with two spatial inputs of the same
size, ``Y`` and ``Z'``, where ``Y`` was made from a coarser tensor by an up-sampling operation (one whose
spatial inputs are all coarser than its output: interpolation, pixel shuffle, transposed convolution; a 1×1
global-pooled tensor broadcast back does not count) and ``Z'`` need not have been.  Walking back from ``Z'`` through tensors that are not coarser gives the
*flat ancestors* of ``Z'``; among them, the *branch point* is the latest tensor at the merge's resolution that
also feeds, through a different operation, a tensor leading to the coarse inputs of ``Y``'s up-sampling.  That branch
point is the skip tensor ``Z``: the encoder stage output that goes both down and across.  Residual connections
inside blocks are not branch points (both of their uses stay on the flat path), the network input and tensors
made from it without parameters (a global residual, possibly padded) are ignored, and merges with a broadcast
1×1 tensor (channel attention) are not merges.

Each skip then gets an *insertion plan* (see :class:`LevelPlan`): which consumers of ``Z`` are on the skip
branch (they must see ``Ẑ``) and which are not (the down path and anything else keep ``Z``).  Three ways to
do that, the cheapest that fits is used:

* ``consumer``: every skip-branch consumer is a module call → a forward pre-hook on it swaps ``Z`` for ``Ẑ``;
* ``producer``: every other consumer that runs after the producer returns is a module call → the producer's
  forward hook returns ``Ẑ`` and pre-hooks on those consumers give them ``Z`` back (NAFNet, Restormer);
* ``intercept``: otherwise (e.g. ``F.max_pool2d`` on the way down and ``torch.cat`` across, both in the
  model's own ``forward``) a torch-function mode counts the operations reading ``Z`` and swaps ``Z`` for ``Ẑ``
  in the ones the probe found on the skip branch.

Nothing here keeps a reference to the model's tensors once :func:`probe_skips` returns.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

logger = logging.getLogger(__name__)

#: default probe input (H, W): non-square on purpose (see module docstring), divisible by 64
DEFAULT_PROBE_SIZE: Tuple[int, int] = (64, 96)
#: two resolutions within this factor count as "the same level" (cropping, padding)
_SAME_LEVEL = 1.45
#: |log(rh / rw)| above this: the tensor's last two sizes do not scale like the input's
_ASPECT_TOL = 0.2

_MATMUL_NAMES = {"matmul", "__matmul__", "__rmatmul__", "bmm", "mm", "einsum", "baddbmm", "addbmm",
                 "scaled_dot_product_attention"}
_ADD_NAMES = {"add", "__add__", "__radd__", "__iadd__", "add_"}
_CAT_NAMES = {"cat", "concat", "concatenate", "hstack"}
# ops that may legitimately return their input object unchanged (not an in-place write)
_SELF_RETURNING = {"contiguous", "to", "type_as", "float", "double", "half", "bfloat16", "cpu", "cuda",
                   "requires_grad_", "__get__", "type", "view_as", "expand_as", "reshape", "flatten"}

Path = Tuple[Any, ...]


# --------------------------------------------------------------------------------------------- records
@dataclass
class _Node:
    nid: int
    shape: Tuple[int, ...]
    parents: Tuple[int, ...]
    op: Optional[int]          # event id of the operation that made it (None: leaf)
    leaf: Optional[str]        # "input" | "param" | "const" | None
    res: Optional[float]       # reduction (input size / feature size) when spatial
    nonspatial: bool
    has_param: bool            # some ancestor is a parameter (not a pure function of the input)


@dataclass
class _Op:
    eid: int
    name: str
    qualname: str
    stack: Tuple[int, ...]     # module call ids, outermost first
    ins: Tuple[int, ...]       # distinct input node ids, in argument order
    outs: Tuple[int, ...]
    time: int                  # recorder clock (shared with module calls)
    raw: str = ""              # the function's own ``__name__`` (what the run-time capture matches)
    out_paths: Tuple[Path, ...] = ()   # where each of ``outs`` sits in the returned value


@dataclass
class _Call:
    cid: int
    name: str
    occurrence: int            # 0 for the first call of this module in the forward
    parent: Optional[int]
    start: int
    in_nodes: frozenset = frozenset()
    outs: List[Tuple[Path, int]] = field(default_factory=list)
    end: int = -1


def _iter_tensors(obj: Any, path: Path = ()) -> Iterator[Tuple[Path, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, (list, tuple)):
        for i, o in enumerate(obj):
            yield from _iter_tensors(o, path + (i,))
    elif isinstance(obj, dict):
        for k, o in obj.items():
            yield from _iter_tensors(o, path + (k,))


_FUNCTIONAL_NAMES: Optional[Dict[int, str]] = None


def _functional_name(func: Any) -> Optional[str]:
    """Public name of a ``torch.nn.functional`` function built by a factory (``max_pool2d`` is ``fn``)."""
    global _FUNCTIONAL_NAMES
    if _FUNCTIONAL_NAMES is None:
        import torch.nn.functional as F
        _FUNCTIONAL_NAMES = {id(v): k for k, v in vars(F).items() if callable(v) and not k.startswith("_")}
    return _FUNCTIONAL_NAMES.get(id(func))


def op_raw_name(func: Any) -> str:
    """The name the run-time capture of function-made skips matches ops by (cheap, no lookups)."""
    return getattr(func, "__name__", None) or type(func).__name__


def _func_name(func: Any) -> Tuple[str, str]:
    name = getattr(func, "__name__", None) or type(func).__name__
    qual = getattr(func, "__qualname__", None) or name
    if "<locals>" in qual:
        public = _functional_name(func)
        if public is not None:
            name, qual = public, f"F.{public}"
    qual = qual.replace("_VariableFunctionsClass", "torch").replace("TensorBase", "Tensor")
    return name, qual


class _Recorder(TorchFunctionMode):
    """Builds the data-flow graph while the probe runs (op events from the mode, calls from the hooks)."""

    def __init__(self, in_hw: Tuple[int, int], batch: int):
        super().__init__()
        self.h0, self.w0 = in_hw
        self.batch = batch
        self.nodes: List[_Node] = []
        self.ops: List[_Op] = []
        self.calls: List[_Call] = []
        self.cur: Dict[int, int] = {}        # id(tensor) -> current node id
        self.keep: List[torch.Tensor] = []   # keeps ids unique while probing
        self.stack: List[int] = []
        self.time = 0
        self.occ: Dict[str, int] = {}

    # -- nodes
    def _spatial(self, shape: Tuple[int, ...]) -> Optional[float]:
        if len(shape) != 4 or shape[0] != self.batch or shape[2] < 1 or shape[3] < 1:
            return None
        rh, rw = self.h0 / shape[2], self.w0 / shape[3]
        if abs(math.log(rh / rw)) > _ASPECT_TOL:
            return None
        return math.sqrt(rh * rw)

    def _new(self, t: torch.Tensor, parents: Tuple[int, ...], op: Optional[int], leaf: Optional[str],
             nonspatial: bool = False) -> int:
        shape = tuple(t.shape)
        nid = len(self.nodes)
        if leaf == "param" or leaf == "const":
            res, nonspatial = None, True
        else:
            res = None if nonspatial else self._spatial(shape)
        has_param = leaf == "param" or any(self.nodes[p].has_param for p in parents)
        self.nodes.append(_Node(nid, shape, parents, op, leaf, res, nonspatial, has_param))
        self.cur[id(t)] = nid
        self.keep.append(t)
        return nid

    def node_of(self, t: torch.Tensor, leaf: str = "const") -> int:
        nid = self.cur.get(id(t))
        if nid is None:
            kind = "param" if isinstance(t, nn.Parameter) else leaf
            nid = self._new(t, (), None, kind)
        return nid

    # -- ops
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self._record(func, args, kwargs, out)
        return out

    def _record(self, func, args, kwargs, out) -> None:
        name, qual = _func_name(func)
        in_tensors = [t for _, t in _iter_tensors((args, kwargs))]
        ins: List[int] = []
        for t in in_tensors:
            nid = self.node_of(t)
            if nid not in ins:
                ins.append(nid)
        eid = len(self.ops)
        self.time += 1
        in_ids = {id(t) for t in in_tensors}
        outs: List[int] = []
        out_paths: List[Path] = []
        matmul = name in _MATMUL_NAMES
        if name == "__setitem__" and in_tensors:   # x[...] = y writes into x: a new version of x
            outs.append(self._new(in_tensors[0], tuple(ins), eid, None))
            out_paths.append(None)
        for path, t in _iter_tensors(out):
            out_paths.append(path)
            if id(t) in in_ids:
                inplace = (name not in _SELF_RETURNING) or ("out" in kwargs)
                if not inplace:
                    outs.append(self.cur[id(t)])
                    continue
            ns = matmul or any(self.nodes[i].nonspatial and self.nodes[i].shape == tuple(t.shape)
                               and self.nodes[i].leaf is None for i in ins)
            outs.append(self._new(t, tuple(ins), eid, None, nonspatial=ns))
        self.ops.append(_Op(eid, name, qual, tuple(self.stack), tuple(ins), tuple(outs), self.time,
                            raw=op_raw_name(func), out_paths=tuple(out_paths)))

    # -- module calls
    def pre_hook(self, name: str):
        def hook(module, args, kwargs):
            occ = self.occ.get(name, 0)
            self.occ[name] = occ + 1
            cid = len(self.calls)
            self.time += 1
            ins = frozenset(self.node_of(t, "input") for _, t in _iter_tensors((args, kwargs)))
            self.calls.append(_Call(cid, name, occ, self.stack[-1] if self.stack else None, self.time, ins))
            self.stack.append(cid)
        return hook

    def post_hook(self, name: str):
        def hook(module, args, kwargs, output):
            cid = self.stack.pop()
            call = self.calls[cid]
            self.time += 1
            call.end = self.time
            call.outs = [(p, self.node_of(t)) for p, t in _iter_tensors(output)]
        return hook


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


class _Graph:
    """Analysis of one recorded forward."""

    def __init__(self, rec: _Recorder):
        self.nodes = rec.nodes
        self.ops = rec.ops
        self.calls = rec.calls
        n = len(self.nodes)
        self.children: List[List[int]] = [[] for _ in range(n)]
        self.consumers: List[List[int]] = [[] for _ in range(n)]
        for op in self.ops:
            for i in op.ins:
                self.consumers[i].append(op.eid)
                for o in op.outs:
                    self.children[i].append(o)
        # up-sampling ops: every spatial input is coarser than the spatial output (interpolate, pixel
        # shuffle, transposed conv).  A 1×1 input (global pooling broadcast back, channel attention) does not
        # count: that is not a U-Net path.
        self.up_ops: set = set()
        self.global_ups = 0
        for op in self.ops:
            outs = [self.nodes[o] for o in op.outs if self.nodes[o].res is not None]
            ins = [self.nodes[i] for i in op.ins if self.nodes[i].res is not None]
            if not outs or not ins:
                continue
            r_out = min(o.res for o in outs)
            if all(i.res > r_out * _SAME_LEVEL for i in ins):
                if all(i.shape[2] * i.shape[3] > 1 for i in ins):
                    self.up_ops.add(op.eid)
                else:
                    self.global_ups += 1
        # low[n]: the coarsest reduction n's value has been to and come back up from (0: never)
        self.low = [0.0] * n
        for nd in self.nodes:
            m = 0.0
            for p in nd.parents:
                if self.low[p] > m:
                    m = self.low[p]
            if nd.op is not None and nd.op in self.up_ops:
                for i in self.ops[nd.op].ins:
                    res = self.nodes[i].res
                    if res is not None and res > m:
                        m = res
            self.low[nd.nid] = m
        self._fa_cache: Dict[Tuple[int, float], set] = {}
        self._rc_cache: Dict[Tuple[int, float], set] = {}

    def flat_ancestors(self, nid: int, r: float) -> set:
        """Nodes reaching ``nid`` through tensors that are not coarser than ``r`` (itself included)."""
        key = (nid, r)
        if key in self._fa_cache:
            return self._fa_cache[key]
        lim = r * _SAME_LEVEL
        seen = {nid}
        todo = [nid]
        while todo:
            cur = todo.pop()
            for p in self.nodes[cur].parents:
                if p in seen:
                    continue
                res = self.nodes[p].res
                if res is not None and res > lim:
                    continue
                seen.add(p)
                todo.append(p)
        self._fa_cache[key] = seen
        return seen

    def reaching_coarse(self, nid: int, r: float) -> set:
        """Ancestors of ``nid`` on its way down and back up: the coarser-than-``r`` inputs of the up-sampling
        ops ``nid`` depends on, and every ancestor of ``nid`` leading to them."""
        key = (nid, r)
        if key in self._rc_cache:
            return self._rc_cache[key]
        anc = {nid}
        todo = [nid]
        while todo:
            cur = todo.pop()
            for p in self.nodes[cur].parents:
                if p not in anc:
                    anc.add(p)
                    todo.append(p)
        lim = r * _SAME_LEVEL
        seeds = set()
        for a in anc:
            op = self.nodes[a].op
            if op is not None and op in self.up_ops:
                for i in self.ops[op].ins:
                    res = self.nodes[i].res
                    if res is not None and res > lim:
                        seeds.add(i)
        rc: set = set()
        for a in sorted(anc, reverse=True):   # node ids are a topological order
            if a in seeds or any(c in rc for c in self.children[a] if c in anc):
                rc.add(a)
        rc.discard(nid)
        self._rc_cache[key] = rc
        return rc

    def find_merges(self, notes: List[str]) -> Dict[int, List[Tuple[int, int, int]]]:
        """Branch point node → list of (merge op, skip-side input, decoder-side input)."""
        found: Dict[int, List[Tuple[int, int, int]]] = {}
        residual_notes = set()
        for op in self.ops:
            sp = [i for i in op.ins if self.nodes[i].res is not None]
            if len(sp) < 2:
                continue
            for y in sp:
                ry = self.nodes[y].res
                if self.low[y] <= ry * _SAME_LEVEL:
                    continue   # y did not come back up from a coarser level
                for zp in sp:
                    if zp == y or self.nodes[zp].shape[2:] != self.nodes[y].shape[2:]:
                        continue
                    r = self.nodes[zp].res
                    fa = self.flat_ancestors(zp, r)
                    if y in fa:
                        continue
                    rc = self.reaching_coarse(y, r)
                    best = None
                    for b in sorted(fa, reverse=True):
                        nb = self.nodes[b]
                        if nb.res is None or abs(math.log(nb.res / r)) > math.log(_SAME_LEVEL):
                            continue
                        if nb.leaf in ("param", "const"):
                            continue
                        if any(o not in fa and o in rc
                               for e in self.consumers[b] for o in self.ops[e].outs):
                            best = b
                            break
                    if best is None:
                        continue
                    if self.nodes[best].leaf == "input" or not self.nodes[best].has_param:
                        residual_notes.add(f"global residual from the network input merged by "
                                           f"{self.ops[op.eid].qualname} (ignored: not a skip)")
                        continue
                    lst = found.setdefault(best, [])
                    if (op.eid, zp, y) not in lst:
                        lst.append((op.eid, zp, y))
        notes.extend(sorted(residual_notes))
        return found


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
                raise ValueError(f"levels: {name!r} is not a sub-module of {type(model).__name__}; "
                                 f"module names look like {sorted(names - {''})[:8]}")
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
    for n in notes:
        logger.info("skip detection: %s", n)
    return ProbeResult(plans, tuple(x0.shape), notes)
