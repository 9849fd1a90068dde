"""Safe creation of a prepared-data folder: build beside it, then swap it in; never delete foreign data."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from typing import Any, Dict, Iterator, Optional

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "pip-adapter-data"


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


@contextlib.contextmanager
def staged_dir(out_dir: str, overwrite: bool) -> Iterator[str]:
    """Yield a fresh staging folder beside ``out_dir``; on success it replaces ``out_dir``.

    An error (or Ctrl-C) leaves ``out_dir`` as it was and removes the staging folder.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    check_target(out_dir, overwrite)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".partial-", dir=parent)
    try:
        yield stage
        old = None
        if os.path.exists(out_dir):
            old = tempfile.mkdtemp(prefix=os.path.basename(out_dir) + ".old-", dir=parent)
            os.rmdir(old)
            os.replace(out_dir, old)
        os.replace(stage, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.exists(stage):
            shutil.rmtree(stage, ignore_errors=True)
