"""Option files as BasicSR reads them, parsed safely: reading one and applying ``--force_yml`` overrides.

Light on purpose (PyYAML only): the ``pip-adapter quickstart`` header reads the option file before torch and
BasicSR are imported; :mod:`pip_adapter.bsr.pipeline` uses the same functions for every run.
"""
from __future__ import annotations

import difflib
import logging
from typing import Any, Dict, Sequence

import yaml

from pip_adapter.utils.io import OptionFileError, safe_load_yaml

logger = logging.getLogger(__name__)


def _force_value(text: str) -> Any:
    """A ``--force_yml`` value as a YAML scalar/list (safe: no code runs)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise OptionFileError(f"--force_yml: cannot parse value {text!r}: {err}") from err


def apply_force_yml(opt: Dict[str, Any], entries: Sequence[str]) -> None:
    """Apply ``a:b:c=value`` overrides to ``opt`` (the parent keys must exist).

    A last key that does not exist but is close to one that does (``train:total_iters`` for ``total_iter``)
    is refused naming it — a typo would otherwise add an unused key and train with the old value.  A new
    key far from every existing one is added with a log line; ``+a:b=value`` adds one without either check.
    Only the option file's own keys count as existing: two new keys of one command may look alike.
    """
    added = set()  # (parent path, key) added by earlier entries of this command
    for entry in entries:
        if "=" not in entry:
            raise ValueError(f"--force_yml entries look like train:total_iter=100, got {entry!r}")
        keys, value = entry.split("=", 1)
        keys = keys.strip()
        add = keys.startswith("+")
        path = [k.strip() for k in keys.lstrip("+").split(":") if k.strip()]
        if not path:
            raise ValueError(f"--force_yml: empty key in {entry!r}")
        node = opt
        for key in path[:-1]:
            if not isinstance(node, dict) or key not in node:
                close = difflib.get_close_matches(key, [str(k) for k in node], n=1, cutoff=0.6) \
                    if isinstance(node, dict) else []
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"--force_yml: {':'.join(path)}: the option file has no {key!r} here{hint}")
            node = node[key]
        if not isinstance(node, dict):
            raise ValueError(f"--force_yml: {':'.join(path[:-1])} is not a mapping")
        leaf = path[-1]
        if leaf not in node and not add:
            own = [str(k) for k in node if (tuple(path[:-1]), str(k)) not in added]
            close = difflib.get_close_matches(leaf, own, n=1, cutoff=0.8)
            if close:
                parent = ":".join(path[:-1] + [close[0]])
                raise ValueError(f"--force_yml: {':'.join(path)}: the option file has no {leaf!r} here; did you "
                                 f"mean {parent!r}? (to add {leaf!r} as a new key, write +{':'.join(path)}=...)")
            logger.info("--force_yml: %s adds a new key (not in the option file)", ":".join(path))
        if leaf not in node:
            added.add((tuple(path[:-1]), leaf))
        node[leaf] = _force_value(value.strip())


def read_option_file(path: str) -> Dict[str, Any]:
    """Parse an option file safely and check that it is a mapping with a ``name``."""
    opt = safe_load_yaml(path)
    if not isinstance(opt, dict):
        raise OptionFileError(f"{path}: an option file must be a YAML mapping, got {type(opt).__name__}")
    if not opt.get("name"):
        raise OptionFileError(f"{path}: the option file needs a 'name' (the experiment folder name)")
    if not isinstance(opt.get("datasets"), dict) or not opt["datasets"]:
        raise OptionFileError(f"{path}: the option file needs a 'datasets' mapping (train / val_* / test_*)")
    return opt
