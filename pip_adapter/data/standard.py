"""The on-disk layout users of PromptIR / AirNet / PIP already have, and how its pairs are found.

Accepted root: the ``data`` folder (holding ``Train/``) or the repository root holding ``data/Train`` and
``data_dir/`` (PromptIR's list files).  Folder names match case-insensitively.  docs/DATA.md ("The standard
layout") lists the folders of each task and split and how degraded and clean files pair.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence, Tuple

from pip_adapter.omega import canonical_name

logger = logging.getLogger(__name__)

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# degradation -> (candidate task folders, (lq folder, gt folder) name pairs, list files, stem rules)
_TRAIN = {
    "noise": (["Train/Denoise"], [], ["noisy/denoise_airnet.txt", "noisy/denoise.txt"], ()),
    "rain": (["Train/Derain"], [("rainy", "gt"), ("rain", "norain"), ("input", "target")],
             ["rainy/rainTrain.txt"], ("rain",)),
    "haze": (["Train/Dehaze"], [("synthetic", "original"), ("hazy", "clear"), ("input", "target")],
             ["hazy/hazy_outside.txt"], ("prefix",)),
    "blur": (["Train/Deblur", "Train/GoPro"], [("blur", "sharp"), ("input", "target")], [], ()),
    "low_light": (["Train/Enhance", "Train/LOL/our485", "Train/LOL", "Train/LowLight"],
                  [("low", "high"), ("low", "gt"), ("input", "target")], [], ()),
}
_TEST = {
    "noise": (["test/denoise/bsd68", "test/denoise/BSD68", "test/denoise"], [], [], ()),
    "rain": (["test/derain/Rain100L", "test/derain"], [("input", "target"), ("rainy", "gt")], [], ("rain",)),
    "haze": (["test/dehaze/SOTS", "test/dehaze"], [("input", "target"), ("hazy", "gt")], [], ("prefix",)),
    "blur": (["test/deblur/GoPro", "test/deblur"], [("input", "target"), ("blur", "sharp")], [], ()),
    "low_light": (["test/enhance/LOL", "test/enhance", "test/lowlight", "test/LOL/eval15"],
                  [("input", "target"), ("low", "high"), ("low", "gt")], [], ()),
}


def is_image(name: str) -> bool:
    """True for a file name with a known image extension."""
    return name.lower().endswith(IMG_EXTENSIONS)


def list_images(folder: str) -> List[str]:
    """Image paths under ``folder`` (recursive), relative to it with ``/``, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        for f in filenames:
            if is_image(f) and not f.startswith("."):
                out.append(os.path.relpath(os.path.join(dirpath, f), folder).replace(os.sep, "/"))
    return sorted(out)


def _find_ci(base: str, rel: str) -> Optional[str]:
    """``base/rel`` with each component matched case-insensitively; None when absent."""
    cur = base
    for part in rel.split("/"):
        if not os.path.isdir(cur):
            return None
        exact = os.path.join(cur, part)
        if os.path.exists(exact):
            cur = exact
            continue
        match = [e for e in os.listdir(cur) if e.lower() == part.lower()]
        if not match:
            return None
        cur = os.path.join(cur, sorted(match)[0])
    return cur


def resolve_root(root: str) -> Tuple[str, List[str]]:
    """(data root holding ``Train``/``test``, candidate ``data_dir`` folders for list files)."""
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"standard-layout root not found: {root}")
    data_root = root
    for cand in ("data",):
        sub = _find_ci(root, cand)
        if sub and (_find_ci(sub, "Train") or _find_ci(sub, "test")):
            data_root = sub
    lists = [p for p in (os.path.join(root, "data_dir"), os.path.join(data_root, "data_dir"),
                         os.path.join(os.path.dirname(data_root), "data_dir")) if os.path.isdir(p)]
    return data_root, lists


def _stem_candidates(stem: str, rules: Sequence[str]) -> List[str]:
    out = [stem]
    base = stem.rsplit("/", 1)[-1]
    head = stem[: len(stem) - len(base)]
    if "rain" in rules and base.startswith("rain-"):
        out += [head + "norain-" + base[len("rain-"):], "norain-" + base[len("rain-"):]]
    if "prefix" in rules and "_" in base:
        out += [head + base.split("_")[0], base.split("_")[0]]
    return out


def _read_list(path: str) -> List[str]:
    with open(path, encoding="utf-8") as fh:
        return [ln.strip().replace("\\", "/").lstrip("./") for ln in fh if ln.strip()]


