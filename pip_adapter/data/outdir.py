"""Safe creation of a prepared-data folder: build beside it, then swap it in; never delete foreign data."""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: staleness falls back to the folder's age
    fcntl = None

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "pip-adapter-data"
_LOCK = ".building.lock"
_YOUNG_S = 60.0  # a staging folder younger than this without a lock may be one being set up right now
_AGE_S = 3600.0  # without flock, a staging folder older than this is taken as abandoned


def read_manifest(out_dir: str) -> Optional[Dict[str, Any]]:
    """The manifest of a folder made by this package, or None (absent, unreadable or foreign)."""
    path = os.path.join(out_dir, MANIFEST)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            man = json.load(fh)
    except (OSError, ValueError):
        return None
    return man if isinstance(man, dict) and man.get("format") == FORMAT else None


def write_manifest(out_dir: str, manifest: Dict[str, Any]) -> None:
    """Write ``manifest.json`` (the last file written: its presence marks a complete folder)."""
    data = dict(manifest, format=FORMAT, complete=True)
    tmp = os.path.join(out_dir, MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(out_dir, MANIFEST))


def check_target(out_dir: str, overwrite: bool) -> None:
    """Refuse an existing non-empty ``out_dir`` unless ``overwrite`` and it is ours (has our manifest)."""
    if not os.path.exists(out_dir):
        return
    if not os.path.isdir(out_dir):
        raise FileExistsError(f"{out_dir} exists and is not a folder; choose another output path")
    if not os.listdir(out_dir):
        return
    if not overwrite:
        raise FileExistsError(f"{out_dir} already exists and is not empty; pass --overwrite "
                              "(overwrite=True) to replace it, or choose another output folder")
    if read_manifest(out_dir) is None:
        raise FileExistsError(f"{out_dir} is not a folder made by pip-adapter prepare-data (no {MANIFEST}); "
                              "refusing to delete it even with --overwrite. Remove it yourself or pick another path")


def _is_abandoned(stage: str) -> bool:
    """True when no live process is building ``stage`` (its builder holds an flock on the lock file)."""
    lock = os.path.join(stage, _LOCK)
    try:
        age = time.time() - os.path.getmtime(stage)
    except OSError:
        return False
    if fcntl is None or not os.path.isfile(lock):
        return age > (_AGE_S if fcntl is None else _YOUNG_S)
    try:
        with open(lock, "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # locked: a running build
    return True


def clean_stale_stages(out_dir: str) -> List[str]:
    """Remove ``<out_dir>.partial-*`` / ``.old-*`` folders left by a killed build of ``out_dir``; returns them.

    Only folders of this package's naming beside ``out_dir`` are touched, and never one that a running
    build still holds.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    base = glob.escape(out_dir)
    removed = []
    for pattern in (base + ".partial-*", base + ".old-*"):
        for stage in glob.glob(pattern):
            # an .old-* folder is a replaced data set whose removal was interrupted: always garbage
            if (os.path.isdir(stage) and not os.path.islink(stage)
                    and (".old-" in os.path.basename(stage)[len(os.path.basename(out_dir)):]
                         or _is_abandoned(stage))):
                shutil.rmtree(stage, ignore_errors=True)
                logger.info("removed %s, left by an interrupted data preparation", stage)
                removed.append(stage)
    return removed


def _default_dir_mode(path: str) -> None:
    # mkdtemp makes 0700 folders; the finished data set gets the mode a plain mkdir gives (read off a probe
    # folder: changing the process umask to read it would race with other threads)
    probe = os.path.join(path, ".mode-probe")
    os.mkdir(probe)
    try:
        mode = os.stat(probe).st_mode & 0o7777
    finally:
        os.rmdir(probe)
    os.chmod(path, mode)


@contextlib.contextmanager
def staged_dir(out_dir: str, overwrite: bool) -> Iterator[str]:
    """Yield a fresh staging folder beside ``out_dir``; on success it replaces ``out_dir``.

    An error (or Ctrl-C) leaves ``out_dir`` as it was and removes the staging folder.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    check_target(out_dir, overwrite)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    clean_stale_stages(out_dir)
    stage = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".partial-", dir=parent)
    lock_path = os.path.join(stage, _LOCK)
    lock = open(lock_path, "w")
    try:
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        _default_dir_mode(stage)
        yield stage
        os.remove(lock_path)
        old = None
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".old-", dir=parent)
            os.rmdir(old)
            os.replace(out_dir, old)
        os.replace(stage, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        lock.close()
        if os.path.exists(stage):
            shutil.rmtree(stage, ignore_errors=True)
