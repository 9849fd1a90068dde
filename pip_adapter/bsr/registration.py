"""Registering into BasicSR's registries through their public API only (``in``, ``register``)."""
from __future__ import annotations

from typing import Any, Optional


def register_once(registry: Any, obj: Any, name: Optional[str] = None) -> None:
    """Register ``obj`` in a BasicSR ``Registry`` under ``name`` (default ``obj.__name__``), once.

    BasicSR's ``register`` takes the name from ``__name__``; an object registered under another name (a backbone
    alias) goes in as a small factory function carrying that name, which BasicSR calls like the class.
    """
    name = name or obj.__name__
    if name in registry:
        return
    if getattr(obj, "__name__", None) != name:
        obj = _named_factory(obj, name)
    registry.register(obj)


def _named_factory(cls: Any, name: str) -> Any:
    def factory(*args: Any, **kwargs: Any) -> Any:
        return cls(*args, **kwargs)

    factory.__name__ = factory.__qualname__ = name
    factory.__doc__ = f"Builds {cls.__module__}.{cls.__qualname__} (registered under the alias {name!r})."
    return factory
