"""``wrap_with_pip``: put a PIP level on every skip connection of a U-shaped network, without editing its code.

The wrapped backbone runs its own ``forward``; a few module hooks (planned once by the probe in
:mod:`pip_adapter.wrap.detect`) replace the skip tensor ``Z`` by ``Ẑ = PIP(Z, ω)`` on the skip branch only:

* ``producer`` levels: the module making ``Z`` returns ``Ẑ`` and pre-hooks on its other later consumers
  (e.g. the downsampling conv) give them ``Z`` back;
* ``consumer`` levels: a pre-hook on the skip-branch module (a gate, a decoder taking a feature list) swaps
  ``Z`` for ``Ẑ`` in its arguments;
* ``intercept`` levels (skip branch in plain functions, or ``Z`` made by a plain function): a torch-function
  mode, entered by ``forward`` only when such levels exist, swaps ``Z`` for ``Ẑ`` in the operations the probe
  found on the skip branch (no module boundary exists there to hook).

The hooks are registered once, kept as :class:`~torch.utils.hooks.RemovableHandle` objects and removed by
handle.  Each hook holds the wrapper and reads the per-call state (ω and the tensors of one forward, a
:class:`_Run`) from ``wrapper._run``, which ``forward`` sets and clears in ``finally``: nothing survives a
forward, a bare backbone call (``model.backbone(x)``) finds no run and is the original network, and the
whole mechanism is plain Python that ``torch.compile(fullgraph=True)`` and ``torch.export`` trace (ω is an
ordinary tensor input; no data-dependent branch).  ``deepcopy``/pickle copy hooks and wrapper together.
DataParallel replicas run in threads and share the original's hooks: a replica publishes its run in a
thread-local slot that the hooks read when their own wrapper has none (eager only).  The hooks and the state of
one forward live in :mod:`pip_adapter.wrap.hooks`; this module holds the model that installs and drives them.
"""
from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..modules.pip_level import PIPLevel
from ..omega import normalise_names, to_omega
from ..utils.messages import info_once
from .adapter_io import load_pip_state_dict, pip_state_dict
from .config import PIPConfig
from .detect import LevelPlan, default_probe_input, probe_skips
from .hooks import (_REPLICA_RUNS, CaptureEntry, OpCaptureEntry, SwapEntry, _first_tensor, _InterceptMode,
                    _ProducerHook, _Run, _SwapPreHook)
from .extend import apply_trainable
from .sizing import DEFAULT_MAX_PROMPT_DIM, DEFAULT_PATCH_SIZE, level_sizes

