"""Degradation synthesisers: a registry (``register_synthesizer``), the five built-in models and
``motion_blur``.

Plugins add a type with ``@register_synthesizer("snow")`` on ``f(img_uint8_HWC_RGB, rng, **params)``;
``pip_adapter.data.prepare_builtin(..., degradations=[..., "snow"])`` then synthesises it like the others.
"""
from .registry import (SYNTHESIZERS, Synthesizer, check_image, get_synthesizer, list_synthesizers, register_synthesizer,
                       unregister_synthesizer)
from . import builtin as _builtin  # noqa: F401  (registers noise, rain, haze, blur, low_light, motion_blur)
from .builtin import (defocus_blur, depth_prior, gaussian_noise, haze, low_light, motion_blur, motion_kernel,
                      rain_streaks)

__all__ = [
    "SYNTHESIZERS", "Synthesizer", "check_image", "get_synthesizer", "list_synthesizers", "register_synthesizer",
    "unregister_synthesizer", "defocus_blur", "depth_prior", "gaussian_noise", "haze", "low_light", "motion_blur",
    "motion_kernel", "rain_streaks",
]
