"""Restoring many image files with one :class:`~pip_adapter.restore.restorer.Restorer` (``pip-adapter restore``).

    >>> files, problems = expand_inputs(["photos/", "more/*.jpg"])
    >>> result = restore_batch(restorer, files, "restored", degradation="rain", gt_dir="clean")
    >>> result.restored, result.failures, result.averages()

What it guarantees: every output lands inside the output folder (``output/<name>``, or
``output/<input's folder name>/<name>`` for names that occur in several folders; links are followed, and an
output that resolves outside the folder or onto an input file is refused); two inputs never write the same file;
an existing output is replaced only with ``overwrite``.  A file that fails is reported with its reason and the
others are still restored.  ω is checked once, before any image.  With ``gt_dir`` each image is scored
(PSNR/SSIM of the result and of the input) against the ground truth of the same name, or the same stem with any
image extension.

Progress is shown with tqdm (images, and tiles within an image); notes go to the ``pip_adapter.restore.batch``
logger; ``on_image`` lets a caller show each image's outcome as it happens.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import math
import os
import sys
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from pip_adapter.image_io import IMAGE_EXTENSIONS, is_image_file
from pip_adapter.omega import name_to_index, parse_omega_spec, to_omega
from pip_adapter.restore.restorer import AUTO, DEFAULT_AUTO_MODE, Restorer, RestoreResult
from pip_adapter.utils.io import file_id, os_error_line

logger = logging.getLogger(__name__)

# (input path, its result or None, why it failed or None): called once per image, as soon as it is done
ImageCallback = Callable[[str, Optional[RestoreResult], Optional[str]], None]


@dataclasses.dataclass
class BatchResult:
    """What :func:`restore_batch` did: the restored images in input order, and the failures ``(input, why)``."""

    restored: List[RestoreResult]
    failures: List[Tuple[str, str]]

    @property
    def unscored(self) -> List[RestoreResult]:
        """Images restored and written but not scored although a ground-truth folder was given."""
        return [r for r in self.restored if r.unscored]

    def averages(self) -> Dict[str, Optional[float]]:
        """Means over the scored images (None where nothing to average): ``count`` (images with a finite PSNR),
        ``seconds`` (per image, all restored images), ``psnr``, ``input_psnr``, ``ssim``, ``input_ssim``.

        An identical pair (infinite PSNR) has no meaningful average: it is left out of the PSNR means.
        """
        rows = self.restored
        scored = [r for r in rows if r.psnr is not None and not math.isinf(r.psnr)]
        return {
            "count": len(scored),
            "seconds": _mean([r.seconds for r in rows]),
            "psnr": _mean([r.psnr for r in scored]),
            "input_psnr": _mean([r.input_psnr for r in scored
                                 if r.input_psnr is not None and not math.isinf(r.input_psnr)]),
            "ssim": _mean([r.ssim for r in rows if r.psnr is not None]),
            "input_ssim": _mean([r.input_ssim for r in rows if r.psnr is not None]),
        }


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


# ---------------------------------------------------------------------------------------------- inputs, outputs
def expand_inputs(specs: Sequence[str]) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Files named by ``specs`` (files, folders — their images, not recursive — or globs), each once, and the
    problems found ``(spec, why)``."""
    files: List[str] = []
    problems: List[Tuple[str, str]] = []
    seen = set()

    def _add(path: str) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(os.path.join(spec, f) for f in os.listdir(spec)
                           if is_image_file(f) and os.path.isfile(os.path.join(spec, f)))
            if not found:
                problems.append((spec, "folder holds no image files"))
            for f in found:
                _add(f)
        elif os.path.exists(spec):
            _add(spec)  # named explicitly: try it even without an image extension, and report if unreadable
        elif glob.has_magic(spec):
            found = sorted(f for f in glob.glob(spec, recursive=True) if os.path.isfile(f))
            if not found:
                problems.append((spec, "no file matches this pattern"))
            for f in found:
                _add(f)
        else:
            problems.append((spec, "no such file or folder"))
    return files, problems


