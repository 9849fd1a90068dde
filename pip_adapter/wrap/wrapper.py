"""``wrap_with_pip``: put a PIP level on every skip connection of a U-shaped network, without editing its code.

The wrapped backbone runs its own ``forward``; a few module hooks (planned once by the probe in
:mod:`pip_adapter.wrap.detect`) replace the skip tensor ``Z`` by ``Ẑ = PIP(Z, ω)`` on the skip branch only:

* ``producer`` levels: the module making ``Z`` returns ``Ẑ`` and pre-hooks on its other later consumers
  (e.g. the downsampling conv) give them ``Z`` back;
* ``consumer`` levels: a pre-hook on the skip-branch module (a gate, a decoder taking a feature list) swaps
  ``Z`` for ``Ẑ`` in its arguments;
* ``intercept`` levels (skip and down path both in plain functions): a torch-function mode swaps ``Z`` for
  ``Ẑ`` in the operations the probe found on the skip branch.

Hooks are stateless objects: ω and the tensors of one forward live in a :class:`_Run` reached through a
:mod:`contextvars` variable that ``forward`` sets and clears in ``finally``, so nothing survives a forward,
``deepcopy``/pickling copies only plain data, each DataParallel replica (a thread) sees its own run, and a
bare call of the backbone (``model.backbone(x)``) is the original network.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import uuid
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..modules.pip_level import PIPLevel
from ..omega import normalise_names, to_omega
from .detect import _iter_tensors, default_probe_input, probe_skips
from .sizing import DEFAULT_MAX_PROMPT_DIM, DEFAULT_PATCH_SIZE, level_sizes

logger = logging.getLogger(__name__)

_ACTIVE: "contextvars.ContextVar[Optional[_Run]]" = contextvars.ContextVar("pip_adapter_active_run", default=None)

# keyword arguments of wrap_with_pip that are not PIPLevel options
_WRAPPER_KEYS = ("patch_size", "max_prompt_dim", "backbone_config", "level_configs", "example_input_size")


class _Run:
    """Everything one forward needs; cleared at its end."""

    __slots__ = ("uid", "omega", "levels", "z", "zhat", "applied", "counts", "seq", "paused", "pending")

    def __init__(self, uid: str, omega: torch.Tensor, levels: nn.ModuleList, pending: Sequence[int] = ()):
        n = len(levels)
        self.uid = uid
        self.omega = omega
        self.levels = levels
        self.z: List[Optional[torch.Tensor]] = [None] * n
        self.zhat: List[Optional[torch.Tensor]] = [None] * n
        self.applied = [False] * n
        self.counts: Dict[int, int] = {}
        self.seq = [0] * n
        self.paused = False
        # hooked consumer calls still to come per level; at 0 the run lets go of Z (no extra memory held)
        self.pending = list(pending) if pending else [0] * n

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

    def clear(self) -> None:
        self.omega = None
        self.levels = None
        self.z = [None] * len(self.z)
        self.zhat = [None] * len(self.zhat)


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


def _swap(obj: Any, table: Dict[int, torch.Tensor]) -> Tuple[Any, bool]:
    """Replace tensors whose ``id`` is in ``table`` anywhere in (nested) ``obj``; (new obj, changed)."""
    if isinstance(obj, torch.Tensor):
        new = table.get(id(obj))
        return (new, True) if new is not None else (obj, False)
    if isinstance(obj, (list, tuple)):
        out, changed = [], False
        for o in obj:
            n, c = _swap(o, table)
            out.append(n)
            changed |= c
        if not changed:
            return obj, False
        if isinstance(obj, tuple):
            return (type(obj)(*out) if hasattr(obj, "_fields") else tuple(out)), True
        return out, True
    if isinstance(obj, dict):
        out_d, changed = {}, False
        for k, o in obj.items():
            n, c = _swap(o, table)
            out_d[k] = n
            changed |= c
        return (out_d if changed else obj), changed
    return obj, False


class _ProducerHook:
    """Forward hook on a module making skip tensors: records Z (and returns Ẑ for ``producer`` levels)."""

    def __init__(self, uid: str, key: int, entries: List[Tuple[int, int, Tuple[Any, ...], bool]]):
        self.uid = uid
        self.key = key            # index in the run's call counters
        self.entries = entries    # (level, occurrence, path, replace)

    def __call__(self, module: nn.Module, args: Any, output: Any) -> Any:
        run = _ACTIVE.get()
        if run is None or run.uid != self.uid:
            return None
        k = run.counts.get(self.key, 0)
        run.counts[self.key] = k + 1
        changed = False
        for level, occurrence, path, replace in self.entries:
            if occurrence != k:
                continue
            run.z[level] = _get_path(output, path)
            if replace:
                output = _set_path(output, path, run.zhat_of(level))
                changed = True
        return output if changed else None


class _SwapPreHook:
    """Forward pre-hook: ``skip`` entries give this module Ẑ instead of Z, ``restore`` entries Z instead of Ẑ."""

    def __init__(self, uid: str, entries: List[Tuple[int, str]]):
        self.uid = uid
        self.entries = entries    # (level, "skip" | "restore")

    def __call__(self, module: nn.Module, args: Any, kwargs: Any) -> Any:
        run = _ACTIVE.get()
        if run is None or run.uid != self.uid:
            return None
        table: Dict[int, torch.Tensor] = {}
        for level, kind in self.entries:
            if kind == "skip":
                z = run.z[level]
                if z is not None:
                    table[id(z)] = None  # placeholder: computed only if Z is really among the arguments
            else:
                zh = run.zhat[level]
                if zh is not None:
                    table[id(zh)] = run.z[level]
        if not table:
            return None
        present = {id(t) for _, t in _iter_tensors((args, kwargs))} & set(table)
        if not present:
            return None
        for level, kind in self.entries:
            if kind == "skip" and run.z[level] is not None and id(run.z[level]) in present:
                table[id(run.z[level])] = run.zhat_of(level)
        table = {k: v for k, v in table.items() if k in present and v is not None}
        (new_args, new_kwargs), _ = _swap((args, kwargs), table)
        for level, kind in self.entries:
            z = run.z[level]
            key = id(z) if kind == "skip" else id(run.zhat[level])
            if z is not None and key in present:
                run.pending[level] -= 1
                if run.pending[level] == 0:
                    run.z[level] = None
        return tuple(new_args), dict(new_kwargs)


class _InterceptMode(TorchFunctionMode):
    """Swaps Z for Ẑ in the operations the probe found on the skip branch (``intercept`` levels)."""

    def __init__(self, run: _Run, watch: Dict[int, frozenset]):
        super().__init__()
        self.run = run
        self.watch = watch        # level -> indices (among the ops reading Z) that must read Ẑ

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        run = self.run
        if not run.paused:
            table = None
            for level, idx in self.watch.items():
                z = run.z[level]
                if z is None:
                    continue
                if any(t is z for _, t in _iter_tensors((args, kwargs))):
                    n = run.seq[level]
                    run.seq[level] = n + 1
                    if n in idx:
                        if table is None:
                            table = {}
                        table[id(z)] = run.zhat_of(level)
            if table:
                (args, kwargs), _ = _swap((args, kwargs), table)
        return func(*args, **kwargs)


class _OmegaContext:
    """Returned by :meth:`PIPWrappedModel.set_omega`: usable as a plain call or as a context manager."""

    def __init__(self, model: "PIPWrappedModel", previous: Any):
        self._model = model
        self._previous = previous

    def __enter__(self) -> "PIPWrappedModel":
        return self._model

    def __exit__(self, *exc: Any) -> None:
        self._model._default_omega = self._previous


class PIPWrappedModel(nn.Module):
    """A backbone with PIP levels on its skip connections (see :func:`wrap_with_pip`).

    Attributes: ``backbone`` (the original network, its code untouched), ``pip_levels`` (``nn.ModuleList``
    aligned with ``skip_info``), ``skip_info`` (one dict per level, shallowest first), ``degradations``
    (ω's type names, a plain list).
    """

    def __init__(self, backbone: nn.Module, degradations: Any = None, example_input: Optional[Any] = None,
                 levels: Optional[Sequence[Any]] = None, prompt_dims: Any = None, prompt_sizes: Any = None,
                 **pip_options: Any) -> None:
        super().__init__()
        if not isinstance(backbone, nn.Module):
            raise ValueError(f"wrap_with_pip expects an nn.Module backbone, got {type(backbone).__name__}")
        if isinstance(backbone, PIPWrappedModel):
            raise ValueError("this model is already wrapped with PIP; wrap its .backbone (or .unwrap()) instead")
        opts = dict(pip_options)
        patch_size = opts.pop("patch_size", DEFAULT_PATCH_SIZE)
        max_prompt_dim = opts.pop("max_prompt_dim", DEFAULT_MAX_PROMPT_DIM)
        backbone_config = opts.pop("backbone_config", None)
        level_configs = opts.pop("level_configs", None)
        example_input_size = opts.pop("example_input_size", None)
        self.degradations: List[str] = normalise_names(degradations)
        self.backbone = backbone
        self._uid = uuid.uuid4().hex
        self._default_omega: Any = None
        self._pip_disabled = 0
        self._unwrapped = False
        self._backbone_config = dict(backbone_config) if backbone_config is not None else None
        if isinstance(example_input_size, int):
            example_input_size = [example_input_size]
        self._example_input_size = list(example_input_size) if example_input_size is not None else None

        if example_input is None and example_input_size is not None:
            example_input = default_probe_input(backbone, [example_input_size] if isinstance(example_input_size, int)
                                                else example_input_size)
        probe = probe_skips(backbone, example_input, levels)
        self._plans: List[Dict[str, Any]] = [p.to_dict() for p in probe.levels]
        channels = [p.channels for p in probe.levels]
        reductions = [p.reduction for p in probe.levels]
        heads = (opts.get("p2p_heads", 2), opts.get("p2f_heads", 4))
        if level_configs is not None:
            if len(level_configs) != len(channels):
                raise ValueError(f"level_configs has {len(level_configs)} entries but {len(channels)} skip "
                                 f"levels were found ({[p.spec for p in probe.levels]})")
            self.pip_levels = nn.ModuleList()
            for i, (cfg, c) in enumerate(zip(level_configs, channels)):
                if int(cfg.get("channels", -1)) != c:
                    raise ValueError(f"level_configs[{i}] is for {cfg.get('channels')} channels but skip {i} "
                                     f"({probe.levels[i].spec}) has {c}")
                self.pip_levels.append(PIPLevel(**cfg))
            self._sizing_source = "level_configs"
        else:
            dims, sizes, self._sizing_source = level_sizes(
                type(backbone).__name__, channels, reductions, prompt_dims, prompt_sizes,
                patch_size=patch_size, max_prompt_dim=max_prompt_dim, heads=heads)
            t = len(self.degradations)
            try:
                self.pip_levels = nn.ModuleList(
                    PIPLevel(c, d, s, t, **opts) for c, d, s in zip(channels, dims, sizes))
            except TypeError as exc:
                raise ValueError(f"unknown PIP option in {sorted(opts)}: {exc}; PIP options are the PIPLevel "
                                 "arguments (p2p_heads, p2f_heads, ffn_expansion, prompt_reduce, prompt_divisor, "
                                 "use_degradation_prompt, use_basic_prompt, selective) plus patch_size and "
                                 "max_prompt_dim for sizing") from None
        ref = next(self.backbone.parameters(), None)
        if ref is not None:
            self.pip_levels.to(device=ref.device)
        self._notes = list(probe.notes)
        self._install_hooks()
        logger.info("wrapped %s with PIP on %d skip levels (%s)", type(backbone).__name__, len(self.pip_levels),
                    self._sizing_source)

    # ------------------------------------------------------------------ hooks
    def _install_hooks(self) -> None:
        producers: Dict[str, List[Tuple[int, int, Tuple[Any, ...], bool]]] = {}
        pre: Dict[str, List[Tuple[int, str]]] = {}
        self._watch: Dict[int, frozenset] = {}
        for i, plan in enumerate(self._plans):
            producers.setdefault(plan["producer"], []).append(
                (i, plan["occurrence"], tuple(plan["path"]), plan["strategy"] == "producer"))
            for name in plan["restore_modules"]:
                pre.setdefault(name, []).append((i, "restore"))
            for name in plan["skip_modules"]:
                pre.setdefault(name, []).append((i, "skip"))
            if plan["strategy"] == "intercept":
                self._watch[i] = frozenset(plan["skip_op_indices"])
        for key, (name, entries) in enumerate(producers.items()):
            self.backbone.get_submodule(name).register_forward_hook(_ProducerHook(self._uid, key, entries))
        for name, entries in pre.items():
            self.backbone.get_submodule(name).register_forward_pre_hook(_SwapPreHook(self._uid, entries),
                                                                        with_kwargs=True)

    def _remove_hooks(self) -> int:
        removed = 0
        for m in self.backbone.modules():
            for dname in ("_forward_hooks", "_forward_pre_hooks"):
                hooks = getattr(m, dname)
                for hid in [h for h, fn in hooks.items() if isinstance(fn, (_ProducerHook, _SwapPreHook))
                            and fn.uid == self._uid]:
                    del hooks[hid]
                    for extra in ("_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
                                  "_forward_hooks_always_called"):
                        getattr(m, extra, {}).pop(hid, None)
                    removed += 1
        return removed

    # ------------------------------------------------------------------ ω
    def _omega_for(self, omega: Any, x: Any) -> torch.Tensor:
        ref = x if isinstance(x, torch.Tensor) else next((t for _, t in _iter_tensors(x)), None)
        if ref is None:
            raise ValueError("the first argument of forward must be (or contain) the image batch tensor")
        if omega is None:
            omega = self._default_omega
            if omega is None:
                raise ValueError("omega is required: call model(x, omega) with labels, weights, names or a "
                                 "{name: weight} dict, or set a default with model.set_omega(...) "
                                 f"(types: {', '.join(self.degradations)})")
        dtype = ref.dtype if ref.is_floating_point() else torch.float32
        return to_omega(omega, self.degradations, batch_size=int(ref.shape[0]), device=ref.device, dtype=dtype)

    def set_omega(self, omega: Any) -> _OmegaContext:
        """Default ω for calls without one (``model(x)``); ``with model.set_omega(w): ...`` restores the old one."""
        if omega is not None:
            to_omega(omega, self.degradations)  # fail now, not at the next forward
        previous = self._default_omega
        self._default_omega = omega
        return _OmegaContext(self, previous)

    # ------------------------------------------------------------------ forward
    def forward(self, x: Any, omega: Any = None, *args: Any, **kwargs: Any) -> Any:
        """Run the backbone with PIP on its skips; extra arguments go to the backbone's forward."""
        if self._unwrapped:
            raise RuntimeError("this wrapper was unwrapped (its hooks are gone); use the backbone directly")
        if self._pip_disabled:
            return self.backbone(x, *args, **kwargs)
        run = _Run(self._uid, self._omega_for(omega, x), self.pip_levels,
                   [p.get("hooked_calls", 0) for p in self._plans])
        token = _ACTIVE.set(run)
        try:
            if self._watch:
                with _InterceptMode(run, self._watch):
                    out = self.backbone(x, *args, **kwargs)
            else:
                out = self.backbone(x, *args, **kwargs)
            if not all(run.applied):
                missing = [self._plans[i]["spec"] for i, a in enumerate(run.applied) if not a]
                raise RuntimeError(f"PIP was not applied at {missing} in this forward: the backbone took another "
                                   "path than during the probe; wrap with example_input= resembling real inputs "
                                   "or choose levels= explicitly")
            return out
        finally:
            _ACTIVE.reset(token)
            run.clear()

    # ------------------------------------------------------------------ PEFT-like helpers
    @contextlib.contextmanager
    def disable_pip(self) -> Iterator["PIPWrappedModel"]:
        """Inside this block ``model(x, ...)`` returns exactly the backbone's output."""
        self._pip_disabled += 1
        try:
            yield self
        finally:
            self._pip_disabled -= 1

    def freeze_backbone(self, freeze: bool = True) -> "PIPWrappedModel":
        """Stop (or with ``freeze=False`` restart) gradients for every backbone parameter."""
        for p in self.backbone.parameters():
            p.requires_grad_(not freeze)
        return self

    def unwrap(self) -> nn.Module:
        """Remove the hooks and return the original backbone (this wrapper is unusable afterwards)."""
        self._remove_hooks()
        self._unwrapped = True
        return self.backbone

    def pip_state_dict(self) -> Dict[str, torch.Tensor]:
        """The adapter only: ``pip_levels.*`` tensors (the same keys as in ``state_dict()``)."""
        from .adapter_io import pip_state_dict
        return pip_state_dict(self)

    def load_pip_state_dict(self, state: Mapping[str, torch.Tensor], strict: bool = True) -> Dict[str, List[str]]:
        """Load an adapter (keys with or without ``pip_levels.``); mismatches raise ``ValueError``."""
        from .adapter_io import load_pip_state_dict
        return load_pip_state_dict(self, state, strict=strict)

    def print_trainable_parameters(self) -> Dict[str, float]:
        """Report trainable / all parameters like PEFT, through the logger (INFO); returns the numbers.

        Library code never prints: configure logging (e.g. ``logging.basicConfig(level="INFO")``) to see
        the line, or use the returned ``summary``.
        """
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        pct = 100.0 * trainable / total if total else 0.0
        msg = f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {pct:.4f}"
        logger.info(msg)
        return {"trainable": trainable, "all": total, "trainable_percent": pct, "summary": msg}

    # ------------------------------------------------------------------ description
    @property
    def skip_info(self) -> List[Dict[str, Any]]:
        """One dict per level, shallowest first (like timm's ``feature_info``)."""
        out = []
        for i, (plan, level) in enumerate(zip(self._plans, self.pip_levels)):
            out.append({
                "index": i, "module": plan["spec"], "producer": plan["producer"], "channels": plan["channels"],
                "reduction": plan["reduction"], "merge": plan["merge"], "merge_op": plan["merge_op"],
                "merge_module": plan["merge_module"], "strategy": plan["strategy"],
                "skip_consumers": list(plan["skip_consumers"]), "other_consumers": list(plan["other_consumers"]),
                "probe_shape": list(plan["shape"]), "prompt_dim": level.prompt_dim,
                "prompt_size": level.prompt_size,
                "num_params": sum(p.numel() for p in level.parameters()),
            })
        return out

    def describe(self) -> str:
        """A readable summary: one line per skip level."""
        head = (f"PIPWrappedModel({type(self.backbone).__name__}): {len(self.pip_levels)} skip levels, "
                f"T={len(self.degradations)} ({', '.join(self.degradations)}); sizes: {self._sizing_source}")
        rows = [("level", "skip (producer)", "C", "red.", "merge", "where", "D", "s", "PIP params", "insertion")]
        for info in self.skip_info:
            where = info["merge_op"] + (f" in {info['merge_module']}" if info["merge_module"] else "")
            rows.append((str(info["index"]), info["module"], str(info["channels"]), f"{info['reduction']}",
                         info["merge"], where, str(info["prompt_dim"]), str(info["prompt_size"]),
                         f"{info['num_params']:,d}", info["strategy"]))
        widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
        lines = [head] + ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines += [f"  note: {n}" for n in self._notes]
        return "\n".join(lines)

    def extra_repr(self) -> str:
        return f"levels={[p['spec'] for p in self._plans]}, degradations={self.degradations}"

    def pip_config(self) -> Dict[str, Any]:
        """JSON-able description that :func:`pip_adapter.wrap.pipnet.build_pipnet` rebuilds the model from."""
        cls = type(self.backbone)
        return {
            "format": "pip_adapter.pipnet/1",
            "backbone": dict(self._backbone_config) if self._backbone_config is not None else None,
            "backbone_class": f"{cls.__module__}.{cls.__qualname__}",
            "degradations": list(self.degradations),
            "levels": [p["spec"] for p in self._plans],
            "pip_levels": [dict(level.config()) for level in self.pip_levels],
            "example_input_size": list(self._example_input_size) if self._example_input_size else None,
        }


def wrap_with_pip(model: nn.Module, degradations: Any = None, example_input: Optional[Any] = None,
                  levels: Optional[Sequence[Any]] = None, prompt_dims: Any = None, prompt_sizes: Any = None,
                  **pip_options: Any) -> PIPWrappedModel:
    """Detect the skip connections of ``model`` and put a PIP level on each.

    Args:
        model: any U-shaped network (its code is not changed; the wrapper adds module hooks).
        degradations: an int T or a list of type names (default: noise, rain, haze, blur, low_light).
        example_input: input for the one probe forward (default a 1×C×64×96 random tensor).
        levels: module names whose outputs are the skips (``"enc.0"``, ``"encoder[1]"`` for one element of a
            list output); overrides detection.
        prompt_dims / prompt_sizes: D and s per level (or one int for all); default the paper's table for
            NAFNet/Restormer, else the rule in :mod:`pip_adapter.wrap.sizing`.
        **pip_options: :class:`~pip_adapter.modules.pip_level.PIPLevel` options (``p2p_heads``,
            ``prompt_reduce``, ...), ``patch_size`` (training crop, for the sizing rule), ``max_prompt_dim``,
            ``backbone_config`` (``{"type": ..., **kwargs}`` recorded in ``pip_config()``),
            ``example_input_size`` (probe input size instead of ``example_input``, kept in ``pip_config()``).

    Returns a :class:`PIPWrappedModel`; ``model(x, omega)`` with ω as labels, B×T weights, names or a dict.
    Raises ``ValueError`` when no skip is found (the message says what the probe saw and how to override).
    """
    return PIPWrappedModel(model, degradations=degradations, example_input=example_input, levels=levels,
                           prompt_dims=prompt_dims, prompt_sizes=prompt_sizes, **pip_options)
