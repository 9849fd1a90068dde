"""Self-describing checkpoints: rebuilding the network a file describes, loading its weights, exporting one.

The file format itself (reading and writing tensors + the JSON document) is :mod:`pip_adapter.restore.file_format`;
this module builds networks from that document.  A bare BasicSR ``net_g_*.pth`` with its option YAML is accepted
as well.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from pip_adapter.networks import NETWORKS, build_network  # noqa: F401  (NETWORKS: public here too)
from pip_adapter.omega import RESERVED_NAMES, canonical_name, normalise_names
from pip_adapter.restore.classifier import DegradationClassifier
from pip_adapter.restore.file_format import (CLASSIFIER_PREFIX, CLASSIFIER_TYPE, FORMAT, FORMAT_VERSION,  # noqa: F401
                                             META_KEY, WEIGHT_EXTENSIONS, BasicSRCheckpoint, CheckpointError,
                                             cpu_tensor_copies, network_from_options, parse_meta,
                                             read_basicsr_checkpoint, read_checkpoint, select_params, split_bundle,
                                             write_checkpoint_file)
from pip_adapter.utils.state_dict import state_dict_fit, strip_parallel_prefix
from pip_adapter.wrap.pipnet import build_pipnet

logger = logging.getLogger(__name__)

@dataclasses.dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` returns: the built networks (weights loaded) and the document."""

    model: nn.Module
    meta: Dict[str, Any]
    classifier: Optional[nn.Module] = None

    @property
    def degradations(self) -> List[str]:
        """Degradation names in ω order."""
        return list(self.meta.get("degradations") or [])

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this before the forward pass."""
        return int(self.meta.get("multiple") or 1)

    @property
    def kind(self) -> str:
        """``"restorer"`` or ``"classifier"``."""
        return str(self.meta.get("kind"))


# ----------------------------------------------------------------------------------------------- building

def default_builder(network: Mapping[str, Any]) -> nn.Module:
    """:func:`pip_adapter.networks.build_network` (the name this module gave it before there was one builder)."""
    return build_network(network)


def _build_from_meta(meta: Mapping[str, Any]) -> nn.Module:
    """Rebuild the network a document describes (``pip_config`` first: it is exact; else ``network``)."""
    pip_config = meta.get("pip_config")
    if pip_config and pip_config.get("backbone"):
        return build_pipnet(pip_config)
    network = meta.get("network")
    if not network or "type" not in network:
        raise CheckpointError("the checkpoint's metadata has neither 'pip_config' nor a 'network' with a 'type'")
    return build_network(network)


def describe_network(model: nn.Module) -> Tuple[Optional[Dict[str, Any]], List[str], int]:
    """(pip_config or None, degradation names, input multiple) read off a built network."""
    pip_config = None
    if hasattr(model, "pip_config") and callable(model.pip_config):
        pip_config = model.pip_config()
        json.dumps(pip_config)  # fail here, not at load time, if the wrapper gave something non-JSON
    names = list(getattr(model, "degradations", None) or [])
    return pip_config, names, infer_multiple(model)


def infer_multiple(model: nn.Module, default: int = 16) -> int:
    """The size multiple a network needs: an explicit ``padder_size``, else 2 ** (number of skip levels)."""
    multiple = 1
    for module in model.modules():
        size = getattr(module, "padder_size", None)
        if isinstance(size, int) and size > multiple:
            multiple = size
    levels = getattr(model, "pip_levels", None)
    if levels is not None:
        try:
            multiple = max(multiple, 2 ** len(levels))
        except TypeError:
            pass
    return multiple if multiple > 1 else default


# ----------------------------------------------------------------------------------------------- state dicts

def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` listing missing/unexpected keys and shape mismatches, if any."""
    fit = state_dict_fit(model.state_dict(), state)
    if not fit.ok:
        raise CheckpointError(f"{source}: the weights do not match the network configuration — {fit.describe()}. "
                              "Was it trained with another configuration (backbone, widths, degradations)?")


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Check then load ``state`` strictly into ``model`` (in eval mode, on CPU)."""
    state = strip_parallel_prefix(state)
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)
    return model.eval()


# a block count or size in the metadata beyond this multiple of what the file's tensors hold is not credible
_META_INT_SLACK = 1024
# padding to a multiple of 4096 turns a 53×37 image into a 4096×4096 forward; 2^8 is eight 2× downsamplings
MAX_MULTIPLE = 256
# the meta-device build may register at most this many parameters and buffers per tensor of the file (plus a
# margin): a block count of 20000 is refused after a few hundred modules instead of minutes and gigabytes later
_REGISTRATION_SLACK = 4
_REGISTRATION_MARGIN = 256


def check_meta(meta: Mapping[str, Any], path: str, tensors: Optional[Mapping[str, torch.Tensor]] = None) -> None:
    """Validate a pip-adapter document before anything is built from it (crafted or damaged files).

    Checks the kind, ``multiple`` (an integer >= 1), the degradation names (non-empty strings that
    ``--degradation``/``--omega`` can address, unique once canonical, the same as ``pip_config``'s), and —
    given the file's ``tensors`` — that no integer of the network description exceeds what those tensors
    could hold (a width or block count of 10^9 would otherwise be allocated before any shape is compared).
    """
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: invalid pip-adapter metadata: {what}; the file is damaged or was not "
                               "written by 'pip-adapter export' — re-export it")

    kind = meta.get("kind")
    if kind not in ("restorer", "classifier"):
        raise bad(f"'kind' must be 'restorer' or 'classifier', got {kind!r}")
    multiple = meta.get("multiple", 1)
    if multiple is None:
        multiple = 1
    if isinstance(multiple, bool) or not isinstance(multiple, int) or not 1 <= multiple <= MAX_MULTIPLE:
        raise bad(f"'multiple' must be an integer from 1 to {MAX_MULTIPLE}, got {multiple!r}")
    names = meta.get("degradations")
    if not isinstance(names, list) or not names:
        raise bad(f"'degradations' must be a non-empty list of names, got {names!r}")
    canon = []
    for n in names:
        if not isinstance(n, str) or not canonical_name(n) or any(c in n for c in ",=") or n != n.strip() \
                or canonical_name(n) in RESERVED_NAMES:
            raise bad(f"degradation name {n!r} cannot be addressed by --degradation/--omega")
        canon.append(canonical_name(n))
    dupes = sorted({n for n in canon if canon.count(n) > 1})
    if dupes:
        raise bad(f"degradation names repeat {dupes} (-d {dupes[0]} would be ambiguous)")
    pip_config = meta.get("pip_config")
    if pip_config is not None and not isinstance(pip_config, Mapping):
        raise bad("'pip_config' must be a mapping")
    network = meta.get("network")
    if network is not None and not isinstance(network, Mapping):
        raise bad("'network' must be a mapping")
    if isinstance(pip_config, Mapping) and pip_config.get("degradations") is not None:
        if [canonical_name(n) if isinstance(n, str) else n for n in pip_config["degradations"]] != canon:
            raise bad(f"pip_config's degradations {pip_config['degradations']} differ from {names}")
    if tensors:
        check_sizes_bounded(dict(network=network, pip_config=pip_config), tensors, path)


def check_sizes_bounded(description: Any, tensors: Mapping[str, torch.Tensor], path: str) -> None:
    """Refuse a network description holding an integer far beyond anything the file's tensors could hold.

    A width or block count of 10^9 would be allocated (or looped over) before any shape is compared; every
    real size or count is at most the largest tensor dimension or the number of tensors (times a margin).
    """
    if not tensors:
        return
    largest = max((max(t.shape) for t in tensors.values() if t.dim()), default=1)
    limit = _META_INT_SLACK * max(len(tensors), largest)
    for where, value in _ints(description):
        if value > limit:
            raise CheckpointError(f"{path}: invalid network description: {where} = {value} is far beyond what "
                                  f"the file's {len(tensors)} tensors hold (largest dimension {largest}); the file "
                                  "is damaged or crafted — re-export it")


def _ints(obj: Any, where: str = "") -> List[Tuple[str, int]]:
    """Every integer in a JSON document, with its dotted location."""
    if isinstance(obj, bool):
        return []
    if isinstance(obj, int):
        return [(where, obj)]
    if isinstance(obj, Mapping):
        return [x for k, v in obj.items() for x in _ints(v, f"{where}.{k}" if where else str(k))]
    if isinstance(obj, (list, tuple)):
        return [x for i, v in enumerate(obj) for x in _ints(v, f"{where}[{i}]")]
    return []


def check_sizes_on_meta_device(build: Callable[[], nn.Module], state: Mapping[str, torch.Tensor],
                               path: str) -> None:
    """Run ``build`` on the ``meta`` device (no memory) and compare the network's shapes with ``state``.

    Refuses a description whose network would not fit the file's tensors before the real network is
    allocated.  Networks that cannot be built on the meta device are left to the ordinary check.
    """
    limit = _REGISTRATION_SLACK * len(state) + _REGISTRATION_MARGIN
    try:
        with torch.device("meta"), _registration_limit(limit, len(state), path):
            model = build()
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: cannot build the network it describes: {err}") from err
    except Exception as err:  # noqa: BLE001 - fail closed: a description we cannot size is never built for real
        raise CheckpointError(f"{path}: cannot build the network it describes ({type(err).__name__}: "
                              f"{str(err)[:200]}); the file is damaged or crafted — re-export it") from err
    check_state_dict(model, strip_parallel_prefix(state), path)


@contextlib.contextmanager
def _registration_limit(limit: int, tensors: int, path: str) -> Iterator[None]:
    """Stop a network build that registers more than ``limit`` parameters and buffers (a crafted block count)."""
    count = [0]

    def hook(module: nn.Module, name: str, value: Any) -> None:
        count[0] += 1
        if count[0] > limit:
            raise CheckpointError(f"{path}: invalid network description: it builds more than {limit} parameters "
                                  f"and buffers while the file holds {tensors} tensors; the file is damaged or "
                                  "crafted — re-export it")

    handles = [torch.nn.modules.module.register_module_parameter_registration_hook(hook),
               torch.nn.modules.module.register_module_buffer_registration_hook(hook)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# ----------------------------------------------------------------------------------------------- loading

def load_checkpoint(path: str, opt: Optional[str] = None, key: Optional[str] = None) -> LoadedCheckpoint:
    """Build the network(s) a checkpoint describes and load their weights (eval mode, CPU).

    ``path`` is an exported file (``.safetensors`` or weights-only ``.pth``), or a BasicSR ``net_g_*.pth``
    together with ``opt``, its option YAML.  ``key`` picks ``params`` / ``params_ema`` in the latter.
    """
    path = os.fspath(path)
    tensors, meta, raw = read_checkpoint(path)
    if meta is None:
        read = read_basicsr_checkpoint(path, raw if raw is not None else tensors, opt, key)
        source = {"ckpt": os.path.basename(path), "key": read.key}
        if opt is not None:
            source["opt"] = os.path.basename(opt)
        return _load_from_network(read.network, read.states[read.key], path, source=source)
    main, cls_state = split_bundle(tensors)
    check_meta(meta, path, main)
    if isinstance(meta.get("classifier"), Mapping):
        check_meta(meta["classifier"], f"{path} (classifier)", cls_state)
        check_sizes_on_meta_device(lambda: _build_from_meta(meta["classifier"]), cls_state,
                                   f"{path} (classifier)")
    check_sizes_on_meta_device(lambda: _build_from_meta(meta), main, path)
    model = load_weights(_build_checked(meta, path), main, path)
    classifier = None
    if meta.get("kind") == "classifier":
        classifier = model
    elif meta.get("classifier"):
        if not cls_state:
            raise CheckpointError(f"{path}: the metadata names a classifier but the file holds no "
                                  f"'{CLASSIFIER_PREFIX}*' weights")
        classifier = load_weights(_build_checked(meta["classifier"], path), cls_state,
                                  f"{path} (classifier)")
    return LoadedCheckpoint(model=model, meta=meta, classifier=classifier)


def _build_checked(meta: Mapping[str, Any], path: str) -> nn.Module:
    try:
        return _build_from_meta(meta)
    except CheckpointError:
        raise
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: cannot rebuild the network it describes: {err}") from err


def _load_from_network(network: Mapping[str, Any], state: Dict[str, torch.Tensor], path: str,
                       source: Dict[str, Any]) -> LoadedCheckpoint:
    # the description may come from the checkpoint itself (meta.network_g): bound it before allocating
    check_sizes_bounded(network, state, path)
    check_sizes_on_meta_device(lambda: build_network(network), state, path)
    try:
        model = build_network(network)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: cannot build the network of its option file: {err}") from err
    load_weights(model, state, path)
    meta = make_meta(model, network, source=source)
    return LoadedCheckpoint(model=model, meta=meta,
                            classifier=model if meta["kind"] == "classifier" else None)


# ----------------------------------------------------------------------------------------------- writing

def make_meta(model: nn.Module, network: Optional[Mapping[str, Any]] = None,
              source: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The JSON document describing ``model`` (built from ``network``, when known)."""
    if isinstance(model, DegradationClassifier):
        config = model.config()
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "classifier",
                "network": {"type": CLASSIFIER_TYPE, **config}, "pip_config": None,
                "degradations": list(model.degradations), "multiple": 1, "source": dict(source or {})}
    pip_config, names, multiple = describe_network(model)
    if network is None and not (pip_config and pip_config.get("backbone")):
        raise CheckpointError(
            f"cannot describe a {type(model).__name__} so that it can be rebuilt: give its network option "
            "({'type': ..., **kwargs}); for a model wrapped from a module, wrap it with "
            "backbone_config={'type': ..., **kwargs} (a registered backbone) or use PIPNet")
    if not names:
        names = normalise_names(None)
        logger.warning("%s has no degradation names; recording the defaults %s", type(model).__name__, names)
    network = dict(network) if network is not None else None
    if network is not None:
        json.dumps(network)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": "restorer",
            "network": network, "pip_config": pip_config, "degradations": names,
            "multiple": multiple, "source": dict(source or {})}


