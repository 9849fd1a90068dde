"""``MixedDegradationDataset``: several restoration tasks, each with its ω label, in one torch Dataset."""
from __future__ import annotations

import bisect
import logging
import os
import random
import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pip_adapter.degradations import PHOTO_SYNTHESIZERS, get_synthesizer, physical_order
from pip_adapter.omega import canonical_name, name_to_index, normalise_names
from pip_adapter.utils.tensor import center_crop_to_multiple

from .lmdb_io import PAIRS_FILE, read_pairs_file
from .standard import find_standard, pair_folders
from .tasks import _AbsStore, _positive_int, _Store, _Task, _unknown_keys, _variants

logger = logging.getLogger(__name__)

SOURCES = ("paired", "lmdb", "synthetic", "standard")
_TASK_KEYS = {"name", "degradation", "source", "dataroot_lq", "dataroot_gt", "dataroot", "pairs_file",
              "filename_tmpl", "synthesizer", "sigmas", "synth_params", "repeat", "gt_size", "list_file",
              "subset", "split", "seed"}
_DATASET_KEYS = {"name", "type", "phase", "degradations", "gt_size", "use_hflip", "use_rot", "crop_multiple", "seed",
                 "io_backend", "tasks", "synthesizers", "cache_images",
                 # read by BasicSR's loader, sampler and prefetchers (or set by its option parser)
                 "scale", "use_shuffle", "num_worker_per_gpu", "batch_size_per_gpu", "dataset_enlarge_ratio",
                 "prefetch_mode", "pin_memory", "persistent_workers", "num_prefetch_queue"}
# items per epoch (after repeat and dataset_enlarge_ratio): the paper's five tasks make about 2e5; BasicSR's
# sampler draws a permutation of all of them each epoch (8 bytes an item), so absurd ratios must stop here
MAX_EPOCH_ITEMS = 10_000_000


