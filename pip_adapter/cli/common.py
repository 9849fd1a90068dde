"""Helpers shared by the sub-commands: the model flag, loading BasicSR's archs when a network needs them, plugins.

This module is imported to build the parser, so it imports nothing heavy at module level: ``pip-adapter --help``
and argument errors must come back without importing torch (``tests/test_cli_lazy.py``).  What builds or loads
networks imports torch (and BasicSR, only when needed) inside the function that runs.
"""
from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType
from typing import Any, Callable, Iterable, Optional, TypeVar

# The restorer's ω modes for --degradation auto / --omega auto (pip_adapter.restore.restorer.AUTO_MODES and
# DEFAULT_AUTO_MODE; repeated here so that building the parser does not import torch; a test checks they agree)
AUTO_MODES = ("weights", "argmax")
DEFAULT_AUTO_MODE = "argmax"

from pip_adapter.zoo.registry import resolve_model  # torch-free: reads the registry's JSON index only

logger = logging.getLogger(__name__)
T = TypeVar("T")

MODEL_FLAGS = ("-m", "--model", "--ckpt")
MODEL_HELP = ("a shipped model's name (pip-adapter models), an exported checkpoint (.safetensors / .pth), or a "
              "BasicSR net_g_<iter>.pth with --opt")
DEFAULT_MODEL_HELP = " (default: the default shipped model)"


def add_model_argument(parser: argparse.ArgumentParser, help: str = MODEL_HELP, required: bool = True,
                       **kwargs: Any) -> argparse.Action:
    """The model flag every command that loads a network takes under the same names: ``-m``, ``--model``,
    ``--ckpt`` (stored as ``args.model``)."""
    return parser.add_argument(*MODEL_FLAGS, dest="model", required=required, metavar="MODEL", help=help, **kwargs)


def resolve_model_arg(model: Optional[str]) -> str:
    """The file a ``-m`` value names: a path as given, a shipped model's name as its verified file, and no
    value as the default shipped model; a shipped model is named on stderr, so the user sees which model
    restored the images (stdout keeps the command's results)."""
    path, entry = resolve_model(model)
    if entry is not None:
        print(f"model: {entry.name}{' (the default shipped model)' if model is None else ''} — {entry.summary}",
              file=sys.stderr)
        logger.debug("model file: %s", path)
    return path


def with_basicsr_archs(load: Callable[[], T]) -> T:
    """Run ``load`` (it builds networks); when it fails on a network type that no loaded registry knows and
    BasicSR's archs are not loaded yet, import the BasicSR glue (which adds ``ARCH_REGISTRY`` to
    :func:`~pip_adapter.networks.build_network`'s registries) and run ``load`` once more.

    Loading BasicSR costs seconds, and most networks never need it.
    """
    try:
        return load()
    except Exception as err:  # noqa: BLE001 - re-raised unless it is an unknown type BasicSR may know
        if "pip_adapter.bsr" in sys.modules or not _unknown_network_type(err):
            raise
    import pip_adapter.bsr  # noqa: F401  (registers ARCH_REGISTRY with build_network)

    return load()


def _unknown_network_type(err: BaseException) -> bool:
    from pip_adapter.networks import UnknownNetworkError

    seen = set()
    while err is not None and id(err) not in seen:   # the loaders wrap it (CheckpointError from ...)
        if isinstance(err, UnknownNetworkError):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def load_cli_plugins(args: argparse.Namespace, option_files: Iterable[Optional[str]] = ()) -> None:
    """Load ``--plugin`` entries and the ``plugins:`` of the option files given (backbones they register)."""
    from pip_adapter.plugins import load_plugins, load_plugins_from_option_file

    load_plugins(getattr(args, "plugin", None) or [])
    for path in option_files:
        if path:
            load_plugins_from_option_file(path)


def bsr_pipeline() -> ModuleType:
    """:mod:`pip_adapter.bsr.pipeline` (BasicSR's train/test with pip_adapter's fixes), imported on first use:
    loading BasicSR costs seconds, and most commands never need it."""
    from pip_adapter.bsr import pipeline

    return pipeline
