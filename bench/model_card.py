"""The measured sections of the model card (docs/MODELS.md): quality on the held-out photos, colour, speed,
memory, and colour Gaussian denoising side by side with CBM3D.

Run from the repository root::

    # once, in the background (slow: CBM3D on one thread), to fill the cache the card run reads
    nice -n 10 python bench/model_card.py --data HELDOUT --cbm3d-only
    # the card: every measured section, written into docs/MODELS.md
    python bench/model_card.py -m MODEL --data HELDOUT --update-docs
    # the markdown again from the saved results (nothing is run)
    python bench/model_card.py --report-only --update-docs

``MODEL`` is an exported file (``.safetensors``; its bundled classifier is ``auto``) or a shipped model's name
(``pip-adapter models``); without ``-m``, the default shipped model.  ``HELDOUT`` is the held-out photo folder: either a folder of clean
photos (every type and composite is then synthesised here by the realistic photo synthesisers, from a fixed seed
per photo and set), or a folder whose ``manifest.json`` lists ``val_sets`` (``prepare-data --photos``'s layout:
``val/<set>`` degraded, ``val/gt`` clean; composites it does not hold, such as the triples, are synthesised from
``val/gt``).  Every photo is centre-cropped to at most ``--crop`` pixels a side (a multiple of 16).

Sections (each between ``<!-- model-card-<name>:begin/end -->`` markers, so the prose around them stays):

* ``heldout``: per type, PSNR/SSIM of the degraded input, of the restoration with the true ω and with ``auto``
  (the bundled classifier, the library's default argmax mode), and the classifier's top-1 accuracy;
* ``composites``: two or three types applied in turn; the true ω is multi-hot; ``auto`` restores with the
  classifier's choice, and the table says whether the classifier's top types are the composite's parts;
* ``low-light``: the mean CIEDE2000 colour difference (ΔE00, CIELAB under D65, per pixel, averaged) of the
  input and of the restoration against the ground truth, and a figure input / output / truth;
* ``latency``: CPU seconds per megapixel on one thread, eager PyTorch and ONNX Runtime (the graph of
  ``pip_adapter.restore.onnx_export``), each in a fresh interpreter whose peak resident memory (Linux
  ``VmHWM``, which counts torch's allocator and onnxruntime's arenas, unlike tracemalloc) is reported;
* ``denoise``: colour Gaussian denoising at σ 15/25/50 on the same uint8 noisy inputs for the model (true ω
  ``noise``) and CBM3D (``bm3d.bm3d_rgb`` with the true σ).  The noisy image is
  ``pip_adapter.restore.evaluate.add_benchmark_noise`` (seeded by file name, σ and ``--seed``); CBM3D results
  are cached per (clean crop checksum, σ, seed) in ``--cbm3d-cache``, with the checksum of the noisy input they
  were computed from, and a cached entry is used only when the noisy input checks out the same.

No standard colour test set (Kodak24, CBSD68, McMaster) is installable here from PyPI or Debian, so the
denoising comparison runs on the held-out photos; the card says so.  Results are saved to ``--json`` (default
``bench_results/model_card.json``) so that ``--report-only`` rebuilds the markdown without running anything.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from itertools import combinations
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench.common import (REPO_ROOT, RESULTS_DIR, command_line, fmt_float, machine_info,  # noqa: E402
                          markdown_table, run_json_subprocess, update_doc_section)
from pip_adapter.image_io import read_image_file, write_image_file  # noqa: E402
from pip_adapter.data.outdir import read_manifest  # noqa: E402
from pip_adapter.data.standard import list_images, pair_folders  # noqa: E402
from pip_adapter.degradations import list_synthesizers  # noqa: E402
from pip_adapter.degradations.photo import PHOTO_SYNTHESIZERS, compose  # noqa: E402
from pip_adapter.omega import canonical_name  # noqa: E402
from pip_adapter.restore.evaluate import add_benchmark_noise  # noqa: E402
from pip_adapter.restore.restorer import DEFAULT_AUTO_MODE, Restorer, image_metrics  # noqa: E402
from pip_adapter.utils.io import sha256_file  # noqa: E402
from pip_adapter.utils.io import atomic_write  # noqa: E402
from pip_adapter.utils.tensor import center_crop_to_multiple  # noqa: E402
from pip_adapter.zoo.registry import resolve_model  # noqa: E402

logger = logging.getLogger("bench.model_card")

CARD_DOC = os.path.join(REPO_ROOT, "docs", "MODELS.md")
SECTIONS = ("run", "data", "heldout", "composites", "low-light", "latency", "denoise", "targets")
DEFAULT_JSON = os.path.join(RESULTS_DIR, "model_card.json")
DEFAULT_CBM3D_CACHE = os.path.join(RESULTS_DIR, "model_card_cbm3d.json")
FIGURE_NAME = "model_card_low_light.png"
SIGMAS = (15, 25, 50)
# composites the card measures: the photo set's val composites and the recipe's two triples; those the held-out
# folder does not hold as files are synthesised here from its clean photos
DEFAULT_COMPOSITES = ("low_light+noise", "haze+noise", "blur+noise", "rain+haze", "haze+rain+noise",
                      "low_light+blur+noise")
# noise inside a composite, as the photo set's val composites draw it (alone, noise_photo draws σ 5–55)
COMPOSITE_NOISE = {"sigma": [10, 30]}
# issue 27's targets: σ25 no worse than CBM3D − 0.3 dB; auto ≥ 95 % per type and within 0.5 dB of the true ω;
# every type at least +1 dB over its input
TARGET_CBM3D_MARGIN = 0.3
TARGET_AUTO_ACCURACY = 0.95
TARGET_AUTO_GAP = 0.5
TARGET_GAIN = 1.0


# ------------------------------------------------------------------------------------------------ inputs
@dataclasses.dataclass
class Photo:
    """One clean held-out photo, centre-cropped."""

    name: str
    clean: np.ndarray  # uint8 H×W×3


@dataclasses.dataclass
class Case:
    """One degraded held-out image: its set (a type or a composite ``a+b``), the parts and the true ω."""

    set: str
    parts: Tuple[str, ...]
    name: str
    lq: np.ndarray
    gt: np.ndarray
    omega: Dict[str, float]


def sha256(arr: np.ndarray) -> str:
    """Checksum of an array's shape and bytes (identifies an exact input)."""
    h = hashlib.sha256(str(arr.shape).encode("ascii"))
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def crop(img: np.ndarray, size: int) -> np.ndarray:
    """The centre ``min(size, H)``×``min(size, W)`` crop, cut to multiples of 16."""
    h, w = img.shape[:2]
    th, tw = min(h, size), min(w, size)
    top, left = (h - th) // 2, (w - tw) // 2
    return center_crop_to_multiple(img[top:top + th, left:left + tw], 16)


