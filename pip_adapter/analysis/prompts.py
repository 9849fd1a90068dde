"""Structure and prompts of a PIP model: levels, parameter split, prompt angles, universal prompts U.

Pure PyTorch.  A PIP level is recognised by its contract (``all_degradation_prompts`` and
``universal_prompt``), so models wrapped by :func:`pip_adapter.wrap.wrap_with_pip`, built by ``PIPNet``
or written by hand are all inspected the same way.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from pip_adapter.modules import prompt_geometry
from pip_adapter.omega import placeholder_names
from pip_adapter.wrap.protocol import pip_levels_of


def parameter_split(model: nn.Module) -> Dict[str, int]:
    """Parameter counts: ``total``, ``pip`` (inside PIP levels), ``backbone`` (the rest), and trainable ones."""
    pip_ids = {id(p) for level in pip_levels_of(model) for p in level.parameters()}
    seen: set = set()
    out = {"total": 0, "pip": 0, "backbone": 0, "trainable": 0}
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        n = p.numel()
        out["total"] += n
        out["pip" if id(p) in pip_ids else "backbone"] += n
        if p.requires_grad:
            out["trainable"] += n
    return out


def skip_level_rows(model: nn.Module) -> List[Dict[str, object]]:
    """One dict per PIP level: index, skip channels C, prompt channels D, prompt size s, types T, where it sits."""
    infos = list(getattr(model, "skip_info", None) or [])
    rows = []
    for i, level in enumerate(pip_levels_of(model)):
        cfg = level.config() if callable(getattr(level, "config", None)) else {}
        row: Dict[str, object] = {
            "level": i + 1,
            "channels": cfg.get("channels"),
            "prompt_dim": cfg.get("prompt_dim"),
            "prompt_size": cfg.get("prompt_size"),
            "num_types": getattr(level, "num_types", cfg.get("num_types")),
            "params": sum(p.numel() for p in level.parameters()),
        }
        if i < len(infos):
            row["skip"] = _describe_skip(infos[i])
        rows.append(row)
    return rows


def _describe_skip(info: object) -> str:
    if isinstance(info, dict):
        keys = [k for k in ("name", "module", "source", "shape", "resolution") if k in info]
        return ", ".join(f"{k}={info[k]}" for k in keys) if keys else str(info)
    for attr in ("name", "module_name", "source"):
        if hasattr(info, attr):
            return str(getattr(info, attr))
    return str(info)


def angle_matrix(vectors: Tensor, eps: float = 1e-8) -> Tensor:
    """Pairwise angles in degrees between the rows of a T×D tensor (cosine with ε in the denominator)."""
    if vectors.dim() != 2:
        raise ValueError(f"angle_matrix expects T×D vectors, got shape {tuple(vectors.shape)}")
    return prompt_geometry.angle_matrix(vectors, eps).float()


def level_prompt_angles(model: nn.Module) -> List[Tensor]:
    """The T×T angle matrix (degrees) of the degradation prompts d_1..d_T of every PIP level."""
    return [angle_matrix(level.all_degradation_prompts().reshape(level.num_types, -1))
            for level in pip_levels_of(model)]


def _split_args(args: tuple, kwargs: dict) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    z = args[0] if len(args) > 0 else kwargs.get("z")
    omega = args[1] if len(args) > 1 else kwargs.get("omega")
    return z, omega


@torch.no_grad()
def collect_universal_prompts(model: nn.Module, batches: Iterable[Tuple[Tensor, object]],
                              pool: str = "mean") -> List[Tensor]:
    """Run ``model(x, omega)`` on every batch and return, per PIP level, the pooled U of every image (N×D).

    ``batches`` yields ``(x, omega)`` pairs in any form the model's forward accepts.  U is computed with
    ``level.universal_prompt`` on the skip tensor and ω the level actually received, then pooled over the
    spatial axes (``pool``: "mean" or "max") so that every image gives one D-vector per level (paper Fig. 7).
    """
    if pool not in ("mean", "max"):
        raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}")
    levels = pip_levels_of(model)
    store: List[List[Tensor]] = [[] for _ in levels]

    def make_hook(i: int, level: nn.Module):
        def hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
            z, omega = _split_args(args, kwargs)
            if z is None or omega is None:
                raise ValueError("a PIP level was called without (z, omega); cannot collect U")
            u = level.universal_prompt(z, omega)
            store[i].append((u.mean(dim=(2, 3)) if pool == "mean" else u.amax(dim=(2, 3))).float().cpu())
        return hook

    handles = [level.register_forward_pre_hook(make_hook(i, level), with_kwargs=True)
               for i, level in enumerate(levels)]
    was_training = model.training
    model.eval()
    try:
        for x, omega in batches:
            model(x, omega)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not store[0]:
        raise ValueError("collect_universal_prompts got no batch (or the PIP levels were never called)")
    return [torch.cat(s, dim=0) for s in store]


def random_crops(img: Tensor, size: int, count: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """``count`` random size×size crops of a C×H×W image (the image itself, resized down, when it is smaller)."""
    if img.dim() != 3:
        raise ValueError(f"random_crops expects C×H×W, got shape {tuple(img.shape)}")
    _, h, w = img.shape
    if h < size or w < size:
        scale = size / min(h, w)
        img = nn.functional.interpolate(img[None], size=(max(size, math.ceil(h * scale)), max(size, math.ceil(w * scale))),
                                        mode="bilinear", align_corners=False)[0]
        _, h, w = img.shape
    tops = torch.randint(0, h - size + 1, (count,), generator=generator)
    lefts = torch.randint(0, w - size + 1, (count,), generator=generator)
    return torch.stack([img[:, t:t + size, l:l + size] for t, l in zip(tops.tolist(), lefts.tolist())])


def names_of(model: nn.Module, default: Optional[Sequence[str]] = None) -> List[str]:
    """The model's degradation names (``model.degradations``), or ``default``, or type0..type{T-1}."""
    names = getattr(model, "degradations", None)
    if names:
        return list(names)
    if default:
        return list(default)
    return placeholder_names(pip_levels_of(model)[0].num_types)
