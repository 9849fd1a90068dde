"""Reading and writing images the way users have them.

Every image is turned into a float32 RGB array H×W×3 in [0, 1] plus an :class:`ImageInfo` that says how to
write the result back the way it came: bit depth (8, 16 or float), grayscale or colour, and the alpha channel,
which is passed through untouched.  EXIF orientation is applied on read, so the restored image is upright.

Arrays given from Python are taken as RGB(A) (not OpenCV's BGR); uint8 maps 0..255, uint16 0..65535 and
floats are taken as already in [0, 1].
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import stat
import sys
import threading
import warnings
from typing import Any, Iterator, Optional, Tuple

import numpy as np

from pip_adapter.utils.io import atomic_path

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

_EXIF_ORIENTATION = 0x0112
# images larger than this are refused unless asked for (--max-pixels): 100 MP is a 10000×10000 photo, whose
# float copy alone takes 1.2 GB
DEFAULT_MAX_PIXELS = 100_000_000
_PIL_LOCK = threading.Lock()
_STDERR_LOCK = threading.Lock()  # PIL's own bomb limit is a module global, lifted while we read a header
_ROWS = 256  # rows converted at a time between integer and float images


@dataclasses.dataclass
class ImageInfo:
    """How an image was stored, so that its restored version can be stored the same way."""

    dtype: str                      # "uint8", "uint16" or "float32"
    gray: bool                      # one colour channel (restored as RGB, written back as gray)
    alpha: Optional[np.ndarray]     # H×W alpha in the original dtype, or None
    squeeze_channel: bool = True    # a gray array came as H×W (True) or H×W×1 (False)
    path: Optional[str] = None

    @property
    def channels(self) -> int:
        """Number of channels of the original (1, 2, 3 or 4)."""
        return (1 if self.gray else 3) + (1 if self.alpha is not None else 0)


class ImageReadError(ValueError):
    """A file that is not a readable image."""


def is_image_file(path: str) -> bool:
    """True when ``path`` has an image extension we read."""
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def _exif_orientation(path: str) -> int:
    """EXIF orientation tag (1..8) of ``path``; 1 when absent or unreadable."""
    try:
        from PIL import Image
        with _fallbacks_silent(), Image.open(path) as im:
            value = im.getexif().get(_EXIF_ORIENTATION, 1)
        return int(value) if value in range(1, 9) else 1
    except Exception:  # noqa: BLE001 - orientation is best effort; the pixels were read already
        return 1


def apply_exif_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Rotate/flip ``arr`` (H×W[×C]) so that it displays upright for EXIF ``orientation``."""
    if orientation == 2:
        return arr[:, ::-1]
    if orientation == 3:
        return arr[::-1, ::-1]
    if orientation == 4:
        return arr[::-1]
    if orientation == 5:  # transpose
        return np.swapaxes(arr, 0, 1)
    if orientation == 6:  # rotate 90° clockwise
        return np.rot90(arr, k=-1)
    if orientation == 7:  # transverse
        return np.rot90(arr, k=2).swapaxes(0, 1)
    if orientation == 8:  # rotate 90° counter-clockwise
        return np.rot90(arr, k=1)
    return arr


def _is_tiff(head: bytes) -> bool:
    return head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _png_color_type(head: bytes) -> Optional[int]:
    """The PNG colour type of the IHDR chunk (4: gray + alpha), or None for another format."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 25:
        return head[25]
    return None


def declared_size(path: str) -> Optional[Tuple[int, int, int]]:
    """(width, height, pages) that the file's header declares, read without decoding the pixels; None when
    neither PIL nor (for TIFF) tifffile can read the header."""
    try:
        from PIL import Image
        with _PIL_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we apply our own limit
            try:
                with Image.open(path) as im:
                    width, height = im.size
                    pages = int(getattr(im, "n_frames", 1) or 1)
                    return int(width), int(height), pages
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except Exception:  # noqa: BLE001 - a header PIL cannot read: tifffile, else the decoder decides
        pass
    try:
        import tifffile
        with _fallbacks_silent(), tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            return int(page.imagewidth), int(page.imagelength), len(tif.pages)
    except Exception:  # noqa: BLE001 - not a TIFF either
        return None


def check_pixels(path: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
                 size: Optional[Tuple[int, int, int]] = None) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` pixels (None or 0: no limit), before
    anything is decoded (a small file can declare gigabytes of pixels); ``size``: its :func:`declared_size`."""
    if not max_pixels:
        return
    size = size or declared_size(path)
    if size is None:
        return
    width, height, _ = size
    if width * height > max_pixels:
        raise ImageReadError(f"{path}: {width}×{height} is {width * height / 1e6:.0f} megapixels, more than the "
                             f"limit of {max_pixels / 1e6:g} MP; pass --max-pixels {width * height} "
                             "(max_pixels=...) if it really is that large")


