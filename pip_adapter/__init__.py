"""pip-adapter: Prompt-In-Prompt modules for any U-shaped image-restoration network.

Importing this package installs one compatibility alias, made when first needed, so that
``import basicsr`` (1.4.2) works with current torchvision; see :mod:`pip_adapter._compat`.
Heavy sub-modules are imported lazily: ``import pip_adapter`` imports neither torch nor torchvision.
"""
from __future__ import annotations

import importlib
from typing import Any

from ._compat import install_lazy_alias

install_lazy_alias()

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "PIPLevel": "pip_adapter.modules.pip_level",
    "DirectionalDecoupledLoss": "pip_adapter.modules.ddl_loss",
    "NAFNet": "pip_adapter.backbones.nafnet",
    "Restormer": "pip_adapter.backbones.restormer",
    "wrap_with_pip": "pip_adapter.wrap.wrapper",
    "PIPWrappedModel": "pip_adapter.wrap.wrapper",
    "build_pipnet": "pip_adapter.wrap.pipnet",
    "to_omega": "pip_adapter.omega",
    "DEFAULT_DEGRADATIONS": "pip_adapter.omega",
    "count_model": "pip_adapter.analysis.counting",
    "extend_degradations": "pip_adapter.wrap.extend",
    "Restorer": "pip_adapter.restore.restorer",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pip_adapter' has no attribute {name!r}")