class MixedDegradationDataset(Dataset):
    """Several restoration tasks, each with a degradation name (its ω label) and a data source.

    Built from a BasicSR dataset option dict (``MixedDegradationDataset(opt)``): dataset keys (``phase``,
    ``degradations``, ``gt_size``, ``crop_multiple``, …) and a ``tasks`` list, each task with a ``degradation``
    and a source (``paired``, ``lmdb``, ``synthetic``, ``standard``); docs/DATA.md is the option reference.
    Items: ``{"lq": float32 [3,H,W] in [0,1] RGB, "gt": same, "label": int, "lq_path": str, "gt_path": str,
    "task": str}``.  Any problem with the configuration or the files raises at construction, naming the task
    and the path.
    """

    def __init__(self, opt: Mapping[str, Any]):
        super().__init__()
        if not isinstance(opt, Mapping):
            raise ValueError(f"MixedDegradationDataset needs an option dict, got {type(opt).__name__}")
        self.opt = dict(opt)
        self.phase = str(opt.get("phase", "train"))
        self.train = self.phase == "train"
        self.dataset_name = str(opt.get("name", "MixedDegradation"))
        self.degradations: List[str] = normalise_names(opt.get("degradations"))
        self.gt_size = _positive_int(opt.get("gt_size", 128), f"dataset {self.dataset_name!r}: gt_size")
        self.use_hflip = bool(opt.get("use_hflip", True))
        self.use_rot = bool(opt.get("use_rot", True))
        self.crop_multiple = _positive_int(opt.get("crop_multiple", 16),
                                           f"dataset {self.dataset_name!r}: crop_multiple")
        self.seed = int(opt.get("seed", 0))
        # shared by every task, so the photos several tasks read are decoded once
        self._cache: Optional[Dict[str, np.ndarray]] = {} if opt.get("cache_images", False) else None
        self.synthesizers = self._synthesizer_map(opt.get("synthesizers"))
        task_opts = opt.get("tasks")
        # a misspelled or invented key (ratios:, gt_szie:) would otherwise be ignored in silence
        _unknown_keys(opt, _DATASET_KEYS | (set() if task_opts is not None else _TASK_KEYS),
                      f"dataset {self.dataset_name!r}")
        enlarge = _positive_int(opt.get("dataset_enlarge_ratio", 1),
                                f"dataset {self.dataset_name!r}: dataset_enlarge_ratio")
        if task_opts is None:
            if "degradation" not in opt:
                raise ValueError(f"dataset {self.dataset_name!r}: give 'tasks' (a list of task dicts) or the keys "
                                 "of one task (at least 'degradation' and a data root)")
            task_opts = [{k: v for k, v in opt.items() if k in _TASK_KEYS}]
        if not isinstance(task_opts, (list, tuple)) or not task_opts:
            raise ValueError(f"dataset {self.dataset_name!r}: 'tasks' must be a non-empty list of task dicts")
        if not self.train and len(task_opts) != 1:
            raise ValueError(f"dataset {self.dataset_name!r} (phase {self.phase!r}) has {len(task_opts)} tasks; "
                             "validation takes one task per val set (val_1, val_2, ...) so metrics stay per task")
        degs = [_task_key(t.get("degradation")) if isinstance(t, Mapping) else "" for t in task_opts]
        defaults = [d if degs.count(d) == 1 else f"{d}#{i}" for i, d in enumerate(degs)]
        self.tasks: List[_Task] = [self._build_task(t, i, defaults[i]) for i, t in enumerate(task_opts)]
        self._offsets = np.cumsum([0] + [len(t) for t in self.tasks]).tolist()
        if self._offsets[-1] * enlarge > MAX_EPOCH_ITEMS:
            sizes = ", ".join(f"{t.name} {len(t):,d}" for t in self.tasks)
            raise ValueError(f"dataset {self.dataset_name!r}: {self._offsets[-1] * enlarge:,d} items per epoch "
                             f"({sizes}; × dataset_enlarge_ratio {enlarge}) is more than {MAX_EPOCH_ITEMS:,d}; "
                             "lower 'repeat' (the paper's largest ratio is 120) or dataset_enlarge_ratio")
        # a composite task's ω is not one-hot, so when there is one every item carries its ω row (a batch
        # must collate the same keys)
        self.has_omega = any(t.omega is not None for t in self.tasks)
        for t in self.tasks:
            if t.omega is None and self.has_omega:
                t.omega = np.eye(len(self.degradations), dtype=np.float32)[t.label]
        for t in self.tasks:
            logger.info("dataset %s: %s", self.dataset_name, t.describe())

    def _synthesizer_map(self, value: Any) -> Dict[str, str]:
        """The dataset's ``synthesizers`` option: ``photo`` (the realistic models) or ``{type: synthesiser}``."""
        if value is None:
            return {}
        if value == "photo":
            return dict(PHOTO_SYNTHESIZERS)
        if not isinstance(value, Mapping):
            raise ValueError(f"dataset {self.dataset_name!r}: 'synthesizers' must be 'photo' or a "
                             f"{{degradation: synthesiser}} dict, got {value!r}")
        out = {}
        for k, v in value.items():
            try:
                get_synthesizer(str(v))
            except ValueError as err:
                raise ValueError(f"dataset {self.dataset_name!r}: synthesizers[{k!r}]: {err}") from None
            out[canonical_name(str(k))] = str(v)
        return out

    # ------------------------------------------------------------------ construction
    def _build_task(self, topt: Any, index: int, default_name: str) -> _Task:
        if not isinstance(topt, Mapping):
            raise ValueError(f"dataset {self.dataset_name!r}: task #{index} must be a dict, got {topt!r}")
        if "degradation" not in topt:
            raise ValueError(f"dataset {self.dataset_name!r}: task #{index} has no 'degradation' "
                             f"(one of {', '.join(self.degradations)})")
        if isinstance(topt["degradation"], (list, tuple)):
            return self._build_composite(topt, index, default_name)
        deg = canonical_name(topt["degradation"])
        name = str(topt.get("name", default_name))
        _unknown_keys(topt, _TASK_KEYS, f"task {name!r}")
        try:
            label = name_to_index(deg, self.degradations)
        except ValueError as err:
            raise ValueError(f"task {name!r}: {err}") from None
        source = topt.get("source")
        if source is None:
            source = ("standard" if "dataroot" in topt else "paired" if "dataroot_lq" in topt else
                      "synthetic" if "dataroot_gt" in topt else None)
            if source is None:
                raise ValueError(f"task {name!r}: no data given; set 'dataroot_gt' (and 'dataroot_lq'), or "
                                 "'dataroot' for the standard layout")
        if source not in SOURCES:
            raise ValueError(f"task {name!r}: unknown source {source!r}; use one of {', '.join(SOURCES)}")
        repeat = _positive_int(topt.get("repeat", 1), f"task {name!r}: repeat")
        if repeat > MAX_EPOCH_ITEMS:
            raise ValueError(f"task {name!r}: repeat {topt.get('repeat')!r} is absurd (more than "
                             f"{MAX_EPOCH_ITEMS:,d} items per epoch from one image); the paper's largest ratio is 120")
        gt_size = (_positive_int(topt["gt_size"], f"task {name!r}: gt_size") if "gt_size" in topt else None)
        seed = int(topt.get("seed", self.seed)) + 1000003 * index

        synth, variants = None, [{}]
        if source == "standard":
            if "dataroot" not in topt:
                raise ValueError(f"task {name!r}: source 'standard' needs 'dataroot' (the layout's root folder)")
            split = topt.get("split", "train" if self.train else "test")
            folder, pairs = find_standard(topt["dataroot"], deg, split=split, subset=topt.get("subset"),
                                          list_file=topt.get("list_file"), task=f"task {name!r}")
            store = _AbsStore()
            if pairs[0][0] is None:
                try:
                    synth = get_synthesizer(topt.get("synthesizer", self.synthesizers.get(deg, deg)))
                except ValueError as err:
                    raise ValueError(f"task {name!r}: {err}") from None
                variants = _variants(topt, synth, name)
                kind = f"standard clean-only {folder}"
            else:
                self._no_synth_keys(topt, name, f"its images under {folder} are already degraded")
                kind = f"standard {folder}"
            return _Task(name, deg, label, list(pairs), store, store, synth, variants, repeat, gt_size, seed,
                         kind)

        if "dataroot_gt" not in topt:
            raise ValueError(f"task {name!r}: source {source!r} needs 'dataroot_gt'")
        gt_store = _Store(topt["dataroot_gt"], name, "gt", self._cache)
        if source == "synthetic":
            if "dataroot_lq" in topt:
                raise ValueError(f"task {name!r}: source 'synthetic' makes lq itself; remove 'dataroot_lq'")
            try:
                synth = get_synthesizer(topt.get("synthesizer", self.synthesizers.get(deg, deg)))
            except ValueError as err:
                raise ValueError(f"task {name!r}: {err}") from None
            variants = _variants(topt, synth, name)
            if gt_store.lmdb:
                self._check_lmdb_keys(gt_store, gt_store.keys, name)
            entries = [(None, k) for k in gt_store.keys]
            return _Task(name, deg, label, entries, None, gt_store, synth, variants, repeat, gt_size, seed,
                         f"synthetic '{synth.name}' on {gt_store.root}")

        if "dataroot_lq" not in topt:
            raise ValueError(f"task {name!r}: source {source!r} needs 'dataroot_lq' (degraded images); for clean "
                             "images only use source 'synthetic'")
        self._no_synth_keys(topt, name, f"source {source!r} reads degraded images")
        lq_store = _Store(topt["dataroot_lq"], name, "lq")
        if source == "lmdb" and not (lq_store.lmdb and gt_store.lmdb):
            raise ValueError(f"task {name!r}: source 'lmdb' needs two LMDBs, got lq={lq_store.root} "
                             f"gt={gt_store.root}; use source 'paired' for folders")
        entries = self._pair(topt, lq_store, gt_store, name)
        return _Task(name, deg, label, entries, lq_store, gt_store, None, [{}], repeat, gt_size, seed,
                     f"paired {lq_store.root} -> {gt_store.root}")

    def _build_composite(self, topt: Mapping[str, Any], index: int, default_name: str) -> _Task:
        """A task whose clean images get two or more degradations, in physical order, with a multi-hot ω."""
        types = [canonical_name(t) if isinstance(t, str) else t for t in topt["degradation"]]
        name = str(topt.get("name", default_name))
        _unknown_keys(topt, _TASK_KEYS, f"task {name!r}")
        if len(types) < 2 or not all(isinstance(t, str) for t in types) or len(set(types)) != len(types):
            raise ValueError(f"task {name!r}: a composite 'degradation' must list two or more different type names, "
                             f"got {topt['degradation']!r}")
        try:
            labels = [name_to_index(t, self.degradations) for t in types]
        except ValueError as err:
            raise ValueError(f"task {name!r}: {err}") from None
        source = topt.get("source", "paired" if "dataroot_lq" in topt else "synthetic")
        if source not in ("synthetic", "paired") or "dataroot" in topt:
            raise ValueError(f"task {name!r}: a composite task is 'synthetic' (clean 'dataroot_gt', degraded on the "
                             "fly) or 'paired' (degraded 'dataroot_lq' and clean 'dataroot_gt' folders)")
        if "dataroot_gt" not in topt:
            raise ValueError(f"task {name!r}: a composite task needs 'dataroot_gt' (a folder or LMDB of clean images)")
        repeat = _positive_int(topt.get("repeat", 1), f"task {name!r}: repeat")
        gt_size = (_positive_int(topt["gt_size"], f"task {name!r}: gt_size") if "gt_size" in topt else None)
        seed = int(topt.get("seed", self.seed)) + 1000003 * index
        # multi-hot, normalised to sum 1 like Degradation-Mix's rows and the classifier's probabilities
        omega = np.zeros(len(self.degradations), np.float32)
        omega[labels] = 1.0 / len(labels)
        if source == "paired":
            if "dataroot_lq" not in topt:
                raise ValueError(f"task {name!r}: source 'paired' needs 'dataroot_lq' (the degraded images)")
            self._no_synth_keys(topt, name, "source 'paired' reads degraded images")
            lq_store = _Store(topt["dataroot_lq"], name, "lq")
            gt_store = _Store(topt["dataroot_gt"], name, "gt", self._cache)
            entries = self._pair(topt, lq_store, gt_store, name)
            return _Task(name, "+".join(types), labels[0], entries, lq_store, gt_store, None, [{}], repeat, gt_size,
                         seed, f"paired composite {lq_store.root} -> {gt_store.root}", omega=omega)
        if "sigmas" in topt:
            raise ValueError(f"task {name!r}: 'sigmas' is for single noise tasks; give a composite's noise as "
                             "synth_params: {noise: {sigma: [low, high]}}")
        chosen = topt.get("synthesizer", {})
        params = topt.get("synth_params", {})
        for what, value in (("synthesizer", chosen), ("synth_params", params)):
            if not isinstance(value, Mapping):
                raise ValueError(f"task {name!r}: a composite's '{what}' must be a dict keyed by its types "
                                 f"{types}, got {value!r}")
            extra = sorted(set(canonical_name(str(k)) for k in value) - set(types))
            if extra:
                raise ValueError(f"task {name!r}: {what} names type(s) {extra} that the task does not have ({types})")
        chosen = {canonical_name(str(k)): str(v) for k, v in chosen.items()}
        params = {canonical_name(str(k)): v for k, v in params.items()}
        steps = []
        for t in physical_order(types):
            p = params.get(t, {})
            if not isinstance(p, Mapping):
                raise ValueError(f"task {name!r}: synth_params[{t!r}] must be a dict of parameters, got {p!r}")
            try:
                synth = get_synthesizer(chosen.get(t, self.synthesizers.get(t, t)))
            except ValueError as err:
                raise ValueError(f"task {name!r}: {err}") from None
            steps.append((t, synth, dict(p)))
        gt_store = _Store(topt["dataroot_gt"], name, "gt", self._cache)
        if gt_store.lmdb:
            self._check_lmdb_keys(gt_store, gt_store.keys, name)
        kind = "composite " + " → ".join(f"{t} '{s.name}'" for t, s, _ in steps) + f" on {gt_store.root}"
        return _Task(name, "+".join(types), labels[0], [(None, k) for k in gt_store.keys], None, gt_store, None,
                     [{}], repeat, gt_size, seed, kind, steps=steps, omega=omega)

    @staticmethod
    def _no_synth_keys(topt: Mapping[str, Any], name: str, why: str) -> None:
        given = [k for k in ("sigmas", "synth_params", "synthesizer") if k in topt]
        if given:
            raise ValueError(f"task {name!r}: {', '.join(given)} only apply to synthetic tasks, but {why}; "
                             "remove them or use source 'synthetic' with clean images")

    def _check_lmdb_keys(self, store: _Store, keys: Sequence[str], task: str) -> None:
        missing = store.reader.missing_keys(keys)
        if missing:
            raise ValueError(f"task {task!r}: LMDB {store.root} lacks {len(missing)} key(s) listed in its "
                             f"meta_info.txt or pairs file, e.g. {missing[:5]}; rebuild the LMDB")

    def _pair(self, topt: Mapping[str, Any], lq: _Store, gt: _Store, name: str) -> List[Tuple[str, str]]:
        pairs_file = topt.get("pairs_file")
        if pairs_file is None and os.path.isfile(os.path.join(lq.root, PAIRS_FILE)):
            pairs_file = os.path.join(lq.root, PAIRS_FILE)
        if pairs_file is not None:
            try:
                pairs = read_pairs_file(pairs_file)
            except (FileNotFoundError, ValueError) as err:
                raise type(err)(f"task {name!r}: {err}") from None
            if not pairs:
                raise ValueError(f"task {name!r}: pairs file {pairs_file} is empty")
            lq_set, gt_set = set(lq.keys), set(gt.keys)
            bad_lq = [a for a, _ in pairs if a not in lq_set]
            bad_gt = [b for _, b in pairs if b not in gt_set]
            if bad_lq or bad_gt:
                raise ValueError(f"task {name!r}: pairs file {pairs_file} names keys that do not exist: "
                                 f"lq {bad_lq[:5]} (in {lq.root}), gt {bad_gt[:5]} (in {gt.root})")
        elif lq.lmdb and gt.lmdb:
            lq_set, gt_set = set(lq.keys), set(gt.keys)
            if lq_set != gt_set:
                only_lq, only_gt = sorted(lq_set - gt_set), sorted(gt_set - lq_set)
                raise ValueError(f"task {name!r}: unpaired LMDB keys: {len(only_lq)} only in {lq.root} "
                                 f"(e.g. {only_lq[:5]}), {len(only_gt)} only in {gt.root} (e.g. {only_gt[:5]}); "
                                 f"add a pairs file ('lq_key gt_key' lines) for many-to-one data")
            pairs = [(k, k) for k in sorted(lq_set)]
        elif not lq.lmdb and not gt.lmdb:
            tmpl = str(topt.get("filename_tmpl", "{}"))
            if tmpl == "{}":
                full = pair_folders(lq.root, gt.root, (), f"task {name!r}", strict_gt=True)
            else:
                gt_by_lq = {}
                for g in gt.keys:
                    stem = os.path.splitext(g)[0]
                    head, base = os.path.split(stem)
                    gt_by_lq[os.path.join(head, tmpl.format(base)).replace(os.sep, "/")] = g
                lq_by_stem = {os.path.splitext(k)[0]: k for k in lq.keys}
                miss_lq = sorted(set(gt_by_lq) - set(lq_by_stem))
                miss_gt = sorted(set(lq_by_stem) - set(gt_by_lq))
                if miss_lq or miss_gt:
                    raise ValueError(f"task {name!r}: unpaired files with filename_tmpl {tmpl!r}: no degraded image "
                                     f"in {lq.root} for {miss_lq[:5]}; no clean image in {gt.root} for {miss_gt[:5]}")
                return [(lq_by_stem[s], g) for s, g in sorted(gt_by_lq.items())]
            return [(os.path.relpath(a, lq.root).replace(os.sep, "/"),
                     os.path.relpath(b, gt.root).replace(os.sep, "/")) for a, b in full]
        else:
            raise ValueError(f"task {name!r}: lq and gt must both be folders or both LMDBs (or use a pairs file), "
                             f"got lq={lq.root} gt={gt.root}")
        if lq.lmdb:
            self._check_lmdb_keys(lq, [a for a, _ in pairs], name)
        if gt.lmdb:
            self._check_lmdb_keys(gt, sorted({b for _, b in pairs}), name)
            for a, b in pairs:
                sa, sb = lq.reader.shapes.get(a) if lq.lmdb else None, gt.reader.shapes.get(b)
                if sa and sb and sa[:2] != sb[:2]:
                    raise ValueError(f"task {name!r}: lq {a} {sa} and gt {b} {sb} differ in size "
                                     f"({lq.root}, {gt.root})")
        return pairs

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return self._offsets[-1]

    def task_of(self, index: int) -> Tuple[_Task, int]:
        """(task, index within the task's unique items) of a dataset index."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        t = bisect.bisect_right(self._offsets, index) - 1
        return self.tasks[t], (index - self._offsets[t]) % self.tasks[t].unique_len

    def labels(self) -> List[int]:
        """The label of every index (cheap: no image is read)."""
        out: List[int] = []
        for t in self.tasks:
            out += [t.label] * len(t)
        return out

    def check_pair_sizes(self) -> None:
        """Raise ``ValueError`` naming the first paired lq/gt image files whose headers declare different sizes.

        Reads headers only (no decoding), so a validation set is checked in a moment before a run starts
        instead of failing at its first validation; images in an LMDB are left to :meth:`__getitem__`.
        """
        for task in self.tasks:
            if getattr(task.lq_store, "lmdb", True) or getattr(task.gt_store, "lmdb", True):
                continue
            for lq_key, gt_key in task.entries:
                if lq_key is None:
                    continue
                lq_path, gt_path = task.lq_store.path(lq_key), task.gt_store.path(gt_key)
                lq_size, gt_size = _declared_size(lq_path), _declared_size(gt_path)
                if lq_size and gt_size and lq_size != gt_size:
                    raise ValueError(f"task {task.name!r}: lq {lq_path} ({lq_size[0]}x{lq_size[1]}) and gt "
                                     f"{gt_path} ({gt_size[0]}x{gt_size[1]}) differ in size")

    def __getitem__(self, index: int) -> Dict[str, Any]:
        task, j = self.task_of(index)
        entry, variant = task.entries[j // len(task.variants)], task.variants[j % len(task.variants)]
        lq_key, gt_key = entry
        gt = task.gt_store.read(gt_key)
        lq = task.lq_store.read(lq_key) if lq_key is not None else None
        gt_path = task.gt_store.path(gt_key)
        if lq is not None and lq.shape[:2] != gt.shape[:2]:
            raise ValueError(f"task {task.name!r}: lq {task.lq_store.path(lq_key)} {lq.shape[:2]} and gt {gt_path} "
                             f"{gt.shape[:2]} differ in size")
        if self.train:
            size = task.gt_size or self.gt_size
            gt, lq = _random_crop(gt, lq, size)
            gt, lq = _augment(gt, lq, self.use_hflip, self.use_rot)
            rng = np.random.default_rng(random.getrandbits(64))
        else:
            gt, lq = center_crop_to_multiple(gt, self.crop_multiple), (None if lq is None else center_crop_to_multiple(lq, self.crop_multiple))
            rng = np.random.default_rng([task.seed, j])
        if lq is None:
            lq = task.synthesise(np.ascontiguousarray(gt), rng, variant)
            tag = variant_tag(variant) if variant else (task.name if task.steps is not None else "")
            lq_path = _tag_path(gt_path, tag) if tag else gt_path
        else:
            lq_path = task.lq_store.path(lq_key)
        item = {"lq": _to_tensor(lq), "gt": _to_tensor(gt), "label": task.label, "lq_path": lq_path,
                "gt_path": gt_path, "task": task.name}
        if self.has_omega:
            item["omega"] = torch.from_numpy(task.omega.copy())
        return item

    def describe(self) -> str:
        """One line per task: source, label, counts."""
        return "\n".join(t.describe() for t in self.tasks)


def _task_key(degradation: Any) -> str:
    """A task's default name: its degradation, or ``a+b`` for a composite."""
    if isinstance(degradation, str):
        return canonical_name(degradation)
    if isinstance(degradation, (list, tuple)) and all(isinstance(d, str) for d in degradation):
        return "+".join(canonical_name(d) for d in degradation)
    return ""


