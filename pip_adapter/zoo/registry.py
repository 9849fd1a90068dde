"""The registry of shipped models: an index of named, checksummed weight files that are package data.

Layout of a zoo folder (the package's is ``pip_adapter/zoo/models/``; ``$PIP_ADAPTER_ZOO`` names another)::

    index.json                  {"format": "pip-adapter-zoo", "format_version": 1, "models": [<entry>, ...]}
    <name>.safetensors          each written by 'pip-adapter export' (weights + the pip-adapter JSON document;
                                the degradation classifier bundled, so '-d auto' needs nothing else)

An entry: ``name``, ``file`` (a plain file name inside the folder), ``sha256``, ``bytes``, ``summary`` (one
line), ``card`` (where its model card is), ``default`` (at most one entry), ``degradations`` and ``classifier``
(copied from the file's document when it was added, for listing without reading weights).

Nothing here builds a network: :meth:`pip_adapter.restore.Restorer.from_pretrained` loads the file that
:func:`resolve_model` returns, after its checksum was verified.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import os
import re
import shutil
import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple

from pip_adapter.utils.io import atomic_path, sha256_file

logger = logging.getLogger(__name__)

ZOO_ENV = "PIP_ADAPTER_ZOO"
INDEX_NAME = "index.json"
INDEX_FORMAT = "pip-adapter-zoo"
INDEX_VERSION = 1
# the wheel stays small: every shipped file together (weights + index) stays under this
BUDGET_BYTES = 10_000_000
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_MAX_HEADER = 16 * 1024 * 1024  # a safetensors JSON header beyond this is not one of ours
_META_KEY = "pip_adapter"  # the safetensors metadata entry holding pip-adapter's JSON document
_DEFAULT_CARD = "docs/MODELS.md"


class ZooError(ValueError):
    """A model name the registry does not know, a damaged registry file, or a refused addition."""


@dataclasses.dataclass
class ZooEntry:
    """One shipped model of the registry (``path``: where its file is on this machine)."""

    name: str
    file: str
    sha256: str
    bytes: int
    summary: str
    card: str = _DEFAULT_CARD
    default: bool = False
    degradations: List[str] = dataclasses.field(default_factory=list)
    classifier: bool = False
    path: str = ""

    def record(self) -> Dict[str, Any]:
        """The entry as written to ``index.json`` (without the machine-specific ``path``)."""
        out = dataclasses.asdict(self)
        out.pop("path")
        return out


# ----------------------------------------------------------------------------------------------- reading

def package_zoo_dir() -> str:
    """The registry shipped inside the package (``pip_adapter/zoo/models``)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


def zoo_dir(zoo: Optional[str] = None) -> str:
    """The registry folder used: ``zoo`` when given, else ``$PIP_ADAPTER_ZOO``, else the package's."""
    if zoo:
        return os.fspath(zoo)
    return os.environ.get(ZOO_ENV) or package_zoo_dir()


def _empty_index() -> Dict[str, Any]:
    return {"format": INDEX_FORMAT, "format_version": INDEX_VERSION, "models": []}


def _read_index_doc(folder: str) -> Dict[str, Any]:
    path = os.path.join(folder, INDEX_NAME)
    if not os.path.isfile(path):
        if os.environ.get(ZOO_ENV) and os.path.abspath(folder) == os.path.abspath(os.environ[ZOO_ENV]):
            raise ZooError(f"${ZOO_ENV}={folder}: no {INDEX_NAME} there; point it at a model registry folder "
                           "or unset it to use the models shipped with pip-adapter")
        return _empty_index()
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError) as err:
        raise ZooError(f"{path}: cannot read the model registry ({err}); reinstall pip-adapter") from err
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT or not isinstance(doc.get("models"), list):
        raise ZooError(f"{path}: not a pip-adapter model registry index; reinstall pip-adapter")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > INDEX_VERSION:
        raise ZooError(f"{path}: registry format_version {version!r} is newer than this pip-adapter reads "
                       f"({INDEX_VERSION}); upgrade pip-adapter")
    return doc


def _entry(record: Any, folder: str, index_path: str) -> ZooEntry:
    if not isinstance(record, dict):
        raise ZooError(f"{index_path}: a model entry is not a mapping: {record!r}")
    try:
        entry = ZooEntry(name=str(record["name"]), file=str(record["file"]), sha256=str(record["sha256"]).lower(),
                         bytes=int(record["bytes"]), summary=str(record.get("summary") or ""),
                         card=str(record.get("card") or _DEFAULT_CARD), default=bool(record.get("default")),
                         degradations=[str(n) for n in record.get("degradations") or []],
                         classifier=bool(record.get("classifier")))
    except (KeyError, TypeError, ValueError) as err:
        raise ZooError(f"{index_path}: model entry {record.get('name')!r} is incomplete ({err!r}); it needs name, "
                       "file, sha256 and bytes") from err
    # a file name only: an index can never point outside its own folder
    if (not entry.file or os.path.basename(entry.file) != entry.file or entry.file in (".", "..")
            or (os.altsep and os.altsep in entry.file)):
        raise ZooError(f"{index_path}: model {entry.name!r} names file {entry.file!r}; it must be a plain file "
                       "name inside the registry folder")
    if not re.fullmatch(r"[0-9a-f]{64}", entry.sha256):
        raise ZooError(f"{index_path}: model {entry.name!r} has no valid sha256 ({entry.sha256!r})")
    entry.path = os.path.join(folder, entry.file)
    return entry


