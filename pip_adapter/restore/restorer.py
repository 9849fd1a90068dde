"""``Restorer``: a restoration network with its degradation names, ready for images of any kind and size.

    >>> r = Restorer.from_pretrained()                      # the default model shipped in the package
    >>> r = Restorer.from_checkpoint("model.safetensors")
    >>> out = r(image, degradation="rain")                 # numpy H×W×C (uint8/uint16/float) or a path
    >>> out = r(image, omega={"rain": 0.7, "noise": 0.3})
    >>> out = r(image, degradation="auto")                 # ω from the degradation classifier
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from pip_adapter.modules.pip_level import set_p2f_chunking
from pip_adapter.omega import canonical_name, parse_omega_spec, to_omega, values_checked
from pip_adapter.restore.checkpoint import load_checkpoint
from pip_adapter.restore.file_format import is_onnx_path
from pip_adapter.image_io import (DEFAULT_MAX_PIXELS, ImageInfo, array_to_float, float_to_array, pixel_scale, read_image,
                                          read_image_raw, split_array, write_image)
from pip_adapter.restore.onnx_runtime import load_onnx, onnx_device
from pip_adapter.restore.tiling import check_tiling, count_tiles, run_padded, tiled_forward
from pip_adapter.utils.metrics import image_metrics
from pip_adapter.utils.precision import PRECISIONS, precision_name
from pip_adapter.wrap.protocol import is_pip_model
from pip_adapter.zoo.registry import resolve_model

logger = logging.getLogger(__name__)

AUTO = "auto"
AUTO_MODES = ("weights", "argmax")
# argmax by default: a restorer trained on one-hot ω (the default recipe) restores a correctly classified image
# exactly as with the true ω, while a probability mix it never saw in training can cost dB (docs/RESTORE.md)
DEFAULT_AUTO_MODE = "argmax"
_LARGE_PIXELS = 4_000_000  # above this, whole-image restoration warns about memory
# pixels per band of the PIP levels' full-resolution P2F (PIPLevel.set_p2f_chunking): 64 rows of a 256-px image
P2F_CHUNK_PIXELS = 16384


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """``"auto"``/None → CUDA when available else CPU; ``"cuda"`` without CUDA is refused clearly."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {str(device)!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available here; use --device cpu or auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {dev}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    if dev.type not in ("cpu", "cuda"):
        backend = getattr(torch, dev.type, None)
        if backend is None or not getattr(backend, "is_available", lambda: False)():
            raise ValueError(f"--device {dev.type} is not available here; use cpu, cuda, cuda:N or auto")
    return dev


