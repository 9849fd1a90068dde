"""Degradation synthesisers: a registry (``register_synthesizer``), the five built-in models,
``motion_blur``, and the models closer to real photos (``photo``: ``*_photo``, ``camera_noise``, ``jpeg`` and
``compose`` for composites in physical order).

Plugins add a type with ``@register_synthesizer("snow")`` on ``f(img_uint8_HWC_RGB, rng, **params)``;
``pip_adapter.data.prepare_builtin(..., degradations=[..., "snow"])`` then synthesises it like the others.
"""
from .registry import (SYNTHESIZERS, Synthesizer, check_image, get_synthesizer, list_synthesizers, register_synthesizer,
                       unregister_synthesizer)
from . import builtin as _builtin  # noqa: F401  (registers noise, rain, haze, blur, low_light, motion_blur)
from .builtin import (defocus_blur, depth_prior, gaussian_noise, haze, low_light, motion_blur, motion_kernel,
                      rain_streaks)
from . import photo as _photo  # noqa: F401  (registers the *_photo synthesisers, camera_noise and jpeg)
from .photo import (PHOTO_SYNTHESIZERS, PHYSICAL_ORDER, blur_photo, camera_noise, compose, haze_photo, jpeg,
                    low_light_photo, noise_photo, physical_order, rain_photo)

__all__ = [
    "SYNTHESIZERS", "Synthesizer", "check_image", "get_synthesizer", "list_synthesizers", "register_synthesizer",
    "unregister_synthesizer", "defocus_blur", "depth_prior", "gaussian_noise", "haze", "low_light", "motion_blur",
    "motion_kernel", "rain_streaks", "PHOTO_SYNTHESIZERS", "PHYSICAL_ORDER", "blur_photo", "camera_noise",
    "compose", "haze_photo", "jpeg", "low_light_photo", "noise_photo", "physical_order", "rain_photo",
]
