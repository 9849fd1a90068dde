"""Crash-safe file writes and safe option-file parsing."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Any, Callable, Iterator

import torch
import yaml


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A crash or kill before the rename leaves the previous file untouched (and at worst a stray
    ``.tmp`` file), so readers never see a half-written file.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    # mkstemp creates 0600; give the file the mode a plain open() would (0666 minus the umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        with open(tmp, "rb") as fh:  # data on disk before the rename makes it visible
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path: str, writer: Callable[[str], Any]) -> None:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` through a temporary file and a rename."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


class OptionFileError(ValueError):
    """An option file that cannot be read safely."""


def safe_load_yaml(path_or_text: str, is_text: bool = False) -> Any:
    """Parse YAML with ``yaml.SafeLoader``; Python object tags are refused with a clear error."""
    text = path_or_text
    source = "<text>"
    if not is_text:
        source = os.fspath(path_or_text)
        if not os.path.isfile(source):
            raise FileNotFoundError(f"option file not found: {source}")
        with open(source, encoding="utf-8") as fh:
            text = fh.read()
    try:
        return yaml.safe_load(text)
    except yaml.constructor.ConstructorError as err:
        raise OptionFileError(
            f"{source}: refused a YAML tag that would construct a Python object ({err.problem}, "
            f"{err.problem_mark}). Option files are parsed with a safe loader; remove the '!!python/...' tag."
        ) from err
    except yaml.YAMLError as err:
        raise OptionFileError(f"{source}: not valid YAML: {err}") from err
