"""Convert the PromptIR/AirNet/PIP standard layout (see ``pip_adapter.data.standard``) into BasicSR LMDBs."""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, List, Optional, Sequence

import yaml

from pip_adapter.omega import DEFAULT_DEGRADATIONS, normalise_names

from pip_adapter.image_io import decode_image, encode_png

from .lmdb_io import PAIRS_FILE, LmdbWriter, lmdb_key, write_pairs_file
from .outdir import staged_dir, write_manifest
from .standard import find_standard, resolve_root

logger = logging.getLogger(__name__)

# the paper's per-epoch resampling ratios (spec §8); noise is per σ
PAPER_REPEATS = {"noise": 3, "rain": 120, "haze": 1, "blur": 5, "low_light": 20}
NOISE_SIGMAS = (15, 25, 50)


def _unique_keys(paths: Sequence[str], base: str, task: str) -> List[str]:
    keys = [lmdb_key(os.path.relpath(p, base)) for p in paths]
    seen: Dict[str, str] = {}
    for k, p in zip(keys, paths):
        if k in seen and seen[k] != p:
            raise ValueError(f"{task}: {seen[k]} and {p} map to the same LMDB key {k!r}; rename one of them")
        seen[k] = p
    return keys


def _put_file(wr: LmdbWriter, key: str, path: str, reencode: bool) -> None:
    with open(path, "rb") as fh:
        buf = fh.read()
    img = decode_image(buf, path)
    if reencode:
        buf = encode_png(img, wr.compress_level)
    wr.put_bytes(key, buf, img.shape)


def convert_standard(root: str, out_dir: str, overwrite: bool = False,
                     degradations: Optional[Sequence[str]] = None, reencode: bool = True,
                     progress: bool = True) -> str:
    """Write one BasicSR LMDB set per training task found under ``root``; return ``out_dir`` (absolute).

    Output::

        out_dir/train/noise_gt.lmdb                 clean denoising images (noise added on the fly)
        out_dir/train/<deg>_lq.lmdb, <deg>_gt.lmdb  degraded / clean images
        out_dir/train/<deg>_lq.lmdb/pairs.txt       only for many-to-one data (haze): ``lq_key gt_key``
        out_dir/datasets.yml                        BasicSR ``datasets:`` section (paper ratios; test sets
                                                    of the layout as val sets, read in place)
        out_dir/manifest.json, README.md

    Clean images are stored once: where several degraded images share one clean image (RESIDE/OTS gives
    each clean photo many hazy versions) BasicSR's rule (same key in lq and gt LMDBs) would force a copy
    per degraded image, so the gt LMDB keeps each clean image once and ``pairs.txt`` maps lq → gt keys
    (``MixedDegradationDataset`` reads it; BasicSR's own ``PairedImageDataset`` cannot use such a pair).
    One-to-one data keeps BasicSR's rule (equal keys).  ``reencode=False`` stores the original file bytes
    (e.g. JPEG, much smaller for RESIDE) instead of PNG; both BasicSR and this package decode them.
    Degradations without data under ``root`` are skipped with a log line; none found raises.
    """
    from tqdm import tqdm

    t0 = time.time()
    names = normalise_names(list(degradations) if degradations is not None else list(DEFAULT_DEGRADATIONS))
    data_root, _ = resolve_root(root)
    found: Dict[str, Any] = {}
    for n in names:
        try:
            found[n] = find_standard(root, n, split="train", task=f"standard train set {n!r}")
        except FileNotFoundError as err:
            logger.info("skipping %s: %s", n, err)
    if not found:
        raise FileNotFoundError(f"no training data of {', '.join(names)} found under {data_root} "
                                "(expected e.g. Train/Denoise, Train/Derain/{rainy,gt}, "
                                "Train/Dehaze/{synthetic,original}; see docs/DATA.md)")
    out_abs = os.path.abspath(os.fspath(out_dir))
    tasks: List[Dict[str, Any]] = []
    with staged_dir(out_abs, overwrite) as stage:
        tdir = os.path.join(stage, "train")
        os.makedirs(tdir)
        for n, (folder, pairs) in found.items():
            label = f"standard train set {n!r}"
            if pairs[0][0] is None:
                gts = [g for _, g in pairs]
                keys = _unique_keys(gts, folder, label)
                with LmdbWriter(os.path.join(tdir, f"{n}_gt.lmdb")) as wr:
                    for k, p in tqdm(list(zip(keys, gts)), desc=f"{n} gt", disable=not progress):
                        _put_file(wr, k, p, reencode)
                tasks.append({"degradation": n, "count": len(gts), "folder": folder, "many_to_one": False})
                continue
            lqs = [a for a, _ in pairs]
            lq_keys = _unique_keys(lqs, folder, label)
            gt_paths = sorted({b for _, b in pairs})
            many = len(gt_paths) < len(pairs)
            gt_key_of = (dict(zip(gt_paths, _unique_keys(gt_paths, folder, label))) if many
                         else {b: k for k, (_, b) in zip(lq_keys, pairs)})
            lq_path = os.path.join(tdir, f"{n}_lq.lmdb")
            with LmdbWriter(lq_path) as wr:
                for k, p in tqdm(list(zip(lq_keys, lqs)), desc=f"{n} lq", disable=not progress):
                    _put_file(wr, k, p, reencode)
            with LmdbWriter(os.path.join(tdir, f"{n}_gt.lmdb")) as wr:
                for p in tqdm(gt_paths, desc=f"{n} gt", disable=not progress):
                    _put_file(wr, gt_key_of[p], p, reencode)
            if many:
                write_pairs_file(os.path.join(lq_path, PAIRS_FILE),
                                 [(k, gt_key_of[b]) for k, (_, b) in zip(lq_keys, pairs)])
            tasks.append({"degradation": n, "count": len(pairs), "clean": len(gt_paths), "folder": folder,
                          "many_to_one": many})
        opts = standard_dataset_options(out_abs, os.path.abspath(root), tasks, names)
        with open(os.path.join(stage, "datasets.yml"), "w", encoding="utf-8") as fh:
            fh.write("# BasicSR `datasets:` section for the converted data (paste under `datasets:`)\n")
            yaml.safe_dump(opts, fh, sort_keys=False, default_flow_style=False)
        with open(os.path.join(stage, "README.md"), "w", encoding="utf-8") as fh:
            fh.write("# pip-adapter converted data\n\nMade by `pip-adapter prepare-data --from-standard` from "
                     f"`{os.path.abspath(root)}`.\n\n")
            for t in tasks:
                extra = (f" ({t['clean']} clean images stored once, pairs in `{t['degradation']}_lq.lmdb/pairs.txt`)"
                         if t.get("many_to_one") else "")
                fh.write(f"- {t['degradation']}: {t['count']} image(s) from `{t['folder']}`{extra}\n")
        write_manifest(stage, {"kind": "standard", "root": os.path.abspath(root), "tasks": tasks,
                               "degradations": names, "reencode": reencode,
                               "seconds": round(time.time() - t0, 2)})
    logger.info("converted %s into %s in %.1f s", root, out_abs, time.time() - t0)
    return out_abs