def parse_set(name: str) -> Tuple[str, ...]:
    """``"blur+noise"`` → ``("blur", "noise")`` (canonical names); lists pass through."""
    parts = name if isinstance(name, (list, tuple)) else str(name).split("+")
    return tuple(canonical_name(p.strip()) for p in parts if str(p).strip())


def case_seed(*parts: Any) -> int:
    """A seed from the photo's name, the set and ``--seed``: independent of order and of the other sets."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def is_grey(img: np.ndarray) -> bool:
    """True when the three channels are equal (a grey photo stored as RGB)."""
    return bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())


def load_photos(data: str, crop_size: int, max_images: Optional[int] = None,
                colour_only: bool = False) -> List[Photo]:
    """The clean held-out photos: ``val/gt`` of a folder with ``val_sets`` in its manifest, else every image.

    ``colour_only`` leaves out grey photos (equal channels): the colour denoising table is about colour images.
    """
    if not os.path.isdir(data):
        raise FileNotFoundError(f"held-out folder not found: {data} (give the held-out split's folder with --data)")
    man = read_manifest(data) or {}
    folder = os.path.join(data, "val", "gt") if man.get("val_sets") else data
    files = list_images(folder)
    if not files:
        raise ValueError(f"no images in {folder}: --data must be the held-out split (clean photos)")
    photos = [Photo(f, crop(read_image_file(os.path.join(folder, f)), crop_size)) for f in files]
    if colour_only:
        photos = [p for p in photos if not is_grey(p.clean)]
    return photos[:max_images] if max_images else photos


def synthesise(parts: Sequence[str], clean: np.ndarray, seed: int) -> np.ndarray:
    """``clean`` degraded by every type of ``parts`` in physical order, by the realistic (photo) synthesisers."""
    steps = [(p, None, COMPOSITE_NOISE if p == "noise" and len(parts) > 1 else {}) for p in parts]
    return compose(np.ascontiguousarray(clean), np.random.default_rng(seed), steps)


def true_omega(parts: Sequence[str]) -> Dict[str, float]:
    """The true ω of a set: one-hot, or multi-hot with 1/k on each of k parts (as the training's composites)."""
    return {p: 1.0 / len(parts) for p in parts}


def _val_sets(val_sets: Any) -> List[Tuple[str, Dict[str, Any]]]:
    """``[(set name, {"parts": (types...), ...})]`` from a manifest's ``val_sets``: a list of
    ``{name, degradation}`` (the built-in data) or a dict ``{name: [{type, ...}, ...]}`` (the photo set)."""
    out = []
    if isinstance(val_sets, Mapping):
        for name, steps in val_sets.items():
            steps = steps if isinstance(steps, list) else [steps]
            out.append((str(name), {"parts": parse_set([st["type"] if isinstance(st, Mapping) else st
                                                        for st in steps])}))
    else:
        for vs in val_sets:
            out.append((str(vs["name"]), dict(vs, parts=parse_set(vs.get("degradation") or vs["name"]))))
    return out


def heldout_cases(data: str, names: Sequence[str], composites: Sequence[str], crop_size: int, seed: int = 0,
                  max_images: Optional[int] = None) -> List[Case]:
    """Every degraded held-out image the card measures, in set order.

    A manifest with ``val_sets`` gives the degraded images (``val/<set>`` beside ``val/gt``; a set's types are
    its ``degradation`` — a name, a list or ``a+b`` — or the ``type`` of each of its steps; its ``omega``, when
    given, is the true ω, else :func:`true_omega`); otherwise each type of ``names`` with a registered synthesiser
    and each composite whose parts the model knows is synthesised from every clean photo here.
    """
    known = {canonical_name(n) for n in names}
    man = read_manifest(data) or {}
    cases: List[Case] = []
    have = set()
    for key, vs in _val_sets(man.get("val_sets") or []):
        parts = vs["parts"]
        if not set(parts) <= known:
            logger.warning("held-out set %s: types %s not all known to the model; skipped", key, parts)
            continue
        have.add(frozenset(parts) if len(parts) > 1 else key)
        lq_dir = os.path.join(data, vs.get("lq_dir") or os.path.join("val", key))
        gt_dir = os.path.join(data, vs.get("gt_dir") or os.path.join("val", "gt"))
        pairs = pair_folders(lq_dir, gt_dir, task=key, strict_gt=False)
        for lq_path, gt_path in pairs[:max_images] if max_images else pairs:
            lq, gt = read_image_file(lq_path), read_image_file(gt_path)
            if lq.shape != gt.shape:
                raise ValueError(f"held-out set {key}: {lq_path} {lq.shape} and {gt_path} {gt.shape} differ in size")
            omega = dict(vs.get("omega") or true_omega(parts))
            cases.append(Case(key, parts, os.path.basename(lq_path), crop(lq, crop_size), crop(gt, crop_size), omega))
    registered = {canonical_name(s) for s in list_synthesizers()} | set(PHOTO_SYNTHESIZERS)
    sets: List[Tuple[str, ...]] = []
    if not man.get("val_sets"):  # a folder of clean photos: every type is synthesised too
        sets = [(n,) for n in (canonical_name(n) for n in names) if n in registered]
        skipped = [n for n in names if canonical_name(n) not in registered]
        if skipped:
            logger.warning("types without a synthesiser are not measured: %s", skipped)
    for comp in composites:
        parts = parse_set(comp)
        if len(parts) > 1 and set(parts) <= known and set(parts) <= registered and frozenset(parts) not in have:
            sets.append(parts)
    if not sets:
        return cases
    photos = load_photos(data, crop_size, max_images)
    for parts in sets:
        key = "+".join(parts)
        for ph in photos:
            lq = synthesise(parts, ph.clean, case_seed(ph.name, key, seed))
            cases.append(Case(key, parts, ph.name, lq, ph.clean, true_omega(parts)))
    return cases


# ------------------------------------------------------------------------------------------------ model
def model_file(model: Optional[str]) -> str:
    """The file behind ``-m``: a path as given, a shipped model's name resolved (checksum-verified) by the
    package's model registry, or with None the default shipped model."""
    return resolve_model(model)[0]


def load_restorer(model: Optional[str], classifier: Optional[str] = None) -> Restorer:
    """The restorer of ``-m`` (a file or a shipped model's name) on the CPU, with its bundled classifier."""
    return Restorer.from_checkpoint(model_file(model), classifier=classifier, device="cpu")


def _as_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def _metrics(out: np.ndarray, gt: np.ndarray) -> Tuple[float, float]:
    return image_metrics(out.astype(np.float64), gt.astype(np.float64) / 255.0)


def _load_average() -> Optional[float]:
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None


def measure_heldout(restorer: Restorer, cases: Sequence[Case], progress: bool = True) -> Dict[str, Any]:
    """Per image: input / true ω / auto PSNR and SSIM, the classifier's probabilities and top-1."""
    rows = []
    probs_fn = restorer.classifier.predict_proba if restorer.classifier is not None else None
    names = [canonical_name(n) for n in restorer.degradations]
    for case in tqdm(cases, desc="held-out", unit="img", disable=not progress):
        lq = _as_float(case.lq)
        true_out, _, _ = restorer.restore_array(lq, omega=case.omega)
        row: Dict[str, Any] = {"set": case.set, "parts": list(case.parts), "image": case.name,
                               "omega": case.omega, "lq_sha256": sha256(case.lq)}
        row["input_psnr"], row["input_ssim"] = _metrics(lq, case.gt)
        row["true_psnr"], row["true_ssim"] = _metrics(true_out, case.gt)
        if probs_fn is not None:
            with torch.inference_mode():
                probs = probs_fn(torch.from_numpy(lq).permute(2, 0, 1)).float().cpu().numpy()
            order = [names[i] for i in np.argsort(-probs, kind="stable")]
            row["probs"] = {n: float(p) for n, p in zip(names, probs)}
            row["top1"] = order[0]
            row["top_k"] = order[:len(case.parts)]
            one_hot = case.omega == {order[0]: 1.0}
            if one_hot and DEFAULT_AUTO_MODE == "argmax":
                auto_out = true_out  # argmax ω of the right type is the true ω: the same restoration
            else:
                auto_out, _, _ = restorer.restore_array(lq, degradation="auto")
            row["auto_psnr"], row["auto_ssim"] = _metrics(auto_out, case.gt)
            if case.parts == ("low_light",):
                row["delta_e"] = {"input": delta_e00(lq, case.gt), "true": delta_e00(true_out, case.gt)}
        elif case.parts == ("low_light",):
            row["delta_e"] = {"input": delta_e00(lq, case.gt), "true": delta_e00(true_out, case.gt)}
        rows.append(row)
    return {"images": rows, "auto_mode": DEFAULT_AUTO_MODE, "has_classifier": probs_fn is not None}


def delta_e00(rgb: np.ndarray, gt_uint8: np.ndarray) -> float:
    """Mean CIEDE2000 difference (sRGB → CIELAB, D65) between a float RGB image and a uint8 ground truth."""
    from skimage.color import deltaE_ciede2000, rgb2lab  # noqa: PLC0415 - optional heavy dependency

    a = rgb2lab(np.clip(rgb.astype(np.float64), 0.0, 1.0))
    b = rgb2lab(gt_uint8.astype(np.float64) / 255.0)
    return float(np.mean(deltaE_ciede2000(a, b)))


def low_light_figure(restorer: Restorer, cases: Sequence[Case], path: str, height: int = 160) -> Optional[str]:
    """PNG of one low-light case: input | restored (true ω) | truth, each ``height`` pixels high.

    The photo is the most colourful of the set (largest mean max−min over the RGB channels of the truth): colour
    shifts show best there.
    """
    import cv2  # noqa: PLC0415 - optional heavy dependency

    low = [c for c in cases if c.parts == ("low_light",)]
    if not low:
        return None
    case = max(low, key=lambda c: float(np.mean(c.gt.max(axis=2).astype(np.float64) - c.gt.min(axis=2))))
    out, _, _ = restorer.restore_array(_as_float(case.lq), omega=case.omega)
    panels = [case.lq, np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8), case.gt]
    h, w = case.gt.shape[:2]
    size = (max(1, round(w * height / h)), height)
    gap = np.full((height, 4, 3), 255, np.uint8)
    row = []
    for i, p in enumerate(panels):
        row += ([gap] if i else []) + [cv2.resize(p, size, interpolation=cv2.INTER_AREA)]
    write_image_file(path, np.concatenate(row, axis=1))
    return path


