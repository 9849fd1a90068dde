"""Export a restoration network to ONNX: one graph ``(image, omega) -> restored`` with dynamic N, H and W.

The graph is traced with ``torch.onnx.export(..., dynamo=True)`` (``torch.export`` + onnxscript) at opset
:data:`OPSET`.  Inputs: ``image`` N×C×H×W float32 (H and W multiples of the network's ``multiple``) and
``omega`` N×T float32; output ``restored`` N×C×H×W.  A plain backbone's graph takes ``omega`` too and ignores
it, so every exported file has the same signature.

The ONNX ``metadata_props`` make the file self-describing, as the safetensors export is: ``pip_adapter`` holds
the same JSON document (:mod:`pip_adapter.restore.file_format`), and ``degradations``, ``multiple``,
``pip_config``, ``backbone_config`` and ``in_channels`` repeat its parts for other tools.  An ONNX file cannot
hold the PyTorch degradation classifier; when there is one it is written beside the graph as
``<name>.classifier.safetensors`` and the document names it (``classifier_file``).

``onnx``, ``onnxscript`` and ``onnxruntime`` are optional (``pip install -e ".[onnx]"``).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import warnings
from typing import Any, Dict, Mapping, Optional, Tuple

import torch
import torch.nn as nn

from pip_adapter.restore.checkpoint import (bundled_classifier, load_checkpoint, make_meta,
                                            save_checkpoint)
from pip_adapter.restore.file_format import META_KEY, is_onnx_path
from pip_adapter.utils.io import atomic_path
from pip_adapter.wrap.protocol import is_pip_model

logger = logging.getLogger(__name__)

OPSET = 20
INPUT_NAMES = ("image", "omega")
OUTPUT_NAME = "restored"
CLASSIFIER_SUFFIX = ".classifier.safetensors"
INSTALL_HINT = 'pip install -e ".[onnx]" (or: pip install onnx onnxscript onnxruntime)'


class MissingDependencyError(ImportError, ValueError):
    """An optional package is not installed (a ``ValueError`` too, so the CLI reports it as an error line)."""


def require(module: str, purpose: str) -> Any:
    """Import the optional package ``module`` or raise :class:`MissingDependencyError` with the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(f"{purpose} needs the optional package '{module}', which is not installed "
                                     f"({err}); install it with: {INSTALL_HINT}") from err


