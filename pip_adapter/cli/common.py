"""Helpers shared by the sub-commands: the model flag, the builder that also knows BasicSR's archs, plugins.

This module is imported to build the parser, so it imports nothing heavy at module level: ``pip-adapter --help``
and argument errors must come back without importing torch (``tests/test_cli_lazy.py``).  What builds or loads
networks imports torch (and BasicSR, only when needed) inside the function that runs.
"""
from __future__ import annotations

import argparse
import logging
import sys
from types import ModuleType
from typing import Any, Iterable, Mapping, Optional

# The restorer's ω modes for --degradation auto / --omega auto (pip_adapter.restore.restorer.AUTO_MODES and
# DEFAULT_AUTO_MODE; repeated here so that building the parser does not import torch; a test checks they agree)
AUTO_MODES = ("weights", "argmax")
DEFAULT_AUTO_MODE = "argmax"

from pip_adapter.zoo.registry import resolve_model  # torch-free: reads the registry's JSON index only

logger = logging.getLogger(__name__)

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


def pure_registries_build(network: Mapping[str, Any]) -> bool:
    """Whether :func:`~pip_adapter.restore.checkpoint.default_builder` can build ``network`` without BasicSR.

    True for the classifier, a registered backbone, and a ``PIPNet`` whose backbone is a registered backbone.
    """
    from torch import nn

    from pip_adapter.backbones import BACKBONES
    from pip_adapter.restore.checkpoint import CLASSIFIER_TYPE

    kind = network.get("type")
    if kind == CLASSIFIER_TYPE or kind in BACKBONES:
        return True
    if kind == "PIPNet":
        backbone = network.get("backbone")
        return isinstance(backbone, nn.Module) or (isinstance(backbone, Mapping)
                                                   and backbone.get("type") in BACKBONES)
    return False


def cli_builder(network: Mapping[str, Any]) -> Any:
    """Build with the pure registries; archs only BasicSR's ``ARCH_REGISTRY`` knows go through BasicSR."""
    from pip_adapter.restore.checkpoint import default_builder

    if pure_registries_build(network):
        return default_builder(network)
    # loading BasicSR costs seconds, and most networks never need it
    from pip_adapter.bsr import PIPNet as bsr_pipnet, build_arch

    opt = dict(network)
    if opt.get("type") == "PIPNet":
        opt.pop("type")
        return bsr_pipnet(**opt)
    return build_arch(opt)


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
