"""The built-in dataset: real photos shipped with scikit-image, degraded by the registered synthesisers.

Nothing is downloaded: the photos are files inside the installed ``scikit-image`` package
(``skimage/data``).  A fixed split keeps ``chelsea`` and ``rocket`` for validation; the other colour photos
(astronaut, coffee, motorcycle_left/right, hubble_deep_field, ihc, retina) are cut into training crops.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
import zlib
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import cv2
import numpy as np
import yaml

from pip_adapter.degradations import Synthesizer, depth_prior, get_synthesizer
from pip_adapter.omega import DEFAULT_DEGRADATIONS, normalise_names

from .dataset import variant_tag
from pip_adapter.image_io import read_image_file, write_image_file

from .lmdb_io import LmdbWriter, check_lmdb_file, read_meta_info
from .outdir import clean_stale_stages, read_manifest, staged_dir, write_manifest

logger = logging.getLogger(__name__)

TRAIN_IMAGES: Tuple[str, ...] = ("astronaut.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png",
                                 "hubble_deep_field.jpg", "ihc.png", "retina.jpg")
VAL_IMAGES: Tuple[str, ...] = ("chelsea.png", "rocket.jpg")
BUILTIN_VERSION = 2  # 2: built-in blur is defocus (Gaussian PSF) instead of motion blur


def skimage_data_dir() -> str:
    """The ``data`` folder of the installed scikit-image (found without importing it)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.origin:
        raise FileNotFoundError("scikit-image is not installed; the built-in data uses its sample photos "
                                "(pip install scikit-image)")
    return os.path.join(os.path.dirname(spec.origin), "data")


def load_photo(name: str) -> np.ndarray:
    """One scikit-image sample photo as uint8 H×W×3 RGB."""
    path = os.path.join(skimage_data_dir(), name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"scikit-image sample photo missing: {path}; reinstall scikit-image")
    return read_image_file(path)


def _fill_invalid(disp: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    bad = ~np.isfinite(disp) | (disp <= 0)
    if bad.any():
        idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
        disp = disp[tuple(idx)]
    return disp


def motorcycle_depth(which: str = "left") -> np.ndarray:
    """Depth in [0, 1] (1 = far) for the motorcycle stereo pair from ``motorcycle_disp.npz``.

    Depth ∝ 1/disparity; unknown (infinite) disparities take the nearest valid value.  The disparity is
    given for the left view; the right view's is obtained by forward warping (x_r = x_l − d, nearest
    surface wins) and hole filling.
    """
    path = os.path.join(skimage_data_dir(), "motorcycle_disp.npz")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"scikit-image file missing: {path}")
    with np.load(path) as npz:
        disp = np.asarray(npz[npz.files[0]], np.float64)
    disp = _fill_invalid(disp)
    if which == "right":
        h, w = disp.shape
        warped = np.full((h, w), -np.inf)
        xs = np.arange(w)[None, :].repeat(h, 0)
        xr = np.rint(xs - disp).astype(np.int64)
        ok = (xr >= 0) & (xr < w)
        rows = np.arange(h)[:, None].repeat(w, 1)
        np.maximum.at(warped, (rows[ok], xr[ok]), disp[ok])
        disp = _fill_invalid(np.where(np.isfinite(warped), warped, np.nan))
    depth = 1.0 / disp
    lo, hi = np.percentile(depth, 1), np.percentile(depth, 99)
    return np.clip((depth - lo) / max(hi - lo, 1e-9), 0.0, 1.0).astype(np.float32)


