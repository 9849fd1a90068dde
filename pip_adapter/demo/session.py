"""What the demo page does, without the page: one loaded :class:`Restorer`, a private temporary folder, the
built-in example images, and the steps the page's buttons call (read an upload, guess ω, restore, score).

Nothing here imports gradio, so the logic is tested without a browser or a web server.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from pip_adapter.data.builtin import val_examples, val_photos
from pip_adapter.degradations import list_synthesizers
from pip_adapter.omega import canonical_name
from pip_adapter.image_io import IMAGE_EXTENSIONS, ImageInfo, ImageReadError, read_image, write_image
from pip_adapter.restore.restorer import Restorer

logger = logging.getLogger(__name__)

PREVIEW_SIZE = 1024    # longest side of the pictures sent to the browser (the download keeps the full size)
ACCEPTED = "PNG, JPEG or TIFF (8 or 16 bit; gray, RGB or RGBA), also BMP and WebP"
# a server shared by several users: a 420 KB upload can declare 12000² pixels (3 GB once decoded)
DEMO_MAX_PIXELS = 25_000_000


class DemoInputError(ValueError):
    """An upload the page cannot use; the message is shown on the page as it is."""


@dataclasses.dataclass
class Example:
    """A built-in example: a degraded validation image, and its clean photo (the ground truth)."""

    label: str
    degradation: str
    path: str
    gt: str


@dataclasses.dataclass
class LoadedInput:
    """An uploaded image as the page shows it."""

    path: str
    preview: np.ndarray      # uint8 H×W×3, at most PREVIEW_SIZE on its longest side
    description: str         # "chelsea.png: 448×304, RGB, 8-bit"


@dataclasses.dataclass
class DemoResult:
    """One restoration as the page shows it."""

    output: str              # the restored file: the input's format, bit depth and channels
    before: np.ndarray       # uint8 previews (same size)
    after: np.ndarray
    omega: Dict[str, float]  # the ω actually used
    seconds: float
    tiles: int
    psnr: Optional[float] = None
    ssim: Optional[float] = None
    gt_name: Optional[str] = None
    input_psnr: Optional[float] = None   # the input against the same ground truth
    input_ssim: Optional[float] = None

    def summary(self) -> str:
        """Markdown lines: the ω used, the time taken, and with a ground truth the PSNR/SSIM of the input and
        of the result and the PSNR gain."""
        lines = ["**ω used:** " + " · ".join(f"{n} {w:.2f}" for n, w in self.omega.items()),
                 f"**time:** {self.seconds:.2f} s ({self.tiles} tile{'s' if self.tiles != 1 else ''})"]
        if self.psnr is not None:
            lines.append(f"**PSNR:** input {_db(self.input_psnr)} → restored {_db(self.psnr)}"
                         + (f" ({self.psnr - self.input_psnr:+.2f} dB)" if _finite(self.psnr, self.input_psnr)
                            else "")
                         + f" · **SSIM:** input {_ssim(self.input_ssim)} → restored {_ssim(self.ssim)} "
                           f"(against {self.gt_name})")
        return "  \n".join(lines)


def _finite(*values: Optional[float]) -> bool:
    return all(v is not None and np.isfinite(v) for v in values)


def _db(value: Optional[float]) -> str:
    if value is None or np.isnan(value):
        return "-"
    return "inf" if np.isinf(value) else f"{value:.2f} dB"


def _ssim(value: Optional[float]) -> str:
    return "-" if value is None or np.isnan(value) else f"{value:.4f}"


def _display_name(path: str) -> str:
    return os.path.basename(path) or path


def describe_info(shape: Tuple[int, int], info: ImageInfo) -> str:
    """``"448×304, RGBA, 16-bit"`` for an image of ``shape`` (H, W) stored as ``info`` says."""
    colour = ("gray" if info.gray else "RGB") + ("+alpha" if info.gray and info.alpha is not None else
                                                 "A" if info.alpha is not None else "")
    depth = {"uint8": "8-bit", "uint16": "16-bit"}.get(info.dtype, "float")
    return f"{shape[1]}×{shape[0]}, {colour}, {depth}"


def to_preview(rgb: np.ndarray, size: int = PREVIEW_SIZE) -> np.ndarray:
    """Float RGB in [0, 1] → uint8 RGB, shrunk so that its longest side is at most ``size``."""
    import cv2

    h, w = rgb.shape[:2]
    if max(h, w) > size:
        s = size / max(h, w)
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


class DemoSession:
    """The demo's state: the model (loaded once), a temporary folder (the only place anything is written),
    and one lock so that requests run one after the other.

    Args:
        restorer: the loaded model.
        workdir: the temporary folder to write in (default: a new one, removed by :meth:`close`).
        tile, tile_overlap: default tiling for large images (0 = whole image).
        max_pixels: uploads declaring more pixels are refused before they are decoded.
    """

    def __init__(self, restorer: Restorer, workdir: Optional[str] = None, tile: int = 512,
                 tile_overlap: int = 32, max_pixels: int = DEMO_MAX_PIXELS) -> None:
        self.restorer = restorer
        self.max_pixels = int(max_pixels)
        self._own_workdir = workdir is None
        self.workdir = os.path.abspath(workdir or tempfile.mkdtemp(prefix="pip-adapter-demo-"))
        os.makedirs(self.workdir, exist_ok=True)
        self.tile = int(tile)
        self.tile_overlap = int(tile_overlap)
        self.lock = threading.Lock()
        self._examples: Optional[List[Example]] = None
        self._count = 0

    # ------------------------------------------------------------------------------------------ model facts
    @property
    def degradations(self) -> List[str]:
        """The degradation types of the model, in ω order (the model file's names)."""
        return list(self.restorer.degradations)

    @property
    def has_classifier(self) -> bool:
        """True when the model file bundles a degradation classifier (the page's "auto")."""
        return self.restorer.classifier is not None

    def pure(self, name: str) -> Dict[str, float]:
        """ω for one pure type: 1 for ``name``, 0 for the others."""
        key = canonical_name(name)
        names = [canonical_name(n) for n in self.degradations]
        if key not in names:
            raise DemoInputError(f"unknown degradation {name!r}; this model knows {', '.join(self.degradations)}")
        return {n: float(c == key) for n, c in zip(self.degradations, names)}

    # ------------------------------------------------------------------------------------------ files
    def path(self, *parts: str) -> str:
        """A path inside the session's folder (folders created)."""
        p = os.path.join(self.workdir, *parts)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        return p

    def _read(self, path: Optional[str], what: str = "image") -> Tuple[np.ndarray, ImageInfo]:
        if not path:
            raise DemoInputError(f"no {what}: upload a {ACCEPTED} file, or choose a built-in example")
        try:
            return read_image(path, self.max_pixels)
        except (ImageReadError, OSError, ValueError) as err:
            # the page shows the name the user gave, not the server's copy of the file
            why = str(err).replace(f"{path}: ", "").replace(str(path), _display_name(path))
            raise DemoInputError(f"cannot read the {what} {_display_name(path)}: {why}; upload a {ACCEPTED} "
                                 "file") from err

    def load(self, path: Optional[str]) -> LoadedInput:
        """Read an upload for display; a file that is not a readable image raises :class:`DemoInputError`."""
        rgb, info = self._read(path)
        return LoadedInput(path=str(path), preview=to_preview(rgb),
                           description=f"{_display_name(str(path))}: {describe_info(rgb.shape[:2], info)}")

    def classify(self, path: Optional[str]) -> Dict[str, float]:
        """The bundled classifier's probability per degradation type for the image at ``path``."""
        if self.restorer.classifier is None:
            raise DemoInputError("this model file has no degradation classifier, so 'auto' is not available; "
                                 "export it with one (pip-adapter export ... --classifier FILE)")
        rgb, _ = self._read(path)
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
        with self.lock:
            probs = self.restorer.classifier.predict_proba(x).float().cpu().tolist()
        return {n: float(p) for n, p in zip(self.degradations, probs)}

    def restore(self, path: Optional[str], omega: Mapping[str, float], tile: Optional[int] = None,
                gt: Optional[str] = None, progress: Optional[Callable[[int, int], None]] = None) -> DemoResult:
        """Restore the image at ``path`` with the weights ``omega`` ({type: weight}, used as given) into a new
        file of the same format in the session's folder; PSNR/SSIM against ``gt`` when given.

        ``progress(done, total)`` is called after each tile.
        """
        # the image first: after a broken upload, that is what the user must fix, whatever the sliders say
        rgb_in, _ = self._read(path)
        weights = {str(k): float(v) for k, v in omega.items()}
        if any(not np.isfinite(v) or v < 0 for v in weights.values()):
            raise DemoInputError(f"ω weights must be finite and >= 0, got {weights}")
        if not any(v > 0 for v in weights.values()):
            raise DemoInputError("every ω weight is 0: move at least one slider above 0, or press a pure type "
                                 "or auto")
        tile = self.tile if tile is None else int(tile or 0)
        if tile < 0:
            raise DemoInputError(f"the tile size must be 0 (whole image) or positive, got {tile}")
        if tile and self.tile_overlap >= tile:
            raise DemoInputError(f"the tile size ({tile}) must exceed the tile overlap ({self.tile_overlap})")
        if gt:
            self._read(gt, "ground truth")  # a bad ground truth is named before the work starts
        name = _display_name(str(path))
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_EXTENSIONS:
            ext = ".png"
        stem = re.sub(r"[^\w.-]+", "_", stem) or "image"
        with self.lock:
            self._count += 1
            dst = self.path("results", f"{self._count:04d}", f"{stem}_restored{ext}")
        total = self.restorer.num_steps(rgb_in.shape[0], rgb_in.shape[1], tile, self.tile_overlap)
        done = [0]

        def _step(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(done[0], total)

        start = time.perf_counter()
        with self.lock:
            try:
                res = self.restorer.restore_file(str(path), dst, omega=weights, tile=tile,
                                                 tile_overlap=self.tile_overlap, gt=gt or None, progress=_step)
            except (ImageReadError, OSError) as err:
                raise DemoInputError(str(err)) from err
            except ValueError as err:
                if gt and "differ in size" in str(err):
                    raise DemoInputError(f"the ground truth {_display_name(gt)} and {name} differ in size; "
                                         "upload the clean version of the same image") from err
                raise DemoInputError(str(err)) from err
        if gt and res.unscored:  # restore_file writes the result but does not score against a bad ground truth
            if "differ in size" in res.unscored:
                raise DemoInputError(f"the ground truth {_display_name(gt)} and {name} differ in size; "
                                     "upload the clean version of the same image")
            raise DemoInputError(res.unscored)
        seconds = time.perf_counter() - start
        rgb_out, _ = read_image(dst)
        return DemoResult(output=dst, before=to_preview(rgb_in), after=to_preview(rgb_out), omega=res.omega,
                          seconds=seconds, tiles=total, psnr=res.psnr, ssim=res.ssim,
                          gt_name=_display_name(gt) if gt else None, input_psnr=res.input_psnr,
                          input_ssim=res.input_ssim)

    # ------------------------------------------------------------------------------------------ examples
    def examples(self) -> List[Example]:
        """The built-in validation images (both photos, every type the model knows that has a synthesiser),
        made from scikit-image's photos by the seeded synthesisers and written once into the session's folder."""
        if self._examples is None:
            known = set(list_synthesizers())
            names = [n for n in self.degradations if canonical_name(n) in known]
            start = time.perf_counter()
            photos = val_photos()
            out: List[Example] = []
            for fname, img, _ in photos:
                write_image(self.path("examples", "gt", fname), img, overwrite=True)
            for ex in val_examples(photos, names):
                stem = os.path.splitext(ex.file_name)[0]
                path = self.path("examples", ex.folder, ex.file_name)
                write_image(path, ex.lq, overwrite=True)
                out.append(Example(label=f"{stem} · {ex.folder}", degradation=ex.degradation, path=path,
                                   gt=os.path.join(self.workdir, "examples", "gt", ex.file_name)))
            logger.info("made %d built-in example images in %.1f s", len(out), time.perf_counter() - start)
            self._examples = out
        return self._examples

    def example(self, label: str) -> Example:
        """The built-in example called ``label``."""
        for ex in self.examples():
            if ex.label == label:
                return ex
        raise DemoInputError(f"no built-in example {label!r}")

    def close(self) -> None:
        """Remove the session's folder when the session made it."""
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def weights_from_values(names: Sequence[str], values: Sequence[float]) -> Dict[str, float]:
    """Slider values in the model's type order → {type: weight}."""
    if len(values) != len(names):
        raise DemoInputError(f"expected {len(names)} slider values ({', '.join(names)}), got {len(values)}")
    return {n: float(v if v is not None else 0.0) for n, v in zip(names, values)}
