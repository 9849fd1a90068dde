"""Reading and writing image LMDBs in BasicSR's format (without importing basicsr).

BasicSR's layout (``basicsr/utils/lmdb_util.py``)::

    name.lmdb/
        data.mdb, lock.mdb      # the LMDB; key = image name without extension (ASCII), value = encoded PNG
        meta_info.txt           # one line per image: ``<key>.png (<h>,<w>,<c>) <compression level>``

BasicSR reads the key of a line as ``line.split('.')[0]``, so keys written here never contain a dot or
white space (``lmdb_key`` turns a relative path into such a key).  The PNGs are ordinary colour PNGs, so
BasicSR (BGR) and this package (RGB) read the same colours.  Readers open the environment lazily, once per
process, which keeps them safe to use in forked DataLoader workers.
"""
from __future__ import annotations

import logging
import os
import re
import struct
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from pip_adapter.image_io import decode_image, encode_png

logger = logging.getLogger(__name__)

META_INFO = "meta_info.txt"
PAIRS_FILE = "pairs.txt"
_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-/]")


def is_lmdb(path: str) -> bool:
    """True when ``path`` names an LMDB folder (``*.lmdb`` or a folder holding ``data.mdb``)."""
    path = os.fspath(path).rstrip("/\\")
    return path.endswith(".lmdb") or os.path.isfile(os.path.join(path, "data.mdb"))


def lmdb_key(rel_path: str) -> str:
    """A BasicSR-safe key from a relative image path: extension dropped, ``.``/spaces/odd chars → ``_``,
    sub-folders joined with ``__`` (``part1/0001_0.8_0.2.jpg`` → ``part1__0001_0_8_0_2``)."""
    stem = os.path.splitext(rel_path.replace("\\", "/"))[0]
    return _KEY_BAD.sub("_", stem).replace("/", "__")


