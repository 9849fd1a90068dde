"""``build_network(opt)``: the one place that turns ``{"type": name, **kwargs}`` into a network.

It looks the type up in an ordered list of registries, first match wins:

1. ``BACKBONES`` (:mod:`pip_adapter.backbones`: NAFNet, Restormer, plugins' backbones);
2. ``NETWORKS`` (whole networks: ``PIPNet``, registered by :mod:`pip_adapter.wrap.pipnet`, and
   ``DegradationClassifier``, registered by :mod:`pip_adapter.restore.classifier`);
3. whatever higher layers append with :func:`add_network_registry` — importing :mod:`pip_adapter.bsr` appends
   BasicSR's ``ARCH_REGISTRY``, so ``PIPNet({"type": "UNetDiscriminatorSN", ...})`` works in Python as it does
   from an option file.

This module imports no higher layer: the registries come to it.  An unknown type raises
:class:`UnknownNetworkError` naming the type, the registries searched, the closest names and what to do.
"""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, List, Mapping, NamedTuple, Tuple

from torch import nn

from pip_adapter.backbones import BACKBONES, build_backbone
from pip_adapter.utils.registry import Registry, RegistryError

__all__ = ["NETWORKS", "UnknownNetworkError", "add_network_registry", "network_registries", "build_network"]


class _Source(NamedTuple):
    label: str   # for messages: "pip_adapter BACKBONES", "BasicSR ARCH_REGISTRY"
    registry: Any   # anything with ``name in reg``, ``reg.get(name)`` and ``reg.keys()``


def _check_network(obj: Any) -> None:
    if not callable(obj):
        raise ValueError(f"a network type must be a class or function returning an nn.Module, got {obj!r}")


NETWORKS: Registry = Registry("network type", check=_check_network,
                              hint="Backbones register with pip_adapter.backbones.register_backbone.")

_SOURCES: List[_Source] = [_Source("pip_adapter BACKBONES", BACKBONES), _Source("pip_adapter NETWORKS", NETWORKS)]
_NOT_LOADED_HINT = "import pip_adapter.bsr to add BasicSR's archs (ARCH_REGISTRY), "


class UnknownNetworkError(RegistryError):
    """No registry of :func:`network_registries` knows the type (a ``ValueError`` and a ``KeyError``)."""

    def __init__(self, message: str, type_name: str, searched: Tuple[str, ...]) -> None:
        super().__init__(message)
        self.type_name = type_name
        self.searched = searched


def add_network_registry(registry: Any, label: str) -> None:
    """Append ``registry`` to the ones :func:`build_network` searches (after those already there; idempotent).

    ``registry`` needs ``name in registry``, ``registry.get(name)`` (a class or function building an
    ``nn.Module`` from keyword arguments) and ``registry.keys()``; ``label`` names it in error messages.
    The BasicSR glue adds ``ARCH_REGISTRY`` this way when imported.
    """
    if not all(hasattr(registry, a) for a in ("__contains__", "get", "keys")):
        raise ValueError(f"add_network_registry: {registry!r} has no 'in', get() and keys()")
    if not any(s.registry is registry for s in _SOURCES):
        _SOURCES.append(_Source(str(label), registry))


def network_registries() -> Tuple[Tuple[str, Any], ...]:
    """``(label, registry)`` in search order."""
    return tuple(_SOURCES)


def _find(name: str) -> Tuple[str, Callable[..., Any]]:
    for label, registry in _SOURCES:
        if name in registry:
            return label, registry.get(name)
    searched = tuple(s.label for s in _SOURCES)
    known = sorted({str(k) for s in _SOURCES for k in s.registry.keys()})
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
    guess = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    basicsr = "" if any("BasicSR" in s.label for s in _SOURCES) else _NOT_LOADED_HINT
    raise UnknownNetworkError(
        f"unknown network type {name!r}: not in {', '.join(searched)}{guess} (known: {', '.join(known)}). "
        f"To build it, {basicsr}register it (pip_adapter.backbones.register_backbone) or load the plugin that "
        "does (--plugin, option-file key 'plugins:')", name, searched)


def build_network(opt: Mapping[str, Any]) -> nn.Module:
    """Build ``{"type": name, **kwargs}`` with the first registry that knows ``name`` (``opt`` is not modified).

    Unknown types raise :class:`UnknownNetworkError`; arguments the constructor does not take raise
    ``ValueError`` with its signature.
    """
    if not isinstance(opt, Mapping) or not isinstance(opt.get("type"), str):
        raise ValueError(f"build_network expects an option dict with a 'type' name, like "
                         f"{{'type': 'NAFNet', 'width': 32}}, got {opt!r}"[:300])
    kwargs = dict(opt)
    name = kwargs.pop("type")
    label, factory = _find(name)
    if factory is BACKBONES.get(name, None):
        return build_backbone(opt)   # its own argument check and messages
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):   # a builtin or a C extension: let the call say what is wrong
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as err:
            raise ValueError(f"build_network: bad arguments for {name} ({label}): {err}; its signature is "
                             f"{name}{signature}") from None
    net = factory(**kwargs)
    if not isinstance(net, nn.Module):
        raise ValueError(f"build_network: {name} ({label}) returned {type(net).__name__}, not an nn.Module")
    return net
