"""Option values checked before a run starts (before BasicSR archives a previous experiment), each
failure one line naming the option and the file."""
from __future__ import annotations

import difflib
import logging
from os import path as osp
from typing import Any, Dict

import torch

from basicsr.utils.registry import LOSS_REGISTRY

from pip_adapter.data import MixedDegradationDataset
from pip_adapter.utils.io import OptionFileError

from .archs import build_arch
from .model import amp_dtype

logger = logging.getLogger(__name__)


def check_datasets(opt: Dict[str, Any]) -> Dict[int, MixedDegradationDataset]:
    """Build every ``MixedDegradationDataset`` of the options, and check other datasets' data roots.

    Runs before BasicSR creates (or archives) ``experiments/<name>`` or ``results/<name>``, so a run that
    stops for missing or damaged data leaves the folders as they were.  Returns the built datasets keyed by
    ``id`` of their option dict, for BasicSR's ``build_dataset`` to take instead of building them again.
    """
    built: Dict[int, MixedDegradationDataset] = {}
    for phase, dataset in opt["datasets"].items():
        if dataset.get("type") == "MixedDegradationDataset":
            built[id(dataset)] = MixedDegradationDataset(dict(dataset))
            if not phase.startswith("train"):
                # a size mismatch in a validation pair would otherwise stop the run at its first validation
                try:
                    built[id(dataset)].check_pair_sizes()
                except ValueError as err:
                    raise OptionFileError(f"datasets.{phase}: {err}") from err
            continue
        for key in ("dataroot_gt", "dataroot_lq"):
            root = dataset.get(key)
            if isinstance(root, str) and not osp.exists(root):
                raise FileNotFoundError(f"datasets.{phase}.{key} not found: {root}")
    return built


# option keys of BasicSR's SRModel that name a loss in LOSS_REGISTRY
_LOSS_KEYS = ("pixel_opt", "perceptual_opt", "gan_opt")


def _checked(check: Any, *args: Any) -> Any:
    """``check(*args)`` with its ``ValueError`` reported as an option-file error (one line, exit 2)."""
    try:
        return check(*args)
    except ValueError as err:
        raise OptionFileError(str(err)) from err


# options BasicSR (or we) turn into integers with int(): "abc" there would be "invalid literal for int()"
_WHOLE_NUMBERS = (("manual_seed",), ("num_gpu",), ("logger", "print_freq"), ("logger", "save_checkpoint_freq"),
                  ("val", "val_freq"), ("train", "total_iter"))
_DATASET_WHOLE_NUMBERS = ("batch_size_per_gpu", "num_worker_per_gpu", "gt_size")


def check_whole_numbers(opt: Dict[str, Any], source: str) -> None:
    """Refuse a non-integer where an option must be a whole number, naming the option and the file."""
    def check(where: str, value: Any) -> None:
        if value is None or (where == "num_gpu" and value == "auto"):
            return
        # BasicSR's own option files write counts as `!!float 5e3`: a whole-valued float is a whole number
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole:
            raise OptionFileError(f"{source}: {where} must be a whole number, got {value!r}")

    for path in _WHOLE_NUMBERS:
        node: Any = opt
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            check(".".join(path), node.get(path[-1]))
    for phase, dataset in (opt.get("datasets") or {}).items():
        if isinstance(dataset, dict):
            for key in _DATASET_WHOLE_NUMBERS:
                check(f"datasets.{phase}.{key}", dataset.get(key))


def check_run_options(opt: Dict[str, Any], is_train: bool = True) -> None:
    """Check the values BasicSR would only meet after it created (or archived) ``experiments/<name>``.

    ``train.total_iter`` (a whole number >= 1), ``train.amp`` / ``val.amp``, every loss type, and the network
    (built on the ``meta`` device, so no memory): a typo fails here with the option's name, and a failed start
    leaves the previous experiment folder where it was.
    """
    train = opt.get("train") if is_train else None
    if is_train:
        if not isinstance(train, dict):
            raise OptionFileError("train must be a mapping (total_iter, optim_g, ...)")
        total = train.get("total_iter")
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise OptionFileError(f"train.total_iter must be a whole number >= 1, got {total!r}")
        _checked(amp_dtype, train.get("amp"), "train.amp")
        for key in _LOSS_KEYS:
            loss = train.get(key)
            if loss is None:
                continue
            kind = loss.get("type") if isinstance(loss, dict) else None
            if not isinstance(kind, str) or kind not in LOSS_REGISTRY:
                known = sorted(name for name, _ in LOSS_REGISTRY)
                close = difflib.get_close_matches(str(kind), known, n=1)
                raise OptionFileError(f"train.{key}.type {kind!r} is not a known loss"
                                      + (f" (did you mean {close[0]!r}?)" if close else "")
                                      + f"; known: {', '.join(known)}")
    if isinstance(opt.get("val"), dict):
        _checked(amp_dtype, opt["val"].get("amp"), "val.amp")
    network = opt.get("network_g")
    if not isinstance(network, dict) or "type" not in network:
        raise OptionFileError("network_g must be a mapping with a 'type' (the network to build)")
    try:
        with torch.device("meta"):
            build_arch(dict(network))
    except (TypeError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise OptionFileError(f"network_g: cannot build the network: {message}") from err
    except Exception as err:  # noqa: BLE001 - a network that needs real tensors to build: BasicSR builds it later
        logger.debug("network_g not checked on the meta device (%s: %s)", type(err).__name__, err)
