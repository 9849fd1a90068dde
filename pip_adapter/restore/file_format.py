"""The self-describing checkpoint file format: tensors plus one JSON document, read and written.

Nothing here builds a network (that is :mod:`pip_adapter.restore.checkpoint`).  Format (``format_version`` 1):

* ``.safetensors``: the state dict as tensors; the safetensors header's metadata holds one entry,
  ``"pip_adapter"``, a JSON document (below).
* ``.pth`` / ``.pt``: a weights-only torch file ``{"pip_adapter": <the same JSON as a string>, "params": state_dict}``,
  readable with ``torch.load(..., weights_only=True)``.
* ``.onnx`` (:mod:`pip_adapter.restore.onnx_export`): the same document in the ONNX ``metadata_props``.

The JSON document::

    {"format": "pip-adapter", "format_version": 1,
     "kind": "restorer" | "classifier",
     "network": {"type": "PIPNet", ...},   # the BasicSR network option (type + kwargs) that builds it
     "pip_config": {...} | null,            # PIPWrappedModel.pip_config() for PIP models
     "degradations": ["noise", ...],        # ω order
     "multiple": 16,                        # inputs are padded to a multiple of this
     "source": {...},                       # where it came from (informational)
     "classifier": {<a classifier document>} | absent}

A restorer file may also hold its degradation classifier: its tensors carry the prefix ``__classifier__.`` and its
document is the ``classifier`` entry, so ``--degradation auto`` needs only the one file.

Reading never unpickles code (safetensors, or ``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import torch

from pip_adapter.utils.io import (UnreadableFileError, atomic_torch_save, atomic_write_bytes, load_weights_only,
                                  safe_load_yaml)
from pip_adapter.utils.state_dict import strip_parallel_prefix

logger = logging.getLogger(__name__)

FORMAT = "pip-adapter"
FORMAT_VERSION = 1
META_KEY = "pip_adapter"
CLASSIFIER_PREFIX = "__classifier__."
CLASSIFIER_TYPE = "DegradationClassifier"
WEIGHT_EXTENSIONS = (".safetensors", ".pth", ".pt")
# our documents are a few kilobytes; a megabyte leaves room for large networks and bundled classifiers
MAX_META_CHARS = 1 << 20
MAX_META_DEPTH = 32


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the network it describes."""


def _depth(doc: Any) -> int:
    """How deeply a JSON value nests (iteratively: the checks that walk it later recurse)."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in value)
    return deepest


def parse_meta(text: str, path: str) -> Dict[str, Any]:
    """The pip-adapter JSON document ``text`` (read from ``path``), checked for format and version."""
    if not isinstance(text, str) or len(text) > MAX_META_CHARS:
        raise CheckpointError(f"{path}: the pip-adapter metadata is not a JSON text of at most {MAX_META_CHARS} "
                              "characters; the file is damaged or crafted — re-export it")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: the pip-adapter metadata is not valid JSON ({err})") from err
    except RecursionError:
        raise CheckpointError(f"{path}: the pip-adapter metadata is nested too deeply to be ours; the file is "
                              "damaged or crafted — re-export it") from None
    if _depth(meta) > MAX_META_DEPTH:
        raise CheckpointError(f"{path}: the pip-adapter metadata is nested more than {MAX_META_DEPTH} levels deep; "
                              "the file is damaged or crafted — re-export it")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: the metadata is not a pip-adapter document")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r} is newer than this pip-adapter reads "
                              f"({FORMAT_VERSION}); upgrade pip-adapter")
    return meta


def _torch_load(path: str) -> Any:
    # one message for pickled code (never torch's advice to load it with weights_only=False) and for damage
    try:
        return load_weights_only(path, "model file")
    except UnreadableFileError as err:
        raise CheckpointError(str(err)) from err


def _read_safetensors(path: str) -> Tuple[Dict[str, torch.Tensor], Optional[Dict[str, Any]]]:
    from safetensors import safe_open
    try:
        with safe_open(path, framework="pt", device="cpu") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # noqa: BLE001 - SafetensorError and OSError alike mean "corrupt"
        raise CheckpointError(f"{path}: not a valid safetensors file ({err}); it is corrupt or truncated, "
                              "re-export it with 'pip-adapter export'") from err
    meta = None
    if META_KEY in header:
        meta = parse_meta(header[META_KEY], path)
    return tensors, meta


def is_onnx_path(path: Any) -> bool:
    """Whether ``path`` names an ONNX graph (by its ``.onnx`` suffix)."""
    return os.fspath(path).lower().endswith(".onnx")


def read_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], Optional[Dict[str, Any]], Any]:
    """(tensors, pip-adapter document or None, the raw torch object or None) of any supported weights file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if is_onnx_path(path):
        raise CheckpointError(f"{path}: an ONNX file holds a graph, not PyTorch weights; use it with "
                              "'pip-adapter restore -m' or Restorer.from_checkpoint, or give the .safetensors / "
                              ".pth it was exported from")
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors: an 8-byte little-endian header length, then the JSON header; torch files are zip/pickle
    looks_safetensors = len(head) == 9 and head[8:9] == b"{"
    if path.endswith(".safetensors") or looks_safetensors:
        tensors, meta = _read_safetensors(path)
        return tensors, meta, None
    obj = _torch_load(path)
    if isinstance(obj, dict) and META_KEY in obj and "params" in obj:
        return dict(obj["params"]), parse_meta(obj[META_KEY], path), obj
    return {}, None, obj


