"""Op tracing for the skip probe: a torch-function mode and module hooks that record one forward as a data-flow
graph of tensors (nodes), operations and module calls (see :mod:`pip_adapter.wrap.detect`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

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
