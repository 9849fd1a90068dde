"""Running an exported ONNX graph with onnxruntime behind the same interface as a PyTorch network.

:class:`OnnxRuntimeNet` is an ``nn.Module`` without parameters whose ``forward(image, omega)`` runs an
onnxruntime session.  The :class:`~pip_adapter.restore.restorer.Restorer` therefore drives a PyTorch network
and an ONNX graph the same way: ω resolution, padding, tiling, image I/O and the classifier are one code path.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Dict, Optional, Union

import torch
import torch.nn as nn

from pip_adapter.restore.checkpoint import check_meta, load_checkpoint
from pip_adapter.restore.file_format import META_KEY, CheckpointError, parse_meta
from pip_adapter.restore.onnx_export import INPUT_NAMES, OUTPUT_NAME, require

logger = logging.getLogger(__name__)


def quiet_onnxruntime() -> Any:
    """onnxruntime, imported, with its telemetry events turned off (restoring is offline: nothing is reported)."""
    ort = require("onnxruntime", "Restoring with an ONNX model")
    disable = getattr(ort, "disable_telemetry_events", None)
    if disable is not None:
        disable()
    return ort


def onnx_device(device: Union[str, torch.device, None]) -> torch.device:
    """``"auto"``/None → CUDA when both torch and onnxruntime (onnxruntime-gpu) have it, else CPU."""
    if device is None or str(device) == "auto":
        ort = quiet_onnxruntime()
        use_cuda = torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()
        return torch.device("cuda" if use_cuda else "cpu")
    return torch.device(device)


def _providers(ort: Any, device: torch.device) -> list:
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError("--device cuda with an ONNX model needs onnxruntime-gpu (pip install onnxruntime-gpu); "
                             "use --device cpu, or restore from the .safetensors export on the GPU")
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRuntimeNet(nn.Module):
    """An exported ONNX graph (``image``, ``omega`` → ``restored``) run by onnxruntime, as an ``nn.Module``.

    Args:
        path: the ``.onnx`` file written by :func:`~pip_adapter.restore.onnx_export.export_onnx`.
        device: ``cpu`` (default) or ``cuda`` (needs onnxruntime-gpu); outputs come back on the input's device.
        threads: onnxruntime's intra-op threads (default: ``torch.get_num_threads()``, which follows
            ``OMP_NUM_THREADS``).

    Attributes ``meta`` (the pip-adapter document), ``degradations``, ``multiple`` and ``uses_omega`` come from
    the file's metadata.
    """

    def __init__(self, path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
                 threads: Optional[int] = None) -> None:
        super().__init__()
        ort = quiet_onnxruntime()
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        try:
            self._session = ort.InferenceSession(self.path, options, providers=_providers(ort, torch.device(device)))
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types for bad files
            raise CheckpointError(f"{self.path}: onnxruntime cannot load this ONNX file ({type(err).__name__}: "
                                  f"{str(err)[:300]}); it is corrupt or not an ONNX graph") from err
        self.meta = read_onnx_meta(self._session, self.path)
        self.degradations = list(self.meta.get("degradations") or [])
        self.multiple = max(1, int(self.meta.get("multiple") or 1))
        self.uses_omega = onnx_uses_omega(self.meta, self.path)
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if inputs[:1] != [INPUT_NAMES[0]] or OUTPUT_NAME not in outputs:
            raise CheckpointError(f"{self.path}: the graph's inputs {inputs} / outputs {outputs} are not "
                                  f"{list(INPUT_NAMES)} → {OUTPUT_NAME!r}; export it with 'pip-adapter export "
                                  "--format onnx'")
        self._takes_omega = INPUT_NAMES[1] in inputs

    def forward(self, image: torch.Tensor, omega: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Restored N×C×H×W (float32, on ``image``'s device) for float images N×C×H×W and ω N×T."""
        if torch.is_autocast_enabled(image.device.type):
            raise ValueError("an ONNX model runs in float32: reduced precision applies to PyTorch checkpoints "
                             "(restore from the .safetensors export, or drop the precision option)")
        feeds = {INPUT_NAMES[0]: image.detach().to("cpu", torch.float32).contiguous().numpy()}
        if self._takes_omega:
            if omega is None:
                omega = torch.zeros(image.shape[0], max(1, len(self.degradations)))
            feeds[INPUT_NAMES[1]] = omega.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            out = self._session.run([OUTPUT_NAME], feeds)[0]
        except Exception as err:  # noqa: BLE001 - onnxruntime's own exception types: one image fails, not the run
            first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
            raise ValueError(f"{os.path.basename(self.path)}: onnxruntime cannot run this input "
                             f"({type(err).__name__}: {first}); the graph does not fit its metadata — "
                             "re-export it with 'pip-adapter export --format onnx'") from err
        return torch.from_numpy(out).to(image.device)

    def extra_repr(self) -> str:
        return f"path={self.path!r}, degradations={self.degradations}, multiple={self.multiple}"


