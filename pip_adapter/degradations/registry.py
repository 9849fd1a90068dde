"""Registry of degradation synthesisers: one per degradation type (the name is the ω type name).

A synthesiser turns a clean ``uint8`` H×W×3 RGB image into a degraded one of the same shape::

    @register_synthesizer("snow", variants=[{"density": 0.02}, {"density": 0.05}])
    def snow(img: np.ndarray, rng: np.random.Generator, density: float = 0.03) -> np.ndarray:
        ...

``variants`` (optional) are the parameter sets the built-in data uses for its validation sets (one val set
per variant, e.g. noise σ 15/25/50); ``online=True`` marks a synthesiser cheap enough to run on the fly
during training (the built-in train data then stores only clean images for it).  Randomness must come only
from ``rng`` so that results are reproducible from a seed.  A synthesiser that declares a ``depth``
parameter receives a depth map (H×W float in [0, 1], 1 = far) when the caller has one.
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from pip_adapter.omega import canonical_name
from pip_adapter.utils.registry import Registry

logger = logging.getLogger(__name__)

SynthFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Synthesizer:
    """A registered synthesiser and how the built-in data uses it."""

    name: str
    fn: SynthFn
    variants: List[Dict[str, Any]] = field(default_factory=lambda: [{}])
    online: bool = False
    description: str = ""

    @property
    def wants_depth(self) -> bool:
        """True when ``fn`` declares a ``depth`` parameter (haze-like models)."""
        return "depth" in inspect.signature(self.fn).parameters

    def __call__(self, img: np.ndarray, rng: np.random.Generator, **params: Any) -> np.ndarray:
        """Run the synthesiser with input/output checks (uint8 H×W×3 in, same shape and dtype out)."""
        check_image(img, f"input of synthesiser {self.name!r}")
        if "depth" in params and not self.wants_depth:
            params = {k: v for k, v in params.items() if k != "depth"}
        out = self.fn(img, rng, **params)
        if not isinstance(out, np.ndarray) or out.shape != img.shape or out.dtype != np.uint8:
            got = (getattr(out, "shape", None), getattr(out, "dtype", type(out).__name__))
            raise ValueError(f"synthesiser {self.name!r} must return a uint8 array of shape {img.shape}, "
                             f"got shape/dtype {got}")
        return out


SYNTHESIZERS: Registry = Registry("synthesiser", normalise=canonical_name,
                                  hint="Register one with @pip_adapter.degradations.register_synthesizer(name)")


def check_image(img: Any, what: str = "image") -> None:
    """Raise ``ValueError`` unless ``img`` is a uint8 H×W×3 array."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        got = (getattr(img, "shape", None), getattr(img, "dtype", type(img).__name__))
        raise ValueError(f"{what} must be a uint8 H×W×3 RGB array, got shape/dtype {got}")


def register_synthesizer(name: str, variants: Optional[Sequence[Mapping[str, Any]]] = None,
                         online: bool = False, description: str = "",
                         overwrite: bool = False) -> Callable[[SynthFn], SynthFn]:
    """Decorator registering ``fn(img_uint8_HWC_RGB, rng, **params) -> uint8 image`` under ``name``.

    ``name`` is canonicalised like ω names (``low-light`` → ``low_light``).  Registering a taken name
    raises ``ValueError`` unless ``overwrite=True``.
    """
    key = canonical_name(name)
    vlist = [dict(v) for v in (variants or [{}])]
    if not vlist:
        raise ValueError(f"synthesiser {key!r}: variants must not be empty (omit it for one default variant)")

    def deco(fn: SynthFn) -> SynthFn:
        if not callable(fn):
            raise ValueError(f"synthesiser {key!r} must be callable, got {type(fn).__name__}")
        taken = SYNTHESIZERS.get(key, None)
        same_fn = taken is not None and taken.fn is fn  # a re-imported plugin: its new options replace the old
        doc = description or (inspect.getdoc(fn) or "").split("\n")[0]
        SYNTHESIZERS.register(Synthesizer(key, fn, vlist, bool(online), doc), key, overwrite=overwrite or same_fn)
        logger.debug("registered synthesiser %s", key)
        return fn

    return deco


def get_synthesizer(name: str) -> Synthesizer:
    """The synthesiser registered under ``name``; an unknown name lists the known ones."""
    return SYNTHESIZERS.get(name)


def list_synthesizers() -> List[str]:
    """Names of all registered synthesisers, sorted."""
    return SYNTHESIZERS.names()


def unregister_synthesizer(name: str) -> None:
    """Remove a synthesiser (mainly for tests and plugins that replace one)."""
    SYNTHESIZERS.unregister(name)
