"""Checkpoints and training states of ``PIPModel``: ``weights_only`` loading onto the CPU, atomic writes, the
network options and ``pip_config`` in each network file's ``meta``, the fp16 gradient scaler in the state.

A mixin of :class:`pip_adapter.bsr.model.PIPModel` (it provides ``bare_net``, ``degradation_names`` and
``grad_scaler``).
"""
from __future__ import annotations

import json
import os
from collections import Counter, OrderedDict
from copy import deepcopy
from os import path as osp
from typing import Any, Dict, Optional

import torch

from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only

from pip_adapter.restore.file_format import select_params
from pip_adapter.utils.io import atomic_torch_save, load_weights_only
from pip_adapter.utils.state_dict import state_dict_fit, strip_parallel_prefix


def plain_state(obj: Any) -> Any:
    """A copy of a training-state object made only of what ``torch.load(weights_only=True)`` accepts.

    Optimizer and scheduler states are dicts, lists, numbers and tensors; BasicSR's
    ``MultiStepRestartLR`` keeps its milestones in a ``Counter``, stored here as a plain dict (it is only
    used for ``in`` and ``[]``, which a dict serves the same way).
    """
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, Counter):
        return {plain_state(k): plain_state(v) for k, v in obj.items()}
    if isinstance(obj, dict):
        return {k: plain_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [plain_state(v) for v in obj]
        return tuple(out) if isinstance(obj, tuple) else out
    return obj


class TrainingCheckpoints:
    """BasicSR's loading and saving hooks, made safe (mixed into ``PIPModel`` before ``SRModel``)."""

    def load_network(self, net: torch.nn.Module, load_path: str, strict: bool = True,
                     param_key: Optional[str] = "params") -> None:
        """Load weights from a BasicSR checkpoint with ``weights_only=True`` onto the CPU first."""
        logger = get_root_logger()
        if not osp.isfile(load_path):
            raise FileNotFoundError(f"network weights not found: {load_path} (check path.pretrain_network_g)")
        net = self.get_bare_model(net)
        ckpt = load_weights_only(load_path, "network checkpoint (path.pretrain_network_g)")
        if param_key is not None and isinstance(ckpt, dict) and param_key not in ckpt and "params" in ckpt:
            logger.info(f"Loading: {param_key} does not exist in {load_path}, use params.")  # as BasicSR does
            param_key = "params"
        # the restore side's reader picks the state dict, so both name a missing key or a non-tensor entry alike
        state = strip_parallel_prefix(select_params(ckpt, load_path, param_key) if param_key is not None else ckpt)
        logger.info(f"Loading {net.__class__.__name__} model from {load_path}, with param key: [{param_key}].")
        own = net.state_dict()
        fit = state_dict_fit(own, state)
        if not fit.ok:
            # said, as BasicSR does, before the load decides: an extended network's pre-hooks fill the prompts of
            # the types it added (missing here), and strict_load_g refuses anything else
            logger.warning(f"{load_path} vs {net.__class__.__name__}: {fit.describe()}")
        if not strict and fit.mismatched:  # as BasicSR's non-strict loading: tensors of another shape left out
            state = {k: v for k, v in state.items() if k not in own or tuple(v.shape) == tuple(own[k].shape)}
        net.load_state_dict(state, strict=strict)

    def _checkpoint_meta(self) -> Dict[str, Any]:
        pip_config = getattr(self.bare_net, "pip_config", None)
        return {"network_g": plain_state(deepcopy(self.opt.get("network_g"))),
                "pip_config": json.loads(json.dumps(pip_config())) if callable(pip_config) else None,
                "degradations": self.degradation_names,
                "model_type": self.opt.get("model_type")}

    @master_only
    def save_network(self, net, net_label: str, current_iter, param_key="params") -> None:
        """Write ``{param_key: state_dict, meta: {...}}`` atomically (temp file, then rename)."""
        if current_iter == -1:
            current_iter = "latest"
        save_path = osp.join(self.opt["path"]["models"], f"{net_label}_{current_iter}.pth")
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        if len(nets) != len(keys):
            raise ValueError("save_network: nets and param keys differ in number")
        save_dict: Dict[str, Any] = {}
        for net_, key in zip(nets, keys):
            state = self.get_bare_model(net_).state_dict()
            save_dict[key] = OrderedDict((k, v.detach().cpu()) for k, v in strip_parallel_prefix(state).items())
        save_dict["meta"] = self._checkpoint_meta()
        atomic_torch_save(save_dict, save_path)

    @master_only
    def save_training_state(self, epoch: int, current_iter: int) -> None:
        """Write the optimizer/scheduler state atomically, in a ``weights_only``-loadable form."""
        if current_iter == -1:
            return
        state = {"epoch": int(epoch), "iter": int(current_iter),
                 "optimizers": [plain_state(o.state_dict()) for o in self.optimizers],
                 "schedulers": [plain_state(s.state_dict()) for s in self.schedulers]}
        if self.grad_scaler is not None:
            state["grad_scaler"] = plain_state(self.grad_scaler.state_dict())
        os.makedirs(self.opt["path"]["training_states"], exist_ok=True)
        atomic_torch_save(state, osp.join(self.opt["path"]["training_states"], f"{current_iter}.state"))

    def resume_training(self, resume_state: Dict[str, Any]) -> None:
        """BasicSR's resume (optimizers, schedulers) plus the fp16 gradient scaler's state."""
        super().resume_training(resume_state)
        if self.grad_scaler is not None and resume_state.get("grad_scaler"):
            self.grad_scaler.load_state_dict(resume_state["grad_scaler"])

    def save(self, epoch: int, current_iter: int) -> None:
        """Save the network(s) first, then the state, so a state on disk always has its network."""
        if hasattr(self, "net_g_ema"):
            self.save_network([self.net_g, self.net_g_ema], "net_g", current_iter, param_key=["params", "params_ema"])
        else:
            self.save_network(self.net_g, "net_g", current_iter)
        self.save_training_state(epoch, current_iter)