def standard_dataset_options(out_dir: str, root: str, tasks: Sequence[Dict[str, Any]],
                             names: Sequence[str]) -> Dict[str, Any]:
    """BasicSR ``datasets:`` section for converted data, with the layout's test sets as val sets."""
    tdir = os.path.join(out_dir, "train")
    entries = []
    for t in tasks:
        n = t["degradation"]
        if "clean" not in t:
            entries.append({"degradation": n, "source": "synthetic",
                            "dataroot_gt": os.path.join(tdir, f"{n}_gt.lmdb"),
                            "sigmas": list(NOISE_SIGMAS), "repeat": PAPER_REPEATS.get(n, 1)})
        else:
            entries.append({"degradation": n, "source": "lmdb", "dataroot_lq": os.path.join(tdir, f"{n}_lq.lmdb"),
                            "dataroot_gt": os.path.join(tdir, f"{n}_gt.lmdb"), "repeat": PAPER_REPEATS.get(n, 1)})
    opts: Dict[str, Any] = {"train": {
        "name": "standard_train", "type": "MixedDegradationDataset", "degradations": list(names),
        "gt_size": 128, "use_hflip": True, "use_rot": True, "io_backend": {"type": "lmdb"}, "tasks": entries,
        "use_shuffle": True, "num_worker_per_gpu": 8, "batch_size_per_gpu": 8, "dataset_enlarge_ratio": 1,
        "prefetch_mode": None,
    }}
    i = 0
    for n in names:
        try:
            _, pairs = find_standard(root, n, split="test")
        except (FileNotFoundError, ValueError) as err:
            logger.info("no test set for %s: %s", n, err)
            continue
        sigmas = NOISE_SIGMAS if pairs[0][0] is None else (None,)
        for s in sigmas:
            i += 1
            vopt: Dict[str, Any] = {"name": f"test_{n}" + (f"_sigma{s}" if s is not None else ""),
                                    "type": "MixedDegradationDataset", "degradations": list(names),
                                    "degradation": n, "source": "standard", "dataroot": root, "split": "test",
                                    "crop_multiple": 16, "io_backend": {"type": "disk"}}
            if s is not None:
                vopt["sigmas"] = [s]
            opts[f"val_{i}"] = vopt
    return opts