def list_models(zoo: Optional[str] = None) -> List[ZooEntry]:
    """The registry's models in index order (the index only: no weights are read)."""
    folder = zoo_dir(zoo)
    doc = _read_index_doc(folder)
    index_path = os.path.join(folder, INDEX_NAME)
    entries = [_entry(r, folder, index_path) for r in doc["models"]]
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ZooError(f"{index_path}: model names repeat: {dupes}")
    if sum(e.default for e in entries) > 1:
        raise ZooError(f"{index_path}: more than one default model: {[e.name for e in entries if e.default]}")
    return entries


def _none_shipped(folder: str) -> ZooError:
    return ZooError(f"no shipped model: the registry {folder} holds none yet. Give a model file with -m FILE "
                    "(train one with 'pip-adapter quickstart', then 'pip-adapter export'), or install a "
                    "pip-adapter release that ships weights")


def default_model(zoo: Optional[str] = None) -> ZooEntry:
    """The entry flagged ``default`` (else the first one); :class:`ZooError` when the registry is empty."""
    entries = list_models(zoo)
    if not entries:
        raise _none_shipped(zoo_dir(zoo))
    return next((e for e in entries if e.default), entries[0])


def get_model(name: str, zoo: Optional[str] = None) -> ZooEntry:
    """The entry called ``name``; an unknown name is refused with the known names and the closest ones."""
    entries = list_models(zoo)
    for e in entries:
        if e.name == name:
            return e
    known = [e.name for e in entries]
    if not known:
        raise _none_shipped(zoo_dir(zoo))
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.6)
    guess = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
    raise ZooError(f"no shipped model called {name!r}{guess}; shipped models: {', '.join(known)} "
                   "(pip-adapter models)")


def verify(entry: ZooEntry) -> str:
    """``entry``'s file path after checking that it exists with the indexed size and checksum."""
    if not os.path.isfile(entry.path):
        raise ZooError(f"shipped model {entry.name!r}: its file {entry.path} is missing; reinstall pip-adapter")
    size = os.path.getsize(entry.path)
    if size != entry.bytes:
        raise ZooError(f"shipped model {entry.name!r}: {entry.path} has {size} bytes, the registry says "
                       f"{entry.bytes}; the file is damaged or was replaced — reinstall pip-adapter")
    actual = sha256_file(entry.path)
    if actual != entry.sha256:
        raise ZooError(f"shipped model {entry.name!r}: checksum mismatch for {entry.path} (registry sha256 "
                       f"{entry.sha256[:16]}…, file {actual[:16]}…); the file is damaged or was replaced — "
                       "reinstall pip-adapter; it was not loaded")
    return entry.path


def resolve_model(model: Optional[str] = None, zoo: Optional[str] = None) -> Tuple[str, Optional[ZooEntry]]:
    """(file to load, its registry entry or None) for a ``-m`` value.

    None → the default shipped model; an existing file → itself (a path always wins over a name); a registry
    name → its verified file.  Anything else is refused naming the shipped models.
    """
    if model is None:
        entry = default_model(zoo)
        return verify(entry), entry
    model = os.fspath(model)
    if os.path.exists(model):
        return model, None
    entries = list_models(zoo)
    for e in entries:
        if e.name == model:
            return verify(e), e
    known = [e.name for e in entries]
    looks_like_path = os.sep in model or "." in os.path.basename(model)
    what = "no such file" + ("" if looks_like_path else " and no shipped model of that name")
    if known:
        close = difflib.get_close_matches(model, known, n=3, cutoff=0.6)
        guess = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ZooError(f"-m {model}: {what}{guess}; shipped models: {', '.join(known)} (pip-adapter models)")
    raise ZooError(f"-m {model}: {what}; this installation ships no model yet, so -m must name a model file")


def check_zoo(zoo: Optional[str] = None, budget: int = BUDGET_BYTES) -> List[str]:
    """Problems of a registry folder (missing or damaged files, files the index does not name, size over
    ``budget``); an empty list when it is sound."""
    folder = zoo_dir(zoo)
    problems: List[str] = []
    try:
        entries = list_models(folder)
    except ZooError as err:
        return [str(err)]
    for e in entries:
        try:
            verify(e)
        except ZooError as err:
            problems.append(str(err))
    indexed = {e.file for e in entries} | {INDEX_NAME}
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name not in indexed:
                problems.append(f"{os.path.join(folder, name)}: not named by {INDEX_NAME}; add it or remove it")
    total = registry_bytes(folder)
    if total > budget:
        problems.append(f"{folder}: {total / 1e6:.2f} MB of weights and index, over the {budget / 1e6:g} MB "
                        "budget of the wheel")
    return problems