def select_params(obj: Any, path: str, key: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """The state dict inside a BasicSR ``net_g_*.pth``: ``key``, else ``params_ema`` if present, else ``params``."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, got {type(obj).__name__}")
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"{path}: no key {key!r}; it holds {sorted(map(str, obj))}")
        state = obj[key]
    elif "params_ema" in obj:
        state = obj["params_ema"]
        key = "params_ema"
    elif "params" in obj:
        state = obj["params"]
        key = "params"
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj  # a plain state dict
    else:
        raise CheckpointError(f"{path}: no 'params' or 'params_ema' in it (keys: {sorted(map(str, obj))[:10]}); "
                              "pass --key to pick the state dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: {key!r} is not a state dict of tensors")
    logger.debug("%s: using %s", path, key)
    return dict(state)


def network_from_options(opt_path: str, section: str = "network_g") -> Dict[str, Any]:
    """The ``network_g`` option dict of a BasicSR YAML (safe loader)."""
    opt = safe_load_yaml(opt_path)
    if not isinstance(opt, dict) or not isinstance(opt.get(section), dict) or "type" not in opt[section]:
        raise CheckpointError(f"{opt_path}: no '{section}' section with a 'type' — is this the training option "
                              "file of the checkpoint?")
    return dict(opt[section])


@dataclasses.dataclass
class BasicSRCheckpoint:
    """A BasicSR ``net_g_*.pth`` as read: its network option, its state dicts by key, the file's own ``meta``."""

    network: Dict[str, Any]                      # from the option YAML's network_g, else the file's meta.network_g
    states: Dict[str, Dict[str, torch.Tensor]]   # "params" / "params_ema" (or the key asked), no "module." prefix
    meta: Dict[str, Any]                         # pip-adapter's BasicSR models write network_g and degradations

    @property
    def key(self) -> str:
        """The state to use by default: ``params_ema`` when the file has it (the EMA weights validate better)."""
        return "params_ema" if "params_ema" in self.states else next(iter(self.states))


def read_basicsr_checkpoint(path: str, raw: Any, opt: Optional[str] = None,
                            key: Optional[str] = None) -> BasicSRCheckpoint:
    """Interpret ``raw`` (what :func:`read_checkpoint` returned for a file without a pip-adapter document).

    The network comes from ``opt``'s ``network_g`` when given, else from the file's own ``meta.network_g``.
    ``key`` picks one state dict; without it every one of ``params`` / ``params_ema`` present is read (a bare
    state dict counts as ``params``).
    """
    path = os.fspath(path)
    saved = raw.get("meta") if isinstance(raw, dict) and isinstance(raw.get("meta"), dict) else {}
    if opt is not None:
        network = network_from_options(opt)
    else:
        network = saved.get("network_g")
        if not isinstance(network, dict) or "type" not in network:
            raise CheckpointError(f"{path}: not a self-describing pip-adapter checkpoint; give the training "
                                  "option YAML too (--opt) or export it with 'pip-adapter export'")
    if key is not None:
        keys = [key]
    else:
        keys = [k for k in ("params", "params_ema") if isinstance(raw, dict) and k in raw]
    states = ({k: dict(strip_parallel_prefix(select_params(raw, path, k))) for k in keys} if keys
              else {"params": dict(strip_parallel_prefix(select_params(raw, path)))})
    return BasicSRCheckpoint(network=dict(network), states=states, meta=dict(saved))


def split_bundle(tensors: Mapping[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """(the main network's tensors, the bundled classifier's tensors without their prefix)."""
    main = {k: v for k, v in tensors.items() if not k.startswith(CLASSIFIER_PREFIX)}
    cls = {k[len(CLASSIFIER_PREFIX):]: v for k, v in tensors.items() if k.startswith(CLASSIFIER_PREFIX)}
    return main, cls


def cpu_tensor_copies(model_or_state: Any) -> Dict[str, torch.Tensor]:
    """A module's (or a state dict's) tensors, each its own contiguous CPU copy (safetensors refuses tensors that
    share memory)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, torch.nn.Module) else model_or_state
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}


def write_checkpoint_file(path: str, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> str:
    """Write ``tensors`` with the document ``meta`` to ``path`` (.safetensors, .pth or .pt), atomically."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in WEIGHT_EXTENSIONS:
        raise ValueError(f"{path}: unknown checkpoint extension {ext!r}; use .safetensors or .pth "
                         "(or --format onnx for an ONNX graph)")
    text = json.dumps(dict(meta), sort_keys=True)
    tensors = dict(tensors)
    # written by Python, not by safetensors' or torch's own writers: a full disk is then an OSError naming
    # ``path`` ("no space left on device"), not a SafetensorError or "N requested and M written"
    if ext == ".safetensors":
        from safetensors.torch import save
        atomic_write_bytes(path, save(tensors, metadata={META_KEY: text}))
    else:
        atomic_torch_save({META_KEY: text, "params": tensors}, path)
    return path