def check_suffix(suffix: str) -> None:
    """Refuse a ``--suffix`` that could move outputs out of the output folder (a path separator, ``..``)."""
    seps = [sep for sep in (os.sep, os.altsep, "/") if sep]
    if any(sep in suffix for sep in seps) or "\0" in suffix or suffix.strip() in (".", ".."):
        raise ValueError(f"--suffix {suffix!r} must be plain text added to file names (no path separator, "
                         "no '..'): outputs stay inside the output folder")


def check_batch(output: str, suffix: str = "", gt_dir: Optional[str] = None) -> None:
    """The checks of :func:`restore_batch` that need no model: a caller may run them before loading one."""
    if gt_dir is not None and not os.path.isdir(gt_dir):
        raise FileNotFoundError(f"--gt folder not found: {gt_dir}")
    check_suffix(suffix)
    if os.path.exists(output) and not os.path.isdir(output):
        raise FileExistsError(f"-o {output} exists and is not a folder; give an output folder")


def input_checker(files: Sequence[str]) -> Callable[[str], bool]:
    """A test telling whether a path is one of ``files`` (links and hard links followed)."""
    reals = {os.path.realpath(f) for f in files}
    ids = {file_id(f) for f in files} - {None}
    return lambda path: os.path.realpath(path) in reals or file_id(path) in ids


def inside(path: str, folder: str) -> bool:
    """True when ``path`` resolves (links followed) to somewhere inside ``folder``."""
    folder_real = os.path.realpath(folder)
    return os.path.commonpath([os.path.realpath(path), folder_real]) == folder_real


def output_paths(files: Sequence[str], output: str, suffix: str = "") -> List[str]:
    """Output path per input: ``output/<name>``; names that occur in several folders go to
    ``output/<folder name>/<name>`` so that nothing collides.  A ``suffix`` with a path separator is refused."""
    check_suffix(suffix)

    def _name(src: str) -> str:
        stem, ext = os.path.splitext(os.path.basename(src))
        return f"{stem}{suffix}{ext if ext else '.png'}"

    counts = Counter(_name(f) for f in files)
    return [os.path.join(output, os.path.basename(os.path.dirname(os.path.abspath(f))), _name(f))
            if counts[_name(f)] > 1 else os.path.join(output, _name(f)) for f in files]


def find_gt(gt_dir: str, src: str) -> Optional[str]:
    """The ground truth of ``src`` in ``gt_dir``: the same file name, else the same stem with any image extension."""
    name = os.path.basename(src)
    same = os.path.join(gt_dir, name)
    if os.path.isfile(same):
        return same
    stem = os.path.splitext(name)[0]
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        cand = os.path.join(gt_dir, stem + ext)
        if os.path.isfile(cand):
            return cand
    return None


# ---------------------------------------------------------------------------------------------- restoring
def check_request(restorer: Restorer, degradation: Any = None, omega: Any = None) -> Any:
    """Check what to remove before any image is read, so that a typo fails fast with the known names; returns
    ``omega`` as :func:`~pip_adapter.omega.to_omega` reads it (``"rain=0.7,noise=0.3"`` text parsed)."""
    if degradation is not None and omega is not None:
        raise ValueError("give either --degradation or --omega, not both")
    if isinstance(omega, str):
        omega = parse_omega_spec(omega)
    if omega is not None:
        to_omega(omega, restorer.degradations, batch_size=1)
    elif degradation is None:
        raise ValueError("say which degradation to remove: --degradation NAME or --omega rain=0.7,noise=0.3 "
                         f"(this model knows {', '.join(restorer.degradations)})")
    elif str(degradation).strip().lower() != AUTO:
        name_to_index(degradation, restorer.degradations)
    elif restorer.classifier is None:
        raise ValueError("--degradation auto needs a degradation classifier: pass --classifier FILE, or export "
                         "the model with one (pip-adapter export ... --classifier)")
    return omega