@contextlib.contextmanager
def _opencv_silent(cv2: Any) -> Iterator[None]:
    """OpenCV's own log (``[ERROR:0@0.01] ... readHeader IHDR chunk shall be first``) off for the block, back to
    its level after: a file we cannot decode is reported once, by our error, not also on stderr by OpenCV."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None or not hasattr(log, "getLogLevel"):
        yield
        return
    before = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        log.setLogLevel(before)


@contextlib.contextmanager
def _native_stderr_silent() -> Iterator[None]:
    """File descriptor 2 to /dev/null for the block: libpng and libtiff inside OpenCV print their complaints
    ("libpng error: IHDR: CRC error") straight to it, past OpenCV's log level.  Output of other threads in
    that window is lost too, so the window is one decode call."""
    with _STDERR_LOCK:
        try:
            saved = os.dup(2)
        except OSError:  # no file descriptor 2 (a service without stderr): nothing to silence
            yield
            return
        try:
            if sys.stderr is not None:
                sys.stderr.flush()  # what Python already wrote goes out, not into /dev/null
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def _fallbacks_silent() -> Iterator[None]:
    """PIL's warnings ("Truncated File Read") and tifffile's log records off for the block: a damaged file is
    reported once, by our error, as the reader promises."""
    tif_log = logging.getLogger("tifffile")
    before = tif_log.disabled
    tif_log.disabled = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        tif_log.disabled = before


def _read_raw(path: str) -> Tuple[np.ndarray, bool]:
    """Pixels as stored (H×W or H×W×C, RGB order), via OpenCV, falling back to tifffile/PIL; and whether the
    decoder applied the orientation already (OpenCV does for TIFF, not for JPEG)."""
    import cv2
    arr = None
    try:
        # imdecode on bytes rather than imread: works with any file name
        data = np.fromfile(path, dtype=np.uint8)
        if data.size:
            with _opencv_silent(cv2), _native_stderr_silent():
                arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except (OSError, cv2.error):
        arr = None
    head = bytes(data[:32]) if arr is not None else b""
    if arr is not None:
        if arr.ndim == 3 and arr.shape[2] == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA)
            if _png_color_type(head) == 4:
                arr = np.ascontiguousarray(arr[:, :, [0, 3]])  # a gray + alpha PNG stays gray + alpha
        if _is_tiff(head):
            exact = _tiff_if_cv2_lost_something(path, arr)
            if exact is not None:
                return exact, False
        return arr, _is_tiff(head)
    ext = os.path.splitext(path)[1].lower()
    with _fallbacks_silent():
        if ext in (".tif", ".tiff"):
            try:
                import tifffile
                return np.asarray(tifffile.imread(path, key=0)), False
            except Exception:  # noqa: BLE001 - fall through to PIL and the common error below
                pass
        try:
            from PIL import Image
            with Image.open(path) as im:
                return np.asarray(im), False
        except Exception as err:  # noqa: BLE001 - any failure means "not an image we can read"
            raise ImageReadError(f"{path}: not a readable image ({type(err).__name__}: {err})") from err


def _tiff_if_cv2_lost_something(path: str, arr: np.ndarray) -> Optional[np.ndarray]:
    """The first page read by tifffile when OpenCV's decoding lost depth or channels (16-bit gray + alpha comes
    back from OpenCV as 8-bit gray); None when OpenCV's pixels are the stored ones."""
    try:
        import tifffile
        with _fallbacks_silent(), tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            samples = int(page.samplesperpixel)
            if np.dtype(page.dtype) == arr.dtype and samples == (arr.shape[2] if arr.ndim == 3 else 1):
                return None
            return np.asarray(page.asarray())
    except Exception:  # noqa: BLE001 - tifffile cannot read it either: keep OpenCV's pixels
        return None


