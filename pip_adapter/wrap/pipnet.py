"""``PIPNet``: build a backbone from an option dict and wrap it (pure PyTorch; BasicSR registers it as an arch).

Also rebuilding a wrapped model from its ``pip_config()`` (:func:`build_pipnet`) and loading the PIP authors'
release checkpoints (:func:`load_release_state_dict`, layout ``pip_restormer_official`` of the spec's
manifest): ``prompt{i}.*`` (prompt-in-prompt part) and ``low_prompt_interaction_level{i}.*``
(prompt-to-feature part) go to ``pip_levels[i-1]`` through :mod:`pip_adapter.modules.release_keys`;
the three convs ``reduce_noise_channel_{1,2,3}`` that the release builds but never uses in its forward are
**checked for shape and discarded** (one INFO log line says so); every other key is the
:class:`~pip_adapter.backbones.RestormerPIPRelease` backbone's.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn

from ..backbones.restormer_release import release_unused_convs, split_release_state_dict
from ..modules.release_keys import load_release_level, ours_to_release_prefixed, release_prefixes, split_prefixed
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
def _release_sd(state: Mapping[str, Any]) -> Dict[str, torch.Tensor]:
    """The tensors of a release checkpoint: unwrap ``state_dict``/``params`` and strip a common key prefix."""
    for key in ("state_dict", "params_ema", "params", "model"):
        inner = state.get(key) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping):
            state = inner
            break
    anchor = [k for k in state if k.endswith("patch_embed.proj.weight")]
    prefix = anchor[0][: -len("patch_embed.proj.weight")] if len(anchor) == 1 else ""
    if prefix and all(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def _release_levels(model: PIPWrappedModel) -> List[int]:
    """Index in ``model.pip_levels`` of release levels 1, 2, 3 (found by the skip producers' names)."""
    specs = [p.spec for p in model._plans]
    idx = []
    for i in (1, 2, 3):
        name = f"encoder_level{i}"
        if name not in specs:
            raise ValueError(f"the model's skips are {specs}, not the release's encoder_level1/2/3; "
                             "load_release_state_dict needs PIPNet around a RestormerPIPRelease backbone")
        idx.append(specs.index(name))
    return idx


def _release_sizes(model: PIPWrappedModel) -> tuple:
    proj = getattr(getattr(model.backbone, "patch_embed", None), "proj", None)
    if not isinstance(proj, nn.Conv2d) or not hasattr(model.backbone, "chnl_reduce3"):
        raise ValueError(f"the release layout needs a RestormerPIPRelease backbone, got "
                         f"{type(model.backbone).__name__}")
    idx = _release_levels(model)
    return proj.out_channels, [model.pip_levels[i].prompt_dim for i in idx], idx


def load_release_state_dict(model: PIPWrappedModel, state: Mapping[str, Any], strict: bool = True
                            ) -> Dict[str, List[str]]:
    """Load an authors' release state dict (``PIPNet_Restormer_onskip_inter``) into ``model``.

    ``model`` is a :class:`PIPNet` around :class:`~pip_adapter.backbones.RestormerPIPRelease` with 3 levels.
    Accepts a bare state dict or a checkpoint holding one under ``state_dict``/``params``/``params_ema``, with
    or without a common key prefix (``net.``, ``module.``).  ``strict``: every key must be used and every
    parameter filled, else ``ValueError`` listing the keys, and the model is left unchanged.
    Returns ``{"missing": [...], "unexpected": [...], "discarded": [...]}``.
    """
    state = _release_sd(state)
    dim, dims, idx = _release_sizes(model)
    backbone_sd, pip_sd, unused = split_release_state_dict(state, dim=dim, prompt_dims=dims)
    expected_unused = sorted(release_unused_convs(dim, dims))
    missing: List[str] = [k for k in expected_unused if k not in unused] if strict else []
    own = model.backbone.state_dict()
    missing += sorted(set(own) - set(backbone_sd))
    unexpected = sorted(set(backbone_sd) - set(own))
    bad = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
           for k, v in backbone_sd.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"release checkpoint: backbone shapes do not fit: {bad[:8]}")
    if strict and (missing or unexpected):
        raise ValueError(f"release checkpoint does not fit the model: missing keys {missing[:10]}"
                         f"{' ...' if len(missing) > 10 else ''} ({len(missing)}), unexpected keys "
                         f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''} ({len(unexpected)}); "
                         "expected the pip_restormer_official layout")
    saved = {k: v.detach().clone() for k, v in model.pip_levels.state_dict().items()}
    try:
        for rel, i in zip((1, 2, 3), idx):
            p2p_prefix, p2f_prefix = release_prefixes(rel)
            p2p, p2f = split_prefixed(pip_sd, p2p_prefix, p2f_prefix)
            load_release_level(model.pip_levels[i], p2p, p2f)
    except Exception:
        model.pip_levels.load_state_dict(saved)
        raise
    model.backbone.load_state_dict({k: v for k, v in backbone_sd.items() if k in own}, strict=False)
    if unused:
        logger.info("release checkpoint: discarded %s (shapes checked; the release never uses them in its "
                    "forward)", ", ".join(sorted(unused)))
    return {"missing": missing, "unexpected": unexpected, "discarded": sorted(unused)}


def release_state_dict(model: PIPWrappedModel, include_unused: bool = True) -> Dict[str, torch.Tensor]:
    """``model``'s weights in the release's key layout (inverse of :func:`load_release_state_dict`).

    The unused ``reduce_noise_channel_*`` convs were discarded on loading; with ``include_unused`` they are
    written as zeros of the release's shapes so that the release's code can load the result strictly.
    """
    dim, dims, idx = _release_sizes(model)
    out: Dict[str, torch.Tensor] = dict(model.backbone.state_dict())
    for rel, i in zip((1, 2, 3), idx):
        out.update(ours_to_release_prefixed(model.pip_levels[i].state_dict(), *release_prefixes(rel)))
    if include_unused:
        ref = next(model.backbone.parameters())
        for key, shape in release_unused_convs(dim, dims).items():
            out[key] = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
    return out
