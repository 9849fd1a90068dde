"""Mapping between the authors' release state-dict keys and :class:`PIPLevel`'s.

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

from typing import Dict, List, Mapping, Optional, Tuple

import torch

from .pip_level import PIPLevel

StateDict = Dict[str, torch.Tensor]

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
    own = level.state_dict()
    missing = sorted(set(own) - set(mapped))
    unexpected = sorted(set(mapped) - set(own))
    if missing or unexpected:
        raise ValueError(f"release level does not fit this PIPLevel ({level.extra_repr()}): "
                         f"missing {missing}, unexpected {unexpected}")
    bad = [f"{k}: release {tuple(v.shape)} vs ours {tuple(own[k].shape)}"
           for k, v in mapped.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"release level shapes do not fit this PIPLevel ({level.extra_repr()}): {bad}")
    level.load_state_dict(mapped, strict=True)