logger = logging.getLogger(__name__)

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
        self._run: Optional[_Run] = None
        self._handles: List[RemovableHandle] = []
        self._backbone_config = dict(backbone_config) if backbone_config is not None else None
        if isinstance(example_input_size, int):
            example_input_size = [example_input_size]
        self._example_input_size = list(example_input_size) if example_input_size is not None else None

        if example_input is None and example_input_size is not None:
            example_input = default_probe_input(backbone, example_input_size)
        probe = probe_skips(backbone, example_input, levels)
        self._plans: List[LevelPlan] = list(probe.levels)
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
        # the wrapper takes the backbone's mode (a backbone wrapped in eval mode gives an eval-mode model)
        self.training = backbone.training
        self.pip_levels.train(backbone.training)
        said = (f"wrapped {type(backbone).__name__} with PIP on {len(self.pip_levels)} skip levels "
                f"({self._sizing_source})" + "".join(f"; skip detection: {n}" for n in self._notes))
        if self._sizing_source == "level_configs":
            logger.debug("%s", said)  # rebuilt from a saved configuration (a checkpoint): nothing new to say
        else:
            info_once(logger, said)

    # ------------------------------------------------------------------ hooks
    def _install_hooks(self) -> None:
        captures: Dict[str, List[CaptureEntry]] = {}
        swaps: Dict[str, List[SwapEntry]] = {}
        watch: Dict[int, frozenset] = {}
        op_captures: List[OpCaptureEntry] = []
        for i, plan in enumerate(self._plans):
            if plan.capture_op:
                op_captures.append(OpCaptureEntry(i, plan.capture_op, plan.capture_occurrence, tuple(plan.path)))
            else:
                captures.setdefault(plan.producer, []).append(
                    CaptureEntry(i, plan.occurrence, tuple(plan.path), plan.strategy == "producer"))
            for name in plan.restore_modules:
                swaps.setdefault(name, []).append(SwapEntry(i, "restore"))
            for name in plan.skip_modules:
                swaps.setdefault(name, []).append(SwapEntry(i, "skip"))
            if plan.strategy == "intercept":
                watch[i] = frozenset(plan.skip_op_indices)
        self._watch = watch
        self._op_captures = tuple(op_captures)
        for key, (name, entries) in enumerate(captures.items()):
            self._handles.append(self.backbone.get_submodule(name).register_forward_hook(
                _ProducerHook(self, key, entries)))
        for name, entries in swaps.items():
            self._handles.append(self.backbone.get_submodule(name).register_forward_pre_hook(
                _SwapPreHook(self, entries), with_kwargs=True))

    def _remove_hooks(self) -> int:
        removed = len(self._handles)
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return removed

    # ------------------------------------------------------------------ ω
    def _omega_for(self, omega: Any, x: Any) -> torch.Tensor:
        ref = _first_tensor(x)
        if ref is None:
            raise ValueError("the first argument of forward must be (or contain) the image batch tensor")
        if omega is None:
            omega = self._default_omega
            if omega is None:
                raise ValueError("omega is required: call model(x, omega) with labels, weights, names or a "
                                 "{name: weight} dict, or set a default with model.set_omega(...) "
                                 f"(types: {', '.join(self.degradations)})")
        dtype = ref.dtype if ref.is_floating_point() else torch.float32
        # the batch size stays symbolic under torch.compile / export (no int()): a new batch size is no new graph
        return to_omega(omega, self.degradations, batch_size=ref.shape[0], device=ref.device, dtype=dtype)

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
        run = _Run(self._omega_for(omega, x), self.pip_levels, [p.hooked_calls for p in self._plans])
        replica = getattr(self, "_is_replica", False)   # set by DataParallel on its replicas (threads)
        if replica:
            if getattr(_REPLICA_RUNS, "runs", None) is None:
                _REPLICA_RUNS.runs = {}
            _REPLICA_RUNS.runs[self._uid] = run
        else:
            self._run = run
        try:
            if self._watch or self._op_captures:
                with _InterceptMode(run, self._watch, self._op_captures):
                    out = self.backbone(x, *args, **kwargs)
            else:
                out = self.backbone(x, *args, **kwargs)
            if not all(run.applied):
                missing = [self._plans[i].spec for i, a in enumerate(run.applied) if not a]
                raise RuntimeError(f"PIP was not applied at {missing} in this forward: the backbone took another "
                                   "path than during the probe; wrap with example_input= resembling real inputs "
                                   "or choose levels= explicitly")
            return out
        finally:
            if replica:
                _REPLICA_RUNS.runs.pop(self._uid, None)
            else:
                self._run = None

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

    def set_trainable(self, mode: str = "new_prompts") -> List[nn.Parameter]:
        """Fine-tuning policy (like PEFT's ``set_requires_grad``): ``new_prompts`` (only the prompts of added
        types), ``pip`` (every PIP level) or ``all``; returns the trainable parameters.  Same as
        :func:`pip_adapter.wrap.extend.apply_trainable`."""
        return apply_trainable(self, mode)

    def unwrap(self) -> nn.Module:
        """Remove the hooks and return the original backbone (this wrapper is unusable afterwards)."""
        self._remove_hooks()
        self._unwrapped = True
        return self.backbone

    def pip_state_dict(self) -> Dict[str, torch.Tensor]:
        """The adapter only: ``pip_levels.*`` tensors (the same keys as in ``state_dict()``)."""
        return pip_state_dict(self)

    def load_pip_state_dict(self, state: Mapping[str, torch.Tensor], strict: bool = True) -> Dict[str, List[str]]:
        """Load an adapter (keys with or without ``pip_levels.``); mismatches raise ``ValueError``."""
        return load_pip_state_dict(self, state, strict=strict)

    def get_nb_trainable_parameters(self) -> Tuple[int, int]:
        """``(trainable, all)`` parameter counts, as PEFT's method of that name (shared tensors counted once)."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def print_trainable_parameters(self) -> Dict[str, Any]:
        """Print ``trainable params: … || all params: … || trainable%: …`` as PEFT does; returns the numbers.

        A method the user calls to see the line, so it prints (library code elsewhere logs).  The returned
        dict (``trainable``, ``all``, ``trainable_percent``, ``summary``: the printed line) is for code.
        """
        trainable, total = self.get_nb_trainable_parameters()
        pct = 100.0 * trainable / total if total else 0.0
        msg = f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {pct:.4f}"
        print(msg)
        return {"trainable": trainable, "all": total, "trainable_percent": pct, "summary": msg}

    # ------------------------------------------------------------------ description
    @property
    def skip_info(self) -> List[Dict[str, Any]]:
        """One dict per level, shallowest first (like timm's ``feature_info``)."""
        out = []
        for i, (plan, level) in enumerate(zip(self._plans, self.pip_levels)):
            out.append({
                "index": i, "module": plan.spec, "producer": plan.producer, "channels": plan.channels,
                "reduction": plan.reduction, "merge": plan.merge, "merge_op": plan.merge_op,
                "merge_module": plan.merge_module, "strategy": plan.strategy,
                "skip_consumers": list(plan.skip_consumers), "other_consumers": list(plan.other_consumers),
                "probe_shape": list(plan.shape), "prompt_dim": level.prompt_dim,
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
        return f"levels={[p.spec for p in self._plans]}, degradations={self.degradations}"

    def pip_config(self) -> Dict[str, Any]:
        """JSON-able description that :func:`pip_adapter.wrap.pipnet.build_pipnet` rebuilds the model from
        (``PIPConfig.to_dict()``; :meth:`pip_config_object` gives the :class:`PIPConfig` itself)."""
        return self.pip_config_object().to_dict()

    def pip_config_object(self) -> PIPConfig:
        """This model's :class:`~pip_adapter.wrap.config.PIPConfig`."""
        cls = type(self.backbone)
        return PIPConfig(
            backbone=dict(self._backbone_config) if self._backbone_config is not None else None,
            backbone_class=f"{cls.__module__}.{cls.__qualname__}",
            degradations=list(self.degradations),
            levels=[p.spec for p in self._plans],
            pip_levels=[dict(level.config()) for level in self.pip_levels],
            example_input_size=list(self._example_input_size) if self._example_input_size else None)


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
