"""``PIPNet``: build a backbone from an option dict and wrap it (pure PyTorch; BasicSR registers it as an arch).

Also rebuilding a wrapped model from its ``pip_config()`` (:func:`build_pipnet`) and loading the PIP authors'
release checkpoints into a wrapped model (:func:`load_release_state_dict`, :func:`release_state_dict`): they
find the model's levels on the release's skips and hand them to :mod:`pip_adapter.modules.release_keys`, where
the whole release layout lives.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from ..modules.pip_level import PIPLevel
from ..modules.release_keys import RELEASE_SKIPS, load_release_layout, release_backbone_dim, release_layout_state
from ..networks import NETWORKS, build_network
from .config import PIPConfig
from .extend import extend_degradations, install_migration_hooks
from .wrapper import PIPWrappedModel

logger = logging.getLogger(__name__)

class PIPNet(PIPWrappedModel):
    """A backbone (an option dict ``{"type": name, **kwargs}`` or a module) with PIP on every skip.

    Args:
        backbone: ``{"type": "NAFNet", "width": 32, ...}`` (built by :func:`pip_adapter.networks.build_network`:
            our backbones, and BasicSR's archs once :mod:`pip_adapter.bsr` is imported) or an ``nn.Module``.
        degradations: an int T or the type names (default the five).
        prompt_dims / prompt_sizes: per-level D and s (default: paper table or sizing rule).
        example_input_size: probe input size, H / (H, W) / (C, H, W) / (B, C, H, W) (default 1×C×64×96).
        levels: module names of the skips (overrides detection).
        added_degradations: types added after training ``degradations`` (``[snow]``): see
            :func:`pip_adapter.wrap.extend.extend_degradations`; a checkpoint of the un-extended model loads.
        **pip_options: PIPLevel options, ``patch_size`` / ``max_prompt_dim`` for sizing.
    """

    def __init__(self, backbone: Any, degradations: Any = None, prompt_dims: Any = None, prompt_sizes: Any = None,
                 example_input_size: Optional[Any] = None, levels: Optional[Sequence[Any]] = None,
                 added_degradations: Optional[Sequence[str]] = None, **pip_options: Any) -> None:
        pip_options.pop("type", None)   # BasicSR leaves the arch name in the option dict
        if isinstance(backbone, Mapping):
            cfg = copy.deepcopy(dict(backbone))
            if "type" not in cfg:
                raise ValueError(f"PIPNet: the backbone dict needs a 'type' (e.g. NAFNet, Restormer), got keys "
                                 f"{sorted(cfg)}")
            net = build_network(cfg)
        elif isinstance(backbone, nn.Module):
            net, cfg = backbone, pip_options.pop("backbone_config", None)
        else:
            raise ValueError(f"PIPNet: backbone must be a dict like {{'type': 'NAFNet', ...}} or an nn.Module, "
                             f"got {type(backbone).__name__}")
        super().__init__(net, degradations=degradations, levels=levels, prompt_dims=prompt_dims,
                         prompt_sizes=prompt_sizes, backbone_config=cfg, example_input_size=example_input_size,
                         **pip_options)
        if added_degradations:
            extend_degradations(self, added_degradations)
        elif any(level.config().get("num_added_types") for level in self.pip_levels):
            install_migration_hooks(self)   # rebuilt extended models still load pre-extension checkpoints


NETWORKS.register(PIPNet)


def build_pipnet(config: Any, backbone: Optional[nn.Module] = None) -> PIPNet:
    """Rebuild the model described by ``PIPWrappedModel.pip_config()`` (same levels, sizes, types).

    ``config`` is that dict (read through :meth:`PIPConfig.from_dict`, which also takes today's format tag) or
    a :class:`PIPConfig`.  ``backbone`` supplies the network when the config has no backbone type (a model
    wrapped from a module).
    """
    cfg = PIPConfig.from_dict(config)
    spec = cfg.backbone
    if backbone is None:
        if not spec:
            raise ValueError("build_pipnet: this config has no backbone type (the model was wrapped from a module "
                             f"of class {cfg.backbone_class}); pass backbone=<that network>")
        backbone = spec
    return PIPNet(backbone, degradations=list(cfg.degradations), levels=list(cfg.levels),
                  example_input_size=cfg.example_input_size,
                  level_configs=[dict(c) for c in cfg.pip_levels],
                  **({"backbone_config": dict(spec)} if spec and isinstance(backbone, nn.Module) else {}))


# ------------------------------------------------------------------------------------------ release layout
def _release_levels(model: PIPWrappedModel) -> List[PIPLevel]:
    """The model's PIP levels at release levels 1, 2, 3 (found by the skip producers' names)."""
    release_backbone_dim(model.backbone)  # the backbone first: its message is the clearer one
    specs = [p.spec for p in model._plans]
    missing = [name for name in RELEASE_SKIPS if name not in specs]
    if missing:
        raise ValueError(f"the model's skips are {specs}, not the release's encoder_level1/2/3; "
                         "load_release_state_dict needs PIPNet around a RestormerPIPRelease backbone")
    return [model.pip_levels[specs.index(name)] for name in RELEASE_SKIPS]


def load_release_state_dict(model: PIPWrappedModel, state: Mapping[str, Any], strict: bool = True
                            ) -> Dict[str, List[str]]:
    """Load an authors' release state dict (``PIPNet_Restormer_onskip_inter``) into ``model``.

    ``model`` is a :class:`PIPNet` around :class:`~pip_adapter.backbones.RestormerPIPRelease` with 3 levels.
    Accepts a bare state dict or a checkpoint holding one under ``state_dict``/``params``/``params_ema``, with
    or without a common key prefix (``net.``, ``module.``).  ``strict``: every key must be used and every
    parameter filled, else ``ValueError`` listing the keys, and the model is left unchanged.
    Returns ``{"missing": [...], "unexpected": [...], "discarded": [...]}``
    (:func:`pip_adapter.modules.release_keys.load_release_layout` does the work).
    """
    return load_release_layout(model.backbone, _release_levels(model), state, strict=strict)


def release_state_dict(model: PIPWrappedModel, include_unused: bool = True) -> Dict[str, torch.Tensor]:
    """``model``'s weights in the release's key layout (inverse of :func:`load_release_state_dict`).

    The unused ``reduce_noise_channel_*`` convs were discarded on loading; with ``include_unused`` they are
    written as zeros of the release's shapes so that the release's code can load the result strictly.
    """
    return release_layout_state(model.backbone, _release_levels(model), include_unused=include_unused)
