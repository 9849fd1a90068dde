"""Extending ω with new degradation types on a trained PIP model, and choosing what fine-tunes.

``extend_degradations(model, ["snow"])`` adds, at every PIP level, one degradation prompt per new
type.  The new prompts start at an angle of at least 90° to every existing prompt and to each
other, so the directional decoupled loss (spec §4, θ_thre = 90°) is zero at the start of
fine-tuning, and with the norm of the existing prompts.  The mean's divisor stays at the trained
T (``PIPLevel.prompt_divisor``), so the old types' outputs do not change.

``apply_trainable(model, "new_prompts")`` then freezes everything except the new prompts: the old
types' outputs stay bit-identical however long the new prompts train.
"""
from __future__ import annotations

import logging
import warnings
from typing import List, Optional, Sequence

import torch
from torch import nn

from ..modules.prompt_geometry import cosine_matrix, min_prompt_angle, orthogonal_prompt_init, prompt_angles
from ..omega import RESERVED_NAMES, canonical_name, placeholder_names
from ..utils.messages import warn
from .protocol import bare_model, pip_levels_of

logger = logging.getLogger(__name__)

# prompt_angles / min_prompt_angle / orthogonal_prompt_init live in pip_adapter.modules.prompt_geometry
__all__ = ["TRAINABLE_MODES", "prompt_angles", "min_prompt_angle", "orthogonal_prompt_init", "pip_levels_of",
           "check_names_extend", "install_migration_hooks", "extend_degradations", "apply_trainable"]

TRAINABLE_MODES = ("new_prompts", "pip", "all")

# ---- the model side ------------------------------------------------------------------------------

def _model_names(model: nn.Module, levels: Sequence[nn.Module]) -> List[str]:
    names = getattr(model, "degradations", None)
    t = levels[0].num_types
    if names is None:
        return placeholder_names(t)
    names = list(names)
    if len(names) != t:
        raise ValueError(f"the model lists {len(names)} degradation names ({', '.join(names)}) but its PIP "
                         f"levels have T={t} prompts")
    return names


def _set_model_names(model: nn.Module, names: List[str]) -> None:
    setter = getattr(model, "set_degradations", None)
    if callable(setter):
        setter(list(names))
        return
    try:
        model.degradations = list(names)
    except AttributeError:  # a read-only property backed by a private list
        if isinstance(getattr(model, "_degradations", None), (list, tuple)):
            model._degradations = list(names)
        else:
            raise


def check_names_extend(old: Sequence[str], new: Sequence[str]) -> int:
    """How many types ``new`` adds to ``old`` (the old names must be its prefix, in order)."""
    o = [canonical_name(n) for n in old]
    n = [canonical_name(x) for x in new]
    if len(o) > len(n) or n[:len(o)] != o:
        raise ValueError(f"the checkpoint's degradation types {list(old)} are not the first types of the "
                         f"model's {list(new)}: a model can only load a checkpoint whose types it extends "
                         "(same names, same order, new ones appended)")
    return len(n) - len(o)


def _migration_pre_hook(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict,
                        strict: bool, missing_keys: list, unexpected_keys: list, error_msgs: list) -> None:
    """Load a checkpoint with fewer (older) types into an extended level: keep/initialise the new prompts.

    A state whose trained block has another T, or with more added prompts than the level, is refused.
    """
    key = prefix + "degradation_prompt"
    if module.degradation_prompt is None or key not in state_dict:
        return
    trained = module.degradation_prompt.shape[0]
    got = state_dict[key]
    if got.dim() != 2 or got.shape[0] != trained:
        error_msgs.append(
            f"{key}: the checkpoint has {got.shape[0] if got.dim() else '?'} trained degradation types but "
            f"this model was built with {trained} (+{len(module.added_prompts)} added). Build the model with "
            "the checkpoint's types first, then add types with pip_adapter.wrap.extend.extend_degradations.")
        return
    have = [k for k in state_dict if k.startswith(prefix + "added_prompts.")
            and k[len(prefix) + len("added_prompts."):].isdigit()]
    n_state, n_model = len(have), len(module.added_prompts)
    if n_state > n_model:
        error_msgs.append(
            f"{prefix}added_prompts: the checkpoint has {trained + n_state} degradation types but this model has "
            f"{trained + n_model}; build the model with all {trained + n_state} types (extend it first).")
        return
    if n_state == n_model:
        return
    current = [p.detach() for p in module.added_prompts]
    missing = list(range(n_state, n_model))
    loaded = torch.cat([got.detach().to(torch.float64)] + [
        state_dict[prefix + f"added_prompts.{i}"].detach().reshape(1, -1).to(torch.float64)
        for i in range(n_state)], 0)
    mine = torch.cat([current[i].to(torch.float64).reshape(1, -1) for i in missing], 0)
    if _fits(loaded, mine):
        for i in missing:
            state_dict[prefix + f"added_prompts.{i}"] = current[i].clone()
        what = "kept the model's prompts (at >= 90° to the loaded ones)"
    else:
        # zero placeholders (a model rebuilt from its config) or prompts chosen against other old
        # prompts (a PIPNet built with added_degradations before its checkpoint was loaded): start
        # them over against the prompts being loaded, as extend_degradations would have done
        init = orthogonal_prompt_init(loaded, len(missing))
        for j, i in enumerate(missing):
            state_dict[prefix + f"added_prompts.{i}"] = init[j:j + 1].to(current[i])
        what = "initialised their prompts at >= 90° to the loaded ones"
    logger.info("%s: checkpoint has %d degradation types, model has %d: loaded the old ones, %s for the "
                "%d added type(s)", prefix.rstrip(".") or "PIP level", trained + n_state, trained + n_model,
                what, len(missing))


