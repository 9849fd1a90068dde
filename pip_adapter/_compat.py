"""Compatibility fixes that must run before ``basicsr`` is first imported.

basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, a module
removed in torchvision 0.17.  We register an alias for it in ``sys.modules``
pointing at ``torchvision.transforms.functional`` (which still provides
``rgb_to_grayscale`` with the same signature).  Nothing else is patched here, so
importing :mod:`pip_adapter` has no other global side effect.
"""
from __future__ import annotations

import importlib
import sys
import types

_ALIAS = "torchvision.transforms.functional_tensor"


def ensure_torchvision_functional_tensor() -> None:
    """Make ``import torchvision.transforms.functional_tensor`` work (idempotent)."""
    if _ALIAS in sys.modules:
        return
    try:
        importlib.import_module(_ALIAS)
        return
    except ImportError:
        pass
    try:
        functional = importlib.import_module("torchvision.transforms.functional")
    except ImportError:  # torchvision missing: basicsr will report it itself
        return
    shim = types.ModuleType(_ALIAS)
    shim.__doc__ = "pip_adapter alias of torchvision.transforms.functional (removed module)."
    shim.rgb_to_grayscale = functional.rgb_to_grayscale  # type: ignore[attr-defined]
    shim.__getattr__ = lambda name: getattr(functional, name)  # type: ignore[assignment]
    sys.modules[_ALIAS] = shim