def resolve_precision(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` (``fp32``: None) after checking that ``device`` runs it.

    The check runs one tiny convolution under autocast: a device (or torch build) without that precision
    either raises or leaves it in float32, and either way the request is refused with what to use instead.
    """
    key = precision_name(precision)
    if key is None:
        raise ValueError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[key]
    if dtype is None:
        return None
    supported = True
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        supported = False
    else:
        try:
            with warnings.catch_warnings():
                # an unsupported autocast dtype only warns and disables autocast: the dtype check below sees it
                warnings.simplefilter("ignore")
                with torch.autocast(device.type, dtype=dtype):
                    probe = torch.nn.functional.conv2d(torch.ones(1, 1, 3, 3, device=device),
                                                       torch.ones(1, 1, 1, 1, device=device))
            supported = probe.dtype == dtype
        except (RuntimeError, TypeError, ValueError):
            supported = False
    if not supported:
        raise ValueError(f"precision {key} is not supported on {device} by this torch build; "
                         "use --precision bf16 or fp32 (bf16 runs on CPUs and on Ampere or newer GPUs)")
    return dtype


@dataclasses.dataclass
class RestoreResult:
    """What :meth:`Restorer.restore_file` did for one image it restored and wrote (an image that fails raises;
    :func:`~pip_adapter.restore.batch.restore_batch` lists those as ``failures``)."""

    input: str
    output: Optional[str]
    omega: Dict[str, float]
    chosen: str
    seconds: float
    size: Tuple[int, int]
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    unscored: Optional[str] = None  # why a ground truth was given but no PSNR/SSIM could be computed
    input_psnr: Optional[float] = None  # the degraded input against the same ground truth (what restoring gained)
    input_ssim: Optional[float] = None


class Restorer:
    """A restoration network (``forward(x, omega)``) with its degradation names and input multiple.

    Args:
        model: a PIP network (``forward(x, omega)``) or a plain network (``forward(x)``; ω is then ignored).
        degradations: type names in ω order.
        multiple: inputs are padded to a multiple of this.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` or a ``torch.device``.
        classifier: a :class:`~pip_adapter.restore.classifier.DegradationClassifier` for ``degradation="auto"``.
        tile, tile_overlap: default tiling (0 = whole image).
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: the network runs under ``torch.autocast`` to
            that dtype (weights stay float32; outputs are float32); refused when the device cannot run it.
        p2f_chunk: pixels per band of the PIP levels' full-resolution P2F (see
            :meth:`~pip_adapter.modules.PIPLevel.set_p2f_chunking`; it lowers the peak memory and changes results
            only by float rounding); 0 turns it off.  It is set on ``model``'s PIP levels.
        max_pixels: image files declaring more pixels are refused before decoding (0 or None: no limit).
    """

    def __init__(self, model: nn.Module, degradations: Sequence[str], multiple: int = 16,
                 device: Union[str, torch.device, None] = "auto", classifier: Optional[nn.Module] = None,
                 tile: int = 0, tile_overlap: int = 32, uses_omega: Optional[bool] = None,
                 precision: str = "fp32", p2f_chunk: int = P2F_CHUNK_PIXELS,
                 max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> None:
        self.device = resolve_device(device)
        self.max_pixels = int(max_pixels or 0)
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.precision = precision_name(precision)
        self.model = model.eval().to(self.device)
        set_p2f_chunking(self.model, int(p2f_chunk))
        self.degradations = list(degradations)
        self.multiple = max(1, int(multiple))
        self.classifier = classifier.eval().to(self.device) if classifier is not None else None
        if self.classifier is not None:
            cls_names = [canonical_name(n) for n in self.classifier.degradations]
            if cls_names != [canonical_name(n) for n in self.degradations]:
                raise ValueError(f"the classifier's types {self.classifier.degradations} differ from the "
                                 f"restorer's {self.degradations}")
        self.tile = int(tile or 0)
        self.tile_overlap = int(tile_overlap)
        check_tiling(self.tile, self.tile_overlap, self.multiple)  # once, before any image
        if uses_omega is None:
            # as PIPModel decides: a network with PIP levels takes ω, a plain backbone does not
            uses_omega = is_pip_model(model)
        self.uses_omega = uses_omega
        self.last_omega: Optional[Dict[str, float]] = None
        self.last_choice: Optional[str] = None

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def from_checkpoint(cls, path: str, opt: Optional[str] = None, key: Optional[str] = None,
                        device: Union[str, torch.device, None] = "auto", classifier: Optional[str] = None,
                        **kwargs: Any) -> "Restorer":
        """Load an exported checkpoint (or a BasicSR ``net_g`` + ``opt``); ``classifier`` is a classifier file.

        A ``.onnx`` export runs through onnxruntime (:class:`~pip_adapter.restore.onnx_runtime.OnnxRuntimeNet`).
        """
        if is_onnx_path(path):
            if opt is not None or key is not None:
                raise ValueError(f"{path}: --opt and --key apply to BasicSR net_g files, not to an ONNX export")
            device = onnx_device(device)
            onnx = load_onnx(path, device=device, classifier=classifier)
            return cls(onnx.model, onnx.model.degradations, multiple=onnx.model.multiple, device=device,
                       classifier=onnx.classifier, uses_omega=onnx.model.uses_omega, **kwargs)
        loaded = load_checkpoint(path, opt=opt, key=key)
        if loaded.kind == "classifier":
            raise ValueError(f"{path} is a degradation classifier, not a restoration network; pass it as "
                             "--classifier")
        cls_model = loaded.classifier
        if classifier is not None:
            cls_loaded = load_checkpoint(classifier)
            if cls_loaded.classifier is None:
                raise ValueError(f"{classifier}: holds no degradation classifier")
            cls_model = cls_loaded.classifier
        return cls(loaded.model, loaded.degradations, multiple=loaded.multiple, device=device,
                   classifier=cls_model, **kwargs)

    @classmethod
    def from_pretrained(cls, name: Optional[str] = None, device: Union[str, torch.device, None] = "auto",
                        zoo: Optional[str] = None, **kwargs: Any) -> "Restorer":
        """A model shipped in the package, by its registry name (None: the default one; ``pip-adapter models``
        lists them).  Its file's checksum is verified before it is loaded; the classifier it bundles serves
        ``degradation="auto"``.  A model file path is accepted too.  ``zoo`` names another registry folder
        (default ``$PIP_ADAPTER_ZOO``, else the package's).
        """
        path, entry = resolve_model(name, zoo=zoo)
        if entry is not None:
            logger.info("shipped model %s%s (%s)", entry.name, " [default]" if name is None else "", path)
        return cls.from_checkpoint(path, device=device, **kwargs)

    # ------------------------------------------------------------------------------------------ ω
    def omega_for(self, image: torch.Tensor, degradation: Any = None, omega: Any = None,
                  auto_mode: str = DEFAULT_AUTO_MODE, scale: float = 1.0) -> Tuple[torch.Tensor, str]:
        """(ω as 1×T on the device, a short description of the choice) for one 1×3×H×W image.

        ``image`` holds values in [0, 1], or stored values that ``scale`` maps there (only ``auto`` looks).
        """
        if degradation is not None and omega is not None:
            raise ValueError("give either degradation or omega, not both")
        spec = omega if omega is not None else degradation
        if spec is None:
            if not self.uses_omega:
                spec = {self.degradations[0]: 1.0}
            else:
                raise ValueError("say which degradation to remove: degradation='rain', a mix "
                                 "{'rain': 0.7, 'noise': 0.3} or 'auto' "
                                 f"(this model knows: {', '.join(self.degradations)})")
        if isinstance(spec, str) and spec.strip().lower() == AUTO:
            return self._auto_omega(image, auto_mode, scale)
        if isinstance(spec, str) and "=" in spec:
            spec = parse_omega_spec(spec)
        w = to_omega(spec, self.degradations, batch_size=1)
        if w.shape[0] != 1:
            raise ValueError(f"one image takes one ω row, got {w.shape[0]}")
        return w.to(self.device), _describe(w[0], self.degradations)

    def _auto_omega(self, image: torch.Tensor, auto_mode: str, scale: float = 1.0) -> Tuple[torch.Tensor, str]:
        if auto_mode not in AUTO_MODES:
            raise ValueError(f"unknown auto mode {auto_mode!r}; use one of {AUTO_MODES}")
        if self.classifier is None:
            raise ValueError("degradation 'auto' needs a degradation classifier: pass --classifier FILE or "
                             "export the model with one (pip-adapter export --classifier ...)")
        probs = self.classifier.predict_proba(image, scale=scale).float().cpu()
        if auto_mode == "argmax":
            w = torch.zeros_like(probs)
            w[int(probs.argmax())] = 1.0
        else:
            w = probs
        w = to_omega(w[None], self.degradations, batch_size=1)
        top = int(probs.argmax())
        desc = f"auto:{self.degradations[top]} ({probs[top].item():.0%})"
        if auto_mode == "weights":
            desc += " " + _describe(w[0], self.degradations)
        return w.to(self.device), desc

    # ------------------------------------------------------------------------------------------ restoring
    def _forward(self, omega: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        dtype = self.autocast_dtype

        def fn(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(x.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
                out = self.model(x, omega.expand(x.shape[0], -1)) if self.uses_omega else self.model(x)
            return out.float()
        return fn

    def restore_tensor(self, x: torch.Tensor, omega: torch.Tensor, tile: Optional[int] = None,
                       tile_overlap: Optional[int] = None, progress: Optional[Callable[[int], None]] = None,
                       scale: float = 1.0) -> torch.Tensor:
        """Restore a 1×3×H×W image (on any device) with ω (1×T); returns float 1×3×H×W in [0, 1] on the CPU.

        ``x`` is float in [0, 1], or stored values (uint8, uint16) that ``scale`` maps there: with tiles only
        one tile at a time is converted to float.  ω is validated once, on the host, before any tile runs.
        """
        if self.uses_omega:
            omega = to_omega(omega.detach().float().cpu(), self.degradations, batch_size=1)
        return self._restore_checked(x, omega, tile, tile_overlap, progress, scale)

    @torch.inference_mode()
    def _restore_checked(self, x: torch.Tensor, omega: torch.Tensor, tile: Optional[int],
                         tile_overlap: Optional[int], progress: Optional[Callable[[int], None]],
                         scale: float) -> torch.Tensor:
        """:meth:`restore_tensor` with a ω already validated: the forwards (one per tile) check its shape only."""
        tile = self.tile if tile is None else int(tile or 0)
        overlap = self.tile_overlap if tile_overlap is None else int(tile_overlap)
        fn = self._forward(omega.to(self.device))
        h, w = x.shape[-2:]
        with values_checked():
            if tile and (h > tile or w > tile):
                check_tiling(tile, overlap, self.multiple)  # a per-call tile gets the same clear message
                out = tiled_forward(fn, x.cpu(), tile=tile, overlap=overlap, multiple=self.multiple,
                                    device=self.device, progress=progress, scale=scale)
            else:
                if h * w > _LARGE_PIXELS:
                    logger.warning("restoring a %dx%d image in one piece needs full-size feature maps; "
                                   "use tiles (--tile 512) if memory runs short", w, h)
                xf = x.to(self.device, torch.float32)
                if scale != 1.0:
                    xf = xf * scale
                out = run_padded(fn, xf, self.multiple).float().cpu()
                del xf
                if progress is not None:
                    progress(1)
        if not bool(torch.isfinite(out).all()):
            # clamping would turn NaN into a black image written as a success
            raise ValueError("the network's output holds NaN or infinite values (a damaged model, or a ω it "
                             "cannot take); nothing was written for this image")
        return out.clamp_(0.0, 1.0)

    def num_steps(self, height: int, width: int, tile: Optional[int] = None,
                  tile_overlap: Optional[int] = None) -> int:
        """How many network runs one image of this size takes (for progress bars)."""
        tile = self.tile if tile is None else int(tile or 0)
        overlap = self.tile_overlap if tile_overlap is None else int(tile_overlap)
        if tile and (height > tile or width > tile):
            if self.multiple > 1:
                tile = int(math.ceil(tile / self.multiple) * self.multiple)
            return count_tiles(height, width, tile, overlap, self.multiple)
        return 1

    def restore_array(self, rgb: np.ndarray, degradation: Any = None, omega: Any = None,
                      auto_mode: str = DEFAULT_AUTO_MODE, tile: Optional[int] = None, tile_overlap: Optional[int] = None,
                      progress: Optional[Callable[[int], None]] = None) -> Tuple[np.ndarray, Dict[str, float], str]:
        """Float RGB H×W×3 in [0, 1] → (restored float RGB, ω as {name: weight}, description)."""
        return self._restore_pixels(np.ascontiguousarray(rgb, dtype=np.float32), 1.0, degradation, omega,
                                    auto_mode, tile, tile_overlap, progress)

    def _restore_pixels(self, pixels: np.ndarray, scale: float, degradation: Any, omega: Any, auto_mode: str,
                        tile: Optional[int], tile_overlap: Optional[int],
                        progress: Optional[Callable[[int], None]]) -> Tuple[np.ndarray, Dict[str, float], str]:
        """Restore H×W×(1|3) pixels as stored (values × ``scale`` in [0, 1]); gray is used as three channels."""
        with warnings.catch_warnings():
            # read-only arrays (np.asarray of a PIL image) are fine: the view is only read
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            x = torch.from_numpy(pixels).permute(2, 0, 1)[None]  # a view: no copy of the image
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        w, desc = self.omega_for(x, degradation=degradation, omega=omega, auto_mode=auto_mode, scale=scale)
        out = self._restore_checked(x, w, tile, tile_overlap, progress, scale)  # omega_for validated w
        restored = out[0].permute(1, 2, 0).numpy()
        weights = {n: float(v) for n, v in zip(self.degradations, w[0].cpu().tolist())}
        self.last_omega, self.last_choice = weights, desc
        return restored, weights, desc

    def _restore_split(self, pixels: np.ndarray, info: ImageInfo, **kwargs: Any) -> Tuple[np.ndarray, Dict[str, float], str]:
        if info.dtype == "float32":  # floats need clipping to [0, 1]: convert once (they are float already)
            pixels, _ = array_to_float(pixels)
            scale = 1.0
        else:
            scale = pixel_scale(info)
        return self._restore_pixels(np.ascontiguousarray(pixels), scale, kwargs.pop("degradation", None),
                                    kwargs.pop("omega", None), kwargs.pop("auto_mode", DEFAULT_AUTO_MODE),
                                    kwargs.pop("tile", None), kwargs.pop("tile_overlap", None),
                                    kwargs.pop("progress", None))

    def __call__(self, image: Union[np.ndarray, str, os.PathLike], degradation: Any = None, omega: Any = None,
                 auto_mode: str = DEFAULT_AUTO_MODE, tile: Optional[int] = None,
                 tile_overlap: Optional[int] = None) -> np.ndarray:
        """Restore an image (numpy H×W[×C], RGB(A), uint8/uint16/float — or a path); same dtype/channels out.

        ``degradation``: a name, ``"auto"``, or ``"rain=0.7,noise=0.3"``; ``omega``: anything
        :func:`pip_adapter.omega.to_omega` accepts.  ``self.last_omega`` holds the ω used.
        """
        if isinstance(image, (str, os.PathLike)):
            pixels, info = read_image_raw(os.fspath(image), self.max_pixels)
        else:
            pixels, info = split_array(image)
        restored, _, _ = self._restore_split(pixels, info, degradation=degradation, omega=omega,
                                             auto_mode=auto_mode, tile=tile, tile_overlap=tile_overlap)
        return float_to_array(restored, info)

    def restore_file(self, src: str, dst: str, degradation: Any = None, omega: Any = None,
                     auto_mode: str = DEFAULT_AUTO_MODE, tile: Optional[int] = None, tile_overlap: Optional[int] = None,
                     overwrite: bool = False, gt: Optional[str] = None,
                     progress: Optional[Callable[[int], None]] = None,
                     on_steps: Optional[Callable[[int], None]] = None) -> RestoreResult:
        """Read ``src``, restore it, write ``dst`` in the same bit depth and channels; PSNR/SSIM against ``gt``
        of the result and of the input (``input_psnr``, ``input_ssim``), compared the same way.

        ``on_steps(n)`` is told how many network runs (tiles) the image takes; ``progress(1)`` follows each.
        """
        if os.path.exists(dst) and not overwrite:
            raise FileExistsError(f"{dst} exists; pass --overwrite to replace it")
        start = time.perf_counter()
        pixels, info = read_image_raw(src, self.max_pixels)
        if on_steps is not None:
            on_steps(self.num_steps(pixels.shape[0], pixels.shape[1], tile, tile_overlap))
        restored, weights, desc = self._restore_split(pixels, info, degradation=degradation, omega=omega,
                                                      auto_mode=auto_mode, tile=tile, tile_overlap=tile_overlap,
                                                      progress=progress)
        del pixels
        out = float_to_array(restored, info)
        del restored
        write_image(dst, _writable(out, dst, info), overwrite=overwrite)
        result = RestoreResult(input=src, output=dst, omega=weights, chosen=desc,
                               seconds=time.perf_counter() - start, size=(out.shape[0], out.shape[1]))
        if gt is not None:
            # the output is written either way; a ground truth that cannot be compared only loses the score
            try:
                gt_rgb, gt_info = read_image(gt, self.max_pixels)
                # compare what was written (its bit depth and channels) with the ground truth the same way
                written, _ = array_to_float(out)
                result.psnr, result.ssim = _compare(written, info, gt_rgb, gt_info)
                del written
                degraded, _ = read_image(src)  # read again: the restore freed its copy of the input
                result.input_psnr, result.input_ssim = _compare(degraded, info, gt_rgb, gt_info)
            except (ValueError, OSError) as err:
                result.unscored = f"ground truth {gt}: {err}"
                # the result carries it (the CLI's summary lists it once); INFO, not a warning printed beside that
                logger.info("%s: restored, not scored: %s", src, result.unscored)
        return result


def _compare(written: np.ndarray, info: ImageInfo, gt: np.ndarray, gt_info: ImageInfo) -> Tuple[float, float]:
    if info.gray and gt_info.gray:
        return image_metrics(written[:, :, :1], gt[:, :, :1])
    return image_metrics(written, gt)


def _writable(arr: np.ndarray, dst: str, info: ImageInfo) -> np.ndarray:
    """Float images can only be stored as TIFF; JPEG only as 8-bit — convert rather than fail late."""
    ext = os.path.splitext(dst)[1].lower()
    if ext in (".jpg", ".jpeg") and arr.dtype != np.uint8:
        logger.warning("%s: JPEG holds 8 bits; the %s result is written as 8-bit", dst, arr.dtype)
        scale = 255.0 / 65535.0 if arr.dtype == np.uint16 else 255.0
        arr = np.clip(np.round(arr.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    if arr.dtype == np.float32 and ext not in (".tif", ".tiff"):
        arr = np.round(np.clip(arr, 0, 1) * 65535.0).astype(np.uint16)
    return arr


def _describe(weights: torch.Tensor, names: Sequence[str]) -> str:
    """``"rain"`` for a one-hot row, else ``"rain=0.70,noise=0.30"`` (non-zero entries)."""
    vals = weights.detach().float().cpu().tolist()
    nonzero = [(n, v) for n, v in zip(names, vals) if v > 0]
    if len(nonzero) == 1:
        return nonzero[0][0]
    return ",".join(f"{n}={v:.2f}" for n, v in nonzero)
