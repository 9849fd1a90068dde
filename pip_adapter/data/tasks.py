"""The pieces a ``MixedDegradationDataset`` is built from: image stores (a folder or an LMDB, or absolute
paths), one task's record (its images, label and synthesiser), and the checks of the option values."""
from __future__ import annotations

import difflib
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from pip_adapter.degradations import Synthesizer

from pip_adapter.image_io import read_image_file

from .lmdb_io import LmdbReader, is_lmdb
from .standard import list_images


class _Store:
    """Images addressed by key: a folder (key = path relative to it) or an LMDB (key = LMDB key)."""

    def __init__(self, root: str, task: str, role: str, cache: Optional[Dict[str, np.ndarray]] = None):
        self.root = os.fspath(root)
        self.cache = cache  # decoded images by path (``cache_images``): a few dozen photos decode once, not per crop
        self.lmdb = is_lmdb(self.root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"task {task!r}: dataroot_{role} not found: {self.root}")
        if self.lmdb:
            try:
                self.reader: Optional[LmdbReader] = LmdbReader(self.root)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"task {task!r}: dataroot_{role}: {err}") from None
            self.keys = list(self.reader.keys)
        else:
            self.reader = None
            self.keys = list_images(self.root)
        if not self.keys:
            raise ValueError(f"task {task!r}: dataroot_{role} holds no images: {self.root}")

    def read(self, key: str) -> np.ndarray:
        if self.reader is not None:
            return self.reader.read(key)
        path = os.path.join(self.root, key)
        if self.cache is None:
            return read_image_file(path)
        img = self.cache.get(path)
        if img is None:
            img = self.cache[path] = read_image_file(path)
            img.setflags(write=False)  # crops are views: nothing may write into the cached photo
        return img

    def path(self, key: str) -> str:
        if self.reader is not None:
            return os.path.join(self.root, key + ".png")  # basename stem = key, as BasicSR names results
        return os.path.join(self.root, key)


class _AbsStore:
    """Images given by absolute paths (standard layout)."""

    lmdb = False

    def read(self, key: str) -> np.ndarray:
        return read_image_file(key)

    def path(self, key: str) -> str:
        return key


class _Task:
    """One task: ``entries`` are ``(lq_key or None, gt_key)``; ``variants`` the synthesis parameter sets."""

    def __init__(self, name: str, degradation: str, label: int, entries: List[Tuple[Optional[str], str]],
                 lq_store: Any, gt_store: Any, synth: Optional[Synthesizer], variants: List[Dict[str, Any]],
                 repeat: int, gt_size: Optional[int], seed: int, kind: str,
                 steps: Optional[List[Tuple[str, Synthesizer, Dict[str, Any]]]] = None,
                 omega: Optional[np.ndarray] = None):
        self.name, self.degradation, self.label = name, degradation, label
        self.entries, self.lq_store, self.gt_store = entries, lq_store, gt_store
        self.synth, self.variants = synth, variants
        self.repeat, self.gt_size, self.seed, self.kind = repeat, gt_size, seed, kind
        # composite tasks: (type, synthesiser, params) in physical order, and the task's ω row
        self.steps, self.omega = steps, omega

    def synthesise(self, gt: np.ndarray, rng: np.random.Generator, variant: Mapping[str, Any]) -> np.ndarray:
        """The degraded image of clean ``gt``: one synthesiser, or every step of a composite in order."""
        if self.steps is None:
            return self.synth(gt, rng, **variant)
        out = gt
        for _, synth, params in self.steps:
            out = synth(out, rng, **params)
        return out

    @property
    def unique_len(self) -> int:
        return len(self.entries) * len(self.variants)

    def __len__(self) -> int:
        return self.unique_len * self.repeat

    def describe(self) -> str:
        extra = f" × {len(self.variants)} variant(s)" if self.synth is not None else ""
        return (f"{self.name} [{self.degradation}, label {self.label}, {self.kind}]: {len(self.entries)} image(s)"
                f"{extra} × repeat {self.repeat} = {len(self)}")


def _positive_int(value: Any, what: str) -> int:
    try:
        iv = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive integer, got {value!r}") from None
    if iv < 1 or iv != value:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return iv


def did_you_mean(word: str, known: Any) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``known``, or ``""``."""
    close = difflib.get_close_matches(str(word), sorted(map(str, known)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown_keys(keys: Any, known: Any, where: str) -> None:
    unknown = sorted(set(map(str, keys)) - set(known))
    if unknown:
        hints = "; ".join(f"{k!r}{did_you_mean(k, known)}" for k in unknown)
        raise ValueError(f"{where}: unknown key(s) {hints}; known: {', '.join(sorted(known))}")


def _variants(topt: Mapping[str, Any], synth: Synthesizer, name: str) -> List[Dict[str, Any]]:
    if "sigmas" in topt and "synth_params" in topt:
        raise ValueError(f"task {name!r}: give either 'sigmas' or 'synth_params', not both")
    if "sigmas" in topt:
        sig = topt["sigmas"]
        if isinstance(sig, (int, float)):
            sig = [sig]
        if not isinstance(sig, (list, tuple)) or len(sig) == 0:
            raise ValueError(f"task {name!r}: 'sigmas' is empty; give at least one noise level, e.g. [15, 25, 50]")
        for s in sig:
            if not isinstance(s, (int, float)) or s < 0:
                raise ValueError(f"task {name!r}: noise sigmas must be non-negative numbers, got {sig!r}")
        return [{"sigma": float(s)} for s in sig]
    if "synth_params" in topt:
        sp = topt["synth_params"]
        if isinstance(sp, Mapping):
            return [dict(sp)]
        if not isinstance(sp, (list, tuple)) or not sp or not all(isinstance(v, Mapping) for v in sp):
            raise ValueError(f"task {name!r}: 'synth_params' must be a dict or a non-empty list of dicts, got {sp!r}")
        return [dict(v) for v in sp]
    return [dict(v) for v in synth.variants]
