"""Pure-PyTorch backbones with the official argument names and state-dict layouts, and their registry.

``BACKBONES`` maps a name to a class; ``build_backbone({"type": name, **kwargs})`` builds one.
The BasicSR glue (``pip_adapter.bsr``) registers every entry with BasicSR's ``ARCH_REGISTRY``;
nothing here imports basicsr.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, TypeVar, overload

from torch import nn

from pip_adapter.utils.registry import Registry

from .nafnet import NAFNet
from .restormer import Restormer
from .restormer_release import RestormerPIPRelease

__all__ = ["BACKBONES", "register_backbone", "build_backbone", "NAFNet", "Restormer", "RestormerPIPRelease"]


def _check_backbone(cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"register_backbone expects an nn.Module subclass, got {cls!r}")


BACKBONES: Registry = Registry("backbone type", check=_check_backbone,
                               hint="Register new ones with pip_adapter.backbones.register_backbone.")

_M = TypeVar("_M", bound=type)


@overload
def register_backbone(cls: _M, name: str | None = None) -> _M: ...
@overload
def register_backbone(cls: str | None = None, name: None = None) -> Callable[[_M], _M]: ...


def register_backbone(cls: Any = None, name: str | None = None) -> Any:
    """Register an ``nn.Module`` class as a backbone (under ``name``, default its class name).

    Usable as ``register_backbone(MyNet)``, ``register_backbone(MyNet, "alias")``, ``@register_backbone``
    or ``@register_backbone("alias")``. Registering the same class under the same name again is a no-op;
    a different class under a taken name raises ``ValueError``. Returns the class (or a decorator).
    """
    return BACKBONES.register(cls, name)


def build_backbone(opt: Mapping[str, Any]) -> nn.Module:
    """Build a registered backbone from ``{"type": name, **constructor kwargs}`` (``opt`` is not modified)."""
    if not isinstance(opt, Mapping):
        raise ValueError(f"build_backbone expects a dict like {{'type': 'NAFNet', 'width': 32}}, got {type(opt).__name__}")
    kwargs = dict(opt)
    name = kwargs.pop("type", None)
    if name is None:
        raise ValueError(f"build_backbone: the option dict has no 'type'; known types: {BACKBONES.names()}")
    cls = BACKBONES.get(name)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:
        raise ValueError(f"build_backbone: bad arguments for {name}: {err}; "
                         f"its signature is {name}{inspect.signature(cls)}") from None
    return cls(**kwargs)


for _cls in (NAFNet, Restormer, RestormerPIPRelease):
    BACKBONES.register(_cls)
del _cls
