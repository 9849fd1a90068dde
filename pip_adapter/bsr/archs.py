"""BasicSR architectures: every backbone of ``pip_adapter.backbones.BACKBONES`` and ``PIPNet``."""
from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from basicsr.utils.registry import ARCH_REGISTRY

from pip_adapter.backbones import BACKBONES, build_backbone
from pip_adapter.wrap import pipnet

from .registration import register_once


def build_arch(opt: Mapping[str, Any]) -> nn.Module:
    """Build ``{"type": name, **kwargs}`` through BasicSR's ``ARCH_REGISTRY``, then our ``BACKBONES``.

    Any architecture BasicSR knows (its own, a plugin's, ours) can therefore be wrapped by ``PIPNet``.
    """
    if isinstance(opt, nn.Module):
        return opt
    if not isinstance(opt, Mapping) or "type" not in opt:
        raise ValueError(f"a backbone option must be a dict with a 'type', got {opt!r}")
    kwargs = dict(opt)
    name = kwargs.pop("type")
    # BasicSR registers some of its own archs with a suffix (UNetDiscriminatorSN_basicsr) and looks the plain
    # name up with that suffix too; do the same, without its print
    for key in (name, f"{name}_basicsr"):
        if key in ARCH_REGISTRY:
            return ARCH_REGISTRY.get(key)(**kwargs)
    if name in BACKBONES:
        return build_backbone(opt)
    raise ValueError(f"unknown backbone type {name!r}: neither BasicSR's ARCH_REGISTRY nor pip_adapter's "
                     f"BACKBONES has it (known: {sorted(set(ARCH_REGISTRY.keys()) | set(BACKBONES))}); "
                     "register it or load its plugin (option-file key 'plugins:')")


def PIPNet(**opt: Any) -> nn.Module:  # noqa: N802 - BasicSR looks archs up by this name
    """BasicSR arch ``PIPNet``: a backbone (``backbone: {type: ..., ...}``) with PIP on its skips.

    All other keys go to :class:`pip_adapter.wrap.pipnet.PIPNet`; the backbone's ``type`` is resolved
    through ``ARCH_REGISTRY`` so any registered architecture works.
    """
    return pipnet.PIPNet(backbone_builder=build_arch, **opt)


def register_archs() -> None:
    """Register ``PIPNet`` and every backbone not yet in ``ARCH_REGISTRY`` (idempotent)."""
    register_once(ARCH_REGISTRY, PIPNet)
    for name, cls in list(BACKBONES.items()):
        register_once(ARCH_REGISTRY, cls, name)
