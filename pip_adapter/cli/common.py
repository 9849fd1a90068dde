"""Helpers shared by the sub-commands that load networks: the builder that knows BasicSR's archs, plugins."""
from __future__ import annotations

import argparse
from types import ModuleType
from typing import Any, Iterable, Mapping, Optional

from torch import nn

from pip_adapter.backbones import BACKBONES
from pip_adapter.plugins import load_plugins, load_plugins_from_option_file
from pip_adapter.restore.checkpoint import CLASSIFIER_TYPE, default_builder


def pure_registries_build(network: Mapping[str, Any]) -> bool:
    """Whether :func:`~pip_adapter.restore.checkpoint.default_builder` can build ``network`` without BasicSR.

    True for the classifier, a registered backbone, and a ``PIPNet`` whose backbone is a registered backbone.
    """
    kind = network.get("type")
    if kind == CLASSIFIER_TYPE or kind in BACKBONES:
        return True
    if kind == "PIPNet":
        backbone = network.get("backbone")
        return isinstance(backbone, nn.Module) or (isinstance(backbone, Mapping)
                                                   and backbone.get("type") in BACKBONES)
    return False


def cli_builder(network: Mapping[str, Any]) -> nn.Module:
    """Build with the pure registries; archs only BasicSR's ``ARCH_REGISTRY`` knows go through BasicSR."""
    if pure_registries_build(network):
        return default_builder(network)
    # imported here: loading BasicSR costs seconds, and most networks never need it
    from pip_adapter.bsr import PIPNet as bsr_pipnet, build_arch

    opt = dict(network)
    if opt.get("type") == "PIPNet":
        opt.pop("type")
        return bsr_pipnet(**opt)
    return build_arch(opt)


def load_cli_plugins(args: argparse.Namespace, option_files: Iterable[Optional[str]] = ()) -> None:
    """Load ``--plugin`` entries and the ``plugins:`` of the option files given (backbones they register)."""
    load_plugins(getattr(args, "plugin", None) or [])
    for path in option_files:
        if path:
            load_plugins_from_option_file(path)


def bsr_pipeline() -> ModuleType:
    """:mod:`pip_adapter.bsr.pipeline` (BasicSR's train/test with pip_adapter's fixes), imported on first use:
    loading BasicSR costs seconds, and most commands never need it."""
    from pip_adapter.bsr import pipeline

    return pipeline
