"""Resuming a run: the newest complete training state, damaged files moved aside under a name that says so,
and only our own stale temporaries cleaned."""
from __future__ import annotations

import logging
import os
import re
import zipfile
from os import path as osp
from typing import Any, Dict, List, Optional

from pip_adapter.utils.io import UnreadableFileError, load_weights_only

logger = logging.getLogger(__name__)


def _state_iters(state_dir: str) -> List[int]:
    if not osp.isdir(state_dir):
        return []
    iters = []
    for entry in os.listdir(state_dir):
        m = re.fullmatch(r"(\d+)\.state", entry)
        if m:
            iters.append(int(m.group(1)))
    return sorted(iters)


def file_damage(path: str) -> Optional[str]:
    """Why a checkpoint or state file cannot be loaded (missing, truncated, corrupt), or None when it is sound.

    torch files are zip archives: every member's CRC is checked, which finds truncation and flipped bytes
    without building any tensor; other files are loaded (weights-only).
    """
    if not osp.isfile(path):
        return "missing"
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
            return None if bad is None else f"member {bad} fails its checksum"
        load_weights_only(path)
    except (zipfile.BadZipFile, OSError, EOFError, UnreadableFileError) as err:
        why = str(err) or type(err).__name__
        return why[len(path) + 2:] if why.startswith(f"{path}: ") else why
    return None


def latest_complete_state(opt: Dict[str, Any]) -> Optional[str]:
    """The newest ``<iter>.state`` that, with its ``net_<x>_<iter>.pth`` files, exists and reads back whole.

    A damaged file (a truncated copy, a full disk) is named in the log, renamed to ``<name>.damaged`` (the
    resumed run would overwrite it when it reaches that iteration) and its iteration skipped, so the run falls
    back to the newest complete pair; nothing is deleted.
    """
    networks = [k[len("network_"):] for k in opt if k.startswith("network_")]
    for it in reversed(_state_iters(opt["path"]["training_states"])):
        state = osp.join(opt["path"]["training_states"], f"{it}.state")
        nets = [osp.join(opt["path"]["models"], f"net_{n}_{it}.pth") for n in networks]
        if not all(osp.isfile(p) for p in nets):
            continue  # a kill between the network and the state writes: not a damaged file
        damaged = [(p, why) for p in [state] + nets for why in [file_damage(p)] if why]
        if not damaged:
            return state
        for p, why in damaged:
            if opt.get("rank", 0) != 0:
                continue
            # the resumed run writes this iteration's file again when it gets there: keep it under another name
            aside = move_aside(p, "damaged")
            logger.warning("auto_resume: skipping iteration %d: %s is damaged (%s); kept as %s", it, p, why,
                           osp.basename(aside))
    return None


def move_aside(path: str, label: str) -> str:
    """Rename ``path`` to ``<path>.<label>`` (``.<label>-2``, ... when taken) so that nothing overwrites it."""
    target = f"{path}.{label}"
    n = 1
    while osp.lexists(target):
        n += 1
        target = f"{path}.{label}-{n}"
    os.rename(path, target)
    return target


def set_resume_paths(opt: Dict[str, Any], resume_iter: int) -> None:
    """Point ``pretrain_network_*`` at the checkpoints of ``resume_iter`` (BasicSR's ``check_resume``)."""
    ignore = opt["path"].get("ignore_resume_networks") or []
    for network in [k for k in opt if k.startswith("network_")]:
        if network in ignore:
            continue
        basename = network[len("network_"):]
        opt["path"][f"pretrain_{network}"] = osp.join(opt["path"]["models"], f"net_{basename}_{resume_iter}.pth")
        logger.info("resume: %s <- %s", network, opt["path"][f"pretrain_{network}"])
    for key in [k for k in opt["path"] if k.startswith("param_key")]:
        if opt["path"][key] == "params_ema":
            opt["path"][key] = "params"


# utils.io.atomic_path names its temporaries "<target>.<12 random hex digits>.tmp"; nothing else matches
# (a user's "net_g_5.pth.backup.tmp" is not ours)
_OUR_TMP = re.compile(r"(net_\w+_(\d+|latest)\.pth|\d+\.state|\w*validation_latest\.json)\.[0-9a-f]{12}\.tmp")


def clean_stale_temporaries(opt: Dict[str, Any]) -> List[str]:
    """Remove temporary files of checkpoint/state writes that a killed run left in this experiment.

    Only names of our own making (``net_g_200.pth.<random>.tmp``, ``200.state.<random>.tmp``) in the
    experiment's ``models/``, ``training_states/`` and root are touched; each removal is logged.
    """
    removed = []
    for folder in (opt["path"].get("models"), opt["path"].get("training_states"),
                   opt["path"].get("experiments_root")):
        if not folder or not osp.isdir(folder):
            continue
        for entry in sorted(os.listdir(folder)):
            path = osp.join(folder, entry)
            if _OUR_TMP.fullmatch(entry) and osp.isfile(path) and not osp.islink(path):
                os.remove(path)
                removed.append(path)
                logger.info("removed %s, left by an interrupted checkpoint write", path)
    return removed


def load_resume_state(opt: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Our ``basicsr.train.load_resume_state``: CPU map, ``weights_only=True``, complete states only."""
    if opt.get("rank", 0) == 0:
        clean_stale_temporaries(opt)
    if opt["auto_resume"]:
        path = latest_complete_state(opt)
        if path is not None:
            opt["path"]["resume_state"] = path
            logger.info("auto_resume: resuming from %s", path)
        elif _state_iters(opt["path"]["training_states"]):
            logger.warning("auto_resume: no complete training state in %s; training starts at iteration 0 "
                           "(BasicSR archives the old experiment folder, nothing is deleted)",
                           opt["path"]["training_states"])
    else:
        path = opt["path"].get("resume_state")
    if not path:
        return None
    if not osp.isfile(path):
        raise FileNotFoundError(f"resume state not found: {path} (path.resume_state)")
    state = load_weights_only(path, "training state (path.resume_state)")
    for key in ("iter", "epoch", "optimizers", "schedulers"):
        if not isinstance(state, dict) or key not in state:
            raise ValueError(f"{path} is not a training state: it lacks {key!r}")
    set_resume_paths(opt, int(state["iter"]))
    return state