def split_array(arr: np.ndarray, path: Optional[str] = None) -> Tuple[np.ndarray, ImageInfo]:
    """Check an H×W[×C] array (RGB order) and split it into colour pixels H×W×(1|3), as stored, and its info.

    The colour pixels keep their dtype (no float copy): large images are converted tile by tile later.
    """
    name = path or "image"
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"{name}: expected an H×W, H×W×1, H×W×3 or H×W×4 image, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name}: empty image of shape {arr.shape}")
    if arr.dtype == np.uint8:
        dtype = "uint8"
    elif arr.dtype == np.uint16:
        dtype = "uint16"
    elif arr.dtype == np.bool_:
        arr, dtype = arr.astype(np.uint8) * 255, "uint8"
    elif np.issubdtype(arr.dtype, np.floating):
        dtype = "float32"
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: float image contains NaN or infinite values")
    elif np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name}: unsupported integer pixel type {arr.dtype}; give uint8, uint16 or float")
    else:
        raise ValueError(f"{name}: unsupported pixel type {arr.dtype}; give uint8, uint16 or float")
    squeeze = arr.ndim == 2
    if arr.ndim == 2:
        arr = arr[:, :, None]
    alpha = None
    if arr.shape[2] in (2, 4):
        alpha = np.ascontiguousarray(arr[:, :, -1])
        arr = arr[:, :, :-1]
    info = ImageInfo(dtype=dtype, gray=arr.shape[2] == 1, alpha=alpha, squeeze_channel=squeeze, path=path)
    return arr, info


def pixel_scale(info: ImageInfo) -> float:
    """Factor that maps stored pixel values to [0, 1]."""
    return {"uint8": 1.0 / 255.0, "uint16": 1.0 / 65535.0}.get(info.dtype, 1.0)


def array_to_float(arr: np.ndarray, path: Optional[str] = None) -> Tuple[np.ndarray, ImageInfo]:
    """Split an H×W[×C] array (RGB order) into float32 RGB in [0, 1] and its :class:`ImageInfo`."""
    arr, info = split_array(arr, path)
    rgb = np.empty((arr.shape[0], arr.shape[1], 3), dtype=np.float32)
    scale = np.float32(pixel_scale(info))
    # row blocks: a large image never gets a second full-size float temporary
    for r0 in range(0, arr.shape[0], _ROWS):
        block = arr[r0:r0 + _ROWS].astype(np.float32)
        if info.dtype != "float32":
            block *= scale
        else:
            np.clip(block, 0.0, 1.0, out=block)
        rgb[r0:r0 + _ROWS] = block  # a gray block broadcasts to the three channels
    return rgb, info