def variant_tag(params: Mapping[str, Any]) -> str:
    """File-name-safe tag of a parameter set: ``{"sigma": 15}`` → ``sigma15``, 0.5 → ``0p5``."""
    parts = []
    for k, v in sorted(params.items()):
        v = f"{v:g}" if isinstance(v, (int, float)) else str(v)
        parts.append(f"{k}{v}".replace(".", "p").replace("-", "m").replace(" ", ""))
    return "_".join(parts)


def _tag_path(path: str, tag: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}_{tag}{ext}"


def _declared_size(path: str) -> Optional[Tuple[int, int]]:
    """(width, height) from an image file's header, or None when PIL cannot read the header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's large-image warning: only the size is read
            with Image.open(path) as im:
                return im.size
    except Exception:  # noqa: BLE001 - an unreadable header is reported when the image is read
        return None


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


def _random_crop(gt: np.ndarray, lq: Optional[np.ndarray], size: int):
    h, w = gt.shape[:2]
    if h < size or w < size:
        # reflect-pad small images instead of failing mid-training
        ph, pw = max(0, size - h), max(0, size - w)
        pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
        mode = "reflect" if h > ph and w > pw else "symmetric"
        gt = np.pad(gt, pad, mode=mode)
        lq = None if lq is None else np.pad(lq, pad, mode=mode)
        h, w = gt.shape[:2]
    top, left = random.randint(0, h - size), random.randint(0, w - size)
    gt = gt[top:top + size, left:left + size]
    lq = None if lq is None else lq[top:top + size, left:left + size]
    return gt, lq


def _augment(gt: np.ndarray, lq: Optional[np.ndarray], hflip: bool, rot: bool):
    ops = (hflip and random.random() < 0.5, rot and random.random() < 0.5, rot and random.random() < 0.5)

    def apply(img):
        if ops[0]:
            img = img[:, ::-1]
        if ops[1]:
            img = img[::-1]
        if ops[2]:
            img = img.transpose(1, 0, 2)
        return np.ascontiguousarray(img)

    return apply(gt), (None if lq is None else apply(lq))

