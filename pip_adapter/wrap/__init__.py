"""Wrapping any U-shaped network with PIP: skip detection, insertion, sizing, adapter I/O, ``PIPNet``."""
from .config import PIPConfig
from .detect import probe_skips
from .pipnet import PIPNet, build_pipnet, load_release_state_dict, release_state_dict
from .wrapper import PIPWrappedModel, wrap_with_pip

__all__ = ["wrap_with_pip", "PIPWrappedModel", "PIPConfig", "probe_skips", "PIPNet", "build_pipnet",
           "load_release_state_dict", "release_state_dict"]

