"""Compatibility fixes that must run before ``basicsr`` is first imported.

basicsr 1.4.2 imports ``torchvision.transforms.functional_tensor``, a module
removed in torchvision 0.17.  We register an alias for it in ``sys.modules``
pointing at ``torchvision.transforms.functional`` (which still provides
``rgb_to_grayscale`` with the same signature).  Nothing else is patched here, so
importing :mod:`pip_adapter` has no other global side effect.

Importing :mod:`pip_adapter` only installs :func:`install_lazy_alias`: a finder at the end of
``sys.meta_path`` that makes the alias when something imports the removed module, so that
``import pip_adapter`` (and every ``pip-adapter --help``) stays free of torch and torchvision.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any, Optional, Sequence

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
    sys.modules[_ALIAS] = _make_shim(functional)


def _make_shim(functional: types.ModuleType) -> types.ModuleType:
    shim = types.ModuleType(_ALIAS)
    shim.__doc__ = "pip_adapter alias of torchvision.transforms.functional (removed module)."
    shim.rgb_to_grayscale = functional.rgb_to_grayscale  # type: ignore[attr-defined]
    shim.__getattr__ = lambda name: getattr(functional, name)  # type: ignore[assignment]
    return shim



class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves the removed module to the alias, and only when the real one cannot be found (it sits
    after every other finder, so an older torchvision that still ships the module keeps its own)."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None,
                  target: Any = None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname != _ALIAS:
            return None
        try:
            importlib.import_module("torchvision.transforms.functional")
        except ImportError:  # torchvision missing: basicsr will report it itself
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _make_shim(importlib.import_module("torchvision.transforms.functional"))

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install_lazy_alias() -> None:
    """Make the alias on demand, when the removed module is first imported (idempotent; imports nothing now)."""
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