def read_meta_info(lmdb_path: str) -> List[Tuple[str, Tuple[int, ...]]]:
    """``[(key, (h, w, c)), ...]`` from ``meta_info.txt``; a missing file or bad line raises."""
    meta = os.path.join(lmdb_path, META_INFO)
    if not os.path.isfile(meta):
        raise FileNotFoundError(f"LMDB {lmdb_path} has no {META_INFO} (BasicSR format needs one line per image: "
                                "'<key>.png (h,w,c) <compression>')")
    out = []
    with open(meta, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split()
            name = parts[0]
            # BasicSR's own rule (split at the first dot); our writer never puts a dot in a key
            key = name.split(".")[0]
            shape: Tuple[int, ...] = ()
            if len(parts) > 1:
                try:
                    shape = tuple(int(v) for v in parts[1].strip("()").split(","))
                except ValueError:
                    raise ValueError(f"{meta}:{lineno}: bad shape {parts[1]!r}, expected '(h,w,c)'") from None
            out.append((key, shape))
    return out


def read_pairs_file(path: str) -> List[Tuple[str, str]]:
    """``lq_key gt_key`` per line (``#`` comments allowed) → list of pairs."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pairs file not found: {path}")
    pairs = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: expected 'lq_key gt_key', got {line!r}")
            pairs.append((parts[0], parts[1]))
    return pairs


class LmdbDamagedError(ValueError):
    """An LMDB whose ``data.mdb`` is shorter than its own header says (a truncated copy or a killed write)."""


_LMDB_MAGIC = 0xBEEFC0DE
# MDB_meta after the 16-byte page header (64-bit builds): magic u32, version u32, address u64, mapsize u64,
# two 48-byte MDB_db records (the free-list one's first u32 holds the page size), last page u64, txnid u64
_META_OFFSET = 16
_META_LEN = 4 + 4 + 8 + 8 + 2 * 48 + 8 + 8


def check_lmdb_file(path: str) -> int:
    """Check that ``path/data.mdb`` is as long as its header requires, without memory-mapping it.

    Mapping a truncated ``data.mdb`` and touching a page past its end kills the process with SIGBUS (no
    Python error), so readers call this first.  Returns the bytes the newest meta page needs; raises
    :class:`LmdbDamagedError` naming the LMDB otherwise.
    """
    lmdb_dir = os.fspath(path).rstrip("/\\")
    data = os.path.join(lmdb_dir, "data.mdb")
    size = os.path.getsize(data)
    what = f"LMDB {lmdb_dir} is damaged: data.mdb"
    fix = ("; it was truncated (an interrupted copy or write): rebuild it (pip-adapter prepare-data) or copy it "
           "again")
    with open(data, "rb") as fh:
        first = fh.read(_META_OFFSET + _META_LEN)
        if len(first) < _META_OFFSET + _META_LEN:
            raise LmdbDamagedError(f"{what} is only {size} bytes, shorter than an LMDB header{fix}")
        magic, _version = struct.unpack_from("<II", first, _META_OFFSET)
        if magic != _LMDB_MAGIC:
            raise LmdbDamagedError(f"{lmdb_dir}/data.mdb is not an LMDB data file (bad magic number {magic:#x}); "
                                   "rebuild it (pip-adapter prepare-data)")
        page = struct.unpack_from("<I", first, _META_OFFSET + 24)[0]
        if page < 512 or page & (page - 1) or page > (1 << 16):
            raise LmdbDamagedError(f"{what} has an implausible page size {page} in its header{fix}")
        metas = [first]
        fh.seek(page)
        second = fh.read(_META_OFFSET + _META_LEN)
        if len(second) == _META_OFFSET + _META_LEN:
            metas.append(second)
    need = 2 * page
    best_txn = -1
    for buf in metas:
        if struct.unpack_from("<I", buf, _META_OFFSET)[0] != _LMDB_MAGIC:
            continue
        last_pg, txnid = struct.unpack_from("<QQ", buf, _META_OFFSET + 24 + 96)
        if txnid > best_txn:  # LMDB uses the meta page of the newest transaction
            best_txn, need = txnid, max(2 * page, (last_pg + 1) * page)
    if size < need:
        raise LmdbDamagedError(f"{what} is {size} bytes but its header needs {need}{fix}")
    return need


# py-lmdb refuses to open one environment twice in a process, and several tasks often share one LMDB
# (the clean images): one read-only environment per (process, path), opened on first use
_ENVS: Dict[str, Tuple[int, Any, Tuple[int, int]]] = {}


def _shared_env(path: str):
    import lmdb  # local: only LMDB users need the package at import time

    key = os.path.realpath(path)
    st = os.stat(os.path.join(key, "data.mdb"))
    ident = (st.st_dev, st.st_ino)
    pid, env, old_ident = _ENVS.get(key, (None, None, None))
    if env is None or pid != os.getpid() or old_ident != ident:
        check_lmdb_file(key)  # a truncated file would SIGBUS on first access, not raise
        if env is not None:
            # inherited through fork (a DataLoader worker) it is unusable here, and a replaced LMDB (same
            # path, new file) must not be served from the old mapping; py-lmdb also refuses a second open
            # of a path while the first handle lives.  Closing only unmaps this process's copy (no lock file)
            try:
                env.close()
            except lmdb.Error:  # pragma: no cover
                pass
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False, max_readers=1024)
        _ENVS[key] = (os.getpid(), env, ident)
    return env


def _close_env(path: str) -> None:
    key = os.path.realpath(path)
    pid, env, _ = _ENVS.pop(key, (None, None, None))
    if env is not None and pid == os.getpid():
        env.close()


class LmdbReader:
    """Read images from a BasicSR-format LMDB.  The environment opens lazily in each process."""

    def __init__(self, path: str):
        self.path = os.fspath(path).rstrip("/\\")
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"LMDB folder not found: {self.path}")
        if not os.path.isfile(os.path.join(self.path, "data.mdb")):
            raise FileNotFoundError(f"{self.path} is not an LMDB (no data.mdb inside)")
        check_lmdb_file(self.path)
        meta = read_meta_info(self.path)
        self.keys: List[str] = [k for k, _ in meta]
        self.shapes: Dict[str, Tuple[int, ...]] = dict(meta)
        self._env = None
        self._pid: Optional[int] = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_env"], state["_pid"] = None, None
        return state

    def _open(self):
        # always through the shared table: a reader must follow a replaced LMDB and must not keep using a
        # handle another reader of the same path has closed
        self._env = _shared_env(self.path)
        self._pid = os.getpid()
        return self._env

    def read_bytes(self, key: str) -> bytes:
        """The stored bytes of ``key``; a missing key raises ``KeyError`` naming the LMDB."""
        with self._open().begin(write=False) as txn:
            buf = txn.get(key.encode("ascii"))
        if buf is None:
            raise KeyError(f"key {key!r} not found in LMDB {self.path}")
        return bytes(buf)

    def read(self, key: str) -> np.ndarray:
        """The image under ``key`` as uint8 H×W×3 RGB."""
        return decode_image(self.read_bytes(key), f"{self.path}[{key}]")

    def missing_keys(self, keys: Optional[Iterable[str]] = None) -> List[str]:
        """Keys (default: all listed in meta_info.txt) that have no value in ``data.mdb``."""
        wanted = list(self.keys if keys is None else keys)
        with self._open().begin(write=False) as txn:
            present = {bytes(k).decode("ascii", "replace") for k in txn.cursor().iternext(keys=True, values=False)}
        return [k for k in wanted if k not in present]

    def close(self) -> None:
        """Close this process's environment of the LMDB (shared by all readers of it; reopened on demand)."""
        if self._env is not None and self._pid == os.getpid():
            _close_env(self.path)
        self._env, self._pid = None, None

    def __len__(self) -> int:
        return len(self.keys)


class LmdbWriter:
    """Write a BasicSR-format LMDB: ``with LmdbWriter(path) as w: w.put(key, img_rgb)``.

    Keys must be ASCII without dots or white space (use ``lmdb_key``); repeated keys raise.  The map starts
    small (some platforms preallocate it on disk) and doubles on demand; data is committed every ``batch``
    images.  ``meta_info.txt`` is written on close.
    """

    def __init__(self, path: str, compress_level: int = 1, batch: int = 500,
                 map_size: int = 1 << 24):
        import lmdb

        self.path = os.fspath(path).rstrip("/\\")
        if not self.path.endswith(".lmdb"):
            raise ValueError(f"an LMDB path must end with '.lmdb' (BasicSR's rule), got {self.path}")
        if os.path.exists(self.path):
            raise FileExistsError(f"LMDB already exists: {self.path}; remove it or write elsewhere")
        os.makedirs(self.path)
        self.compress_level = int(compress_level)
        self.batch = int(batch)
        self._env = lmdb.open(self.path, map_size=int(map_size))
        self._txn = self._env.begin(write=True)
        self._meta: List[str] = []
        self._seen: set = set()
        self._batch_items: List[Tuple[bytes, bytes]] = []

    def put(self, key: str, img_rgb: np.ndarray) -> None:
        """Store ``img_rgb`` (uint8 H×W×3) as PNG under ``key``."""
        if img_rgb.dtype != np.uint8 or img_rgb.ndim != 3:
            raise ValueError(f"LMDB images must be uint8 H×W×C, got {img_rgb.dtype} {img_rgb.shape}")
        self.put_bytes(key, encode_png(img_rgb, self.compress_level), img_rgb.shape)

    def put_bytes(self, key: str, buf: bytes, shape: Sequence[int]) -> None:
        """Store already encoded PNG bytes of an image of ``shape`` (h, w, c) under ``key``."""
        import lmdb

        if not key or "." in key or any(ch.isspace() for ch in key) or not key.isascii():
            raise ValueError(f"bad LMDB key {key!r}: keys must be ASCII without dots or spaces "
                             "(BasicSR reads a key as the text before the first dot); use lmdb_key()")
        if key in self._seen:
            raise ValueError(f"duplicate LMDB key {key!r} in {self.path}")
        self._batch_items.append((key.encode("ascii"), buf))
        try:
            self._txn.put(key.encode("ascii"), buf)
        except lmdb.MapFullError:
            self._grow(len(buf))
        self._seen.add(key)
        h, w, c = (tuple(shape) + (1,))[:3]
        self._meta.append(f"{key}.png ({h},{w},{c}) {self.compress_level}")
        if len(self._batch_items) >= self.batch:
            self._commit()

    def _commit(self) -> None:
        import lmdb

        try:
            self._txn.commit()
        except lmdb.MapFullError:
            self._grow(0)
            self._txn.commit()
        self._txn = self._env.begin(write=True)
        self._batch_items = []

    def _grow(self, need: int) -> None:
        # a transaction that hit MDB_MAP_FULL is dead: abort it, enlarge the map, replay this batch
        import lmdb

        self._txn.abort()
        while True:
            size = self._env.info()["map_size"]
            self._env.set_mapsize(max(size * 2, size + need * 4))
            self._txn = self._env.begin(write=True)
            try:
                for k, v in self._batch_items:
                    self._txn.put(k, v)
                return
            except lmdb.MapFullError:
                self._txn.abort()

    def close(self) -> None:
        """Commit, close and write ``meta_info.txt``."""
        if self._env is None:
            return
        self._txn.commit()
        self._env.close()
        self._env = None
        with open(os.path.join(self.path, META_INFO), "w", encoding="utf-8") as fh:
            fh.write("\n".join(self._meta) + ("\n" if self._meta else ""))

    def __enter__(self) -> "LmdbWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._env is not None:
            self._txn.abort()
            self._env.close()
            self._env = None

    def __len__(self) -> int:
        return len(self._meta)


def write_pairs_file(path: str, pairs: Sequence[Tuple[str, str]]) -> None:
    """Write ``lq_key gt_key`` lines (the pairing used when one clean image serves several degraded ones)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("# lq_key gt_key (pip-adapter: clean images are stored once, see docs/DATA.md)\n")
        for lq, gt in pairs:
            fh.write(f"{lq} {gt}\n")