def _failure_reason(err: Exception, src: str) -> str:
    why = os_error_line(err) if isinstance(err, OSError) and err.errno is not None else str(err)
    return why[len(src) + 2:] if why.startswith(f"{src}: ") else why


def restore_batch(restorer: Restorer, files: Sequence[str], output: str, degradation: Any = None,
                  omega: Any = None, auto_mode: str = DEFAULT_AUTO_MODE, suffix: str = "",
                  gt_dir: Optional[str] = None, overwrite: bool = False, progress: bool = True,
                  on_image: Optional[ImageCallback] = None) -> BatchResult:
    """Restore ``files`` into the folder ``output`` (created if needed); see the module text for the rules.

    ``degradation`` (a name or ``"auto"``) or ``omega`` (anything ``to_omega`` reads, or ``"rain=0.7,noise=0.3"``)
    is checked before any image.  A file that cannot be read, restored or written becomes a failure
    ``(input, why)`` and the others go on.  ``progress`` shows tqdm bars on stderr.
    """
    check_batch(output, suffix, gt_dir)
    omega = check_request(restorer, degradation, omega)
    os.makedirs(output, exist_ok=True)
    is_an_input = input_checker(files)
    result = BatchResult(restored=[], failures=[])
    targets = set()
    tiled = bool(restorer.tile)
    with tqdm(total=len(files), desc="restoring", unit="img", disable=not progress, file=sys.stderr) as bar:
        for src, dst in zip(files, output_paths(files, output, suffix)):
            bar.set_postfix_str(os.path.basename(src))
            try:
                row = _restore_one(restorer, src, dst, output, degradation, omega, auto_mode, gt_dir,
                                   overwrite, is_an_input, targets, progress and tiled)
            except (ValueError, OSError, RuntimeError) as err:
                why = _failure_reason(err, src)
                result.failures.append((src, why))
                logger.info("%s: failed: %s", src, why)
                if on_image is not None:
                    on_image(src, None, why)
            else:
                result.restored.append(row)
                logger.info("%s: restored (%s) in %.2f s", src, row.chosen, row.seconds)
                if on_image is not None:
                    on_image(src, row, None)
            bar.update(1)
    return result


def _restore_one(restorer: Restorer, src: str, dst: str, output: str, degradation: Any, omega: Any,
                 auto_mode: str, gt_dir: Optional[str], overwrite: bool, is_an_input: Callable[[str], bool],
                 targets: set, show_tiles: bool) -> RestoreResult:
    if os.path.realpath(dst) in targets:
        raise FileExistsError(f"another input already writes {dst}; rename one of them")
    if not inside(dst, output):  # e.g. a link inside the output folder pointing elsewhere
        raise ValueError(f"{dst} would be written outside the output folder {output}")
    if is_an_input(dst):
        # links included: the output folder may be a link to the input folder
        raise FileExistsError(f"{dst} is an input file (the output folder leads to the inputs); "
                              "choose another --output or a --suffix")
    gt = None
    unscored = None
    if gt_dir is not None:
        gt = find_gt(gt_dir, src)
        if gt is None:
            stem = os.path.splitext(os.path.basename(src))[0]
            unscored = f"no ground truth named {stem}.* in {gt_dir}"
    targets.add(os.path.realpath(dst))
    with tqdm(total=0, desc="  tiles", unit="tile", leave=False, file=sys.stderr, disable=not show_tiles) as tiles:
        def _steps(n: int) -> None:
            tiles.total = n
            tiles.refresh()

        row = restorer.restore_file(src, dst, degradation=degradation, omega=omega, auto_mode=auto_mode,
                                    overwrite=overwrite, gt=gt, progress=tiles.update, on_steps=_steps)
    if unscored:
        row.unscored = unscored
    return row
