"""``Registry``: one name → object map per kind of thing (backbones, synthesisers, networks).

The shape is BasicSR's ``Registry`` (``register`` as a call or a decorator, ``get``, ``in``, ``keys``); the
differences are the errors (what was asked, what is known, the closest names, what to do) and a mapping
interface, so ``dict(REG)``, ``REG[name]`` and ``len(REG)`` work as they did on the plain dicts it replaces
(``REG[name] = obj`` registers, with ``register``'s checks).
"""
from __future__ import annotations

import difflib
from collections.abc import MutableMapping
from typing import Any, Callable, Dict, Iterator, List, Optional, TypeVar

T = TypeVar("T")

_MISSING = object()


class RegistryError(ValueError, KeyError):
    """An unknown or clashing name; a ``ValueError`` (bad input) that ``except KeyError`` catches too."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(MutableMapping):
    """Name → object map of one ``kind`` (used in messages, e.g. ``"backbone type"``).

    Args:
        kind: what the names name, for messages.
        hint: what to do about an unknown name (e.g. how to register one), appended to the error.
        normalise: maps a given name to its key (e.g. ``low-light`` → ``low_light``); identity by default.
        check: called as ``check(obj)`` before registering; raises ``ValueError`` for objects of the wrong kind.
    """

    def __init__(self, kind: str, hint: str = "", normalise: Optional[Callable[[str], str]] = None,
                 check: Optional[Callable[[Any], None]] = None) -> None:
        self.kind = kind
        self.hint = hint
        self._normalise = normalise
        self._check = check
        self._objs: Dict[str, Any] = {}

    # ------------------------------------------------------------------ registering
    def key(self, name: str) -> str:
        """The key ``name`` is stored under."""
        if not isinstance(name, str) or not name.strip():
            raise RegistryError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        return self._normalise(name) if self._normalise is not None else name

    def register(self, obj: Any = None, name: Optional[str] = None, overwrite: bool = False) -> Any:
        """Register ``obj`` under ``name`` (default ``obj.__name__``); returns ``obj``, or a decorator.

        Forms: ``REG.register(obj)``, ``REG.register(obj, "alias")``, ``@REG.register``,
        ``@REG.register()`` and ``@REG.register("alias")``.  Registering the same object under the same name
        again is a no-op; another object under a taken name raises :class:`RegistryError` unless ``overwrite``.
        """
        if obj is None or isinstance(obj, str):
            alias = obj if isinstance(obj, str) else name
            return lambda o: self.register(o, alias, overwrite)
        if self._check is not None:
            self._check(obj)
        key = self.key(name if name is not None else getattr(obj, "__name__", ""))
        taken = self._objs.get(key, _MISSING)
        if taken is not _MISSING and taken is not obj and not overwrite:
            raise RegistryError(f"the {self.kind} name {key!r} is already registered to {_describe(taken)}; "
                                f"pick another name for {_describe(obj)} (or pass overwrite=True)")
        self._objs[key] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Remove ``name`` if registered (for tests and plugins replacing an entry)."""
        self._objs.pop(self.key(name), None)

    # ------------------------------------------------------------------ looking up
    def get(self, name: str, default: Any = _MISSING) -> Any:
        """The object registered under ``name``; an unknown name raises :class:`RegistryError` naming the
        known ones and the closest matches (or returns ``default`` when one is given, like ``dict.get``)."""
        key = self.key(name)
        if key in self._objs:
            return self._objs[key]
        if default is not _MISSING:
            return default
        raise RegistryError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        """The error text for an unknown ``name``: given, known, closest, what to do."""
        known = sorted(self._objs)
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
        guess = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        text = (f"unknown {self.kind} {name!r}: no {self.kind} registered under that name{guess}; "
                f"known: {', '.join(known) or '(none)'}")
        return f"{text}. {self.hint}" if self.hint else text

    def names(self) -> List[str]:
        """The registered names, sorted."""
        return sorted(self._objs)

    # ------------------------------------------------------------------ mapping interface
    def __getitem__(self, name: str) -> Any:
        return self.get(name)

    def __setitem__(self, name: str, obj: Any) -> None:
        # ``REG[name] = obj`` is ``register``: the same kind check and the same refusal to replace a taken name
        self.register(obj, name)

    def __delitem__(self, name: str) -> None:
        del self._objs[self.key(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(name.strip()) and self.key(name) in self._objs

    def __iter__(self) -> Iterator[str]:
        return iter(self._objs)

    def __len__(self) -> int:
        return len(self._objs)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _describe(obj: Any) -> str:
    if hasattr(obj, "__qualname__"):  # a class or a function
        return f"{obj.__module__}.{obj.__qualname__}"
    text = repr(obj)
    return text if len(text) <= 160 else text[:157] + "..."
