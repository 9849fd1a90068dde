"""Extending a trained checkpoint file with new degradation types (``pip-adapter extend``).

The model side (new prompts at >= 90°, migration of old checkpoints) is :mod:`pip_adapter.wrap.extend`; this
module reads a checkpoint in any supported format, extends its network and writes it back in the same format.
"""
from __future__ import annotations

import logging
import os
from typing import List, Optional, Sequence

from torch import nn

from pip_adapter.modules.prompt_geometry import min_prompt_angle
from pip_adapter.networks import build_network
from pip_adapter.restore import checkpoint as ck
from pip_adapter.utils.io import atomic_torch_save
from pip_adapter.wrap.extend import check_names_extend, extend_degradations
from pip_adapter.wrap.protocol import pip_levels_of

logger = logging.getLogger(__name__)


def _network_with_added(network: Optional[dict], new: Sequence[str]) -> Optional[dict]:
    """The network option after an extension: ``added_degradations`` lists every type added so far."""
    if not isinstance(network, dict):
        return network
    net = dict(network)
    if net.get("type") == "PIPNet":
        net["added_degradations"] = list(net.get("added_degradations") or []) + list(new)
    return net


def extend_checkpoint(ckpt: str, add: Sequence[str], out: str, opt: Optional[str] = None,
                      overwrite: bool = False, seed: int = 0) -> dict:
    """Write ``ckpt`` extended with the degradation types ``add`` to ``out``; return a summary dict.

    ``ckpt`` is an exported file (``.safetensors``/``.pth`` from ``pip-adapter export``) or a BasicSR
    ``net_g_*.pth`` (its network from ``opt``'s ``network_g``, or from the checkpoint's own ``meta``).
    ``out`` keeps the input's format (a BasicSR file keeps ``params`` and ``params_ema``, each extended,
    and its ``meta.network_g`` gains ``added_degradations``), except that ``.safetensors`` always gives
    an exported file.  An existing ``out`` raises ``FileExistsError`` unless ``overwrite``.
    """
    ckpt, out = os.fspath(ckpt), os.fspath(out)
    if isinstance(add, str):
        add = [add]
    if not add:
        raise ValueError("give at least one degradation type to add (e.g. --add snow)")
    if os.path.splitext(out)[1].lower() not in ck.WEIGHT_EXTENSIONS:
        # a BasicSR checkpoint would otherwise be written as a torch zip under whatever name was given
        raise ValueError(f"{out}: extend writes a .safetensors or .pth file; for an ONNX graph, export the "
                         "extended file with 'pip-adapter export --format onnx'")
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; choose another --out or pass --overwrite to replace it")
    tensors, meta, raw = ck.read_checkpoint(ckpt)
    summary: dict = {"ckpt": ckpt, "out": out, "added": [], "dropped_classifier": False}

    if meta is not None:  # an exported, self-describing file
        loaded = ck.load_checkpoint(ckpt)
        if loaded.kind != "restorer":
            raise ValueError(f"{ckpt} is a degradation classifier, not a restorer: only restorers are extended")
        model = extend_degradations(loaded.model, add, seed=seed)
        new_meta = dict(loaded.meta)
        new_meta["degradations"] = list(model.degradations)
        new_meta["pip_config"] = model.pip_config()
        new_meta["network"] = _network_with_added(new_meta.get("network"), model.degradations[-len(add):])
        new_meta["source"] = dict(new_meta.get("source") or {}, extended_from=os.path.basename(ckpt),
                                  added=list(model.degradations[-len(add):]))
        if new_meta.pop("classifier", None) is not None:
            logger.warning("%s bundles a degradation classifier trained on %s; it cannot score the new types, "
                           "so the extended file leaves it out (train and bundle a new one for --degradation "
                           "auto)", ckpt, ", ".join(loaded.degradations))
            summary["dropped_classifier"] = True
        ck.save_checkpoint(out, model, new_meta, overwrite=True)
        summary.update(format="exported", degradations=list(model.degradations),
                       added=list(model.degradations[-len(add):]), levels=_angle_summary(model))
        return summary

    # a BasicSR net_g file: its network option from --opt, else from the checkpoint's own meta
    read = ck.read_basicsr_checkpoint(ckpt, raw, opt)
    network, bsr_meta = read.network, read.meta
    out_dict: dict = {}
    model = None
    for key, state in read.states.items():
        try:
            model = build_network(network)
        except (TypeError, KeyError) as err:
            raise ValueError(f"{ckpt}: cannot build its network {network.get('type')!r}: {err}") from err
        if bsr_meta.get("degradations") and getattr(model, "degradations", None):
            # an option file of another model (other types, or another order) is caught here, by name
            check_names_extend(bsr_meta["degradations"], model.degradations)
        ck.load_weights(model, state, f"{ckpt} ({key}, network of {opt or 'its metadata'})")
        extend_degradations(model, add, seed=seed)
        out_dict[key] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    added = list(model.degradations[-len(add):])
    new_network = _network_with_added(network, added)
    if os.path.splitext(out)[1].lower() == ".safetensors":
        meta_doc = ck.make_meta(model, new_network, source={"ckpt": os.path.basename(ckpt), "added": added})
        ck.save_checkpoint(out, model, meta_doc, overwrite=True)  # the last state built (params_ema if any)
        fmt = "exported"
    else:
        out_dict["meta"] = dict(bsr_meta, network_g=new_network, degradations=list(model.degradations))
        atomic_torch_save(out_dict, out)
        fmt = "basicsr"
    summary.update(format=fmt, degradations=list(model.degradations), added=added, network_g=new_network,
                   keys=list(read.states), levels=_angle_summary(model))
    return summary


def _angle_summary(model: nn.Module) -> List[dict]:
    out = []
    for i, level in enumerate(pip_levels_of(model)):
        prompts = level.all_degradation_prompts().detach()
        trained = level.config()["num_types"]
        out.append({"level": i, "prompt_dim": level.prompt_dim, "types": int(prompts.shape[0]),
                    "min_angle_new": round(min_prompt_angle(prompts, from_index=trained), 2)
                    if prompts.shape[0] > trained else None})
    return out