# ------------------------------------------------------------------------------------------------ denoising
def denoise_inputs(photos: Sequence[Photo], sigmas: Sequence[float], seed: int) -> List[Dict[str, Any]]:
    """The exact noisy inputs of the colour denoising table: per photo and σ, clean + noisy uint8 and checksums."""
    out = []
    for ph in photos:
        for s in sigmas:
            noisy = add_benchmark_noise(ph.clean, ph.name, float(s), seed)
            out.append({"image": ph.name, "sigma": float(s), "seed": int(seed), "clean": ph.clean, "noisy": noisy,
                        "clean_sha256": sha256(ph.clean), "noisy_sha256": sha256(noisy),
                        "size": list(ph.clean.shape[:2])})
    return out


def cache_key(item: Mapping[str, Any]) -> str:
    """Cache key of one CBM3D result: the clean crop's checksum, σ and the noise seed."""
    return f"{item['clean_sha256']}|{item['sigma']:g}|{item['seed']}"


def read_cache(path: str) -> Dict[str, Any]:
    """The CBM3D cache (``{}`` when absent)."""
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    def writer(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    atomic_write(path, writer)


def write_cache(path: str, cache: Mapping[str, Any]) -> None:
    """Atomically rewrite the cache (a run stopped halfway keeps every entry already computed)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_text(path, json.dumps(cache, indent=1, sort_keys=True))


def run_cbm3d(items: Sequence[Mapping[str, Any]], cache_path: str, progress: bool = True) -> Dict[str, Any]:
    """CBM3D (``bm3d.bm3d_rgb`` with the true σ) on every input missing from the cache; returns the cache."""
    cache = read_cache(cache_path)
    todo = [it for it in items if cache.get(cache_key(it), {}).get("noisy_sha256") != it["noisy_sha256"]]
    if todo:
        try:
            import bm3d  # noqa: PLC0415 - optional heavy dependency, only for the classical anchor
        except ImportError as err:
            raise SystemExit(f"CBM3D needs the 'bm3d' package ({err}): pip install bm3d") from err
        version = getattr(bm3d, "__version__", None)
        if version is None:
            from importlib.metadata import version as _pkg_version  # noqa: PLC0415

            version = _pkg_version("bm3d")
        for it in tqdm(todo, desc="CBM3D", unit="img", disable=not progress):
            t0 = time.process_time()
            den = np.clip(bm3d.bm3d_rgb(it["noisy"].astype(np.float64) / 255.0, it["sigma"] / 255.0), 0.0, 1.0)
            psnr, ssim = image_metrics(den, it["clean"].astype(np.float64) / 255.0)
            cache[cache_key(it)] = {"image": it["image"], "sigma": it["sigma"], "seed": it["seed"],
                                    "size": it["size"], "clean_sha256": it["clean_sha256"],
                                    "noisy_sha256": it["noisy_sha256"], "psnr": psnr, "ssim": ssim,
                                    "cpu_seconds": time.process_time() - t0, "bm3d": version,
                                    "call": "bm3d.bm3d_rgb(noisy / 255, sigma / 255), clipped to [0, 1]"}
            write_cache(cache_path, cache)
    return cache


def measure_denoise(restorer: Optional[Restorer], items: Sequence[Mapping[str, Any]],
                    cache: Mapping[str, Any], progress: bool = True) -> Dict[str, Any]:
    """Per input: noisy, CBM3D (from the cache) and the model (true ω ``noise``) PSNR/SSIM."""
    rows = []
    for it in tqdm(items, desc="denoise", unit="img", disable=not progress or restorer is None):
        clean_f = it["clean"].astype(np.float64) / 255.0
        noisy_f = _as_float(it["noisy"])
        row = {k: it[k] for k in ("image", "sigma", "seed", "size", "clean_sha256", "noisy_sha256")}
        row["input_psnr"], row["input_ssim"] = image_metrics(noisy_f.astype(np.float64), clean_f)
        entry = cache.get(cache_key(it))
        if entry is not None and entry.get("noisy_sha256") == it["noisy_sha256"]:
            row["cbm3d_psnr"], row["cbm3d_ssim"] = entry["psnr"], entry["ssim"]
        if restorer is not None:
            out, _, _ = restorer.restore_array(noisy_f, degradation="noise")
            row["model_psnr"], row["model_ssim"] = image_metrics(out.astype(np.float64), clean_f)
        rows.append(row)
    return {"images": rows}


# ------------------------------------------------------------------------------------------------ latency
_LATENCY_CODE = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from bench.common import current_rss_bytes, peak_rss_bytes, reset_peak_rss
from bench.model_card import load_restorer
spec = json.loads(sys.argv[1])
r = load_restorer(spec["model"])
x = np.random.default_rng(0).random((spec["size"], spec["size"], 3), dtype=np.float32)
deg = r.degradations[0]
loaded = current_rss_bytes()
reset_peak_rss()
r.restore_array(x, degradation=deg)
times, cpu = [], []
for _ in range(spec["repeats"]):
    c0, t0 = time.process_time(), time.perf_counter()
    r.restore_array(x, degradation=deg)
    times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
print(json.dumps({"wall": times, "cpu": cpu, "rss_loaded": loaded, "peak_rss": peak_rss_bytes(),
                  "threads": torch.get_num_threads()}))
"""


def _run_latency(model: str, size: int, repeats: int) -> Dict[str, Any]:
    code = _LATENCY_CODE.replace("sys.argv[1]", repr(json.dumps({"model": model, "size": size, "repeats": repeats})))
    res = run_json_subprocess(code, timeout=900, env_extra={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    mp = size * size / 1e6
    res.update({"size": size, "megapixels": mp, "s_per_mp": float(np.median(res["wall"])) / mp,
                "cpu_s_per_mp": float(np.median(res["cpu"])) / mp})
    return res


def measure_latency(model: str, size: int = 512, repeats: int = 3, onnx: bool = True,
                    work_dir: str = RESULTS_DIR) -> Dict[str, Any]:
    """Eager and ONNX Runtime seconds per megapixel on one thread, each with its peak RSS in a fresh process."""
    path = model_file(model)
    out: Dict[str, Any] = {"eager": _run_latency(path, size, repeats)}
    if not onnx:
        out["onnx_skipped"] = "--skip-onnx"
        return out
    from pip_adapter.restore.onnx_export import export_onnx  # noqa: PLC0415 - onnx/onnxscript are optional

    os.makedirs(work_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="model_card_onnx_", dir=work_dir)
    try:
        onnx_path = os.path.join(tmp, "model.onnx")
        t0 = time.perf_counter()
        info = export_onnx(path, None, onnx_path, overwrite=True)
        out["onnx_export_seconds"] = time.perf_counter() - t0
        out["onnx_max_abs_diff"] = info.max_abs_diff
        out["onnx"] = _run_latency(onnx_path, size, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------------------------ data
# the weights' licence follows the most demanding licence among the training photos: share-alike photos make
# the weights share-alike (treating the trained weights, conservatively, as an adaptation of the photos);
# attribution-only photos need attribution, which the manifest shipped beside the weights gives; the strictest
# the weights carry, and GPL-2+ photos make them GPL-3.0-or-later (GPL-2+ permits v3; CC BY-SA 4.0 is one-way
# compatible with GPLv3, and BY-SA 3.0 adaptations may take BY-SA 4.0); docs/MODELS.md gives the reasoning
LICENCE_RULE = (("GPL-2", "GPL-3.0-or-later"), ("GPL-3", "GPL-3.0-or-later"), ("CC-BY-SA", "CC-BY-SA-4.0"),
                ("CC-BY", "CC-BY-4.0"), ("CC0", "CC0-1.0"), ("PUBLIC", "CC0-1.0"), ("PD", "CC0-1.0"))


def photo_records(man: Any) -> List[Dict[str, Any]]:
    """Every ``{file, package, licence, ...}`` record in a data manifest (found wherever the manifest lists them)."""
    out: List[Dict[str, Any]] = []
    if isinstance(man, dict):
        if any(k in man for k in ("licence", "license")) and any(k in man for k in ("file", "path", "name")):
            return [man]
        for v in man.values():
            out += photo_records(v)
    elif isinstance(man, list):
        for v in man:
            out += photo_records(v)
    return out


def _licence(rec: Mapping[str, Any]) -> str:
    return str(rec.get("licence") or rec.get("license") or "?")


def weights_licence(licences: Sequence[str]) -> Optional[str]:
    """The licence the weights carry by :data:`LICENCE_RULE`; None when a photo's licence is outside the rule."""
    ranks = []
    for lic in licences:
        key = lic.upper().replace("_", "-").replace(" ", "-")
        rank = next((i for i, (prefix, _) in enumerate(LICENCE_RULE) if key.startswith(prefix)), None)
        if rank is None:
            return None
        ranks.append(rank)
    return LICENCE_RULE[min(ranks)][1] if ranks else None


def data_summary(train: Optional[str], heldout: Optional[str]) -> Optional[Dict[str, Any]]:
    """Photos per (split, package, licence) from the manifests of the training and held-out folders.

    A record's own ``split`` (the photo set lists both splits in one manifest) wins over the folder it came from.
    """
    groups: Dict[Tuple[str, str, str], int] = {}
    seen = set()
    for split, folder in (("train", train), ("heldout", heldout)):
        if not folder or os.path.abspath(folder) in seen:
            continue
        seen.add(os.path.abspath(folder))
        for rec in photo_records(read_manifest(folder) or {}):
            key = (str(rec.get("split") or split), str(rec.get("package") or rec.get("source") or "?"), _licence(rec))
            groups[key] = groups.get(key, 0) + 1
    if not groups:
        return None
    licences = sorted({lic for (split, _, lic) in groups if split == "train"})
    return {"rows": [{"split": k[0], "package": k[1], "licence": k[2], "photos": n} for k, n in sorted(groups.items())],
            "weights_licence": weights_licence(licences), "train_licences": licences}


# ------------------------------------------------------------------------------------------------ report
def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _group(rows: Sequence[Mapping[str, Any]], key: str) -> Dict[str, List[Mapping[str, Any]]]:
    out: Dict[str, List[Mapping[str, Any]]] = {}
    for r in rows:
        out.setdefault(r[key], []).append(r)
    return out


def summarise(res: Mapping[str, Any]) -> Dict[str, Any]:
    """Per-set means (types, composites, low light, denoising per σ) from the per-image rows."""
    summary: Dict[str, Any] = {"types": {}, "composites": {}, "denoise": {}}
    held = res.get("heldout") or {}
    order = [canonical_name(n) for n in (res.get("meta") or {}).get("degradations", [])]

    def set_order(item: Tuple[str, List[Mapping[str, Any]]]) -> Tuple[int, int, str]:
        parts = item[1][0]["parts"]
        return (len(parts), order.index(parts[0]) if parts[0] in order else len(order), item[0])
    for name, rows in sorted(_group(held.get("images", []), "set").items(), key=set_order):
        entry = {k: _mean([r.get(k) for r in rows]) for k in
                 ("input_psnr", "input_ssim", "true_psnr", "true_ssim", "auto_psnr", "auto_ssim")}
        entry["count"] = len(rows)
        entry["parts"] = list(rows[0]["parts"])
        if held.get("has_classifier"):
            entry["accuracy"] = _mean([float(r["top1"] in r["parts"]) if len(r["parts"]) > 1 else
                                       float(r["top1"] == r["parts"][0]) for r in rows])
            entry["parts_named"] = _mean([float(sorted(r["top_k"]) == sorted(r["parts"])) for r in rows])
            entry["predicted"] = {n: sum(r["top1"] == n for r in rows) for n in sorted({r["top1"] for r in rows})}
        if any("delta_e" in r for r in rows):
            entry["delta_e_input"] = _mean([r["delta_e"]["input"] for r in rows if "delta_e" in r])
            entry["delta_e_true"] = _mean([r["delta_e"]["true"] for r in rows if "delta_e" in r])
        summary["composites" if len(rows[0]["parts"]) > 1 else "types"][name] = entry
    for sigma, rows in _group((res.get("denoise") or {}).get("images", []), "sigma").items():
        # CBM3D and the model are compared on the images both have (a partial cache is never mixed in unpaired)
        both = [r for r in rows if r.get("cbm3d_psnr") is not None and r.get("model_psnr") is not None]
        summary["denoise"][f"{sigma:g}"] = {
            "count": len(rows), "paired": len(both),
            **{k: _mean([r.get(k) for r in both]) for k in
               ("input_psnr", "cbm3d_psnr", "cbm3d_ssim", "model_psnr", "model_ssim")}}
    return summary


def low_light_entry(summary: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    """The summary of the (first) set that is low light alone, or None."""
    return next((e for e in summary["types"].values() if e["parts"] == ["low_light"]), None)


def _gain(a: Optional[float], b: Optional[float]) -> str:
    return "—" if a is None or b is None else f"{a - b:+.2f}"


def _pct(x: Optional[float]) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def _mb(n: Optional[float]) -> str:
    return "—" if n is None else f"{n / 2 ** 20:,.0f} MiB"


def report(res: Mapping[str, Any]) -> Dict[str, str]:
    """Markdown of every measured section (tag → text)."""
    s = summarise(res)
    out: Dict[str, str] = {}
    meta = res.get("meta", {})
    mach = meta.get("machine", {})
    out["run"] = "\n".join([
        f"Measured by `{meta.get('command', '?')}` on {meta.get('date', '?')}.",
        "",
        f"- model: `{meta.get('model', '?')}` (sha256 `{(meta.get('model_sha256') or '?')[:16]}…`), "
        f"types {', '.join(meta.get('degradations', []))}",
        f"- held-out photos: `{meta.get('data', '?')}`, {meta.get('photos', '?')} photos, centre crops of at most "
        f"{meta.get('crop', '?')}² pixels; degradations drawn with seed {meta.get('seed', '?')}",
        f"- machine: {mach.get('cpu', '?')}; Python {mach.get('python', '?')}, torch {mach.get('torch', '?')}"
        + (f"; load average {meta['load_average']:.1f} when the run started (other processes share the cores: "
           "wall-clock times are slower than on an idle machine, CPU times are not)"
           if meta.get("load_average") is not None else ""),
    ])
    data = res.get("data")
    if data:
        lic = data.get("weights_licence")
        out["data"] = (
            "Photos per split, source package and licence, from the data folders' manifests (each photo's file "
            "and checksum are listed there).\n\n"
            + markdown_table(["split", "package", "licence", "photos"],
                             [[r["split"], r["package"], r["licence"], r["photos"]] for r in data["rows"]],
                             align=["l", "l", "l", "r"])
            + "\n\nLicence of the weights by the rule below: "
            + (f"**{lic}**" if lic else "**undecided: a training photo's licence is outside the rule "
               f"({', '.join(data.get('train_licences', []))})**") + ".\n")
    held = res.get("heldout")
    if held:
        cls = held.get("has_classifier")
        rows = []
        for name, e in s["types"].items():
            rows.append([name, e["count"], f"{fmt_float(e['input_psnr'])} / {fmt_float(e['input_ssim'], 3)}",
                         f"{fmt_float(e['true_psnr'])} / {fmt_float(e['true_ssim'], 3)}",
                         _gain(e["true_psnr"], e["input_psnr"]),
                         f"{fmt_float(e['auto_psnr'])} / {fmt_float(e['auto_ssim'], 3)}" if cls else "—",
                         _gain(e["auto_psnr"], e["true_psnr"]) if cls else "—",
                         _pct(e.get("accuracy")) if cls else "—"])
        out["heldout"] = (
            "PSNR (dB) / SSIM on RGB in [0, 1], per type, averaged over the held-out photos. `auto`: ω from the "
            f"bundled classifier ({held.get('auto_mode')} of its probabilities, the library's default); "
            "accuracy: the classifier's top-1 is the true type.\n\n"
            + markdown_table(["type", "images", "input", "true ω", "gain", "auto", "auto − true", "auto accuracy"],
                             rows) + "\n")
        if cls:
            conf = []
            for name, e in s["types"].items():
                conf.append([name, ", ".join(f"{k} {v}" for k, v in e["predicted"].items())])
            out["heldout"] += "\nWhat the classifier called each type (top-1, images):\n\n" + markdown_table(
                ["true type", "predicted"], conf, align=["l", "l"]) + "\n"
        if s["composites"]:
            rows = []
            for name, e in s["composites"].items():
                rows.append([name, e["count"], fmt_float(e["input_psnr"]), fmt_float(e["true_psnr"]),
                             _gain(e["true_psnr"], e["input_psnr"]),
                             fmt_float(e["auto_psnr"]) if cls else "—",
                             _pct(e.get("accuracy")) if cls else "—", _pct(e.get("parts_named")) if cls else "—"])
            out["composites"] = (
                "Two or three types applied in turn (scene, exposure, lens, sensor), PSNR in dB. True ω: "
                "multi-hot, 1/k on each of the k parts (as the recipe's composites). `auto`: the classifier's choice (one type in argmax mode); "
                "\"top-1 is a part\": its most likely type is one of the parts; \"names the parts\": its k most "
                "likely types are exactly the k parts.\n\n"
                + markdown_table(["composite", "images", "input", "true ω", "gain", "auto", "top-1 is a part",
                                  "names the parts"], rows) + "\n")
        else:
            out["composites"] = "No composite was measured (the model knows none of the composites' parts).\n"
        low = low_light_entry(s)
        if low and low.get("delta_e_input") is not None:
            fig = meta.get("figure")
            out["low-light"] = (
                "Colour error against the ground truth: mean CIEDE2000 ΔE00 (sRGB → CIELAB, D65, per pixel, "
                "averaged over the image and the photos; below about 2 is hard to see, above 10 is a different "
                "colour).\n\n"
                + markdown_table(["", "images", "mean ΔE00", "PSNR"],
                                 [["low-light input", low["count"], fmt_float(low["delta_e_input"]),
                                   fmt_float(low["input_psnr"])],
                                  ["restored (true ω)", low["count"], fmt_float(low["delta_e_true"]),
                                   fmt_float(low["true_psnr"])]]) + "\n"
                + (f"\n![low light: input, restored, truth]({fig})\n\n*Left to right: the low-light input, the "
                   "restoration (true ω), the ground truth.*\n" if fig else ""))
    lat = res.get("latency")
    if lat:
        rows = []
        for key, label in (("eager", "PyTorch eager"), ("onnx", "ONNX Runtime")):
            e = lat.get(key)
            if e:
                rows.append([label, f"{e['size']}×{e['size']}", fmt_float(e["s_per_mp"]),
                             fmt_float(e["cpu_s_per_mp"]), _mb(e["peak_rss"]), _mb(e["rss_loaded"])])
            else:
                rows.append([label, "—", "—", "—", "—", f"not measured ({lat.get('onnx_skipped', '?')})"])
        e = lat["eager"]
        out["latency"] = (
            f"One CPU thread, whole image in one piece, median of {len(e['wall'])} runs after a warm-up. "
            "\"s / megapixel\" is wall-clock time, what a user waits on an idle core (it grows when other processes "
            "share the cores: see the load average above); \"CPU s / MP\" is the process's CPU time, the steadier "
            "of the two on a shared machine. Peak memory: "
            "the peak resident set (Linux `VmHWM`) of a fresh interpreter that loads the model and restores — it "
            "includes the interpreter and the loaded libraries (column \"after loading\"); tracemalloc would miss "
            "torch's and onnxruntime's own allocators.\n\n"
            + markdown_table(["runtime", "image", "s / megapixel", "CPU s / MP", "peak RSS", "after loading"], rows)
            + "\n")
    den = res.get("denoise")
    if den:
        rows = []
        for sigma, e in s["denoise"].items():
            rows.append([f"σ {sigma}", e["paired"] if e["paired"] == e["count"] else
                         f"{e['paired']} of {e['count']} (CBM3D missing for the others)", fmt_float(e["input_psnr"]),
                         f"{fmt_float(e['cbm3d_psnr'])} / {fmt_float(e['cbm3d_ssim'], 3)}",
                         f"{fmt_float(e['model_psnr'])} / {fmt_float(e['model_ssim'], 3)}",
                         _gain(e["model_psnr"], e["cbm3d_psnr"])])
        d = res.get("denoise_meta", {})
        out["denoise"] = (
            f"{d.get('set_note', '')}\n\nThe same noisy uint8 inputs for both: `clip(x + σ·N(0, 1), 0, 255)` "
            f"truncated to uint8 (`pip_adapter.restore.evaluate.add_benchmark_noise`, seeded by file name, σ and "
            f"seed {d.get('seed', '?')}), on {d.get('images', '?')} photos, centre crops of at most "
            f"{d.get('crop', '?')}² pixels; CBM3D is `bm3d.bm3d_rgb` (bm3d {d.get('bm3d', '?')}) given the true σ, "
            "the model gets ω = noise. The checksums of every clean and noisy input are in the results JSON "
            "beside the CBM3D cache. PSNR (dB) / SSIM.\n\n"
            + markdown_table(["noise", "images", "noisy input", "CBM3D", "this model", "model − CBM3D"], rows) + "\n")
    out["targets"] = targets_table(s, res)
    return out


def targets_table(s: Mapping[str, Any], res: Mapping[str, Any]) -> str:
    """Issue 27's targets, measured value and whether each is met."""
    rows = []

    def verdict(ok: Optional[bool]) -> str:
        return "—" if ok is None else ("met" if ok else "**not met**")
    d25 = s["denoise"].get("25")
    if d25 and d25.get("model_psnr") is not None and d25.get("cbm3d_psnr") is not None:
        diff = d25["model_psnr"] - d25["cbm3d_psnr"]
        rows.append([f"colour denoising σ25 ≥ CBM3D − {TARGET_CBM3D_MARGIN} dB", f"{diff:+.2f} dB",
                     verdict(diff >= -TARGET_CBM3D_MARGIN)])
    stretch = [s["denoise"].get(f"{x:g}") for x in SIGMAS]
    if all(e and e.get("model_psnr") is not None and e.get("cbm3d_psnr") is not None for e in stretch):
        diffs = [e["model_psnr"] - e["cbm3d_psnr"] for e in stretch]
        rows.append(["stretch: ≥ CBM3D at σ 15/25/50", " / ".join(f"{x:+.2f}" for x in diffs) + " dB",
                     verdict(min(diffs) >= 0)])
    types = s["types"]
    if types:
        worst = min(types.items(), key=lambda kv: (kv[1]["true_psnr"] or 0) - (kv[1]["input_psnr"] or 0))
        g = (worst[1]["true_psnr"] or 0) - (worst[1]["input_psnr"] or 0)
        rows.append([f"every type ≥ +{TARGET_GAIN:g} dB over its input", f"lowest {worst[0]} {g:+.2f} dB",
                     verdict(g >= TARGET_GAIN)])
        if (res.get("heldout") or {}).get("has_classifier"):
            acc = min(types.items(), key=lambda kv: kv[1]["accuracy"])
            rows.append([f"auto ≥ {TARGET_AUTO_ACCURACY:.0%} accuracy per type",
                         f"lowest {acc[0]} {_pct(acc[1]['accuracy'])}", verdict(acc[1]["accuracy"] >= TARGET_AUTO_ACCURACY)])
            gap = min(types.items(), key=lambda kv: (kv[1]["auto_psnr"] or 0) - (kv[1]["true_psnr"] or 0))
            gv = (gap[1]["auto_psnr"] or 0) - (gap[1]["true_psnr"] or 0)
            rows.append([f"auto within {TARGET_AUTO_GAP} dB of the true ω, every type", f"worst {gap[0]} {gv:+.2f} dB",
                         verdict(gv >= -TARGET_AUTO_GAP)])
            comps = s["composites"]
            if comps:
                named = _mean([e["parts_named"] for e in comps.values()])
                top1 = _mean([e["accuracy"] for e in comps.values()])
                rows.append(["composites classified as their parts", f"top-1 a part {_pct(top1)}, all parts named "
                             f"{_pct(named)}", verdict(named is not None and named >= TARGET_AUTO_ACCURACY)])
    low = low_light_entry(s)
    if low and low.get("delta_e_true") is not None:
        rows.append(["low light keeps colour (mean ΔE00 against the truth)",
                     f"{fmt_float(low['delta_e_input'])} → {fmt_float(low['delta_e_true'])}", "see figure"])
    if not rows:
        return "Nothing measured yet.\n"
    return markdown_table(["target (issue 27)", "measured", ""], rows, align=["l", "l", "l"]) + "\n"


# ------------------------------------------------------------------------------------------------ main
def card_path(args: argparse.Namespace) -> Optional[str]:
    """``--out``; docs/MODELS.md with ``--update-docs``; else bench_results/MODELS.md (a copy of the card)."""
    if args.no_doc:
        return None
    if args.out:
        return args.out
    if args.update_docs:
        return CARD_DOC
    path = os.path.join(RESULTS_DIR, "MODELS.md")
    if not os.path.isfile(path) and os.path.isfile(CARD_DOC):
        os.makedirs(RESULTS_DIR, exist_ok=True)
        shutil.copyfile(CARD_DOC, path)
    return path


def write_card(sections: Mapping[str, str], path: Optional[str]) -> None:
    """Print every section and write it between its markers in ``path``."""
    for tag in SECTIONS:
        if tag in sections:
            print(f"\n### {tag}\n\n{sections[tag]}")
            if path is not None:
                update_doc_section(f"model-card-{tag}", sections[tag], path=path)
    if path is not None:
        print(f"model card sections written to {path}")


def file_sha256(path: Optional[str]) -> Optional[str]:
    """Checksum of a file, or None."""
    if not path or not os.path.isfile(path):
        return None
    return sha256_file(path)


def _previous_stage(path: str, stage: str, model_sha: Optional[str]) -> Optional[Dict[str, Any]]:
    """``stage`` of the results at ``path`` when they were measured on the same model file, else None."""
    if not model_sha or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as fh:
        old = json.load(fh)
    return old.get(stage) if (old.get("meta") or {}).get("model_sha256") == model_sha else None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", default=None,
                   help="exported model file (.safetensors) or a shipped model's name (default: the default "
                        "shipped model, as pip-adapter models lists it)")
    p.add_argument("--classifier", default=None, help="classifier file for auto (default: the model's bundled one)")
    p.add_argument("--data", help="held-out split: clean photos, or a folder whose manifest lists val_sets")
    p.add_argument("--train-data", default=None,
                   help="the training split's folder: its manifest gives the data and licence table")
    p.add_argument("--crop", type=int, default=256, help="centre crop of every photo, at most this side (256)")
    p.add_argument("--max-images", type=int, default=None, help="only the first N held-out photos")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthesised degradations and the noise (0)")
    p.add_argument("--composites", default=",".join(DEFAULT_COMPOSITES),
                   help="composites to synthesise, comma-separated 'a+b' (those whose parts the model knows)")
    p.add_argument("--sigmas", default=",".join(str(s) for s in SIGMAS), help="denoising σ list (15,25,50)")
    p.add_argument("--denoise-crop", type=int, default=256, help="centre crop of the denoising inputs (256)")
    p.add_argument("--cbm3d-cache", default=DEFAULT_CBM3D_CACHE, help=f"CBM3D cache ({DEFAULT_CBM3D_CACHE})")
    p.add_argument("--cbm3d-only", action="store_true", help="only fill the CBM3D cache (no model needed)")
    p.add_argument("--no-cbm3d", action="store_true", help="never run CBM3D: use only what the cache holds")
    p.add_argument("--latency-size", type=int, default=512, help="side of the latency test image (512)")
    p.add_argument("--latency-repeats", type=int, default=3, help="timed runs per runtime (3)")
    p.add_argument("--skip-latency", action="store_true",
                   help="do not measure latency and memory (an earlier run's, of the same model file, is kept)")
    p.add_argument("--skip-onnx", action="store_true", help="latency of the eager model only")
    p.add_argument("--json", default=DEFAULT_JSON, help=f"results file ({DEFAULT_JSON})")
    p.add_argument("--report-only", action="store_true", help="rebuild the markdown from --json; run nothing")
    p.add_argument("--figure", default=None, help="low-light figure PNG (default docs/figures/ with "
                                                  "--update-docs, else bench_results/figures/)")
    p.add_argument("--out", default=None, help="markdown file to write the sections into")
    p.add_argument("--update-docs", action="store_true", help="write the sections into docs/MODELS.md")
    p.add_argument("--no-doc", action="store_true", help="only print the sections")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def _sigmas(text: str) -> List[float]:
    try:
        vals = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--sigmas {text!r}: expected numbers like 15,25,50") from None
    if not vals or any(v <= 0 for v in vals):
        raise SystemExit(f"--sigmas {text!r}: expected positive numbers like 15,25,50")
    return vals


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the card's measurements (or rebuild the markdown) and write the sections."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    progress = not args.quiet
    if args.report_only:
        if not os.path.isfile(args.json):
            raise SystemExit(f"--report-only needs the results of a run: {args.json} is missing (run without "
                             "--report-only first, or pass --json FILE)")
        with open(args.json, encoding="utf-8") as fh:
            res = json.load(fh)
        write_card(report(res), card_path(args))
        return 0
    if not args.data:
        raise SystemExit("--data HELDOUT is required: the held-out split's folder")
    sigmas = _sigmas(args.sigmas)
    photos = load_photos(args.data, args.denoise_crop, args.max_images, colour_only=True)
    if not photos:
        raise SystemExit(f"no colour photo in {args.data}: the denoising table needs colour photos")
    items = denoise_inputs(photos, sigmas, args.seed)
    if args.cbm3d_only:
        t0 = time.process_time()
        cache = run_cbm3d(items, args.cbm3d_cache, progress)
        done = [cache[cache_key(it)] for it in items]
        print(f"CBM3D cache {args.cbm3d_cache}: {len(done)} inputs ({len(photos)} photos × σ "
              f"{', '.join(f'{s:g}' for s in sigmas)}), {time.process_time() - t0:.0f} CPU s this run")
        for s in sigmas:
            vals = [e["psnr"] for e in done if e["sigma"] == s]
            print(f"  σ {s:g}: CBM3D mean PSNR {np.mean(vals):.2f} dB over {len(vals)} crops")
        return 0
    torch.set_num_threads(1)
    restorer = load_restorer(args.model, args.classifier)
    cache = read_cache(args.cbm3d_cache) if args.no_cbm3d else run_cbm3d(items, args.cbm3d_cache, progress)
    composites = [c for c in args.composites.split(",") if c.strip()]
    cases = heldout_cases(args.data, restorer.degradations, composites, args.crop, args.seed, args.max_images)
    figure_path = args.figure or os.path.join(os.path.join(REPO_ROOT, "docs") if args.update_docs else RESULTS_DIR,
                                              "figures", FIGURE_NAME)
    doc = card_path(args)
    fig = low_light_figure(restorer, cases, figure_path)
    res: Dict[str, Any] = {"meta": {
        "command": command_line(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "model": args.model or f"the default shipped model ({os.path.basename(model_file(None))})",
        "model_sha256": file_sha256(model_file(args.model)),
        "degradations": list(restorer.degradations), "data": args.data, "photos": len({c.name for c in cases}),
        "load_average": _load_average(),
        "crop": args.crop, "seed": args.seed, "machine": machine_info(),
        "figure": os.path.relpath(os.path.abspath(fig), os.path.dirname(os.path.abspath(doc or CARD_DOC)))
        if fig else None}}
    data = data_summary(args.train_data, args.data)
    if data:
        res["data"] = data
    res["heldout"] = measure_heldout(restorer, cases, progress)
    res["denoise"] = measure_denoise(restorer, items, cache, progress)
    bm3d_versions = sorted({str(cache[cache_key(it)].get("bm3d")) for it in items if cache_key(it) in cache})
    man = read_manifest(args.data) or {}
    standard = man.get("standard_test_set")
    res["denoise_meta"] = {
        "seed": args.seed, "images": len(photos), "crop": args.denoise_crop, "bm3d": ", ".join(bm3d_versions) or "?",
        "set_note": (f"Test set: {standard}." if standard else
                     "Test set: **the held-out photos, not a standard colour test set.** None of Kodak24, "
                     "CBSD68 or McMaster is installable here (no PyPI or Debian package ships them, and nothing "
                     "may be downloaded at run time), so these numbers are not comparable with published tables; "
                     "they compare the model and CBM3D on identical inputs.")}
    if not args.skip_latency:
        res["latency"] = measure_latency(args.model, args.latency_size, args.latency_repeats, not args.skip_onnx)
    else:
        previous = _previous_stage(args.json, "latency", res["meta"]["model_sha256"])
        if previous is not None:  # the same model's latency from an earlier run: keep it in the card
            res["latency"] = previous
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    write_text(args.json, json.dumps(res, indent=1))
    write_card(report(res), doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