def _fits(old: torch.Tensor, new: torch.Tensor) -> bool:
    """True when every row of ``new`` is non-zero and at >= 90° to every other row of old+new."""
    if bool((new.norm(dim=1) == 0).any()):
        return False
    cos = cosine_matrix(torch.cat([old, new], 0))
    t = old.shape[0]
    cos.fill_diagonal_(-1.0)
    return bool((cos[t:] <= 1e-6).all())


def install_migration_hooks(model: nn.Module) -> nn.Module:
    """Let ``model.load_state_dict`` take checkpoints made before types were added (idempotent)."""
    for level in pip_levels_of(model):
        if not getattr(level, "_pip_migration_hook", False):
            level.register_load_state_dict_pre_hook(_migration_pre_hook)
            level._pip_migration_hook = True
    return model


def extend_degradations(model: nn.Module, new_types: Sequence[str], seed: int = 0,
                        generator: Optional[torch.Generator] = None) -> nn.Module:
    """Add degradation types to a PIP model in place: one new prompt per level per type; returns ``model``.

    The new prompts start at >= 90° to every existing prompt and to each other (L_ddl = 0) with the
    existing prompts' norm; ω grows from T to T+k; the names are appended to ``model.degradations``.
    Old checkpoints still load into the extended model (the new prompts are kept).
    """
    if isinstance(new_types, str):
        new_types = [new_types]
    new = [canonical_name(n) for n in new_types]
    if not new:
        raise ValueError("extend_degradations: give at least one new degradation type, e.g. ['snow']")
    unusable = [raw for raw, n in zip(new_types, new) if not n.isidentifier() or n in RESERVED_NAMES]
    if unusable:  # a name --degradation / --omega could not address later
        raise ValueError(f"extend_degradations: type names must be non-empty identifiers (letters, digits and _, "
                         f"e.g. snow or jpeg_q10; not {', '.join(RESERVED_NAMES)}), got {unusable}")
    dupes = sorted({n for n in new if new.count(n) > 1})
    if dupes:
        raise ValueError(f"extend_degradations: new types repeated: {dupes}")
    base = bare_model(model)
    levels = pip_levels_of(base)
    if len({lv.num_types for lv in levels}) != 1:
        raise ValueError(f"the PIP levels disagree on T: {[lv.num_types for lv in levels]}")
    names = _model_names(base, levels)
    taken = [n for n in new if n in {canonical_name(x) for x in names}]
    if taken:
        raise ValueError(f"the model already has degradation type(s) {taken}; it knows: {', '.join(names)}")
    gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    k = len(new)
    for i, level in enumerate(levels):
        existing = level.all_degradation_prompts().detach()
        if existing.shape[0] == 0:  # a level built without degradation prompts: only T grows
            level.add_degradation_prompts(torch.zeros(k, level.prompt_dim))
            continue
        if existing.is_meta:  # a shape-only build (a model file's size check): the values come from the file
            level.add_degradation_prompts(torch.empty(k, level.prompt_dim, device="meta"))
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            init = orthogonal_prompt_init(existing, k, generator=gen)
        level.add_degradation_prompts(init)
        logger.info("PIP level %d: added %s; smallest angle of a new prompt to any other: %.1f°", i,
                    ", ".join(new), min_prompt_angle(level.all_degradation_prompts(),
                                                     from_index=existing.shape[0]))
    _set_model_names(base, names + new)
    install_migration_hooks(base)
    return model


def apply_trainable(model: nn.Module, mode: str = "new_prompts") -> List[nn.Parameter]:
    """Set ``requires_grad`` for a fine-tuning mode and return the trainable parameters.

    * ``new_prompts`` (default): only the prompts of added types train; the backbone, the PIP modules
      and the trained prompts are frozen, so the old types' outputs stay bit-identical.
    * ``pip``: every PIP-level parameter trains (old prompts included), the backbone is frozen; the
      old types may drift (a warning says so).
    * ``all``: everything trains (a warning says the old types will drift).
    Frozen parameters get ``requires_grad=False``, so an optimiser built from the returned list (or
    from the parameters that require grad) never touches them — not even by weight decay.
    """
    if mode not in TRAINABLE_MODES:
        raise ValueError(f"train.trainable must be one of {', '.join(TRAINABLE_MODES)}, got {mode!r}")
    base = bare_model(model)
    levels = pip_levels_of(base)
    for p in base.parameters():
        p.requires_grad_(False)
    if mode == "new_prompts":
        params = [p for lv in levels for p in lv.added_prompts]
        if not params:
            raise ValueError("train.trainable: new_prompts needs added degradation types, and this model has "
                             "none: extend it first (pip-adapter extend --add NAME) or use 'pip' / 'all'")
        drifting = [type(m).__name__ for m in base.modules()
                    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
                    or isinstance(m, nn.Dropout) and m.p > 0]
        if drifting:
            logger.warning("the model has %s: in train mode their state/randomness changes outputs, so old "
                           "types are only bit-identical in eval mode", sorted(set(drifting)))
    elif mode == "pip":
        params = [p for lv in levels for p in lv.parameters()]
        msg = ("train.trainable=pip: the PIP modules train too, so outputs for the old degradation types may "
               "drift; use new_prompts to keep them bit-identical")
        warn(logger, msg, stacklevel=2)
    else:
        params = list(base.parameters())
        msg = ("train.trainable=all: backbone and PIP modules train, so outputs for the old degradation types "
               "will drift; use new_prompts to keep them bit-identical")
        warn(logger, msg, stacklevel=2)
    seen, out = set(), []
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            p.requires_grad_(True)
            out.append(p)
    total = sum(p.numel() for p in base.parameters())
    logger.info("trainable (%s): %d tensors, %d of %d parameters", mode, len(out),
                sum(p.numel() for p in out), total)
    return out