class OnnxForward(nn.Module):
    """``(image, omega) -> restored`` around a network: what the ONNX graph computes.

    A PIP network gets ω; a plain backbone is called as ``model(image)`` and ω is ignored.
    """

    def __init__(self, model: nn.Module, uses_omega: bool) -> None:
        super().__init__()
        self.model = model
        self.uses_omega = bool(uses_omega)

    def forward(self, image: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        """Restored images N×C×H×W for images N×C×H×W and ω N×T."""
        if self.uses_omega:
            return self.model(image, omega)
        return self.model(image)


@dataclasses.dataclass
class OnnxExportInfo:
    """What :func:`export_onnx_model` wrote and how it was checked."""

    path: str
    meta: Dict[str, Any]
    opset: int
    max_abs_diff: Optional[float]
    checked_shape: Optional[Tuple[int, ...]]
    classifier_file: Optional[str] = None


def input_channels(model: nn.Module, meta: Optional[Mapping[str, Any]] = None) -> int:
    """Image channels a network takes: from its backbone option when it says, else its first ``Conv2d``."""
    configs = []
    if meta:
        configs = [(meta.get("pip_config") or {}).get("backbone"), meta.get("network")]
    for cfg in configs:
        if isinstance(cfg, Mapping):
            for key in ("img_channel", "inp_channels", "in_channels", "in_ch", "in_nc"):
                if isinstance(cfg.get(key), int):
                    return int(cfg[key])
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return int(module.in_channels)
    raise ValueError(f"cannot tell how many image channels {type(model).__name__} takes (no Conv2d and no "
                     "in-channel option in its configuration)")


def onnx_metadata(meta: Mapping[str, Any], in_channels: int, opset: int, uses_omega: bool) -> Dict[str, str]:
    """The ONNX ``metadata_props``: the full document plus its parts as separate JSON strings.

    ``onnx.uses_omega`` says whether the graph reads ω (a plain backbone's graph takes it and ignores it).
    """
    doc = dict(meta)
    doc["onnx"] = {"opset": opset, "inputs": list(INPUT_NAMES), "output": OUTPUT_NAME, "in_channels": in_channels,
                   "uses_omega": bool(uses_omega)}
    pip_config = doc.get("pip_config") or None
    backbone = (pip_config or {}).get("backbone") or doc.get("network")
    return {
        META_KEY: json.dumps(doc, sort_keys=True),
        "degradations": json.dumps(list(doc.get("degradations") or [])),
        "multiple": str(int(doc.get("multiple") or 1)),
        "pip_config": json.dumps(pip_config, sort_keys=True),
        "backbone_config": json.dumps(backbone, sort_keys=True),
        "in_channels": str(in_channels),
    }


def export_onnx_model(model: nn.Module, meta: Mapping[str, Any], out: str, opset: int = OPSET,
                      overwrite: bool = False, verify: bool = True, atol: float = 1e-4) -> OnnxExportInfo:
    """Write ``model`` (described by ``meta``, see :func:`~pip_adapter.restore.checkpoint.make_meta`) to ``out``.

    The graph has dynamic batch, height and width (multiples of ``meta["multiple"]``).  With ``verify`` (and
    onnxruntime installed) the written graph is run on an input of another size than the traced one and compared
    with PyTorch; a difference above ``atol`` is an error and nothing is written.  The file appears atomically.
    """
    out = os.fspath(out)
    if not is_onnx_path(out):
        raise ValueError(f"{out}: an ONNX export is written to a .onnx file")
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if meta.get("kind") != "restorer":
        raise ValueError(f"only restoration networks export to ONNX, this is a {meta.get('kind')!r}; a degradation "
                         "classifier stays a .safetensors file")
    names = list(meta.get("degradations") or [])
    multiple = max(1, int(meta.get("multiple") or 1))
    uses_omega = bool(meta.get("pip_config")) or is_pip_model(model)
    channels = input_channels(model, meta)
    wrapper = OnnxForward(model.eval(), uses_omega).eval()
    program = trace_onnx(wrapper, channels, len(names), multiple, opset=opset)
    props = onnx_metadata(meta, channels, opset, uses_omega)
    program.model.metadata_props.update(props)
    program.model.producer_name = "pip-adapter"
    diff = shape = None
    with atomic_path(out) as tmp:
        program.save(tmp, external_data=False)
        if verify:
            diff, shape = _verify(tmp, wrapper, channels, len(names), multiple, atol)
    logger.info("wrote %s (ONNX opset %d, inputs image N×%d×H×W, omega N×%d; H, W multiples of %d)",
                out, opset, channels, len(names), multiple)
    return OnnxExportInfo(path=out, meta=json.loads(props[META_KEY]), opset=opset, max_abs_diff=diff,
                          checked_shape=shape)


def trace_onnx(wrapper: nn.Module, channels: int, types: int, multiple: int, opset: int = OPSET,
               example: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> Any:
    """``torch.onnx.export(dynamo=True)`` of ``wrapper(image, omega)``: the ONNX program (not yet saved).

    Batch, height and width (multiples of ``multiple``) are symbolic; with ``example`` (image, ω) the graph is
    instead fixed to that input's shape (benchmarks: one size, no symbolic shapes).
    """
    require("onnxscript", "ONNX export")
    require("onnx", "ONNX export")
    dynamic = example is None
    if example is None:
        # trace at batch 2 and H ≠ W so that no dimension is specialised to 1 or tied to another
        example = (torch.rand(2, channels, 2 * multiple, 3 * multiple, generator=torch.Generator().manual_seed(0)),
                   torch.full((2, types), 1.0 / max(1, types)))
    image, omega = example
    dynamic_shapes = None
    if dynamic:
        batch = torch.export.Dim("batch", min=1)
        dyn_h, dyn_w = torch.export.Dim("h", min=1), torch.export.Dim("w", min=1)
        dynamic_shapes = {"image": {0: batch, 2: multiple * dyn_h, 3: multiple * dyn_w}, "omega": {0: batch}}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the exporter notes that N of 'image' and 'omega' is one axis: that is the intent
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
            return torch.onnx.export(wrapper, (image, omega), dynamo=True, opset_version=opset,
                                     input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
                                     dynamic_shapes=dynamic_shapes, verbose=False, optimize=True)
    except Exception as err:  # noqa: BLE001 - torch.export / onnxscript raise many types; name the network
        inner = getattr(wrapper, "model", wrapper)
        raise ValueError(f"ONNX export of {type(inner).__name__} failed in torch.onnx.export(dynamo=True): "
                         f"{type(err).__name__}: {_summary(err)} (the full trace is chained to this error)") from err


def _summary(err: BaseException, limit: int = 600) -> str:
    """The informative part of a (long) torch.export error: its exception summary when it has one."""
    text = str(err)
    marker = "## Exception summary"
    if marker in text:
        text = text.split(marker, 1)[1]
    text = " ".join(text.split())
    return text[:limit] + (" ..." if len(text) > limit else "")


def _verify(path: str, wrapper: nn.Module, channels: int, types: int, multiple: int,
            atol: float) -> Tuple[Optional[float], Optional[Tuple[int, ...]]]:
    """Max |onnxruntime − PyTorch| on one input of another size than the traced one (None: no onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        logger.warning("onnxruntime is not installed: the ONNX graph was not checked against PyTorch (%s)",
                       INSTALL_HINT)
        return None, None
    if hasattr(ort, "disable_telemetry_events"):  # exporting is offline too: nothing is reported
        ort.disable_telemetry_events()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    x = torch.rand(1, channels, 3 * multiple, 2 * multiple, generator=torch.Generator().manual_seed(1))
    w = torch.zeros(1, types)
    w[0, 0] = 1.0
    with torch.no_grad():
        expected = wrapper(x, w).float()
    got = session.run([OUTPUT_NAME], {"image": x.numpy(), "omega": w.numpy()})[0]
    diff = float((torch.from_numpy(got) - expected).abs().max())
    if not diff <= atol:
        raise ValueError(f"the exported ONNX graph differs from PyTorch by {diff:.3g} (> {atol:g}) on a "
                           f"{tuple(x.shape)} input; the export is not faithful, nothing was written")
    logger.info("ONNX check: onnxruntime vs PyTorch max |diff| %.2g on %s", diff, tuple(x.shape))
    return diff, tuple(x.shape)


def classifier_path_for(out: str) -> str:
    """Where the classifier of the ONNX export ``out`` is written: ``<out without .onnx>.classifier.safetensors``."""
    return os.path.splitext(os.fspath(out))[0] + CLASSIFIER_SUFFIX


def export_onnx(ckpt: str, opt: Optional[str], out: str, key: Optional[str] = None,
                classifier: Optional[str] = None, classifier_opt: Optional[str] = None,
                classifier_key: Optional[str] = None, overwrite: bool = False, opset: int = OPSET, verify: bool = True) -> OnnxExportInfo:
    """A checkpoint (BasicSR ``net_g`` + option YAML, or an exported file) → an ONNX graph at ``out``.

    A degradation classifier (``classifier``, or the one bundled in ``ckpt``) is written beside it as
    ``<name>.classifier.safetensors`` (ONNX cannot hold it); ``restore -m <out> -d auto`` finds it there.
    """
    out = os.fspath(out)
    side = classifier_path_for(out)
    loaded = load_checkpoint(ckpt, opt=opt, key=key)
    if loaded.kind == "classifier":
        raise ValueError(f"{ckpt} is a degradation classifier; only restoration networks export to ONNX "
                         "(export the classifier to .safetensors)")
    cls_model, cls_meta = bundled_classifier(loaded, classifier, classifier_opt, classifier_key)
    if os.path.exists(out) and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if cls_model is not None and os.path.exists(side) and not overwrite:
        raise FileExistsError(f"{side} (the classifier written beside the ONNX graph) exists; pass --overwrite")
    meta = dict(loaded.meta)
    meta.pop("classifier", None)
    source = dict(meta.get("source") or {})
    if key:
        source["key"] = key
    meta["source"] = source
    if cls_model is not None:
        meta["classifier_file"] = os.path.basename(side)
    info = export_onnx_model(loaded.model, meta, out, opset=opset, overwrite=True, verify=verify)
    if cls_model is not None:
        save_checkpoint(side, cls_model, cls_meta if cls_meta is not None else make_meta(cls_model))
        info.classifier_file = side
    return info
