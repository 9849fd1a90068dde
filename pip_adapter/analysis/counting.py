"""Parameter and MAC counting: true counts and the "thop-style" convention of the paper's tables.

Three numbers per model (spec §7):

* **true parameters** — every element of ``model.parameters()`` (per top-level child and in total);
* **thop-style** parameters and MACs (``thop_params``, ``macs``) — what ``thop.profile`` (0.1.x rules)
  reports: only modules of standard layer types that actually run are counted — ``nn.Conv*``/
  ``nn.ConvTranspose*`` (MACs = output elements × in_channels/groups × kernel size, bias not counted),
  ``nn.Linear`` (output elements × in_features), standard norm layers (``nn.BatchNorm*``, ``nn.LayerNorm``,
  ``nn.GroupNorm``, ``nn.InstanceNorm*``: 2 ops per element, 4 when affine) and average pooling.  Bare
  ``nn.Parameter``s (prompts, LayerNorms built from bare weights such as Restormer's, attention temperatures,
  top-m scalars), functional ops (``F.interpolate``, activations) and the attention matrix products are not
  counted.  A module's parameters count once, its MACs once per call;
* **all MACs** (``all_macs``) — every multiply-accumulate of convolutions, linear layers and matrix
  products (``mm``/``bmm``/``matmul``/SDPA, so the attention products too), read at the ATen level with
  the per-op formulas of ``torch.utils.flop_counter`` (FLOPs / 2).  Element-wise work is not counted.  This
  pass runs without module hooks, so it counts the code that really runs, fast paths included (for PIP: the
  output projection folded into the attention's mixing matrix, the query conv on the unpadded feature).

Counting runs one forward pass without gradients in eval mode (the mode is restored afterwards), two when
``all_macs`` is on.  It also works on the ``meta`` device (shapes only, no memory, no compute): build the
model under ``torch.device("meta")`` (or ``.to("meta")``) and pass meta inputs; a full Restormer at 256² is then
counted in about a second.  Checked against spec §7 at 1×3×256×256: Restormer 26,096,544 thop-style
parameters / 140.99 G MACs; the PIP modules at Restormer levels 2,659,380 / 15.78 G; PIP_Restormer as
released 26.82 M / 154.73 G (paper 154.72 G).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from pip_adapter.modules.attention import unfused

logger = logging.getLogger(__name__)

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_ADAPTIVE_AVGPOOL = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
STANDARD_LAYERS = _CONV + (nn.Linear,) + _NORM + _AVGPOOL + _ADAPTIVE_AVGPOOL


@dataclass
class CountReport:
    """Result of :func:`count_model` (integers; ``summary()`` gives a readable text)."""

    params: int
    trainable_params: int
    params_per_module: Dict[str, int]
    thop_params: int
    macs: int
    thop_per_module: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    all_macs: Optional[int] = None
    all_macs_per_op: Dict[str, int] = field(default_factory=dict)

    @property
    def thop_macs(self) -> int:
        """Alias of ``macs`` (the thop-style MACs)."""
        return self.macs

    def get(self, key: str, default: Any = None) -> Any:
        """Dict-style access, so callers may treat the report like a mapping."""
        return getattr(self, key, default)

    def summary(self) -> str:
        """Short human-readable text (M = 1e6, G = 1e9)."""
        lines = [f"true parameters      {self.params:,} ({self.params / 1e6:.2f} M)",
                 f"thop-style params    {self.thop_params:,} ({self.thop_params / 1e6:.2f} M)",
                 f"thop-style MACs      {self.macs / 1e9:.2f} G"]
        if self.all_macs is not None:
            lines.append(f"all MACs (+ matmuls) {self.all_macs / 1e9:.2f} G")
        for name, n in self.params_per_module.items():
            tp, tm = self.thop_per_module.get(name, (0, 0))
            lines.append(f"  {name:<28} params {n:>12,}  thop params {tp:>12,}  MACs {tm / 1e9:8.3f} G")
        return "\n".join(lines)


def _thop_macs(module: nn.Module, inputs: Tuple[Any, ...], output: Any) -> int:
    if isinstance(module, _CONV):
        k = math.prod(module.kernel_size)
        return int(output.numel() * (module.in_channels // module.groups) * k)
    if isinstance(module, nn.Linear):
        return int(output.numel() * module.in_features)
    if isinstance(module, _NORM):
        x = inputs[0]
        affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
        return int(2 * x.numel() * (2 if affine else 1))
    if isinstance(module, _AVGPOOL):
        return int(output.numel())
    if isinstance(module, _ADAPTIVE_AVGPOOL):
        x = inputs[0]
        spatial_in = x.shape[-output.dim() + 2:] if output.dim() > 2 else x.shape[-1:]
        spatial_out = output.shape[2:] if output.dim() > 2 else output.shape[-1:]
        kernel = math.prod(int(i) // max(1, int(o)) for i, o in zip(spatial_in, spatial_out))
        return int((kernel + 1) * output.numel())
    return 0


class _MacCounter(TorchDispatchMode):
    """FLOPs of every ATen op that PyTorch's flop counter knows (conv, mm, bmm, addmm, SDPA, ...).

    ``FlopCounterMode`` itself tracks modules with autograd hooks, which fails under ``no_grad`` on views
    of parameters; only its per-op formulas (``flop_registry``) are used here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flops: Dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - dispatch protocol
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            name = func._overloadpacket.__name__
            self.flops[name] = self.flops.get(name, 0) + int(formula(*args, **kwargs, out_val=out))
        return out