def read_image_raw(path: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Tuple[np.ndarray, ImageInfo]:
    """Read ``path`` upright (EXIF applied) as its colour pixels in the stored dtype (H×W×1 or ×3) and info.

    A file that is not a regular file, or declares more than ``max_pixels`` pixels, is refused before decoding.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"image not found: {path}")
    if os.path.isdir(path):
        raise ImageReadError(f"{path}: is a folder, not an image")
    if not stat.S_ISREG(os.stat(path).st_mode):
        # a named pipe would block the read forever; a device could be endless
        raise ImageReadError(f"{path}: not a regular file (a pipe, device or socket); give an image file")
    size = declared_size(path)
    check_pixels(path, max_pixels, size)
    if size is not None and size[2] > 1:
        logger.warning("%s holds %d pages; only the first is read", path, size[2])
    arr, oriented = _read_raw(path)
    if arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path}: unsupported number of channels {arr.shape[2]}")
    if arr.ndim not in (2, 3):
        raise ImageReadError(f"{path}: unsupported image layout of shape {arr.shape}")
    orientation = 1 if oriented else _exif_orientation(path)
    if orientation != 1:
        arr = np.ascontiguousarray(apply_exif_orientation(arr, orientation))
    try:
        return split_array(arr, path)
    except ValueError as err:
        raise ImageReadError(str(err)) from err


def read_image(path: str, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> Tuple[np.ndarray, ImageInfo]:
    """Read ``path`` as float32 RGB H×W×3 in [0, 1], upright (EXIF applied); see :class:`ImageInfo`."""
    raw, info = read_image_raw(path, max_pixels)
    rgb, _ = array_to_float(raw, path)
    return rgb, info


def float_to_array(rgb: np.ndarray, info: ImageInfo) -> np.ndarray:
    """Inverse of :func:`array_to_float`: back to the original dtype and channels (alpha re-attached)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    h, w = rgb.shape[:2]
    channels = 1 if info.gray else 3
    dtype = {"uint8": np.uint8, "uint16": np.uint16}.get(info.dtype, np.float32)
    peak = {"uint8": 255.0, "uint16": 65535.0}.get(info.dtype, 1.0)
    out = np.empty((h, w, channels), dtype=dtype)
    for r0 in range(0, h, _ROWS):
        block = np.clip(rgb[r0:r0 + _ROWS], 0.0, 1.0)
        if info.gray:
            # the model may restore the three channels slightly differently: write their luminance
            block = (0.299 * block[:, :, 0] + 0.587 * block[:, :, 1] + 0.114 * block[:, :, 2])[:, :, None]
        if dtype is not np.float32:
            block = np.round(block * np.float32(peak))
        out[r0:r0 + _ROWS] = block.astype(dtype)
    if info.alpha is not None:
        alpha = info.alpha
        if alpha.shape != out.shape[:2]:
            raise ValueError(f"alpha channel of shape {alpha.shape} does not match the image {out.shape[:2]}")
        out = np.concatenate([out, alpha.astype(out.dtype)[:, :, None]], axis=2)
    elif info.gray and info.squeeze_channel:
        out = out[:, :, 0]
    return out


def write_image(path: str, arr: np.ndarray, overwrite: bool = False) -> None:
    """Write an H×W[×C] array (RGB(A) order, uint8/uint16/float32) to ``path``; refuses to overwrite.

    The file is written to a temporary name and renamed, so an interrupted run never leaves half a file.
    """
    import cv2

    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    ext = os.path.splitext(path)[1].lower()
    if ext not in IMAGE_EXTENSIONS:
        raise ValueError(f"{path}: unknown image extension {ext!r}; use one of {', '.join(IMAGE_EXTENSIONS)}")
    arr = np.asarray(arr)
    if ext in (".jpg", ".jpeg") and (arr.dtype != np.uint8 or (arr.ndim == 3 and arr.shape[2] in (2, 4))):
        raise ValueError(f"{path}: JPEG stores 8-bit images without alpha; write PNG or TIFF instead")
    if arr.dtype == np.float32 and ext not in (".tif", ".tiff"):
        raise ValueError(f"{path}: float images can only be written as TIFF")
    if arr.ndim == 3 and arr.shape[2] == 3:
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    elif arr.ndim == 3 and arr.shape[2] == 2:
        if _write_gray_alpha(path, ext, arr):
            return
        # OpenCV's encoders take gray+alpha only as 4 channels; the gray value goes to R, G and B
        logger.warning("%s: written as RGBA, the gray value in R, G and B (this format keeps gray + alpha only as "
                       "8-bit PNG or as TIFF)", path)
        bgr = np.concatenate([np.repeat(arr[:, :, :1], 3, axis=2), arr[:, :, 1:]], axis=2)
    else:
        bgr = arr
    ok, data = cv2.imencode(ext, np.ascontiguousarray(bgr))
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode a {arr.dtype} image of shape {arr.shape} as {ext}")
    with atomic_path(path) as tmp:
        data.tofile(tmp)



def _write_gray_alpha(path: str, ext: str, arr: np.ndarray) -> bool:
    """Write H×W×2 gray + alpha as such where the format keeps it (TIFF; 8-bit PNG); False otherwise."""
    if ext in (".tif", ".tiff"):
        import tifffile
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, np.ascontiguousarray(arr), photometric="minisblack", extrasamples=["unassalpha"])
        return True
    if ext == ".png" and arr.dtype == np.uint8:
        from PIL import Image
        with atomic_path(path) as tmp:
            Image.fromarray(np.ascontiguousarray(arr), "LA").save(tmp, format="PNG")
        return True
    return False


# ---- uint8 RGB files and bytes, as training data and LMDB stores use them (no bit depth, alpha or EXIF kept)
def decode_image(buf: bytes, what: str = "image") -> np.ndarray:
    """Encoded image bytes → uint8 H×W×3 RGB (grey images are expanded, 16-bit reduced to 8-bit)."""
    import cv2

    arr = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
    if arr is None:
        raise ValueError(f"cannot decode {what}: not a readable image")
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB)


def encode_png(img_rgb: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 H×W×3 RGB → PNG bytes (BasicSR's default compression level is 1)."""
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(img_rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def read_image_file(path: str) -> np.ndarray:
    """An image file → uint8 H×W×3 RGB; a missing or unreadable file raises with its path."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image not found: {path}")
    with open(path, "rb") as fh:
        return decode_image(fh.read(), path)


def write_image_file(path: str, img_rgb: np.ndarray, compress_level: int = 3) -> None:
    """Write a uint8 RGB image as PNG (folders created as needed)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(encode_png(img_rgb, compress_level))