def registry_bytes(zoo: Optional[str] = None) -> int:
    """Bytes of every file in the registry folder (what the wheel carries)."""
    folder = zoo_dir(zoo)
    if not os.path.isdir(folder):
        return 0
    return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
               if os.path.isfile(os.path.join(folder, f)))


# ----------------------------------------------------------------------------------------------- adding

def read_document(path: str) -> Dict[str, Any]:
    """The pip-adapter JSON document in a ``.safetensors`` header, read without loading any tensor."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise ValueError("shorter than a safetensors header")
            (length,) = struct.unpack("<Q", raw)
            if not 2 <= length <= _MAX_HEADER:
                raise ValueError(f"header length {length} out of range")
            header = json.loads(fh.read(length).decode("utf-8"))
        text = (header.get("__metadata__") or {}).get(_META_KEY)
        if not text:
            raise ValueError("no pip-adapter document in its metadata")
        doc = json.loads(text)
    except (OSError, ValueError, AttributeError, UnicodeDecodeError) as err:
        raise ZooError(f"{path}: not a self-describing .safetensors written by 'pip-adapter export' ({err})") from err
    if not isinstance(doc, dict) or doc.get("format") != "pip-adapter":
        raise ZooError(f"{path}: its metadata is not a pip-adapter document; export it with 'pip-adapter export'")
    return doc


def _write_index(folder: str, entries: Sequence[ZooEntry]) -> None:
    doc = _empty_index()
    doc["models"] = [e.record() for e in entries]
    with atomic_path(os.path.join(folder, INDEX_NAME)) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")


def add_model(file: str, name: str, summary: str, card: Optional[str] = None, default: bool = False,
              zoo: Optional[str] = None, replace: bool = False, budget: int = BUDGET_BYTES) -> ZooEntry:
    """Copy the exported restorer ``file`` into the registry as ``name`` and index it (maintainers' step).

    The file must be a ``.safetensors`` restorer written by ``pip-adapter export``; it is stored as
    ``<name>.safetensors``.  ``default`` makes it the default model (the first model added always is).  An
    existing ``name`` is refused unless ``replace``.  Both the weights and ``index.json`` are written
    atomically, the weights first, so a registry is never left naming a half-written file.
    """
    folder = zoo_dir(zoo)
    if not _NAME.match(name):
        raise ZooError(f"model name {name!r}: use lower-case letters, digits, '.', '_' and '-' (at most 64, "
                       "starting with a letter or digit)")
    if not str(file).endswith(".safetensors"):
        raise ZooError(f"{file}: shipped models are .safetensors files (pip-adapter export --out NAME.safetensors)")
    summary = " ".join(str(summary).split())
    if not summary:
        raise ZooError("give a one-line --summary of the model (what it restores, on what data)")
    doc = read_document(file)
    if doc.get("kind") != "restorer":
        raise ZooError(f"{file}: a {doc.get('kind')!r} file; the registry holds restorers (bundle the classifier "
                       "into the restorer with 'pip-adapter export --classifier')")
    entries = list_models(folder)
    old = next((e for e in entries if e.name == name), None)
    if old is not None and not replace:
        raise ZooError(f"the registry already has a model called {name!r}; pass --replace to replace it")
    target = f"{name}.safetensors"
    size = os.path.getsize(file)
    others = registry_bytes(folder) - (old.bytes if old is not None and os.path.isfile(old.path) else 0)
    if others + size > budget:
        raise ZooError(f"{file}: {size / 1e6:.2f} MB would bring the registry to {(others + size) / 1e6:.2f} MB, "
                       f"over the {budget / 1e6:g} MB budget of the wheel; ship a smaller model (the compact "
                       "classifier: arch compact)")
    os.makedirs(folder, exist_ok=True)
    with atomic_path(os.path.join(folder, target)) as tmp:
        shutil.copyfile(file, tmp)
    entry = ZooEntry(name=name, file=target, sha256=sha256_file(os.path.join(folder, target)), bytes=size,
                     summary=summary, card=card or (old.card if old else _DEFAULT_CARD),
                     default=bool(default) or not entries or (old is not None and old.default),
                     degradations=[str(n) for n in doc.get("degradations") or []],
                     classifier=isinstance(doc.get("classifier"), dict),
                     path=os.path.join(folder, target))
    if entry.default:
        for e in entries:
            e.default = False
    new = [entry if e.name == name else e for e in entries] if old is not None else entries + [entry]
    _write_index(folder, new)
    if old is not None and old.file != target and os.path.isfile(old.path):
        os.remove(old.path)
    logger.info("registry %s: %s %s (%.2f MB%s)", folder, "replaced" if old else "added", name, size / 1e6,
                ", default" if entry.default else "")
    return entry


def remove_model(name: str, zoo: Optional[str] = None) -> None:
    """Drop ``name`` from the index, then delete its file (the first remaining model becomes the default)."""
    folder = zoo_dir(zoo)
    entry = get_model(name, folder)
    rest = [e for e in list_models(folder) if e.name != name]
    if entry.default and rest and not any(e.default for e in rest):
        rest[0].default = True
    _write_index(folder, rest)
    if os.path.isfile(entry.path):
        os.remove(entry.path)