def _owner(name: str) -> str:
    return name.split(".", 1)[0] if name else "(root)"


def _as_inputs(model: nn.Module, inputs: Union[Sequence[int], torch.Tensor, Sequence[Any], None]
               ) -> Tuple[Any, ...]:
    if isinstance(inputs, torch.Tensor):
        return (inputs,)
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(i, int) for i in inputs):
        ref = next(model.parameters(), None)
        kw = {} if ref is None else {"device": ref.device, "dtype": ref.dtype if ref.is_floating_point() else None}
        return (torch.rand(*inputs, generator=torch.Generator().manual_seed(0)).to(**{k: v for k, v in kw.items()
                                                                                       if v is not None}),)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs)
    raise ValueError("count_model needs an input size (e.g. (1, 3, 256, 256)), a tensor or a tuple of inputs, "
                     f"got {type(inputs).__name__}")


def count_model(model: nn.Module, inputs: Union[Sequence[int], torch.Tensor, Sequence[Any]] = (1, 3, 256, 256),
                kwargs: Optional[Mapping[str, Any]] = None, all_macs: bool = True) -> CountReport:
    """Count ``model``'s parameters and MACs on one forward pass (see the module docstring).

    Args:
        model: any ``nn.Module``.
        inputs: an input size (a random input of that size is made), one tensor, or a tuple of positional
            inputs (e.g. ``(z, omega)`` for a :class:`~pip_adapter.modules.PIPLevel`).
        kwargs: keyword inputs of the forward (e.g. ``{"omega": ...}``).
        all_macs: also count every MAC including matrix products (one more forward pass).
    """
    args = _as_inputs(model, inputs)
    kwargs = dict(kwargs or {})
    params_per_module: Dict[str, int] = {}
    for name, p in model.named_parameters():
        params_per_module[_owner(name)] = params_per_module.get(_owner(name), 0) + p.numel()
    params = sum(params_per_module.values())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)

    names = {m: n for n, m in model.named_modules()}
    ran: Dict[nn.Module, int] = {}

    def hook(module: nn.Module, inp: Tuple[Any, ...], out: Any) -> None:
        ran[module] = ran.get(module, 0) + _thop_macs(module, inp, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, STANDARD_LAYERS)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), unfused(model):   # the hooks must see every module the fast paths fold away
            model(*args, **kwargs)
        for h in handles:
            h.remove()
        handles = []
        total_all: Optional[int] = None
        per_op: Dict[str, int] = {}
        if all_macs:
            counter = _MacCounter()
            with torch.no_grad(), counter:
                model(*args, **kwargs)
            per_op = {k: v // 2 for k, v in counter.flops.items()}
            total_all = sum(per_op.values())
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    thop_per_module: Dict[str, Tuple[int, int]] = {}
    thop_params = thop_macs = 0
    for module, macs in ran.items():
        n_params = sum(p.numel() for p in module.parameters())
        owner = _owner(names.get(module, ""))
        tp, tm = thop_per_module.get(owner, (0, 0))
        thop_per_module[owner] = (tp + n_params, tm + macs)
        thop_params += n_params
        thop_macs += macs
    report = CountReport(params=params, trainable_params=trainable, params_per_module=params_per_module,
                         thop_params=thop_params, macs=thop_macs, thop_per_module=thop_per_module,
                         all_macs=total_all, all_macs_per_op=per_op)
    logger.debug("counted %s:\n%s", type(model).__name__, report.summary())
    return report