def read_onnx_meta(session: Any, path: str) -> Dict[str, Any]:
    """The pip-adapter document in an onnxruntime session's model metadata."""
    props = dict(session.get_modelmeta().custom_metadata_map or {})
    if META_KEY not in props:
        raise CheckpointError(f"{path}: this ONNX file has no pip-adapter metadata ({META_KEY!r} in its "
                              "metadata_props); export it with 'pip-adapter export --format onnx'")
    meta = parse_meta(props[META_KEY], path)
    if meta.get("kind") != "restorer":
        raise CheckpointError(f"{path}: the ONNX metadata describes a {meta.get('kind')!r}, not a restorer")
    check_meta(meta, path)  # the bounds and names of a safetensors export: multiple, unique addressable names
    return meta


def onnx_uses_omega(meta: Dict[str, Any], path: str) -> bool:
    """Whether the graph reads ω (``onnx.uses_omega``): a boolean, and true for every PIP network."""
    onnx_doc = meta.get("onnx") or {}
    if not isinstance(onnx_doc, dict):
        raise CheckpointError(f"{path}: the ONNX metadata's 'onnx' entry is not a mapping; re-export it")
    is_pip = bool(meta.get("pip_config"))
    uses = onnx_doc.get("uses_omega", is_pip)
    if not isinstance(uses, bool):
        raise CheckpointError(f"{path}: the ONNX metadata's 'uses_omega' is {uses!r}, not true or false; re-export it")
    if is_pip and not uses:
        # a PIP graph fed ω = 0 restores nothing in particular: refuse rather than guess
        raise CheckpointError(f"{path}: the ONNX metadata says 'uses_omega: false' for a PIP network, which needs ω; "
                              "the file is damaged or crafted — re-export it")
    return uses


def read_onnx_metadata_props(path: str) -> Dict[str, str]:
    """All ``metadata_props`` of an ONNX file as a dict (needs the ``onnx`` package)."""
    onnx = require("onnx", "Reading ONNX metadata")
    model = onnx.load(os.fspath(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


@dataclasses.dataclass
class LoadedOnnx:
    """What :func:`load_onnx` returns: the runnable graph, its document, and the classifier found beside it."""

    model: OnnxRuntimeNet
    meta: Dict[str, Any]
    classifier: Optional[nn.Module] = None


def load_onnx(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu",
              classifier: Optional[str] = None) -> LoadedOnnx:
    """Open an exported ONNX restorer; its classifier is ``classifier`` if given, else the file its metadata names
    (``classifier_file``, beside the graph), else none."""
    net = OnnxRuntimeNet(path, device=device)
    cls_path = classifier
    if cls_path is None and net.meta.get("classifier_file"):
        cls_path = os.path.join(os.path.dirname(os.path.abspath(net.path)),
                                os.path.basename(str(net.meta["classifier_file"])))
        if not os.path.isfile(cls_path):
            logger.warning("%s names its classifier %s, which is missing: '--degradation auto' needs it "
                           "(or --classifier FILE)", net.path, cls_path)
            cls_path = None
    cls_model = None
    if cls_path is not None:
        loaded = load_checkpoint(cls_path)
        if loaded.classifier is None:
            raise ValueError(f"{cls_path}: holds no degradation classifier")
        cls_model = loaded.classifier
    return LoadedOnnx(model=net, meta=net.meta, classifier=cls_model)
