"""The adapter alone (the PIP levels, not the backbone): state dicts and files.

An adapter file is a safetensors file of ``pip_levels.*`` tensors whose metadata holds the wrapper's
``pip_config()`` as JSON (key ``pip_config``), so a reader can check that it fits a model before loading it.
Nothing here unpickles anything.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import nn

from ..utils.io import atomic_write
from ..utils.state_dict import state_dict_fit

PREFIX = "pip_levels."


def pip_state_dict(model: nn.Module) -> Dict[str, torch.Tensor]:
    """``pip_levels.*`` tensors of a wrapped model (the same keys as in its full ``state_dict()``)."""
    levels = getattr(model, "pip_levels", None)
    if not isinstance(levels, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no pip_levels: wrap it with wrap_with_pip first")
    return {PREFIX + k: v for k, v in levels.state_dict().items()}


def _type_hint(own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]) -> str:
    """Explain a degradation-type mismatch (the commonest reason an adapter does not fit)."""
    def count(sd):
        t = {}
        for k, v in sd.items():
            parts = k[len(PREFIX):].split(".") if k.startswith(PREFIX) else k.split(".")
            if len(parts) >= 2 and parts[1] == "degradation_prompt":
                t[parts[0]] = t.get(parts[0], 0) + int(v.shape[0])
            elif len(parts) >= 3 and parts[1] == "added_prompts":
                t[parts[0]] = t.get(parts[0], 0) + 1
        return sorted(set(t.values()))
    a, b = count(own), count(given)
    if a and b and a != b:
        def fmt(v):
            return "/".join(str(i) for i in v)
        return (f" The adapter has T={fmt(b)} degradation types and this model T={fmt(a)}: build the model with the "
                "adapter's degradations, or extend it (pip_adapter.wrap.extend.extend_degradations) first.")
    return ""


def load_pip_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool = True
                        ) -> Dict[str, List[str]]:
    """Load adapter tensors (keys with or without ``pip_levels.``) into ``model.pip_levels``.

    Missing/unexpected keys (with ``strict``) and any shape mismatch raise ``ValueError`` naming them; the
    model is left unchanged in that case.  Returns ``{"missing": [...], "unexpected": [...]}``.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"an adapter state dict must be a mapping of tensors, got {type(state).__name__}")
    own = pip_state_dict(model)
    given = {(k if k.startswith(PREFIX) else PREFIX + k): v for k, v in state.items()}
    fit = state_dict_fit(own, given, "adapter")
    if not fit.fits(strict):
        n_own = len({k.split(".")[1] for k in own})
        n_given = len({k.split(".")[1] for k in given if k.count(".") >= 2})
        levels = f" The adapter has {n_given} levels, the model {n_own}." if n_own != n_given else ""
        raise ValueError(f"the adapter does not fit this model: {fit.describe(strict)}.{levels}"
                         f"{_type_hint(own, given)}")
    sub = {k[len(PREFIX):]: v for k, v in given.items() if k in own}
    model.pip_levels.load_state_dict(sub, strict=False)
    return {"missing": fit.missing, "unexpected": fit.unexpected}


def save_pip_adapter(model: nn.Module, path: str, metadata: Optional[Mapping[str, str]] = None) -> str:
    """Write the adapter of ``model`` to ``path`` (safetensors, atomically) with its ``pip_config`` as metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in pip_state_dict(model).items()}
    meta = {"format": "pip_adapter.adapter/1"}
    cfg = getattr(model, "pip_config", None)
    if callable(cfg):
        meta["pip_config"] = json.dumps(cfg())
    for k, v in (metadata or {}).items():
        meta[str(k)] = str(v)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return os.fspath(path)


def read_pip_adapter(path: str) -> Dict[str, Any]:
    """``{"state": tensors, "pip_config": dict | None, "metadata": dict}`` from an adapter file."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise FileNotFoundError(f"adapter file not found: {path}")
    with safe_open(path, framework="pt") as fh:
        meta = dict(fh.metadata() or {})
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    cfg = json.loads(meta["pip_config"]) if "pip_config" in meta else None
    return {"state": state, "pip_config": cfg, "metadata": meta}


def load_pip_adapter(model: nn.Module, path: str, strict: bool = True) -> Dict[str, List[str]]:
    """Load an adapter file written by :func:`save_pip_adapter` into ``model`` (mismatch → ``ValueError``)."""
    data = read_pip_adapter(path)
    cfg = data["pip_config"]
    own_names = list(getattr(model, "degradations", []) or [])
    if cfg and own_names and cfg.get("degradations") and list(cfg["degradations"]) != own_names:
        raise ValueError(f"{path}: the adapter's degradation types {cfg['degradations']} differ from this "
                         f"model's {own_names}; ω's order must match")
    return load_pip_state_dict(model, data["state"], strict=strict)
