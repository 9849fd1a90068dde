"""Loading user plugins: extra degradation types, backbones, anything that registers itself on import.

A plugin is ordinary Python that registers things when it is imported (a synthesiser with
``pip_adapter.degradations.register_synthesizer``, a backbone with
``pip_adapter.backbones.register_backbone``, ...).  It can be named three ways:

* a dotted module path importable from ``sys.path`` (``plugins.snow``, ``my_pkg.archs``);
* a ``.py`` file (``plugins/attention_unet/arch.py``);
* a folder holding an ``__init__.py`` (``plugins/snow``), imported as a package so that relative
  imports inside it work.

Relative file paths are looked up against ``base_dir`` (the folder of the option file that named
them) first, then the current directory.  Where plugins are named:

* the ``plugins:`` key of a BasicSR option file (a list, or one string) — read by the glue before
  the network and datasets are built;
* ``--plugin`` on the ``pip-adapter`` sub-commands (repeatable).

Each plugin is imported once per process, however many times and however (path or dotted name)
it is named, so registrations never run twice.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import logging
import os
import re
import sys
from types import ModuleType
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

from pip_adapter.utils.io import safe_load_yaml

logger = logging.getLogger(__name__)

# resolved key (absolute path of the plugin's entry file, or the dotted name) -> module
_LOADED: dict = {}

PluginSpecs = Union[None, str, os.PathLike, Sequence[Union[str, os.PathLike]]]


def _as_list(specs: PluginSpecs) -> List[str]:
    if specs is None:
        return []
    if isinstance(specs, (str, os.PathLike)):
        return [os.fspath(specs)]
    if isinstance(specs, Mapping) or not isinstance(specs, Iterable):
        raise ValueError("plugins must be a list of module paths or .py files/folders, "
                         f"got {type(specs).__name__}: {specs!r}")
    out = []
    for s in specs:
        if not isinstance(s, (str, os.PathLike)) or not os.fspath(s).strip():
            raise ValueError(f"each plugin must be a non-empty module path or file path, got {s!r}")
        out.append(os.fspath(s).strip())
    return out


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec or spec.startswith(".")


def _find_path(spec: str, base_dir: Optional[str]) -> Optional[str]:
    """Absolute path of the entry file (``x.py`` or ``folder/__init__.py``) of a path spec, if any."""
    candidates = []
    expanded = os.path.expanduser(spec)
    if os.path.isabs(expanded):
        candidates.append(expanded)
    else:
        if base_dir:
            candidates.append(os.path.join(base_dir, expanded))
        candidates.append(os.path.join(os.getcwd(), expanded))
    for cand in candidates:
        if os.path.isfile(cand) and cand.endswith(".py"):
            return os.path.realpath(cand)
        init = os.path.join(cand, "__init__.py")
        if os.path.isdir(cand) and os.path.isfile(init):
            return os.path.realpath(init)
    return None


def _already_imported(entry_file: str) -> Optional[ModuleType]:
    """A module already in ``sys.modules`` whose file is ``entry_file`` (imported by dotted name)."""
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and os.path.realpath(f) == entry_file:
            return mod
    return None


def _module_name_for(entry_file: str) -> str:
    is_pkg = os.path.basename(entry_file) == "__init__.py"
    stem = os.path.basename(os.path.dirname(entry_file)) if is_pkg else \
        os.path.splitext(os.path.basename(entry_file))[0]
    stem = re.sub(r"\W", "_", stem) or "plugin"
    digest = hashlib.sha1(entry_file.encode("utf-8")).hexdigest()[:8]
    # the digest keeps two plugins with the same folder name (snow/ in two places) apart
    return f"pip_adapter_plugin_{stem}_{digest}"


def _import_file(entry_file: str) -> ModuleType:
    name = _module_name_for(entry_file)
    if name in sys.modules:
        return sys.modules[name]
    is_pkg = os.path.basename(entry_file) == "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, entry_file,
        submodule_search_locations=[os.path.dirname(entry_file)] if is_pkg else None)
    if spec is None or spec.loader is None:  # pragma: no cover - only for odd file systems
        raise ValueError(f"cannot import plugin file {entry_file}")
    module = importlib.util.module_from_spec(spec)
    # in sys.modules before running, so relative imports and dataclasses inside the plugin work
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def load_plugin(spec: Union[str, os.PathLike], base_dir: Optional[str] = None) -> ModuleType:
    """Import one plugin (dotted module, ``.py`` file or package folder) once and return the module."""
    spec = os.fspath(spec).strip()
    entry = _find_path(spec, base_dir)
    if entry is not None:
        key = entry
    elif _looks_like_path(spec):
        where = [os.path.join(base_dir, spec)] if base_dir else []
        where.append(os.path.join(os.getcwd(), spec))
        raise FileNotFoundError(
            f"plugin {spec!r} not found: looked for a .py file or a folder with __init__.py at "
            f"{', '.join(where)}. Give a path relative to the option file or the current directory, "
            "or a dotted module path importable from sys.path.")
    else:
        key = spec
    if key in _LOADED:
        return _LOADED[key]
    if entry is not None:
        module = _already_imported(entry) or _import_file(entry)
        logger.info("loaded plugin %s from %s", spec, entry)
    else:
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as err:
            if err.name and (spec == err.name or spec.startswith(err.name + ".")):
                raise ValueError(
                    f"plugin {spec!r} is neither a file/folder (relative to "
                    f"{base_dir or os.getcwd()}) nor a module importable from sys.path "
                    f"({err}). Give a path such as plugins/snow or plugins/x.py, or add the "
                    "folder holding the module to PYTHONPATH.") from err
            raise
        logger.info("loaded plugin module %s", spec)
        mod_file = getattr(module, "__file__", None)
        if mod_file:
            _LOADED[os.path.realpath(mod_file)] = module
    _LOADED[key] = module
    return module


def load_plugins(specs: PluginSpecs, base_dir: Optional[str] = None) -> List[ModuleType]:
    """Import every plugin in ``specs`` (a list, one string, or None) once; return the modules in order.

    ``base_dir`` is where relative file paths are looked up first (the option file's folder).
    """
    return [load_plugin(s, base_dir) for s in _as_list(specs)]


def load_plugins_from_options(opt: Mapping[str, Any], option_path: Optional[str] = None) -> List[ModuleType]:
    """Load the ``plugins:`` key of a parsed option dict; relative paths are tried beside the option file."""
    if not isinstance(opt, Mapping):
        return []
    base = os.path.dirname(os.path.abspath(os.fspath(option_path))) if option_path else None
    return load_plugins(opt.get("plugins"), base_dir=base)


def load_plugins_from_option_file(option_path: str) -> List[ModuleType]:
    """Read only the ``plugins:`` key of a YAML option file (safe loader) and load those plugins.

    Used before BasicSR parses the file, so that archs/datasets named in it are registered in time.
    """
    opt = safe_load_yaml(option_path)
    return load_plugins_from_options(opt or {}, option_path)


def add_plugin_argument(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--plugin`` option to a sub-command parser."""
    parser.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE_OR_PATH",
        help="import a plugin first (dotted module, .py file or package folder); repeatable")


def loaded_plugins() -> List[str]:
    """Names of the plugin modules loaded so far (for logs and ``inspect``)."""
    seen, out = set(), []
    for mod in _LOADED.values():
        if id(mod) not in seen:
            seen.add(id(mod))
            out.append(mod.__name__)
    return out
