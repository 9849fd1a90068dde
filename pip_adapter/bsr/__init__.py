"""BasicSR glue: the only package of pip_adapter that imports ``basicsr``.

Importing it applies the torchvision compatibility alias, then registers with BasicSR (idempotently, so
re-imports and repeated :func:`register_all` calls are safe):

* archs: every backbone of ``pip_adapter.backbones.BACKBONES`` and ``PIPNet``;
* model: ``PIPModel`` (and the restore engineer's classifier model when present);
* dataset: ``MixedDegradationDataset``;
* loss: ``SmoothL1Loss``;
* metrics: ``calculate_psnr_aio`` and ``calculate_ssim_aio`` (scikit-image's 7×7 uniform SSIM);
* the ``LinearWarmupCosine`` schedule is handled by ``PIPModel``.

The ``basicsr train|test`` pipelines live in :mod:`pip_adapter.bsr.pipeline`.  Nothing in BasicSR is
patched at import; the pipelines swap their replacements in only while a command runs.
"""
from __future__ import annotations

from pip_adapter._compat import ensure_torchvision_functional_tensor

ensure_torchvision_functional_tensor()

import basicsr  # noqa: E402,F401  (after the alias)
from basicsr.utils.registry import (ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY,  # noqa: E402
                                    METRIC_REGISTRY, MODEL_REGISTRY)

from pip_adapter.data import MixedDegradationDataset  # noqa: E402

from . import classifier_model  # noqa: E402
from .archs import PIPNet, build_arch, register_archs  # noqa: E402
from .losses import SmoothL1Loss  # noqa: E402
from .metrics import calculate_psnr_aio, calculate_ssim_aio  # noqa: E402
from .checkpoints import plain_state  # noqa: E402
from .model import PIPModel  # noqa: E402
from .registration import register_once  # noqa: E402
from .scheduler import LinearWarmupCosine  # noqa: E402

def register_all() -> None:
    """Register everything pip_adapter offers BasicSR (idempotent; call again after loading plugins)."""
    register_archs()
    register_once(MODEL_REGISTRY, PIPModel)
    register_once(LOSS_REGISTRY, SmoothL1Loss)
    register_once(METRIC_REGISTRY, calculate_psnr_aio)
    register_once(METRIC_REGISTRY, calculate_ssim_aio)
    register_once(DATASET_REGISTRY, MixedDegradationDataset)
    classifier_model.register()


register_all()

__all__ = ["register_all", "PIPModel", "PIPNet", "build_arch", "SmoothL1Loss", "LinearWarmupCosine",
           "calculate_psnr_aio", "calculate_ssim_aio", "plain_state",
           "ARCH_REGISTRY", "DATASET_REGISTRY", "LOSS_REGISTRY", "METRIC_REGISTRY", "MODEL_REGISTRY"]
