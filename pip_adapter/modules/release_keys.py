"""The PIP authors' release layout, all of it: key mapping of one level, the split of a release checkpoint,
and loading/saving a whole model in that layout (``pip_restormer_official`` in the spec's manifest).

Whole checkpoints: :func:`load_release_layout` / :func:`release_layout_state` take the backbone (the
:class:`~pip_adapter.backbones.RestormerPIPRelease` variant: it is recognised by its modules, not imported)
and the PIP levels on its skips ``encoder_level1/2/3``; ``pip_adapter.wrap.load_release_state_dict`` and
``release_state_dict`` hand them over from a wrapped model.  ``prompt{i}.*`` and
``low_prompt_interaction_level{i}.*`` go to level i; the three convs ``reduce_noise_channel_{1,2,3}`` that
the release builds but never uses in its forward are **checked for shape and discarded** (one INFO log line
says so); every other key is the backbone's.

One level:

In the release, one PIP level is two modules: a prompt-in-prompt block (here "p2p") and a selective
prompt-to-feature block (here "p2f").  In the full release checkpoint (``PIPNet_Restormer_onskip_inter``)
level i (1-based) lives under ``prompt{i}.`` (p2p) and ``low_prompt_interaction_level{i}.`` (p2f).

=====================================================  ==============================  ======================
release key (relative to the block)                    ours (PIPLevel)                 shape change
=====================================================  ==============================  ======================
p2p ``detask_prompt_param``                            ``degradation_prompt``          1×T×D×1×1 ↔ T×D
p2p ``low_prompt_param``                               ``basic_prompt``                1×D×s×s ↔ D×s×s
p2p ``LGM.norm11.body.{weight,bias}``                  ``p2p_norm_query.*``            (query B)
p2p ``LGM.norm12.body.{weight,bias}``                  ``p2p_norm_kv.*``               (key/value S)
p2p ``LGM.attn.{temperature,q,q_dwconv,kv,             ``p2p_attn.*`` (same names)
kv_dwconv,project_out}``
p2p ``LGM.norm2.body.*`` / ``LGM.ffn.*``               ``p2p_norm_ffn.*`` / ``p2p_ffn.*`` (GDFN)
p2p ``outconv.weight``                                 ``out_conv.weight``
p2f ``prompt_transformer_cross.norm11.body.*``         ``p2f_norm_feature.*``          (feature Z, C)
p2f ``prompt_transformer_cross.norm12.body.*``         ``p2f_norm_prompt.*``           (prompt U, D)
p2f ``prompt_transformer_cross.attn.*``                ``p2f_attn.*`` incl. ``attn1..attn4``
p2f ``prompt_transformer_cross.reduce_channel.weight``  ``reduce_channel.weight``       (only when C < D)
p2f ``prompt_transformer_cross.norm2.body.*`` /        ``p2f_norm_ffn.*`` / ``p2f_ffn.*`` (dual gate)
``prompt_transformer_cross.ffn.*``
=====================================================  ==============================  ======================

Degradation types added by extension (``added_prompts.i``) have no place of their own in the release: going
back, they are appended to ``detask_prompt_param`` (a release model then sees T = T0 + k types).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from ..utils.state_dict import state_dict_fit
from .pip_level import PIPLevel

logger = logging.getLogger(__name__)

StateDict = Dict[str, torch.Tensor]

#: the skips of the release's backbone on which its PIP levels 1, 2, 3 sit
RELEASE_SKIPS: Tuple[str, ...] = ("encoder_level1", "encoder_level2", "encoder_level3")

#: the release's unused convs at its default sizes (dim 48, prompt dims 64/128/256): key -> shape.
#: Never used in the forward; accepted and discarded by loaders after a shape check.
RELEASE_UNUSED_CONVS: Dict[str, Tuple[int, ...]] = {
    "reduce_noise_channel_1.weight": (48, 112, 1, 1),
    "reduce_noise_channel_2.weight": (96, 224, 1, 1),
    "reduce_noise_channel_3.weight": (192, 448, 1, 1),
}

#: key prefixes of the PIP side of a release checkpoint (prompt-in-prompt blocks and P2F blocks)
RELEASE_PIP_PREFIXES: Tuple[str, ...] = ("prompt1.", "prompt2.", "prompt3.", "low_prompt_interaction_level1.",
                                         "low_prompt_interaction_level2.", "low_prompt_interaction_level3.")


def release_unused_convs(dim: int = 48, prompt_dims: Sequence[int] = (64, 128, 256)) -> Dict[str, Tuple[int, ...]]:
    """Shapes of the unused ``reduce_noise_channel_l`` convs for other sizes: (2^(l-1)·dim, that + D_l, 1, 1)."""
    if len(prompt_dims) != 3:
        raise ValueError(f"prompt_dims must have 3 entries (one per skip level), got {list(prompt_dims)!r}")
    out = {}
    for level, d in enumerate(prompt_dims, start=1):
        c = dim * 2 ** (level - 1)
        out[f"reduce_noise_channel_{level}.weight"] = (c, c + int(d), 1, 1)
    return out


def split_release_state_dict(state_dict: Mapping[str, torch.Tensor], dim: int = 48,
                             prompt_dims: Sequence[int] = (64, 128, 256),
                             ) -> Tuple[StateDict, StateDict, StateDict]:
    """Split a release state dict into (backbone, PIP side, unused convs).

    The backbone part loads into :class:`~pip_adapter.backbones.RestormerPIPRelease` with ``strict=True``; the PIP part keeps the
    release's key names. Raises ``ValueError`` when an unused conv has an unexpected shape (a sign that the
    checkpoint was built with other sizes: pass its ``dim``/``prompt_dims``).
    """
    expected = release_unused_convs(dim, prompt_dims)
    backbone: StateDict = {}
    pip: StateDict = {}
    unused: StateDict = {}
    for key, value in state_dict.items():
        if key.startswith(RELEASE_PIP_PREFIXES):
            pip[key] = value
        elif key.startswith("reduce_noise_channel_"):
            want = expected.get(key)
            if want is None or tuple(value.shape) != want:
                raise ValueError(f"release checkpoint: unused conv {key!r} has shape {tuple(value.shape)}, "
                                 f"expected {want} for dim={dim}, prompt_dims={list(prompt_dims)}; "
                                 "pass the sizes the checkpoint was trained with")
            unused[key] = value
        else:
            backbone[key] = value
    return backbone, pip, unused

#: release key prefix (relative to the p2p block) -> our key prefix
P2P_RULES: Tuple[Tuple[str, str], ...] = (
    ("detask_prompt_param", "degradation_prompt"),
    ("low_prompt_param", "basic_prompt"),
    ("LGM.norm11.body.", "p2p_norm_query."),
    ("LGM.norm12.body.", "p2p_norm_kv."),
    ("LGM.attn.", "p2p_attn."),
    ("LGM.norm2.body.", "p2p_norm_ffn."),
    ("LGM.ffn.", "p2p_ffn."),
    ("outconv.", "out_conv."),
)
#: release key prefix (relative to the p2f block) -> our key prefix
P2F_RULES: Tuple[Tuple[str, str], ...] = (
    ("prompt_transformer_cross.norm11.body.", "p2f_norm_feature."),
    ("prompt_transformer_cross.norm12.body.", "p2f_norm_prompt."),
    ("prompt_transformer_cross.attn.", "p2f_attn."),
    ("prompt_transformer_cross.reduce_channel.", "reduce_channel."),
    ("prompt_transformer_cross.norm2.body.", "p2f_norm_ffn."),
    ("prompt_transformer_cross.ffn.", "p2f_ffn."),
)


def release_prefixes(level: int) -> Tuple[str, str]:
    """``(p2p_prefix, p2f_prefix)`` of 1-based ``level`` in the full release checkpoint."""
    if level < 1:
        raise ValueError(f"release levels are numbered from 1, got {level}")
    return f"prompt{level}.", f"low_prompt_interaction_level{level}."


def _rename(key: str, rules: Tuple[Tuple[str, str], ...]) -> Optional[str]:
    for src, dst in rules:
        if key == src or (src.endswith(".") and key.startswith(src)):
            return dst + key[len(src):]
    return None


def _to_release_shape(our_key: str, value: torch.Tensor) -> torch.Tensor:
    if our_key == "degradation_prompt":
        return value.reshape(1, value.shape[0], value.shape[1], 1, 1)
    if our_key == "basic_prompt":
        return value.unsqueeze(0)
    return value


def _to_our_shape(our_key: str, value: torch.Tensor, release_key: str) -> torch.Tensor:
    if our_key == "degradation_prompt":
        if value.dim() != 5 or value.shape[0] != 1 or value.shape[3:] != (1, 1):
            raise ValueError(f"release {release_key!r} must be 1×T×D×1×1, got {tuple(value.shape)}")
        return value.reshape(value.shape[1], value.shape[2])
    if our_key == "basic_prompt":
        if value.dim() != 4 or value.shape[0] != 1:
            raise ValueError(f"release {release_key!r} must be 1×D×s×s, got {tuple(value.shape)}")
        return value[0]
    return value


def release_level_to_ours(p2p_state: Mapping[str, torch.Tensor],
                          p2f_state: Mapping[str, torch.Tensor]) -> StateDict:
    """Turn one release level (keys relative to its p2p and p2f blocks) into a ``PIPLevel`` state dict.

    Keys that match no rule raise ``ValueError`` listing them all.
    """
    out: StateDict = {}
    unknown: List[str] = []
    for state, rules, tag in ((p2p_state, P2P_RULES, "p2p"), (p2f_state, P2F_RULES, "p2f")):
        for key, value in state.items():
            ours = _rename(key, rules)
            if ours is None:
                unknown.append(f"{tag}:{key}")
                continue
            out[ours] = _to_our_shape(ours, value, key)
    if unknown:
        raise ValueError(f"release keys with no PIPLevel counterpart: {unknown}")
    return out


def ours_to_release_level(state: Mapping[str, torch.Tensor]) -> Tuple[StateDict, StateDict]:
    """Inverse of :func:`release_level_to_ours`: ``(p2p_state, p2f_state)`` in the release's names.

    Prompts added by extension (``added_prompts.i``) are appended to ``detask_prompt_param``.
    """
    inverse_p2p = [(dst, src) for src, dst in P2P_RULES]
    inverse_p2f = [(dst, src) for src, dst in P2F_RULES]
    p2p: StateDict = {}
    p2f: StateDict = {}
    added = sorted((k for k in state if k.startswith("added_prompts.")), key=lambda k: int(k.split(".")[1]))
    unknown: List[str] = []
    for key, value in state.items():
        if key.startswith("added_prompts."):
            continue
        if key == "degradation_prompt" and added:
            value = torch.cat([value, *(state[k] for k in added)], dim=0)
        rel = _rename(key, inverse_p2p)
        if rel is not None:
            p2p[rel] = _to_release_shape(key, value)
            continue
        rel = _rename(key, inverse_p2f)
        if rel is not None:
            p2f[rel] = value
            continue
        unknown.append(key)
    if unknown:
        raise ValueError(f"PIPLevel keys with no release counterpart: {unknown}")
    return p2p, p2f


def split_prefixed(state: Mapping[str, torch.Tensor], p2p_prefix: str, p2f_prefix: str
                   ) -> Tuple[StateDict, StateDict]:
    """The two blocks of one level from a flat state dict, keys stripped of ``p2p_prefix``/``p2f_prefix``."""
    p2p = {k[len(p2p_prefix):]: v for k, v in state.items() if k.startswith(p2p_prefix)}
    p2f = {k[len(p2f_prefix):]: v for k, v in state.items() if k.startswith(p2f_prefix)}
    if not p2p or not p2f:
        raise ValueError(f"no keys under {p2p_prefix!r} and/or {p2f_prefix!r} "
                         f"(found {len(p2p)} and {len(p2f)}); check the prefixes")
    return p2p, p2f


def release_prefixed_to_ours(state: Mapping[str, torch.Tensor], p2p_prefix: str, p2f_prefix: str
                             ) -> StateDict:
    """One level of a whole release checkpoint (e.g. prefixes ``prompt1.`` / ``low_prompt_interaction_level1.``)."""
    return release_level_to_ours(*split_prefixed(state, p2p_prefix, p2f_prefix))


def ours_to_release_prefixed(state: Mapping[str, torch.Tensor], p2p_prefix: str, p2f_prefix: str) -> StateDict:
    """One ``PIPLevel`` state dict as flat release keys under the two prefixes."""
    p2p, p2f = ours_to_release_level(state)
    out = {p2p_prefix + k: v for k, v in p2p.items()}
    out.update({p2f_prefix + k: v for k, v in p2f.items()})
    return out


def load_release_level(level: PIPLevel, p2p_state: Mapping[str, torch.Tensor],
                       p2f_state: Mapping[str, torch.Tensor]) -> None:
    """Load one release level into ``level`` strictly: unknown, missing or mis-shaped keys raise ``ValueError``.

    The release stores every degradation type in ``detask_prompt_param``; a level with added types is
    filled by splitting it into the trained part and ``added_prompts``.
    """
    mapped = release_level_to_ours(p2p_state, p2f_state)
    n_added = len(level.added_prompts)
    if n_added and "degradation_prompt" in mapped:
        full = mapped.pop("degradation_prompt")
        t0 = full.shape[0] - n_added
        mapped["degradation_prompt"] = full[:t0]
        for i in range(n_added):
            mapped[f"added_prompts.{i}"] = full[t0 + i:t0 + i + 1]
    fit = state_dict_fit(level.state_dict(), mapped, "release")
    if not fit.ok:
        raise ValueError(f"release level does not fit this PIPLevel ({level.extra_repr()}): {fit.describe()}")
    level.load_state_dict(mapped, strict=True)


# ------------------------------------------------------------------------------------------ whole checkpoints
def release_checkpoint_tensors(state: Mapping[str, Any]) -> StateDict:
    """The tensors of a release checkpoint: unwrap ``state_dict``/``params``/``params_ema``/``model`` and strip a
    common key prefix (``net.``, ``module.``)."""
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


def release_backbone_dim(backbone: nn.Module) -> int:
    """The width ``dim`` of a release backbone; anything else is refused (the layout fits only that variant)."""
    proj = getattr(getattr(backbone, "patch_embed", None), "proj", None)
    if not isinstance(proj, nn.Conv2d) or not hasattr(backbone, "chnl_reduce3"):
        raise ValueError(f"the release layout needs a RestormerPIPRelease backbone, got {type(backbone).__name__}")
    return proj.out_channels


def _check_levels(levels: Sequence[PIPLevel]) -> None:
    if len(levels) != len(RELEASE_SKIPS):
        raise ValueError(f"the release layout has {len(RELEASE_SKIPS)} PIP levels, got {len(levels)}")


def load_release_layout(backbone: nn.Module, levels: Sequence[PIPLevel], state: Mapping[str, Any],
                        strict: bool = True) -> Dict[str, List[str]]:
    """Load a release checkpoint (``PIPNet_Restormer_onskip_inter``) into ``backbone`` and its three PIP
    ``levels`` (those on ``encoder_level1/2/3``, in that order).

    ``strict``: every key must be used and every parameter filled, else ``ValueError`` listing the keys, and
    nothing is changed.  Returns ``{"missing": [...], "unexpected": [...], "discarded": [...]}``.
    """
    state = release_checkpoint_tensors(state)
    dim = release_backbone_dim(backbone)
    _check_levels(levels)
    dims = [level.prompt_dim for level in levels]
    backbone_sd, pip_sd, unused = split_release_state_dict(state, dim=dim, prompt_dims=dims)
    expected_unused = sorted(release_unused_convs(dim, dims))
    own = backbone.state_dict()
    fit = state_dict_fit(own, backbone_sd)
    if strict:  # a file without the release's unused convs is not the release's
        fit = dataclasses.replace(fit, missing=[k for k in expected_unused if k not in unused] + fit.missing)
    if not fit.fits(strict):
        raise ValueError(f"release checkpoint does not fit the model: {fit.describe(strict)}; expected the "
                         "pip_restormer_official layout")
    missing, unexpected = fit.missing, fit.unexpected
    saved = [{k: v.detach().clone() for k, v in level.state_dict().items()} for level in levels]
    try:
        for rel, level in enumerate(levels, start=1):
            load_release_level(level, *split_prefixed(pip_sd, *release_prefixes(rel)))
    except Exception:
        for level, before in zip(levels, saved):
            level.load_state_dict(before)
        raise
    backbone.load_state_dict({k: v for k, v in backbone_sd.items() if k in own}, strict=False)
    if unused:
        logger.info("release checkpoint: discarded %s (shapes checked; the release never uses them in its "
                    "forward)", ", ".join(sorted(unused)))
    return {"missing": missing, "unexpected": unexpected, "discarded": sorted(unused)}


def release_layout_state(backbone: nn.Module, levels: Sequence[PIPLevel], include_unused: bool = True) -> StateDict:
    """``backbone`` and its three PIP ``levels`` in the release's key layout (inverse of
    :func:`load_release_layout`); with ``include_unused`` the unused ``reduce_noise_channel_*`` convs are
    written as zeros of the release's shapes, so that the release's code can load the result strictly."""
    dim = release_backbone_dim(backbone)
    _check_levels(levels)
    out: StateDict = dict(backbone.state_dict())
    for rel, level in enumerate(levels, start=1):
        out.update(ours_to_release_prefixed(level.state_dict(), *release_prefixes(rel)))
    if include_unused:
        ref = next(backbone.parameters())
        for key, shape in release_unused_convs(dim, [level.prompt_dim for level in levels]).items():
            out[key] = torch.zeros(shape, dtype=ref.dtype, device=ref.device)
    return out