def _resize_short(img: np.ndarray, short: Optional[int]) -> np.ndarray:
    if not short:
        return img
    h, w = img.shape[:2]
    s = short / min(h, w)
    if s >= 1.0:
        return img
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _depth_for(name: str, shape: Tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    stem = os.path.splitext(name)[0]
    if stem in ("motorcycle_left", "motorcycle_right"):
        d = motorcycle_depth("left" if stem.endswith("left") else "right")
        return cv2.resize(d, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return depth_prior(shape, rng)


def _seed(*parts: Any) -> List[int]:
    # stable across runs and independent of which other degradations are requested
    return [zlib.crc32(str(p).encode()) for p in parts]


def _synth(s: Synthesizer, img: np.ndarray, rng: np.random.Generator, params: Mapping[str, Any],
           depth: Optional[np.ndarray]) -> np.ndarray:
    kw = dict(params)
    if depth is not None and s.wants_depth:
        kw["depth"] = depth
    return s(img, rng, **kw)


def prepare_builtin(out_dir: str, overwrite: bool = False, degradations: Optional[Sequence[str]] = None,
                    image_size: int = 256, crop_size: int = 128, crops_per_image: int = 8, val_size: int = 128,
                    max_train_images: Optional[int] = None, max_val_images: Optional[int] = None,
                    seed: int = 0, synth_params: Optional[Mapping[str, Any]] = None,
                    progress: bool = True) -> str:
    """Build the built-in dataset in ``out_dir`` and return its absolute path.

    Layout (BasicSR LMDBs for training, folders for validation)::

        out_dir/
          README.md            what was made, with which models and parameters
          manifest.json        parameters; written last (marks the folder complete)
          datasets.yml         a ready BasicSR ``datasets:`` section (train + one val set per task)
          train/clean.lmdb     clean crops: the gt of every task (stored once)
          train/<deg>.lmdb     degraded crops, same keys as clean.lmdb (BasicSR's paired-LMDB rule),
                               for every degradation whose synthesiser is not ``online``
          val/gt/*.png         clean validation images (multiples of 16)
          val/<deg>[_<variant>]/*.png   degraded validation images, same file names

    ``degradations`` (default: the five default types) each need a registered synthesiser; online ones
    (noise) are synthesised on the fly during training (``source: synthetic`` with the synthesiser's
    variants, e.g. σ 15/25/50) and get one val folder per variant.  Offline ones pick one of their
    variants at random per crop.  ``image_size``: photos are first resized so the shorter side is at most
    this; ``crops_per_image`` random ``crop_size`` crops per training photo; ``val_size``: shorter side of
    the validation images.  ``synth_params`` ({degradation: {param: value}}) overrides synthesiser
    parameters.  Every random draw is seeded from ``seed``, the photo, the degradation and the crop.
    An existing non-empty ``out_dir`` raises ``FileExistsError`` unless ``overwrite`` (and it was made
    by this package) — except complete built-in data of this version made with the same settings, which is
    kept as it is (a no-op, logged), and damaged built-in data (a truncated LMDB, a missing file), which is
    rebuilt with a warning naming the damage.  Staging folders left by a killed build are removed.
    """
    from tqdm import tqdm

    t0 = time.time()
    names = normalise_names(list(degradations) if degradations is not None else list(DEFAULT_DEGRADATIONS))
    synths = {n: get_synthesizer(n) for n in names}
    overrides = {str(k): dict(v) for k, v in (synth_params or {}).items()}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"synth_params names degradation(s) not being prepared: {unknown}")
    for what, v in (("image_size", image_size), ("crop_size", crop_size), ("crops_per_image", crops_per_image),
                    ("val_size", val_size)):
        if int(v) < 1:
            raise ValueError(f"{what} must be >= 1, got {v}")
    if crop_size > image_size:
        raise ValueError(f"crop_size ({crop_size}) must not exceed image_size ({image_size})")
    if val_size < 16:
        raise ValueError(f"val_size must be >= 16 (validation images are cropped to multiples of 16), got {val_size}")
    train_imgs = list(TRAIN_IMAGES[:max_train_images] if max_train_images else TRAIN_IMAGES)
    val_imgs = list(VAL_IMAGES[:max_val_images] if max_val_images else VAL_IMAGES)
    if not train_imgs or not val_imgs:
        raise ValueError("max_train_images and max_val_images must keep at least one photo each")

    def variants_of(n: str) -> List[Dict[str, Any]]:
        return [dict(v, **overrides.get(n, {})) for v in synths[n].variants]

    out_abs = os.path.abspath(os.fspath(out_dir))
    wanted = {"version": BUILTIN_VERSION, "degradations": names, "seed": seed, "image_size": image_size,
              "crop_size": crop_size, "crops_per_image": crops_per_image, "val_size": val_size,
              "train_images": train_imgs, "val_images": val_imgs,
              "variants": {n: variants_of(n) for n in names}}
    existing = read_manifest(out_abs)
    if existing is not None and existing.get("kind") == "builtin" and existing.get("complete"):
        same = all(_jsonable(existing.get(k)) == _jsonable(v) for k, v in wanted.items())
        problems = verify_builtin(out_abs, existing)
        if same and not problems and not overwrite:
            clean_stale_stages(out_abs)
            logger.info("built-in data in %s is already complete (version %s, same settings): nothing to do "
                        "(--overwrite rebuilds it)", out_abs, BUILTIN_VERSION)
            return out_abs
        if not same and not problems and not overwrite:
            differ = sorted(k for k, v in wanted.items() if _jsonable(existing.get(k)) != _jsonable(v))
            raise FileExistsError(f"{out_abs} already holds built-in data made with other settings "
                                  f"({', '.join(f'{k}={existing.get(k)!r}' for k in differ)}); pass --overwrite "
                                  "(overwrite=True) to rebuild it, or choose another output folder")
        if problems:
            logger.warning("built-in data in %s is damaged (%s); rebuilding it", out_abs, "; ".join(problems))
            overwrite = True  # our own folder (it has our manifest): replaced only once the rebuild is complete
    with staged_dir(out_abs, overwrite) as stage:
        os.makedirs(os.path.join(stage, "train"))
        # ---- training crops
        clean: List[Tuple[str, np.ndarray, np.ndarray, str]] = []  # key, crop, depth crop, photo
        for i, name in enumerate(tqdm(train_imgs, desc="train photos", disable=not progress)):
            img = _resize_short(load_photo(name), image_size)
            h, w = img.shape[:2]
            if h < crop_size or w < crop_size:
                raise ValueError(f"photo {name} is {h}x{w} after resizing, smaller than crop_size={crop_size}")
            rng = np.random.default_rng(_seed(seed, name, "crops"))
            depth = _depth_for(name, (h, w), np.random.default_rng(_seed(seed, name, "depth")))
            stem = os.path.splitext(name)[0]
            for c in range(crops_per_image):
                top, left = int(rng.integers(0, h - crop_size + 1)), int(rng.integers(0, w - crop_size + 1))
                sl = (slice(top, top + crop_size), slice(left, left + crop_size))
                clean.append((f"{stem}_{c:03d}", np.ascontiguousarray(img[sl]), depth[sl], name))
        with LmdbWriter(os.path.join(stage, "train", "clean.lmdb")) as wr:
            for key, crop, _, _ in clean:
                wr.put(key, crop)
        offline = [n for n in names if not synths[n].online]
        for n in offline:
            vs = variants_of(n)
            with LmdbWriter(os.path.join(stage, "train", f"{n}.lmdb")) as wr:
                for key, crop, dcrop, _ in tqdm(clean, desc=f"train {n}", disable=not progress, leave=False):
                    rng = np.random.default_rng(_seed(seed, key, n))
                    params = vs[int(rng.integers(0, len(vs)))]
                    wr.put(key, _synth(synths[n], crop, rng, params, dcrop))
        # ---- validation images
        photos = val_photos(val_imgs, val_size, seed)
        for fname, img, _ in photos:
            write_image_file(os.path.join(stage, "val", "gt", fname), img)
        val_sets: List[Dict[str, Any]] = []
        for ex in tqdm(val_examples(photos, names, seed, overrides), desc="val images", disable=not progress):
            write_image_file(os.path.join(stage, "val", ex.folder, ex.file_name), ex.lq)
            if not val_sets or val_sets[-1]["name"] != ex.folder:
                val_sets.append({"name": ex.folder, "degradation": ex.degradation, "params": ex.params})
        manifest = {
            "kind": "builtin", "version": BUILTIN_VERSION, "degradations": names, "seed": seed,
            "image_size": image_size, "crop_size": crop_size, "crops_per_image": crops_per_image,
            "val_size": val_size, "train_images": train_imgs, "val_images": val_imgs,
            "num_train_crops": len(clean), "online": [n for n in names if synths[n].online],
            "variants": {n: variants_of(n) for n in names}, "val_sets": val_sets,
            "synth_params": overrides, "seconds": round(time.time() - t0, 2),
        }
        opts = builtin_dataset_options(stage, manifest=manifest, root=out_abs)
        with open(os.path.join(stage, "datasets.yml"), "w", encoding="utf-8") as fh:
            fh.write("# BasicSR `datasets:` section for this built-in data (paste under `datasets:`)\n")
            yaml.safe_dump(opts, fh, sort_keys=False, default_flow_style=False)
        with open(os.path.join(stage, "README.md"), "w", encoding="utf-8") as fh:
            fh.write(_readme(manifest, synths))
        write_manifest(stage, manifest)
    logger.info("built-in data ready in %s (%d train crops, %d val sets, %.1f s)", out_abs, len(clean),
                len(val_sets), time.time() - t0)
    return out_abs


def _jsonable(value: Any) -> Any:
    # manifests come back from JSON: compare tuples as lists
    return json.loads(json.dumps(value))


def verify_builtin(out_dir: str, manifest: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Problems of a built-in data folder against its manifest (empty when complete).

    Cheap checks, no image decoding: every LMDB's ``data.mdb`` is as long as its header needs and lists the
    manifest's number of crops, every validation folder holds every validation photo (non-empty files).
    """
    man = manifest if manifest is not None else read_manifest(out_dir)
    if man is None:
        return [f"{out_dir} has no manifest.json"]
    problems: List[str] = []
    try:
        lmdbs = ["clean"] + [n for n in man["degradations"] if n not in man["online"]]
        val_names = [os.path.splitext(v)[0] + ".png" for v in man["val_images"]]
        folders = ["gt"] + [vs["name"] for vs in man["val_sets"]]
        crops = int(man["num_train_crops"])
    except (KeyError, TypeError, ValueError) as err:
        return [f"manifest.json lacks {err}"]
    for n in lmdbs:
        path = os.path.join(out_dir, "train", f"{n}.lmdb")
        if not os.path.isfile(os.path.join(path, "data.mdb")):
            problems.append(f"{path} is missing")
            continue
        try:
            check_lmdb_file(path)
            if len(read_meta_info(path)) != crops:
                problems.append(f"{path}/meta_info.txt does not list {crops} crops")
        except (OSError, ValueError) as err:
            problems.append(str(err).split(";")[0])
    for folder in folders:
        for name in val_names:
            f = os.path.join(out_dir, "val", folder, name)
            if not os.path.isfile(f) or os.path.getsize(f) == 0:
                problems.append(f"{f} is missing or empty")
    return problems


class ValExample(NamedTuple):
    """One degraded validation image of the built-in data (see :func:`val_examples`)."""

    folder: str                          # the val set: the degradation, with a variant tag when it has several
    degradation: str
    params: Optional[Dict[str, Any]]     # the variant, or None when each image drew one of the variants
    file_name: str                       # same name as its clean photo in ``val/gt``
    lq: np.ndarray                       # uint8 H×W×3 RGB


def val_photos(val_images: Sequence[str] = VAL_IMAGES, val_size: int = 128,
               seed: int = 0) -> List[Tuple[str, np.ndarray, np.ndarray]]:
    """The clean validation photos of the built-in data: (PNG file name, uint8 RGB, depth in [0, 1]).

    Each photo is resized to a shorter side of ``val_size`` and centre-cropped to multiples of 16.
    """
    out = []
    for name in val_images:
        img = _resize_short(load_photo(name), val_size)
        h, w = img.shape[:2]
        nh, nw = h - h % 16, w - w % 16
        top, left = (h - nh) // 2, (w - nw) // 2
        img = np.ascontiguousarray(img[top:top + nh, left:left + nw])
        depth = _depth_for(name, (h, w), np.random.default_rng(_seed(seed, name, "depth")))
        out.append((os.path.splitext(name)[0] + ".png", img, depth[top:top + nh, left:left + nw]))
    return out


def val_examples(photos: Sequence[Tuple[str, np.ndarray, np.ndarray]], degradations: Sequence[str],
                 seed: int = 0, synth_params: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Iterator[ValExample]:
    """The degraded validation images of the built-in data, as ``prepare_builtin`` writes them to ``val/``.

    ``photos`` from :func:`val_photos`.  Online synthesisers (noise) give one set per variant; the others one
    set whose images each draw a variant.  Seeded per photo and set: the same images whatever else is asked.
    """
    overrides = {str(k): dict(v) for k, v in (synth_params or {}).items()}
    for n in normalise_names(list(degradations)):
        synth = get_synthesizer(n)
        variants = [dict(v, **overrides.get(n, {})) for v in synth.variants]
        for params in (variants if synth.online else [None]):
            folder = n if params is None or len(variants) == 1 else f"{n}_{variant_tag(params)}"
            for fname, img, depth in photos:
                rng = np.random.default_rng(_seed(seed, "val", fname, folder))
                p = params if params is not None else variants[int(rng.integers(0, len(variants)))]
                yield ValExample(folder, n, params, fname, _synth(synth, img, rng, p, depth))


def builtin_dataset_options(out_dir: str, manifest: Optional[Mapping[str, Any]] = None,
                            root: Optional[str] = None, gt_size: Optional[int] = None,
                            batch_size: int = 8, num_workers: int = 2) -> Dict[str, Any]:
    """The BasicSR ``datasets:`` section (``train`` + ``val_1..val_n``) for a built-in data folder.

    Paths are absolute (under ``root``, default ``out_dir``).  ``gt_size`` defaults to the crop size.
    """
    man = manifest if manifest is not None else read_manifest(out_dir)
    if man is None or man.get("kind") != "builtin":
        raise FileNotFoundError(f"{out_dir} is not a complete built-in data folder (no manifest.json); "
                                "run `pip-adapter prepare-data --builtin DIR`")
    base = os.path.abspath(root or out_dir)
    train_dir, val_dir = os.path.join(base, "train"), os.path.join(base, "val")
    clean = os.path.join(train_dir, "clean.lmdb")
    tasks = []
    for n in man["degradations"]:
        if n in man["online"]:
            vs = man["variants"][n]
            t: Dict[str, Any] = {"degradation": n, "source": "synthetic", "dataroot_gt": clean}
            if all(set(v) == {"sigma"} for v in vs):
                t["sigmas"] = [v["sigma"] for v in vs]
            else:
                t["synth_params"] = [dict(v) for v in vs]
            t["repeat"] = 1
        else:
            t = {"degradation": n, "source": "lmdb", "dataroot_lq": os.path.join(train_dir, f"{n}.lmdb"),
                 "dataroot_gt": clean, "repeat": 1}
        tasks.append(t)
    opts: Dict[str, Any] = {"train": {
        "name": "builtin_train", "type": "MixedDegradationDataset", "degradations": list(man["degradations"]),
        "gt_size": int(gt_size or man["crop_size"]), "use_hflip": True, "use_rot": True,
        "io_backend": {"type": "lmdb"}, "tasks": tasks,
        "use_shuffle": True, "num_worker_per_gpu": num_workers, "batch_size_per_gpu": batch_size,
        "dataset_enlarge_ratio": 1, "prefetch_mode": None,
    }}
    for i, vs in enumerate(man["val_sets"], 1):
        opts[f"val_{i}"] = {
            "name": f"builtin_val_{vs['name']}", "type": "MixedDegradationDataset",
            "degradations": list(man["degradations"]), "degradation": vs["degradation"], "source": "paired",
            "dataroot_lq": os.path.join(val_dir, vs["name"]), "dataroot_gt": os.path.join(val_dir, "gt"),
            "crop_multiple": 16, "io_backend": {"type": "disk"},
        }
    return opts


def ensure_builtin(out_dir: str, progress: bool = True, **kwargs: Any) -> str:
    """Reuse ``out_dir`` when it holds complete built-in data, else build it with ``prepare_builtin``.

    A folder that exists but is not complete built-in data raises ``FileExistsError`` (nothing is deleted).
    Built-in data of an older ``BUILTIN_VERSION`` (other synthesisers), or damaged (``verify_builtin``: a
    truncated LMDB, a missing file), is rebuilt in place with a warning: it is generated, and the new folder
    replaces it only once complete.  Different ``kwargs`` from the stored parameters only
    log a warning: delete the folder to rebuild.
    """
    out_abs = os.path.abspath(os.fspath(out_dir))
    clean_stale_stages(out_abs)
    man = read_manifest(out_abs)
    if (man is not None and man.get("kind") == "builtin" and man.get("complete")
            and man.get("version") != BUILTIN_VERSION):
        logger.warning("built-in data in %s is version %s, this pip-adapter makes version %s; rebuilding it",
                       out_abs, man.get("version"), BUILTIN_VERSION)
        return prepare_builtin(out_abs, overwrite=True, progress=progress, **kwargs)
    if man is not None and man.get("kind") == "builtin" and man.get("complete"):
        problems = verify_builtin(out_abs, man)
        if problems:
            logger.warning("built-in data in %s is damaged (%s); rebuilding it", out_abs, "; ".join(problems))
            return prepare_builtin(out_abs, overwrite=True, progress=progress, **kwargs)
        differ = {k: v for k, v in kwargs.items()
                  if k in man and man[k] != (list(v) if isinstance(v, tuple) else v)}
        if differ:
            logger.warning("reusing built-in data in %s made with other settings (%s); delete it to rebuild",
                           out_abs, ", ".join(f"{k}={man[k]!r}" for k in differ))
        return out_abs
    if os.path.exists(out_abs) and (not os.path.isdir(out_abs) or os.listdir(out_abs)):
        raise FileExistsError(f"{out_abs} exists but is not complete built-in data; remove it or use "
                              "prepare_builtin(..., overwrite=True) if it was made by pip-adapter")
    return prepare_builtin(out_abs, progress=progress, **kwargs)


def _readme(man: Mapping[str, Any], synths: Mapping[str, Synthesizer]) -> str:
    lines = [
        "# pip-adapter built-in dataset", "",
        "Made by `pip-adapter prepare-data --builtin` from the sample photos shipped inside scikit-image",
        "(nothing downloaded). Degradations are synthesised with seeded models (seed "
        f"{man['seed']}); see `pip_adapter/degradations/builtin.py`.", "",
        f"- train photos: {', '.join(man['train_images'])} — resized to a shorter side of at most "
        f"{man['image_size']} px, {man['crops_per_image']} random {man['crop_size']}×{man['crop_size']} crops "
        f"each ({man['num_train_crops']} crops)",
        f"- validation photos: {', '.join(man['val_images'])} — shorter side {man['val_size']} px, centre-cropped "
        "to multiples of 16", "",
        "## Degradations", "",
    ]
    for n in man["degradations"]:
        s = synths[n]
        how = ("synthesised on the fly during training" if s.online else f"stored in `train/{n}.lmdb`")
        vs = man["variants"][n]
        lines.append(f"- **{n}** ({s.description}): {how}" + (f"; variants {vs}" if vs != [{}] else ""))
    lines += ["", "Haze depth: `motorcycle_disp.npz` disparity for the motorcycle photos (right view by forward "
              "warping), a smooth prior (vertical gradient + low-frequency noise) for the others.", "",
              "## Layout", "",
              "- `train/clean.lmdb`: clean crops (BasicSR LMDB, PNG values, `meta_info.txt`), the gt of every task",
              "- `train/<degradation>.lmdb`: degraded crops under the same keys",
              "- `val/gt/`, `val/<set>/`: validation pairs (same file names)",
              "- `datasets.yml`: BasicSR `datasets:` section using all of the above", "",
              "## Validation sets", ""]
    for vs in man["val_sets"]:
        lines.append(f"- `val/{vs['name']}` — {vs['degradation']}" + (f" {vs['params']}" if vs["params"] else ""))
    return "\n".join(lines) + "\n"