def pair_folders(lq_dir: str, gt_dir: str, rules: Sequence[str] = (), task: str = "task",
                 strict_gt: bool = True, only: Optional[Sequence[str]] = None) -> List[Tuple[str, str]]:
    """Pair the images of ``lq_dir`` with those of ``gt_dir`` → ``[(lq_path, gt_path)]``.

    A degraded image pairs with the clean image of the same relative path stem (any extension), else
    with the stems the ``rules`` give (``"rain"``: ``rain-N`` → ``norain-N``; ``"prefix"``: the part before
    the first ``_``, as RESIDE names hazy images), also looked up by base name.  Unpaired degraded images
    always raise; clean images left without a degraded one raise when ``strict_gt``.  ``only`` restricts
    the degraded images to these relative paths.
    """
    lq_files = list_images(lq_dir)
    gt_files = list_images(gt_dir)
    if not lq_files:
        raise ValueError(f"{task}: no images in {lq_dir}")
    if not gt_files:
        raise ValueError(f"{task}: no images in {gt_dir}")
    if only is not None:
        wanted = set(only)
        missing = sorted(wanted - set(lq_files))
        if missing:
            raise ValueError(f"{task}: {len(missing)} listed image(s) missing under {lq_dir}: {missing[:5]}")
        lq_files = [f for f in lq_files if f in wanted]
    by_stem: Dict[str, str] = {os.path.splitext(f)[0]: f for f in gt_files}
    by_base: Dict[str, List[str]] = {}
    for f in gt_files:
        by_base.setdefault(os.path.splitext(f)[0].rsplit("/", 1)[-1], []).append(f)
    pairs, unpaired, used = [], [], set()
    for f in lq_files:
        stem = os.path.splitext(f)[0]
        hit = None
        for cand in _stem_candidates(stem, rules):
            if cand in by_stem:
                hit = by_stem[cand]
                break
            base = cand.rsplit("/", 1)[-1]
            if len(by_base.get(base, ())) == 1:
                hit = by_base[base][0]
                break
        if hit is None:
            unpaired.append(f)
        else:
            used.add(hit)
            pairs.append((os.path.join(lq_dir, f), os.path.join(gt_dir, hit)))
    if unpaired:
        raise ValueError(f"{task}: {len(unpaired)} degraded image(s) in {lq_dir} have no clean image in {gt_dir}, "
                         f"e.g. {unpaired[:5]}")
    extra = sorted(set(gt_files) - used)
    if strict_gt and extra:
        raise ValueError(f"{task}: {len(extra)} clean image(s) in {gt_dir} have no degraded image in {lq_dir}, "
                         f"e.g. {extra[:5]}")
    return pairs


def find_standard(root: str, degradation: str, split: str = "train", subset: Optional[str] = None,
                  list_file: Optional[str] = None, task: Optional[str] = None
                  ) -> Tuple[str, List[Tuple[Optional[str], str]]]:
    """Locate one degradation's images in the standard layout.

    Returns ``(task_folder, [(lq_path or None, gt_path), ...])``; ``lq_path`` is None for clean-only
    sets (noise).  ``subset`` overrides the task folder (relative to the data root, or absolute).
    """
    deg = canonical_name(degradation)
    task = task or f"standard {split} set for {deg!r}"
    table = _TRAIN if split == "train" else _TEST
    if deg not in table and subset is None:
        raise ValueError(f"{task}: the standard layout has no {split} folder for {degradation!r} "
                         f"(known: {', '.join(table)}); give 'subset' (the folder) explicitly")
    data_root, list_dirs = resolve_root(root)
    cands, dir_pairs, list_names, rules = table.get(deg, ([], [("input", "target")], [], ()))
    if subset is not None:
        found = subset if os.path.isabs(subset) else (_find_ci(data_root, subset) or os.path.join(data_root, subset))
        if not os.path.isdir(found):
            raise FileNotFoundError(f"{task}: folder not found: {found}")
    else:
        found = next((p for p in (_find_ci(data_root, c) for c in cands) if p and os.path.isdir(p)), None)
        if found is None:
            raise FileNotFoundError(f"{task}: none of {', '.join(os.path.join(data_root, c) for c in cands)} "
                                    "exists (see docs/DATA.md for the accepted layout)")
    lst = list_file
    if lst is None:
        for d in list_dirs:
            for name in list_names:
                if os.path.isfile(os.path.join(d, name)):
                    lst = os.path.join(d, name)
                    break
            if lst:
                break
    elif not os.path.isfile(lst):
        raise FileNotFoundError(f"{task}: list file not found: {lst}")
    listed = _read_list(lst) if lst else None
    if lst:
        logger.info("%s: using list file %s (%d entries)", task, lst, len(listed))

    if not dir_pairs:
        files = list_images(found)
        if listed is not None:
            names = {os.path.basename(x) for x in listed}
            files = [f for f in files if os.path.basename(f) in names]
        if not files:
            raise ValueError(f"{task}: no images in {found}" + (f" matching list file {lst}" if lst else ""))
        return found, [(None, os.path.join(found, f)) for f in files]

    # find every <lq>/<gt> sibling pair below the task folder (flat, or one per sequence like GoPro)
    for lq_name, gt_name in dir_pairs:
        groups = []
        for dirpath, dirnames, _ in os.walk(found, followlinks=True):
            dirnames.sort()
            lq_d = next((d for d in dirnames if d.lower() == lq_name), None)
            gt_d = next((d for d in dirnames if d.lower() == gt_name), None)
            if lq_d and gt_d:
                groups.append((os.path.join(dirpath, lq_d), os.path.join(dirpath, gt_d)))
        if not groups:
            continue
        pairs: List[Tuple[Optional[str], str]] = []
        for lq_d, gt_d in groups:
            only = None
            if listed is not None:
                prefix = os.path.relpath(lq_d, found).replace(os.sep, "/") + "/"
                only = [x[len(prefix):] for x in listed if x.startswith(prefix)]
            pairs += pair_folders(lq_d, gt_d, rules, task, strict_gt=False, only=only)
        if listed is not None and len(pairs) < len(listed):
            raise ValueError(f"{task}: list file {lst} names {len(listed)} images but only {len(pairs)} were "
                             f"found under {found}")
        return found, pairs
    raise FileNotFoundError(f"{task}: {found} holds none of the folder pairs "
                            f"{', '.join(f'{a}/ + {b}/' for a, b in dir_pairs)}")