def save_checkpoint(path: str, model: nn.Module, meta: Mapping[str, Any],
                    classifier: Optional[nn.Module] = None, classifier_meta: Optional[Mapping[str, Any]] = None,
                    overwrite: bool = True) -> str:
    """Write ``model`` (+ an optional classifier) with ``meta`` to ``path`` (.safetensors or .pth), atomically."""
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    meta = dict(meta)
    tensors = cpu_tensor_copies(model)
    if classifier is not None:
        if classifier_meta is None:
            classifier_meta = make_meta(classifier)
        meta["classifier"] = dict(classifier_meta)
        tensors.update({CLASSIFIER_PREFIX + k: v for k, v in cpu_tensor_copies(classifier).items()})
    write_checkpoint_file(path, tensors, meta)
    logger.info("wrote %s (%s, %d tensors)", path, meta.get("kind"), len(tensors))
    return path


def bundled_classifier(loaded: LoadedCheckpoint, classifier: Optional[str] = None,
                       classifier_opt: Optional[str] = None, classifier_key: Optional[str] = None) -> Tuple[Optional[nn.Module], Optional[Dict[str, Any]]]:
    """(classifier, its document) to export with the restorer ``loaded``: the file ``classifier`` (checked
    against the restorer's types), else the one ``loaded`` already bundles, else (None, None)."""
    if classifier is not None:
        if loaded.kind == "classifier":
            raise ValueError("--classifier bundles a classifier into a restorer; the main checkpoint is "
                             "already a classifier")
        cls = load_checkpoint(classifier, opt=classifier_opt, key=classifier_key)
        if cls.kind != "classifier" or cls.classifier is None:
            raise ValueError(f"{classifier}: not a degradation classifier (network type "
                             f"{(cls.meta.get('network') or {}).get('type')!r})")
        if list(cls.classifier.degradations) != loaded.degradations:
            raise ValueError(f"{classifier}: the classifier's types {cls.classifier.degradations} differ from "
                             f"the restorer's {loaded.degradations}; their ω orders must match")
        return cls.classifier, cls.meta
    if loaded.classifier is not None and loaded.kind == "restorer":
        return loaded.classifier, loaded.meta.get("classifier")
    return None, None


def export_checkpoint(ckpt: str, opt: Optional[str], out: str, key: Optional[str] = None,
                      classifier: Optional[str] = None, classifier_opt: Optional[str] = None,
                      classifier_key: Optional[str] = None, overwrite: bool = False) -> LoadedCheckpoint:
    """Turn a BasicSR ``net_g_*.pth`` + option YAML (or any readable checkpoint) into a self-describing file.

    ``classifier`` (a classifier ``net_g`` + ``classifier_opt``, or an exported classifier) is bundled into a
    restorer file.  Returns what was written, loaded back from the written file.
    """
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    loaded = load_checkpoint(ckpt, opt=opt, key=key)
    meta = dict(loaded.meta)
    source = dict(meta.get("source") or {})
    if key:
        source["key"] = key
    meta["source"] = source
    cls_model, cls_meta = bundled_classifier(loaded, classifier, classifier_opt, classifier_key)
    meta.pop("classifier", None)
    save_checkpoint(out, loaded.model, meta, classifier=cls_model, classifier_meta=cls_meta, overwrite=True)
    return load_checkpoint(out)
