"""What "a PIP model" is, in one place: the checks and accessors that ``Restorer``, ``PIPModel``, ``inspect``,
the analysis and the extension all use, so that a wrapped model, a ``PIPNet``, a hand-written PIP network and
any of them inside DataParallel / DDP / ``torch.compile`` are recognised the same way."""
from __future__ import annotations

from typing import List

from torch import nn

from pip_adapter.omega import placeholder_names
from pip_adapter.utils.state_dict import strip_parallel_prefix  # noqa: F401 - part of the protocol

_PARALLEL = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def bare_model(model: nn.Module) -> nn.Module:
    """The network inside DataParallel / DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, _PARALLEL):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):   # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def is_pip_level(module: nn.Module) -> bool:
    """A PIP level by its contract (``all_degradation_prompts`` and ``universal_prompt``), not by its class."""
    return (callable(getattr(module, "all_degradation_prompts", None))
            and callable(getattr(module, "universal_prompt", None)))


def _levels(model: nn.Module) -> List[nn.Module]:
    model = bare_model(model)
    levels = getattr(model, "pip_levels", None)
    if isinstance(levels, (nn.ModuleList, nn.ModuleDict, list, tuple)):
        found = [m for m in (levels.values() if isinstance(levels, nn.ModuleDict) else levels) if is_pip_level(m)]
        if found:
            return found
    return [m for m in model.modules() if is_pip_level(m)]


def is_pip_model(model: nn.Module) -> bool:
    """True when ``model`` takes ω: it has a ``pip_levels`` attribute (the wrapper's contract, even if empty)
    or holds PIP levels; a plain backbone does not."""
    return hasattr(bare_model(model), "pip_levels") or bool(_levels(model))


def pip_levels_of(model: nn.Module) -> List[nn.Module]:
    """The PIP levels of ``model``, shallowest first (``model.pip_levels`` when it has them); ``ValueError``
    naming the model when there is none."""
    levels = _levels(model)
    if not levels:
        raise ValueError(f"{type(bare_model(model)).__name__} holds no PIP levels; this needs a model wrapped with "
                         "PIP (wrap_with_pip / PIPNet, or an exported PIP checkpoint)")
    return levels


def degradation_names(model: nn.Module) -> List[str]:
    """The ω column names: ``model.degradations``, else ``type0..type{T-1}`` from the levels; [] without PIP."""
    names = getattr(bare_model(model), "degradations", None)
    if names:
        return list(names)
    levels = _levels(model)
    return placeholder_names(levels[0].num_types) if levels else []
