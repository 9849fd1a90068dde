"""BasicSR architectures: every backbone of ``pip_adapter.backbones.BACKBONES`` and ``PIPNet``."""
from __future__ import annotations

from typing import Any, Iterable

from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY

from pip_adapter.backbones import BACKBONES
from pip_adapter.networks import add_network_registry, build_network
from pip_adapter.wrap import pipnet

from .registration import register_once

# BasicSR's arch PIPNet is the wrapper's class: its backbone goes through build_network, which knows
# ARCH_REGISTRY once this module has added it (below)
PIPNet = pipnet.PIPNet


class BasicSRArchs:
    """``ARCH_REGISTRY`` as :func:`pip_adapter.networks.build_network` reads it.

    BasicSR registers some of its own archs with a suffix (``UNetDiscriminatorSN_basicsr``) and finds the plain
    name with that suffix too; so does this view, without BasicSR's print.
    """

    def _key(self, name: str) -> str | None:
        return next((k for k in (name, f"{name}_basicsr") if k in ARCH_REGISTRY), None)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) is not None

    def get(self, name: str) -> Any:
        """The class (or function) registered under ``name`` (or ``name_basicsr``)."""
        key = self._key(name)
        if key is None:
            raise KeyError(name)
        return ARCH_REGISTRY.get(key)

    def keys(self) -> Iterable[str]:
        """The names BasicSR knows, as this view finds them (without the ``_basicsr`` suffix)."""
        return sorted({k[:-len("_basicsr")] if k.endswith("_basicsr") else k for k in ARCH_REGISTRY.keys()})


BASICSR_ARCHS = BasicSRArchs()
add_network_registry(BASICSR_ARCHS, "BasicSR ARCH_REGISTRY")


def build_arch(opt: Any) -> nn.Module:
    """An ``nn.Module`` as it is, else ``{"type": name, **kwargs}`` through
    :func:`~pip_adapter.networks.build_network` (our backbones and networks, then ``ARCH_REGISTRY``)."""
    if isinstance(opt, nn.Module):
        return opt
    return build_network(opt)


def register_archs() -> None:
    """Register ``PIPNet`` and every backbone not yet in ``ARCH_REGISTRY`` (idempotent)."""
    register_once(ARCH_REGISTRY, PIPNet)
    for name, cls in list(BACKBONES.items()):
        register_once(ARCH_REGISTRY, cls, name)
