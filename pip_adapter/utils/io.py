"""Crash-safe file writes and safe option-file parsing."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import pickle
import re
import secrets
import stat
from typing import Any, Callable, Iterator, Optional, Tuple

import yaml

# torch is imported by the two functions that need it: the CLI's parser, the plugin loader and the option-file
# checks use this module, and `pip-adapter --help` must not pay for importing torch


def _create_temp_beside(path: str) -> Tuple[str, int]:
    """Create an empty, new temporary file beside ``path``; returns its name and its mode bits.

    It is created with mode 0666 like ``open(path, "w")``, so the kernel applies the process umask (and a
    directory's default ACL) for us: no ``os.umask`` round-trip, which would briefly change a process-wide
    setting under other threads.
    """
    directory, base = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f"{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        return tmp, mode
    raise FileExistsError(f"could not create a temporary file beside {path} (100 names taken)")


def file_id(path: str) -> Optional[Tuple[int, int]]:
    """(device, inode) of the file ``path`` leads to (links followed), or None when there is none: two paths
    with one id are one file (a symbolic or hard link, a bind mount)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    A crash or kill before the rename leaves the previous file untouched (and at worst a stray
    ``.tmp`` file), so readers never see a half-written file.  The file gets the mode a plain
    ``open()`` would give it (0666 minus the umask).
    """
    path = os.fspath(path)
    tmp, mode = _create_temp_beside(path)
    try:
        yield tmp
        with open(tmp, "rb") as fh:  # data on disk before the rename makes it visible
            os.fsync(fh.fileno())
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:  # the writer replaced the file instead of filling it
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path: str, writer: Callable[[str], Any]) -> None:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to ``path`` through a temporary file and a rename.

    A write that fails for an operating-system reason (a full disk, a quota) raises ``OSError`` with that
    reason and ``path``; torch alone would report ``basic_ios::clear: iostream error``.
    """
    import torch

    def _save(tmp: str) -> None:
        # through a Python file object, so that the OS error reaches us (as the RuntimeError's context)
        try:
            with open(tmp, "wb") as fh:
                torch.save(obj, fh)
        except RuntimeError as err:
            cause = err.__context__
            if isinstance(cause, OSError) and cause.errno is not None:
                raise OSError(cause.errno, cause.strerror, os.fspath(path)) from err
            raise

    atomic_write_named(path, _save)


def atomic_write_named(path: str, writer: Callable[[str], Any]) -> None:
    """:func:`atomic_write`, with an operating-system error naming ``path`` rather than its temporary file."""
    try:
        atomic_write(path, writer)
    except OSError as err:
        tmp_name = isinstance(err.filename, str) and err.filename.endswith(".tmp") and \
            os.path.dirname(os.path.abspath(err.filename)) == os.path.dirname(os.path.abspath(path))
        if err.errno is not None and (tmp_name or err.filename is None):
            raise OSError(err.errno, err.strerror, os.fspath(path)) from err
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; a full disk is ``OSError`` naming ``path`` (errno ENOSPC)."""
    def _write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            fh.write(data)
    atomic_write_named(path, _write)


def os_error_line(err: OSError) -> str:
    """``"<path>: <reason>"`` for an operating-system error (``"run/x.pth: no space left on device"``)."""
    reason = (err.strerror or str(err)).strip()
    reason = reason[:1].lower() + reason[1:]
    if err.errno == errno.EEXIST and isinstance(err.filename, str) and os.path.isfile(err.filename):
        reason = "is a file where a folder is needed"
    where = err.filename if err.filename is not None else ""
    if err.filename2 is not None:
        where = f"{where} -> {err.filename2}"
    return f"{where}: {reason}" if where else reason


class UnreadableFileError(ValueError):
    """A checkpoint or training state that cannot be loaded (truncated, corrupt, or not weights-only)."""


def load_weights_only(path: str, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one clear error naming the file.

    A truncated or corrupt file and a file holding pickled Python objects (refused by the weights-only
    loader: nothing in it runs) both raise :class:`UnreadableFileError`; a missing file ``FileNotFoundError``.
    """
    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # quote only what torch found (never its advice to retry with weights_only=False)
        found = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "Unsupported" in line]
        detail = re.split(r" whose | was not |\. ", found[0].replace("Trying to load ", ""))[0][:200] \
            if found else "unpickling error"
        raise UnreadableFileError(
            f"{path}: refused to load this {what}: it holds pickled Python objects, not only weights "
            f"({detail}); only weights-only files are read, so nothing in it ran. Use a checkpoint written by "
            "pip-adapter or BasicSR") from err
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        reason = str(err).splitlines()[0].split(". ")[0][:200] if str(err) else type(err).__name__
        raise UnreadableFileError(f"{path}: cannot read this {what}: it is truncated or corrupt ({reason})") from err


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


def sha256_file(path: str) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
