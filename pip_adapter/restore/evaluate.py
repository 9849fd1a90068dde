"""The all-in-one papers' benchmark table from one call: ``evaluate(restorer, root, "3task")``.

Test sets are read in place from the standard layout (:mod:`pip_adapter.data.standard`): BSD68 (clean; noise
σ 15/25/50 added here), Rain100L, SOTS-outdoor, GoPro and LOL-v1.  Protocol of the published tables
(PromptIR's test code, which PIP reuses): RGB, every image centre-cropped to a multiple of 16, the network's
float output clipped to [0, 1] and compared unrounded with the clean image as float in [0, 1] — PSNR with peak
1 and scikit-image's SSIM (7×7 uniform window), averaged over the images of a set; the table's average is
over its columns.  Noise is ``clip(x + σ·N(0, 1), 0, 255)`` truncated to uint8, as the release does, drawn
from a generator seeded by the image's file name, σ and ``seed``: the noisy set does not depend on file order
or on which other images are present.

ω is either the true label of each set (``omega="true"``) or chosen per image by the model's degradation
classifier (``omega="auto"``); with ``auto`` the classifier's accuracy per set is reported too.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from pip_adapter.image_io import read_image_file
from pip_adapter.data.standard import find_standard
from pip_adapter.degradations import get_synthesizer
from pip_adapter.omega import canonical_name
from pip_adapter.restore.restorer import AUTO_MODES, DEFAULT_AUTO_MODE, Restorer
from pip_adapter.utils.metrics import image_metrics
from pip_adapter.utils.io import atomic_write
from pip_adapter.utils.tensor import center_crop_to_multiple

logger = logging.getLogger(__name__)

CROP_MULTIPLE = 16
OMEGA_MODES = ("true", "auto")


@dataclasses.dataclass(frozen=True)
class BenchmarkSet:
    """One column of the table: a test set of the standard layout (and a noise level for BSD68)."""

    key: str
    title: str
    degradation: str
    sigma: Optional[float] = None
    expected_count: Optional[int] = None


SOTS = BenchmarkSet("sots", "SOTS", "haze", None, 500)
RAIN100L = BenchmarkSet("rain100l", "Rain100L", "rain", None, 100)
BSD68_15 = BenchmarkSet("bsd68_15", "BSD68 σ15", "noise", 15.0, 68)
BSD68_25 = BenchmarkSet("bsd68_25", "BSD68 σ25", "noise", 25.0, 68)
BSD68_50 = BenchmarkSet("bsd68_50", "BSD68 σ50", "noise", 50.0, 68)
GOPRO = BenchmarkSet("gopro", "GoPro", "blur", None, 1111)
LOL = BenchmarkSet("lol", "LOL", "low_light", None, 15)

# column order as PromptIR's and IDR's tables print them: dehazing, deraining, denoising (, deblurring, low light)
SETTINGS: Dict[str, Tuple[BenchmarkSet, ...]] = {
    "3task": (SOTS, RAIN100L, BSD68_15, BSD68_25, BSD68_50),
    "5task": (SOTS, RAIN100L, BSD68_15, BSD68_25, BSD68_50, GOPRO, LOL),
}
# averages reported per setting: name -> the columns it averages.  Five-task tables in the literature (IDR,
# AirNet and PromptIR as IDR/later papers report them) list BSD68 at σ 25 only, so that average is given too.
AVERAGES: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "3task": {"average": tuple(s.key for s in SETTINGS["3task"])},
    "5task": {"average": tuple(s.key for s in SETTINGS["5task"]),
              "average_5": ("sots", "rain100l", "bsd68_25", "gopro", "lol")},
}
AVERAGE_TITLES = {"average": "Average", "average_5": "Avg. (5 tasks, σ25)"}

PIP_PAPER = ("Z. Li, Y. Lei, C. Ma, J. Zhang, H. Shan, 'Prompt-In-Prompt Learning for Universal Image Restoration', "
             "arXiv:2312.05038 (2023)")
PROMPTIR_PAPER = ("V. Potlapalli, S. W. Zamir, S. Khan, F. S. Khan, 'PromptIR: Prompting for All-in-One Blind Image "
                  "Restoration', NeurIPS 2023, Table 1")
IDR_PAPER = ("J. Zhang et al., 'Ingredient-oriented Multi-Degradation Learning for Image Restoration' (IDR), "
             "CVPR 2023, five-task table")

# Published numbers (PSNR, SSIM), quoted as printed.  Only numbers that could be checked against the papers'
# text are given; a missing entry is unknown here, not zero.  PIP's per-set values are not transcribed: only
# its averages are quoted.
PUBLISHED: Dict[str, List[Dict[str, Any]]] = {
    "3task": [
        {"method": "AirNet", "source": "AirNet (Li et al., CVPR 2022) as reported in " + PROMPTIR_PAPER,
         "sets": {"sots": (27.94, 0.962), "rain100l": (34.90, 0.967), "bsd68_15": (33.92, 0.933),
                  "bsd68_25": (31.26, 0.888), "bsd68_50": (28.00, 0.797)},
         "averages": {"average": (31.20, 0.910)}},
        {"method": "PromptIR", "source": PROMPTIR_PAPER,
         "sets": {"sots": (30.58, 0.974), "rain100l": (36.37, 0.972), "bsd68_15": (33.98, 0.933),
                  "bsd68_25": (31.31, 0.888), "bsd68_50": (28.06, 0.799)},
         "averages": {"average": (32.06, 0.913)}},
        {"method": "PIP_Restormer", "source": PIP_PAPER + " (average only)", "sets": {},
         "averages": {"average": (32.91, 0.920)}},
    ],
    "5task": [
        {"method": "AirNet", "source": "AirNet retrained on five tasks, as reported in " + IDR_PAPER,
         "sets": {"sots": (21.04, 0.884), "rain100l": (32.98, 0.951), "bsd68_25": (30.91, 0.882),
                  "gopro": (24.35, 0.781), "lol": (18.18, 0.735)},
         "averages": {"average_5": (25.49, 0.846)}},
        {"method": "PromptIR", "source": "as reported in " + PIP_PAPER + " (five-task average only)", "sets": {},
         "averages": {"average": (30.36, 0.895)}},
        {"method": "PIP_NAFNet", "source": PIP_PAPER + " (average only)", "sets": {},
         "averages": {"average": (30.66, 0.899)}},
        {"method": "PIP_Restormer", "source": PIP_PAPER + " (average only)", "sets": {},
         "averages": {"average": (30.81, 0.901)}},
    ],
}
PUBLISHED_NOTE = {
    "3task": "",
    "5task": ("The PIP paper's five-task averages are quoted as published; which noise levels they average over "
              "could not be checked here, so they sit in the 'Average' column."),
}


def crop_to_multiple(img: np.ndarray, multiple: int = CROP_MULTIPLE) -> np.ndarray:
    """Centre crop of an H×W[×C] image to multiples of ``multiple`` (PromptIR's ``crop_img``)."""
    return center_crop_to_multiple(img, multiple)


def noise_seed(name: str, sigma: float, seed: int = 0) -> int:
    """Seed of the noise added to the image called ``name`` at ``sigma``: a hash, so order does not matter."""
    digest = hashlib.sha256(f"{os.path.basename(name)}|{float(sigma):g}|{int(seed)}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def add_benchmark_noise(clean: np.ndarray, name: str, sigma: float, seed: int = 0) -> np.ndarray:
    """Noisy uint8 version of a clean uint8 RGB image, seeded by its file name and σ."""
    rng = np.random.default_rng(noise_seed(name, sigma, seed))
    return get_synthesizer("noise")(np.ascontiguousarray(clean), rng, sigma=float(sigma))


def find_benchmark_set(root: str, bench_set: BenchmarkSet,
                       max_images: Optional[int] = None) -> List[Tuple[str, Optional[str], str]]:
    """``[(name, lq_path or None, gt_path)]`` of a test set in the standard layout (None: noise is added)."""
    _, pairs = find_standard(root, bench_set.degradation, split="test", task=f"test set {bench_set.title}")
    out = [(os.path.basename(lq or gt), lq, gt) for lq, gt in pairs]
    if max_images is not None:
        out = out[:max(0, int(max_images))]
    return out


def load_pair(lq_path: Optional[str], gt_path: str, bench_set: BenchmarkSet, seed: int = 0
              ) -> Tuple[np.ndarray, np.ndarray]:
    """(degraded, clean) uint8 RGB arrays of one test image, cropped to the multiple of 16."""
    gt = _cropped(gt_path)
    if lq_path is None:
        if bench_set.sigma is None:
            raise ValueError(f"{bench_set.title}: {gt_path} has no degraded image and the set adds no noise")
        return add_benchmark_noise(gt, gt_path, bench_set.sigma, seed), gt
    lq = _cropped(lq_path)
    if lq.shape != gt.shape:
        raise ValueError(f"{bench_set.title}: degraded {lq_path} {lq.shape[:2]} and clean {gt_path} "
                         f"{gt.shape[:2]} differ in size after cropping to a multiple of {CROP_MULTIPLE}")
    return lq, gt


def _mean(values: Sequence[float]) -> Optional[float]:
    vals = [v for v in values if v is not None and not math.isnan(v) and not math.isinf(v)]
    return float(sum(vals) / len(vals)) if vals else None


def evaluate_set(restorer: Restorer, bench_set: BenchmarkSet, pairs: Sequence[Tuple[str, Optional[str], str]],
                 omega: str = "true", auto_mode: str = DEFAULT_AUTO_MODE, seed: int = 0, bar: Any = None) -> Dict[str, Any]:
    """Restore one set's ``(name, lq_path or None, gt_path)`` pairs; mean PSNR/SSIM (and the input's) + per image.

    ``omega``: ``"true"`` (the set's degradation) or ``"auto"`` (then ``classifier_accuracy`` is reported: the
    share of images whose most likely type is the set's).
    """
    rows = []
    for name, lq_path, gt_path in pairs:
        if bar is not None:
            bar.set_postfix_str(f"{bench_set.title} {name}")
        lq, gt = load_pair(lq_path, gt_path, bench_set, seed)
        lq_f, gt_f = lq.astype(np.float32) / 255.0, gt.astype(np.float64) / 255.0
        spec = "auto" if omega == "auto" else bench_set.degradation
        restored, weights, desc = restorer.restore_array(lq_f, degradation=spec, auto_mode=auto_mode)
        psnr, ssim = image_metrics(restored.astype(np.float64), gt_f)
        in_psnr, in_ssim = image_metrics(lq_f.astype(np.float64), gt_f)
        row = {"image": name, "psnr": psnr, "ssim": ssim, "input_psnr": in_psnr, "input_ssim": in_ssim,
               "omega": desc}
        if omega == "auto":
            top = max(weights, key=weights.get)  # one-hot (argmax) or the probabilities: the same top type
            row["predicted"] = top
            row["correct"] = canonical_name(top) == canonical_name(bench_set.degradation)
        rows.append(row)
        if bar is not None:
            bar.update(1)
    entry: Dict[str, Any] = {
        "key": bench_set.key, "title": bench_set.title, "degradation": bench_set.degradation,
        "sigma": bench_set.sigma, "count": len(rows), "psnr": _mean([r["psnr"] for r in rows]),
        "ssim": _mean([r["ssim"] for r in rows]), "input_psnr": _mean([r["input_psnr"] for r in rows]),
        "input_ssim": _mean([r["input_ssim"] for r in rows]), "images": rows}
    if omega == "auto":
        entry["classifier_accuracy"] = _mean([float(r["correct"]) for r in rows])
    logger.info("%s: %d images, PSNR %.2f, SSIM %.4f", bench_set.title, len(rows),
                entry["psnr"] if entry["psnr"] is not None else float("nan"),
                entry["ssim"] if entry["ssim"] is not None else float("nan"))
    return entry


def evaluate(restorer: Restorer, root: str, setting: str = "3task", omega: str = "true",
             auto_mode: str = DEFAULT_AUTO_MODE, seed: int = 0, max_images: Optional[int] = None,
             progress: bool = True, model_name: str = "model") -> Dict[str, Any]:
    """Restore every test set of ``setting`` and measure it with the published protocol.

    Args:
        restorer: the network (its degradation names must cover the setting's types).
        root: the standard layout's root (``datasets/allinone``, or its ``data`` folder).
        setting: ``"3task"`` (SOTS, Rain100L, BSD68 σ15/25/50) or ``"5task"`` (+ GoPro, LOL).
        omega: ``"true"`` (each set's own label) or ``"auto"`` (the restorer's classifier, per image).
        auto_mode: with ``auto``: ``weights`` (probabilities are ω) or ``argmax``.
        seed: added to the noise seeds (0 reproduces the shipped numbers).
        max_images: use only the first N images of each set (quick checks; not the published protocol).
        model_name: shown in the table.

    Returns a JSON-able dict: ``sets`` (per column: count, PSNR, SSIM, the degraded input's PSNR/SSIM and with
    ``auto`` the classifier's accuracy), ``averages``, ``published`` and the protocol.
    """
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; use one of {', '.join(SETTINGS)}")
    if omega not in OMEGA_MODES:
        raise ValueError(f"omega must be one of {OMEGA_MODES}, got {omega!r}")
    if auto_mode not in AUTO_MODES:
        raise ValueError(f"auto_mode must be one of {AUTO_MODES}, got {auto_mode!r}")
    known = [canonical_name(n) for n in restorer.degradations]
    missing = sorted({s.degradation for s in SETTINGS[setting]} - set(known))
    if missing and restorer.uses_omega:
        raise ValueError(f"the {setting} setting needs the types {missing}, which this model does not know "
                         f"(it knows {', '.join(restorer.degradations)}); use --setting 3task for a three-task model")
    if omega == "auto" and restorer.classifier is None:
        raise ValueError("omega 'auto' needs a degradation classifier: export the model with --classifier, or "
                         "pass --classifier FILE")
    # find every set before restoring anything: a missing folder fails in seconds, not after an hour
    plan = [(s, find_benchmark_set(root, s, max_images)) for s in SETTINGS[setting]]
    for s, pairs in plan:
        if max_images is None and s.expected_count and len(pairs) != s.expected_count:
            logger.warning("%s: %d images found, the published set has %d; the numbers are not comparable",
                           s.title, len(pairs), s.expected_count)
    start = time.perf_counter()
    total = sum(len(p) for _, p in plan)
    with tqdm(total=total, desc=f"evaluate {setting}", unit="img", disable=not progress) as bar:
        results = [evaluate_set(restorer, s, pairs, omega, auto_mode, seed, bar) for s, pairs in plan]
    by_key = {r["key"]: r for r in results}
    averages = {}
    for name, keys in AVERAGES[setting].items():
        averages[name] = {"title": AVERAGE_TITLES[name], "sets": list(keys),
                          "psnr": _mean([by_key[k]["psnr"] for k in keys]),
                          "ssim": _mean([by_key[k]["ssim"] for k in keys]),
                          "input_psnr": _mean([by_key[k]["input_psnr"] for k in keys]),
                          "input_ssim": _mean([by_key[k]["input_ssim"] for k in keys])}
    return {
        "setting": setting, "model": model_name, "data": os.path.abspath(root), "omega": omega,
        "auto_mode": auto_mode if omega == "auto" else None, "seed": seed, "max_images": max_images,
        "seconds": round(time.perf_counter() - start, 2),
        "protocol": {"color": "RGB", "range": "float [0, 1], outputs clipped, not rounded",
                     "crop_multiple": CROP_MULTIPLE, "psnr": "peak 1",
                     "ssim": "skimage.metrics.structural_similarity, 7x7 uniform window, data_range 1",
                     "noise": "clip(x + sigma*N(0,1), 0, 255) -> uint8, seeded by sha256(file name | sigma | seed)",
                     "average": "mean over the columns of the table"},
        "sets": results, "averages": averages,
        "published": PUBLISHED[setting], "published_note": PUBLISHED_NOTE[setting],
    }


def _cell(value: Optional[Tuple[Optional[float], Optional[float]]]) -> str:
    if value is None or value[0] is None:
        return "–"
    psnr, ssim = value
    return f"{psnr:.2f}/{ssim:.3f}" if ssim is not None else f"{psnr:.2f}/–"


def format_markdown(result: Mapping[str, Any]) -> str:
    """The table as the papers print it (PSNR/SSIM per column, then the averages), with our rows first."""
    sets = result["sets"]
    avgs = result["averages"]
    header = ["Method"] + [s["title"] for s in sets] + [a["title"] for a in avgs.values()]
    omega = "ω: true label" if result["omega"] == "true" else f"ω: auto ({result.get('auto_mode')})"
    rows = [[f"**{result['model']}** ({omega})"]
            + [_cell((s["psnr"], s["ssim"])) for s in sets] + [_cell((a["psnr"], a["ssim"])) for a in avgs.values()],
            ["degraded input"] + [_cell((s["input_psnr"], s["input_ssim"])) for s in sets]
            + [_cell((a["input_psnr"], a["input_ssim"])) for a in avgs.values()]]
    for i, pub in enumerate(result["published"], 1):
        rows.append([f"{pub['method']} [{i}]"] + [_cell(pub["sets"].get(s["key"])) for s in sets]
                    + [_cell(pub["averages"].get(k)) for k in avgs])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    counts = ", ".join(f"{s['title']} {s['count']}" for s in sets)
    lines += ["", f"PSNR (dB) / SSIM. Images: {counts}."]
    if result["omega"] == "auto":
        acc = ", ".join(f"{s['title']} {s['classifier_accuracy']:.2f}" for s in sets)
        lines.append(f"Classifier accuracy (top type = the set's type): {acc}.")
    if result.get("max_images") is not None:
        lines.append(f"Only the first {result['max_images']} images of each set were used: not the published "
                     "protocol.")
    lines += ["Protocol: RGB, centre crop to a multiple of 16, float output clipped to [0, 1] (not rounded), PSNR "
              "with peak 1, scikit-image SSIM (7×7 uniform window); BSD68 noise seeded per image from its file "
              f"name and σ (seed {result['seed']}). '–': not published per set (or not transcribed here)."]
    if result.get("published_note"):
        lines.append(result["published_note"])
    lines += ["", "Published numbers:"]
    lines += [f"[{i}] {pub['source']}." for i, pub in enumerate(result["published"], 1)]
    return "\n".join(lines) + "\n"


def _cropped(path: str) -> np.ndarray:
    try:
        return crop_to_multiple(read_image_file(path))
    except ValueError as err:  # the crop's message does not know the file
        raise ValueError(f"{path}: {err}") from err


def check_results_folder(out_dir: str) -> None:
    """Refuse, before any work, an output folder that is a file or lies below one (``NotADirectoryError``)."""
    path = os.path.abspath(out_dir)
    while True:
        if os.path.exists(path):
            if not os.path.isdir(path):
                raise NotADirectoryError(errno.ENOTDIR, "is a file where a folder is needed", path)
            return
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def write_results(result: Mapping[str, Any], out_dir: str, overwrite: bool = False) -> Dict[str, str]:
    """Write ``<setting>_<omega>.md`` and ``.json`` into ``out_dir`` (atomically); returns their paths."""
    stem = f"{result['setting']}_{result['omega']}"
    paths = {"markdown": os.path.join(out_dir, stem + ".md"), "json": os.path.join(out_dir, stem + ".json")}
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} exist(s); pass --overwrite to replace, or choose another --out")
    text = format_markdown(result)

    def _md(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    def _json(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2, ensure_ascii=False)

    atomic_write(paths["markdown"], _md)
    atomic_write(paths["json"], _json)
    return paths
