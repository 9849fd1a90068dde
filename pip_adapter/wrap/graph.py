"""Analysis of one recorded forward: up-sampling ops, how far each tensor went down and back up, and the merges
that make U-Net skips (see :mod:`pip_adapter.wrap.detect`)."""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

from .tracing import _Recorder

#: two resolutions within this factor count as "the same level" (cropping, padding)
_SAME_LEVEL = 1.45


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
