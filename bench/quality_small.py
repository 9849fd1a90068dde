"""Small-scale quality study: does PIP make a better restorer than the backbone alone, at CPU scale?

Run from the repository root::

    python bench/quality_small.py --study --seeds 0,1,2 --jobs 2 --update-docs   # the converged study
    python bench/quality_small.py --steps 300                                      # a quick bare vs PIP look

Protocol (everything identical between the compared runs except the model):

* training data is drawn on the fly: at step ``k`` of seed ``s`` a generator seeded with ``(s, k)`` cuts
  ``--batch`` random ``--patch``² crops (random flips) from the clean training photos (``--train-images``) and
  degrades each afresh with the registered synthesisers — the types cycle through noise (σ drawn from 15/25/50),
  rain and haze, so every batch is balanced. Every model of a seed sees exactly the same batches, and no degraded
  patch is ever seen twice (a fixed pool of degraded patches is memorised by a small model within a few thousand
  steps);
* every model is built from the seed (bare and PIP runs of a backbone start from identical backbone weights);
  Adam (β 0.9/0.99), cosine schedule to 1% of the learning rate, equal steps; L1 (+ α·L_ddl, α 0.002, for PIP
  models, spec §4);
* evaluation: every clean image of ``--eval-images`` (centre-cropped to a multiple of 16, at most
  ``--eval-size``) is degraded from a fixed seed: noise σ15/25/50, rain, haze. PSNR/SSIM on RGB in [0, 1], no
  border crop, scikit-image SSIM (spec §8). A validation curve (mean PSNR over the five rows, on the same images
  centre-cropped to ``--val-size``) is recorded ``--curve-points`` times per run;
* models (``--variants``; ``--study`` runs them all): bare NAFNet; the bare NAFNet widened to the parameter count
  of PIP-NAFNet; PIP-NAFNet; its ablations (d only, B only, no selective top-m P2F); a tiny Restormer bare and
  with PIP. Each (model, seed) run is written to ``--runs-dir`` as JSON, so an interrupted study resumes; the
  report (mean ± std over seeds, the wrong-prompt matrix averaged over seeds, the curve figure) is built from
  those files.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (RESULTS_DIR, add_output_args, command_line, machine_info, markdown_table,  # noqa: E402
                          pyplot, write_section)

logger = logging.getLogger("bench.quality_small")

TASK_NAMES = ("noise", "rain", "haze")
# evaluation rows: (label, degradation type, synthesiser parameters)
EVAL_TASKS: Tuple[Tuple[str, str, Dict[str, float]], ...] = (
    ("noise σ15", "noise", {"sigma": 15}), ("noise σ25", "noise", {"sigma": 25}),
    ("noise σ50", "noise", {"sigma": 50}), ("rain", "rain", {}), ("haze", "haze", {}))
NOISE_SIGMAS = (15, 25, 50)


@dataclass(frozen=True)
class Variant:
    """One compared model: its backbone, its PIP options (None: bare) and whether it is the widened baseline."""
    label: str
    backbone: str
    pip: Optional[Mapping[str, bool]] = None
    widened: bool = False


# CLI key → variant; the order is the report's row order
VARIANTS: Dict[str, Variant] = {
    "bare": Variant("NAFNet (bare)", "nafnet"),
    "wide": Variant("NAFNet widened to PIP's parameters (bare)", "nafnet", widened=True),
    "pip": Variant("PIP-NAFNet", "nafnet", {}),
    "d_only": Variant("PIP, d only (no B)", "nafnet", {"use_basic_prompt": False}),
    "b_only": Variant("PIP, B only (no d)", "nafnet", {"use_degradation_prompt": False}),
    "no_selective": Variant("PIP, no selective P2F", "nafnet", {"selective": False}),
    "restormer": Variant("Restormer (bare)", "restormer"),
    "pip_restormer": Variant("PIP-Restormer", "restormer", {}),
}
ABLATIONS = ("d_only", "b_only", "no_selective")
CORE = ("bare", "wide", "pip")  # the main comparison, trained first for every seed
# the baseline each variant's Δ is measured against
BASELINE = {"nafnet": "bare", "restormer": "restormer"}


# ----------------------------------------------------------------------------------------------- data
def list_images(folder: str) -> List[str]:
    """Image files of ``folder`` (recursive), sorted; a missing or empty folder is a clear error."""
    from pip_adapter.image_io import is_image_file

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder not found: {folder}")
    out = sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if is_image_file(f))
    if not out:
        raise FileNotFoundError(f"no image files in {folder}")
    return out


def read_rgb_uint8(path: str) -> np.ndarray:
    """An image file as uint8 H×W×3 RGB (grey is replicated, alpha dropped)."""
    from pip_adapter.image_io import read_image

    arr, _ = read_image(path)
    if arr.ndim == 2:
        arr = arr[..., None]
    arr = arr[..., :3]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)


def degrade(img: np.ndarray, task: str, rng: np.random.Generator, **params: float) -> np.ndarray:
    """``img`` (uint8 H×W×3) degraded by the registered synthesiser of ``task``."""
    import pip_adapter.degradations  # noqa: F401  (registers the built-in synthesisers)
    from pip_adapter.degradations import get_synthesizer

    return get_synthesizer(task)(np.ascontiguousarray(img), rng, **params)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 H×W×3 → float 3×H×W in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


def random_crop(images: Sequence[np.ndarray], rng: np.random.Generator, patch: int) -> np.ndarray:
    """A random ``patch``² crop (random horizontal/vertical flips) of a random image of ``images``."""
    img = images[int(rng.integers(len(images)))]
    h, w = img.shape[:2]
    if h < patch or w < patch:
        raise ValueError(f"training images must be at least {patch}×{patch}, got {h}×{w}")
    y, x = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))
    crop = img[y:y + patch, x:x + patch]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1]
    return np.ascontiguousarray(crop)


def sample_batch(images: Sequence[np.ndarray], step: int, seed: int, batch: int, patch: int,
                 tasks: Sequence[str] = TASK_NAMES) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch ``step`` of seed ``seed``: fresh random crops, freshly degraded; the same for every model.

    Returns (degraded, clean) float B×3×P×P in [0, 1] and the B task labels (types cycle, so a batch is balanced).
    """
    if not images:
        raise ValueError("sample_batch needs at least one clean training image")
    rng = np.random.default_rng([seed, step])
    lq, gt, labels = [], [], []
    for i in range(batch):
        t = (step * batch + i) % len(tasks)
        crop = random_crop(images, rng, patch)
        params = {"sigma": float(NOISE_SIGMAS[int(rng.integers(len(NOISE_SIGMAS)))])} if tasks[t] == "noise" else {}
        lq.append(to_tensor(degrade(crop, tasks[t], rng, **params)))
        gt.append(to_tensor(crop))
        labels.append(t)
    return torch.stack(lq), torch.stack(gt), torch.tensor(labels)


def center_crop_multiple(img: np.ndarray, multiple: int = 16, max_size: Optional[int] = None) -> np.ndarray:
    """Centre crop to a multiple of ``multiple`` (spec §8), and to at most ``max_size`` per side."""
    h, w = img.shape[:2]
    th, tw = h, w
    if max_size:
        th, tw = min(th, max_size), min(tw, max_size)
    th, tw = th - th % multiple, tw - tw % multiple
    if th < multiple or tw < multiple:
        raise ValueError(f"evaluation image of {h}×{w} is smaller than {multiple}×{multiple}")
    y, x = (h - th) // 2, (w - tw) // 2
    return img[y:y + th, x:x + tw]


EvalSet = Dict[str, List[Tuple[torch.Tensor, torch.Tensor]]]


def build_eval_set(images: Sequence[np.ndarray], seed: int,
                   tasks: Sequence[Tuple[str, str, Mapping[str, float]]] = EVAL_TASKS) -> EvalSet:
    """Per evaluation row: (lq, gt) 3×H×W pairs, degraded from a fixed seed (one stream per row)."""
    out: EvalSet = {}
    for r, (label, task, params) in enumerate(tasks):
        rng = np.random.default_rng([seed, r])
        out[label] = [(to_tensor(degrade(img, task, rng, **params)), to_tensor(img)) for img in images]
    return out


def crop_eval_set(eval_set: EvalSet, size: int) -> EvalSet:
    """The same pairs centre-cropped to at most ``size``² (the cheaper set of the validation curve)."""
    def crop(t: torch.Tensor) -> torch.Tensor:
        h, w = t.shape[-2:]
        th, tw = min(h, size), min(w, size)
        y, x = (h - th) // 2, (w - tw) // 2
        return t[..., y:y + th, x:x + tw]
    return {k: [(crop(a), crop(b)) for a, b in pairs] for k, pairs in eval_set.items()}


# --------------------------------------------------------------------------------------------- models
@dataclass
class RunConfig:
    """Everything that must be the same between the compared runs."""
    width: int = 16
    enc_blk_nums: Tuple[int, ...] = (1, 1, 1, 1)
    middle_blk_num: int = 1
    dec_blk_nums: Tuple[int, ...] = (1, 1, 1, 1)
    steps: int = 1000
    batch: int = 8
    patch: int = 64
    lr: float = 1e-3
    seed: int = 0
    ddl_alpha: float = 0.002
    # the paper's NAFNet-64 sizes (D 64/96/128/128, s 64/32/16/16 for 128² patches) scaled to width 16, 64² patches
    prompt_dims: Tuple[int, ...] = (16, 24, 32, 32)
    prompt_sizes: Tuple[int, ...] = (32, 16, 8, 8)
    tasks: Tuple[str, ...] = TASK_NAMES
    # the tiny Restormer of the second-backbone comparison, and its PIP sizes (three skip levels)
    restormer_dim: int = 16
    restormer_blocks: Tuple[int, ...] = (1, 1, 1, 1)
    restormer_heads: Tuple[int, ...] = (1, 2, 4, 8)
    restormer_refinement: int = 1
    restormer_prompt_dims: Tuple[int, ...] = (16, 32, 64)
    restormer_prompt_sizes: Tuple[int, ...] = (32, 16, 8)

    def nafnet_kwargs(self, width: Optional[int] = None) -> Dict[str, object]:
        """NAFNet constructor arguments (``width`` overrides the configured one)."""
        return dict(img_channel=3, width=width or self.width, middle_blk_num=self.middle_blk_num,
                    enc_blk_nums=list(self.enc_blk_nums), dec_blk_nums=list(self.dec_blk_nums))

    def restormer_kwargs(self) -> Dict[str, object]:
        """Restormer constructor arguments."""
        return dict(dim=self.restormer_dim, num_blocks=list(self.restormer_blocks),
                    heads=list(self.restormer_heads), num_refinement_blocks=self.restormer_refinement)


def n_params(model: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in model.parameters())


def build_model(cfg: RunConfig, pip: Optional[Mapping[str, bool]], width: Optional[int] = None) -> nn.Module:
    """The tiny NAFNet from ``cfg.seed``; wrapped with PIP (with ``pip`` options) unless ``pip`` is None."""
    from pip_adapter.backbones import NAFNet

    torch.manual_seed(cfg.seed)
    backbone = cfg.nafnet_kwargs(width)
    net = NAFNet(**backbone)
    if pip is None:
        return net
    from pip_adapter.wrap import wrap_with_pip

    torch.manual_seed(cfg.seed + 1)
    n = len(cfg.enc_blk_nums)
    return wrap_with_pip(net, degradations=list(cfg.tasks), prompt_dims=list(cfg.prompt_dims[:n]),
                         prompt_sizes=list(cfg.prompt_sizes[:n]), backbone_config={"type": "NAFNet", **backbone},
                         **dict(pip))


def build_restormer(cfg: RunConfig, pip: Optional[Mapping[str, bool]]) -> nn.Module:
    """The tiny Restormer from ``cfg.seed``; wrapped with PIP unless ``pip`` is None."""
    from pip_adapter.backbones import Restormer

    torch.manual_seed(cfg.seed)
    kw = cfg.restormer_kwargs()
    net = Restormer(**kw)
    if pip is None:
        return net
    from pip_adapter.wrap import wrap_with_pip

    torch.manual_seed(cfg.seed + 1)
    return wrap_with_pip(net, degradations=list(cfg.tasks), prompt_dims=list(cfg.restormer_prompt_dims),
                         prompt_sizes=list(cfg.restormer_prompt_sizes),
                         backbone_config={"type": "Restormer", **kw}, **dict(pip))


def equal_param_width(cfg: RunConfig) -> int:
    """The NAFNet width whose parameter count is closest to PIP-NAFNet's (the capacity-matched baseline)."""
    from pip_adapter.backbones import NAFNet

    target = n_params(build_model(cfg, {}))
    widths = range(cfg.width, 2 * cfg.width + 1)
    return min(widths, key=lambda w: abs(n_params(NAFNet(**cfg.nafnet_kwargs(w))) - target))


def build_variant(key: str, cfg: RunConfig) -> nn.Module:
    """The model of variant ``key`` (see ``VARIANTS``) for ``cfg``."""
    if key not in VARIANTS:
        raise ValueError(f"unknown variant {key!r}; expected one of {', '.join(VARIANTS)}")
    v = VARIANTS[key]
    if v.backbone == "restormer":
        return build_restormer(cfg, v.pip)
    return build_model(cfg, v.pip, width=equal_param_width(cfg) if v.widened else None)


def save_pip_checkpoint(model: nn.Module, path: str) -> str:
    """Export a trained PIP model as a self-describing checkpoint (for ``pip-adapter inspect`` / ``restore``)."""
    from pip_adapter.restore.checkpoint import make_meta, save_checkpoint

    return save_checkpoint(path, model, make_meta(model, source={"made_by": "bench/quality_small.py"}))


def is_pip(model: nn.Module) -> bool:
    """True for a PIP-wrapped model (its forward takes ω)."""
    return hasattr(model, "pip_levels")


def forward(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Bare models ignore the labels; PIP models get them as one-hot ω."""
    if not is_pip(model):
        return model(x)
    omega = torch.nn.functional.one_hot(labels, len(model.degradations)).float()
    return model(x, omega)


class Optimiser:
    """The study's optimiser: Adam (0.9, 0.99) with a cosine schedule to 1% of the learning rate, plus
    α·L_ddl over the PIP levels' degradation prompts when the model has any (spec §4)."""

    def __init__(self, model: nn.Module, cfg: "RunConfig"):
        from pip_adapter.modules.ddl_loss import DirectionalDecoupledLoss

        self.levels = list(getattr(model, "pip_levels", []))
        self.ddl = DirectionalDecoupledLoss(loss_weight=cfg.ddl_alpha) if self.levels else None
        self.opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr,
                                    betas=(0.9, 0.99))
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, cfg.steps),
                                                                eta_min=cfg.lr * 0.01)

    def step(self, loss: torch.Tensor) -> float:
        """Add L_ddl to the pixel loss, take one step; the total loss as a float."""
        if self.ddl is not None:
            prompts = [p for p in (lv.all_degradation_prompts() for lv in self.levels) if p.shape[0] > 1]
            if prompts:
                loss = loss + self.ddl(prompts)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return float(loss.detach())


def train(model: nn.Module, images: Sequence[np.ndarray], cfg: RunConfig, log_every: int = 100,
          val_set: Optional[EvalSet] = None, curve_points: int = 0) -> Dict[str, object]:
    """Train in place with the shared protocol; returns the loss curve, the validation curve and the time.

    ``curve_points`` evenly spaced validation points (mean PSNR over the rows of ``val_set``) are recorded,
    the last one at the final step.
    """
    model.train()
    optimiser = Optimiser(model, cfg)
    val_steps = ({round(cfg.steps * (i + 1) / curve_points) for i in range(curve_points)}
                 if val_set is not None and curve_points > 0 else set())
    curve: List[float] = []
    val_curve: List[Tuple[int, float]] = []
    run = 0.0
    t0 = time.time()
    for step in range(cfg.steps):
        lq, gt, labels = sample_batch(images, step, cfg.seed, cfg.batch, cfg.patch, cfg.tasks)
        run += optimiser.step(torch.nn.functional.l1_loss(forward(model, lq, labels), gt))
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            n = (step % log_every) + 1
            curve.append(run / n)
            logger.info("step %d/%d loss %.4f (%.1f s)", step + 1, cfg.steps, run / n, time.time() - t0)
            run = 0.0
        if step + 1 in val_steps:
            scores = evaluate(model, val_set, cfg.tasks, with_ssim=False)
            val_curve.append((step + 1, float(np.mean([s[0] for s in scores.values()]))))
            model.train()
    model.eval()
    return {"curve": curve, "val_curve": val_curve, "seconds": time.time() - t0}


@torch.no_grad()
def evaluate(model: nn.Module, eval_set: EvalSet, tasks: Sequence[str] = TASK_NAMES,
             rows: Sequence[Tuple[str, str, Mapping[str, float]]] = EVAL_TASKS,
             with_ssim: bool = True) -> Dict[str, Tuple[float, float]]:
    """Mean PSNR/SSIM per evaluation row (PIP models get the row's true type as ω; SSIM nan without ``with_ssim``)."""
    from pip_adapter.restore.restorer import image_metrics
    from pip_adapter.utils.metrics import psnr

    model.eval()
    kind = {label: task for label, task, _ in rows}
    out = {}
    for label, pairs in eval_set.items():
        scores = []
        for lq, gt in pairs:
            lab = torch.tensor([list(tasks).index(kind[label])])
            pred = forward(model, lq[None], lab)[0].clamp(0, 1)
            if with_ssim:
                scores.append(image_metrics(pred.permute(1, 2, 0).numpy(), gt.permute(1, 2, 0).numpy()))
            else:
                scores.append((float(psnr(pred, gt)), float("nan")))
        out[label] = (float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores])))
    return out


def input_scores(eval_set: EvalSet) -> Dict[str, Tuple[float, float]]:
    """PSNR/SSIM of the degraded inputs themselves (the floor every model should beat)."""
    from pip_adapter.restore.restorer import image_metrics

    out = {}
    for label, pairs in eval_set.items():
        s = [image_metrics(lq.permute(1, 2, 0).numpy(), gt.permute(1, 2, 0).numpy()) for lq, gt in pairs]
        out[label] = (float(np.mean([a for a, _ in s])), float(np.mean([b for _, b in s])))
    return out


def wrong_prompt(model: nn.Module, eval_set: EvalSet, tasks: Sequence[str] = TASK_NAMES) -> Dict[str, object]:
    """PSNR of every evaluation row restored with every ω (images one by one: sizes may differ)."""
    from pip_adapter.analysis.wrong_prompt import psnr

    rows = list(eval_set)
    table = torch.zeros(len(rows), len(tasks))
    inp = torch.zeros(len(rows))
    for r, label in enumerate(rows):
        pairs = eval_set[label]
        inp[r] = float(np.mean([psnr(lq[None], gt[None]) for lq, gt in pairs]))
        for c in range(len(tasks)):
            with torch.no_grad():
                vals = [psnr(forward(model, lq[None], torch.tensor([c])), gt[None]) for lq, gt in pairs]
            table[r, c] = float(np.mean(vals))
    return {"rows": rows, "cols": list(tasks), "psnr": table, "input_psnr": inp}


# ------------------------------------------------------------------------------------------ photo sets
def builtin_train_photos(short_side: int = 256) -> List[np.ndarray]:
    """The built-in data's training photos (scikit-image samples), shorter side resized like prepare_builtin."""
    from pip_adapter.data.builtin import TRAIN_IMAGES, _resize_short, load_photo

    return [_resize_short(load_photo(n), short_side) for n in TRAIN_IMAGES]


# held out from the built-in training photos: its two validation photos and grey natural photos (as RGB)
HELDOUT_PHOTOS = ("chelsea.png", "rocket.jpg", "camera.png", "coins.png", "moon.png", "brick.png", "gravel.png",
                  "grass.png")

# Real photographs shipped by Debian packages (install: apt-get install mate-backgrounds lomiri-wallpapers-16.04),
# with the licence each package's copyright file gives; renders and abstract patterns of those packages are left out
DEBIAN_PHOTO_DIR = "/usr/share/backgrounds"
DEBIAN_PHOTOS: Tuple[Tuple[str, str, str], ...] = tuple(
    [("mate-backgrounds", f"mate/nature/{n}.jpg", "GPL-2+") for n in
     ("Aqua", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood",
      "YellowFlower")]
    + [("lomiri-wallpapers-16.04", f"{n}.jpg", lic) for n, lic in (
        ("Bridge_by_Sander_Klootwijk", "CC-BY-SA-4.0"), ("Dragonfly_by_Bolly", "CC-BY-SA-4.0"),
        ("Picture_0B_by_freespace", "CC-BY-4.0"), ("Picture_1A_by_freespace", "CC-BY-4.0"),
        ("Wine_by_Jakkub_Mede", "CC-BY-4.0"), ("aitzgorri_by_Aitzol_Berasategi", "CC-BY-4.0"),
        ("free_by_Peter_Nerlich", "CC-BY-SA-4.0"), ("friends_by_Aitzol_Berasategi", "CC-BY-4.0"),
        ("greentock_by_Peter_Nerlich", "CC-BY-SA-4.0"), ("life_by_Aitzol_Berasategi", "CC-BY-4.0"),
        ("picosdeeuropa_by_Aitzol_Berasategi", "CC-BY-4.0"), ("seeding_by_Clements_Engelhardt", "CC0-1.0"),
        ("sunset_by_Aitzol_Berasategi", "CC-BY-4.0"))])


def _write_png(path: str, img: np.ndarray) -> None:
    """uint8 RGB ``img`` as a PNG file, written atomically."""
    import cv2

    from pip_adapter.utils.io import atomic_path

    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(buf.tobytes())


def make_eval_folder(out_dir: str, short_side: int = 256) -> str:
    """Write held-out clean evaluation images (never in the built-in training set) to ``out_dir`` as PNG."""
    from pip_adapter.data.builtin import TRAIN_IMAGES, _resize_short, skimage_data_dir

    os.makedirs(out_dir, exist_ok=True)
    for name in HELDOUT_PHOTOS:
        if name in TRAIN_IMAGES:
            raise ValueError(f"{name} is a built-in training photo; it cannot be held out")
        img = _resize_short(read_rgb_uint8(os.path.join(skimage_data_dir(), name)), short_side)
        _write_png(os.path.join(out_dir, os.path.splitext(name)[0] + ".png"), img)
    return out_dir


def make_train_folder(out_dir: str, short_side: int = 384, source_dir: str = DEBIAN_PHOTO_DIR) -> str:
    """Write the study's clean training photos to ``out_dir``: the built-in training photos plus ``DEBIAN_PHOTOS``.

    Photos are resized to ``short_side`` on the shorter side (area interpolation), so a training crop holds a
    comparable amount of scene as the evaluation images. None of them is an evaluation photo.
    """
    from pip_adapter.data.builtin import TRAIN_IMAGES, _resize_short, load_photo

    missing = [p for _, p, _ in DEBIAN_PHOTOS if not os.path.isfile(os.path.join(source_dir, p))]
    if missing:
        pkgs = " ".join(sorted({pkg for pkg, _, _ in DEBIAN_PHOTOS}))
        raise FileNotFoundError(
            f"{len(missing)} of the study's {len(DEBIAN_PHOTOS)} Debian training photos are missing under "
            f"{source_dir} (first: {missing[0]}). Install them with `apt-get install {pkgs}`, or pass "
            "--train-images builtin (the 7 built-in photos) or --train-images DIR (your own clean photos).")
    os.makedirs(out_dir, exist_ok=True)
    for n in TRAIN_IMAGES:
        _write_png(os.path.join(out_dir, "skimage_" + os.path.splitext(n)[0] + ".png"),
                   _resize_short(load_photo(n), 256))
    for pkg, rel, _ in DEBIAN_PHOTOS:
        img = _resize_short(read_rgb_uint8(os.path.join(source_dir, rel)), short_side)
        _write_png(os.path.join(out_dir, pkg + "_" + os.path.splitext(os.path.basename(rel))[0] + ".png"), img)
    return out_dir


# ------------------------------------------------------------------------------------------------ runs
@dataclass
class StudyData:
    """Where the photos come from and how evaluation is done (identical for every run of a study)."""
    train_images: str = "datasets/quality_train"
    eval_images: str = "datasets/quality_eval"
    eval_size: int = 256
    val_size: int = 128
    max_eval_images: Optional[int] = None
    curve_points: int = 10


def load_train_images(folder: str) -> List[np.ndarray]:
    """The clean training photos of ``folder`` ("builtin": the built-in data's photos); the default folder is
    written on first use."""
    if folder == "builtin":
        return builtin_train_photos()
    if not os.path.isdir(folder) and folder == StudyData.train_images:
        make_train_folder(folder)
    return [read_rgb_uint8(p) for p in list_images(folder)]


def load_eval_images(data: StudyData) -> List[np.ndarray]:
    """The held-out evaluation images, centre-cropped (the default folder is written on first use)."""
    if not os.path.isdir(data.eval_images) and data.eval_images == StudyData.eval_images:
        make_eval_folder(data.eval_images)
    paths = list_images(data.eval_images)[:data.max_eval_images]
    return [center_crop_multiple(read_rgb_uint8(p), 16, data.eval_size) for p in paths]


def run_id(key: str, cfg: RunConfig, data: StudyData) -> str:
    """File stem of one run: variant, seed and a hash of everything else, so runs of another setting never mix."""
    setting = {k: v for k, v in asdict(cfg).items() if k != "seed"}
    blob = json.dumps([setting, asdict(data)], sort_keys=True, default=list).encode()
    return f"{key}_seed{cfg.seed}_{hashlib.sha1(blob).hexdigest()[:10]}"


def run_one(key: str, cfg: RunConfig, data: StudyData, save_pip: Optional[str] = None) -> Dict[str, object]:
    """Train and evaluate variant ``key`` with seed ``cfg.seed``; a JSON-able record of the run."""
    train_imgs = load_train_images(data.train_images)
    eval_set = build_eval_set(load_eval_images(data), 1000)
    model = build_variant(key, cfg)
    logger.info("training %s, seed %d (%d parameters)", VARIANTS[key].label, cfg.seed, n_params(model))
    tr = train(model, train_imgs, cfg, val_set=crop_eval_set(eval_set, data.val_size),
               curve_points=data.curve_points)
    rec: Dict[str, object] = {
        "variant": key, "label": VARIANTS[key].label, "seed": cfg.seed, "config": asdict(cfg), "data": asdict(data),
        "parameters": n_params(model), "seconds": tr["seconds"],
        "train_loss": tr["curve"], "val_curve": tr["val_curve"], "n_train_images": len(train_imgs),
        "n_eval_images": len(next(iter(eval_set.values()))),
        "scores": evaluate(model, eval_set, cfg.tasks), "input": input_scores(eval_set)}
    if is_pip(model):
        w = wrong_prompt(model, eval_set, cfg.tasks)
        rec["wrong_prompt"] = {"rows": w["rows"], "cols": w["cols"], "psnr": w["psnr"].tolist(),
                               "input_psnr": w["input_psnr"].tolist()}
        if save_pip:
            save_pip_checkpoint(model, save_pip)
    return rec


def _run_job(job: Tuple[str, RunConfig, StudyData, str, int, Optional[str]]) -> str:
    """Worker of the study: one run, written atomically to its JSON file; returns the path."""
    from pip_adapter.utils.io import atomic_path

    key, cfg, data, path, threads, save_pip = job
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [{key} s{cfg.seed}] %(message)s", force=True)
    torch.set_num_threads(threads)
    rec = run_one(key, cfg, data, save_pip)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(rec, fh, indent=1)
    return path


def run_study(keys: Sequence[str], seeds: Sequence[int], cfg: RunConfig, data: StudyData, runs_dir: str,
              jobs: int = 1, threads: int = 1, save_pip: Optional[str] = None,
              train_missing: bool = True) -> List[Dict[str, object]]:
    """Every (variant, seed) run not yet in ``runs_dir``, ``jobs`` at a time; returns all records of the study.

    The main comparison (``CORE`` variants) runs first for every seed, then the other variants seed by seed, so
    a study stopped early holds the main comparison over all seeds. ``train_missing=False`` trains nothing and
    returns the records that exist (the report of a partial study).
    """
    os.makedirs(runs_dir, exist_ok=True)
    todo, paths = [], []
    for s in seeds:
        for k in keys:
            c = replace(cfg, seed=s)
            path = os.path.join(runs_dir, run_id(k, c, data) + ".json")
            paths.append(path)
            if not os.path.isfile(path):
                todo.append((k, c, data, path, threads, save_pip if (k == "pip" and s == seeds[0]) else None))
    todo.sort(key=lambda job: job[0] not in CORE)  # stable: seed order within each group
    if save_pip and "pip" in keys and not any(job[5] for job in todo) and not os.path.isfile(save_pip):
        logger.warning("--save-pip %s: the PIP-NAFNet run of seed %d is reused from %s, so no model is saved; "
                       "give another --runs-dir to train it again", save_pip, seeds[0], runs_dir)
    logger.info("%d of %d runs to do (%s)", len(todo), len(paths), runs_dir)
    if not train_missing:
        if todo:
            logger.warning("reporting without %d missing run(s): %s", len(todo),
                           ", ".join(f"{job[0]} seed {job[1].seed}" for job in todo))
        todo = []
    if jobs <= 1:
        for job in todo:
            _run_job(job)
    else:
        with cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
            for path in ex.map(_run_job, todo):
                logger.info("done: %s", path)
    out = []
    for p in paths:
        if os.path.isfile(p):
            with open(p, encoding="utf-8") as fh:
                out.append(json.load(fh))
    if not out:
        raise FileNotFoundError(f"no finished runs of this setting in {runs_dir}; run without --report-only first")
    return out


# -------------------------------------------------------------------------------------------- results
def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def _pm(values: Sequence[float], digits: int = 2) -> str:
    if not len(values):
        return "—"
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def group_runs(records: Sequence[Mapping[str, object]]) -> Dict[str, Dict[int, Mapping[str, object]]]:
    """variant key → seed → record, in ``VARIANTS`` order."""
    out: Dict[str, Dict[int, Mapping[str, object]]] = {}
    for k in VARIANTS:
        runs = {int(r["seed"]): r for r in records if r["variant"] == k}
        if runs:
            out[k] = dict(sorted(runs.items()))
    return out


def study_table(groups: Mapping[str, Mapping[int, Mapping[str, object]]]) -> str:
    """Markdown: PSNR mean ± std over seeds per evaluation row and on average, and the paired Δ vs the baseline."""
    first = next(iter(next(iter(groups.values())).values()))
    labels = list(first["scores"])
    header = ["model", "seeds"] + labels + ["average", "Δ average vs bare backbone (paired)"]
    inp = first["input"]
    rows = [["degraded input", "—"] + [f"{inp[lb][0]:.2f}" for lb in labels]
            + [f"{np.mean([inp[lb][0] for lb in labels]):.2f}", "—"]]
    for k, runs in groups.items():
        avg = {s: float(np.mean([r["scores"][lb][0] for lb in labels])) for s, r in runs.items()}
        base = groups.get(BASELINE[VARIANTS[k].backbone])
        if base is None or k == BASELINE[VARIANTS[k].backbone]:
            delta = "—"
        else:
            common = [s for s in runs if s in base]
            diffs = [avg[s] - float(np.mean([base[s]["scores"][lb][0] for lb in labels])) for s in common]
            delta = ("+" if mean_std(diffs)[0] >= 0 else "") + _pm(diffs) if diffs else "—"
        rows.append([VARIANTS[k].label, str(len(runs))]
                    + [_pm([r["scores"][lb][0] for r in runs.values()]) for lb in labels]
                    + [_pm(list(avg.values())), delta])
    return markdown_table(header, rows)


def ssim_table(groups: Mapping[str, Mapping[int, Mapping[str, object]]]) -> str:
    """Markdown: SSIM mean over seeds per evaluation row."""
    first = next(iter(next(iter(groups.values())).values()))
    labels = list(first["scores"])
    inp = first["input"]
    rows = [["degraded input"] + [f"{inp[lb][1]:.3f}" for lb in labels]]
    rows += [[VARIANTS[k].label] + [f"{np.mean([r['scores'][lb][1] for r in runs.values()]):.3f}" for lb in labels]
             for k, runs in groups.items()]
    return markdown_table(["model"] + labels, rows)


def info_table(groups: Mapping[str, Mapping[int, Mapping[str, object]]]) -> str:
    """Markdown: parameters, training minutes per run and the final training loss."""
    rows = []
    for k, runs in groups.items():
        r0 = next(iter(runs.values()))
        rows.append([VARIANTS[k].label, f"{int(r0['parameters']):,}",
                     f"{np.mean([r['seconds'] for r in runs.values()]) / 60:.1f}",
                     _pm([r["train_loss"][-1] for r in runs.values()], 4)])
    return markdown_table(["model", "parameters", "training min / run", "final train loss (L1 + α·L_ddl)"], rows)


def mean_wrong_prompt(runs: Mapping[int, Mapping[str, object]]) -> Dict[str, object]:
    """The wrong-prompt matrix averaged over seeds (tensors, for ``matrix_markdown``)."""
    ws = [r["wrong_prompt"] for r in runs.values()]
    return {"rows": ws[0]["rows"], "cols": ws[0]["cols"],
            "psnr": torch.tensor([w["psnr"] for w in ws]).mean(0),
            "input_psnr": torch.tensor([w["input_psnr"] for w in ws]).mean(0)}


def convergence_lines(groups: Mapping[str, Mapping[int, Mapping[str, object]]]) -> List[str]:
    """Checks the reading rests on: every bare model above the input on every row; the curves' last gains."""
    lines = []
    for k, runs in groups.items():
        r0 = next(iter(runs.values()))
        labels = list(r0["scores"])
        margins = {lb: float(np.mean([r["scores"][lb][0] for r in runs.values()])) - r0["input"][lb][0]
                   for lb in labels}
        tail = [r["val_curve"][-1][1] - r["val_curve"][-2][1] for r in runs.values() if len(r["val_curve"]) > 1]
        lo = min(margins, key=margins.get)
        lines.append(f"- {VARIANTS[k].label}: smallest margin over the degraded input {margins[lo]:+.2f} dB "
                     f"({lo}); validation PSNR gain over the last curve interval {_pm(tail)} dB.")
    return lines


def plot_curves(groups: Mapping[str, Mapping[int, Mapping[str, object]]], path: str,
                keys: Sequence[str] = ("bare", "wide", "pip", "restormer", "pip_restormer")) -> Optional[str]:
    """PNG of validation PSNR vs step (mean over seeds, band: min–max) for ``keys``; None without matplotlib."""
    plt = pyplot("curve figure")
    if plt is None:
        return None
    from pip_adapter.utils.io import atomic_path

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for k in keys:
        if k not in groups:
            continue
        curves = [r["val_curve"] for r in groups[k].values() if r["val_curve"]]
        n = min(len(c) for c in curves)
        steps = [c[0] for c in curves[0][:n]]
        vals = np.array([[p[1] for p in c[:n]] for c in curves])
        style = "--" if VARIANTS[k].backbone == "restormer" else "-"
        line, = ax.plot(steps, vals.mean(0), style, marker="o", ms=3, label=f"{VARIANTS[k].label} ({len(curves)} seeds)")
        ax.fill_between(steps, vals.min(0), vals.max(0), color=line.get_color(), alpha=0.15)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation PSNR (dB, mean of 5 rows)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def render_study(args: argparse.Namespace, records: Sequence[Mapping[str, object]], figure: Optional[str],
                 figure_link: Optional[str]) -> str:
    """The quality section: command, settings, the mean ± std table, checks, training info, wrong-prompt matrix."""
    from pip_adapter.analysis.wrong_prompt import matrix_markdown

    groups = group_runs(records)
    r0 = records[0]
    cfg = RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in r0["config"].items()})
    data = r0["data"]
    wide = groups.get("wide")
    parts = [f"Command: `{command_line()}`", "",
             "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine_info().items()), "",
             f"Settings: NAFNet width {cfg.width}, enc {list(cfg.enc_blk_nums)} / mid {cfg.middle_blk_num} / "
             f"dec {list(cfg.dec_blk_nums)}"
             + (f" (widened baseline: width {equal_param_width(cfg)})" if wide else "")
             + f"; Restormer dim {cfg.restormer_dim}, blocks {list(cfg.restormer_blocks)}, heads "
             f"{list(cfg.restormer_heads)}, refinement {cfg.restormer_refinement}. {cfg.steps} steps, batch "
             f"{cfg.batch}, {cfg.patch}² patches drawn and degraded afresh every step from "
             f"{r0['n_train_images']} clean training photos (`{data['train_images']}`), Adam(0.9, 0.99) lr "
             f"{cfg.lr:g} cosine to {cfg.lr * 0.01:g}, L1 (+ {cfg.ddl_alpha:g}·L_ddl for PIP). Evaluation: "
             f"{r0['n_eval_images']} held-out images (`{data['eval_images']}`), centre-cropped to "
             f"≤{data['eval_size']}² (multiple of 16); validation curve on the same images cropped to "
             f"≤{data['val_size']}². Seeds: {sorted({int(r['seed']) for r in records})}."]
    asked = [(k, sd) for sd in getattr(args, "seed_list", []) for k in getattr(args, "keys", [])]
    have = {(r["variant"], int(r["seed"])) for r in records}
    missing = [f"{VARIANTS[k].label} seed {sd}" for k, sd in asked if (k, sd) not in have]
    if missing:
        parts += ["", f"Not run (the study was stopped before them): {', '.join(missing)}."]
    parts += [""] + [f"- {n}" for n in getattr(args, "note", [])]
    parts += ["", "PSNR (dB), mean ± std over seeds; Δ is the per-seed difference to the bare backbone of the same "
              "seed (same data, same backbone initialisation):", "", study_table(groups), "",
              "SSIM (mean over seeds):", "", ssim_table(groups), "", "Checks:", ""] + convergence_lines(groups)
    parts += ["", info_table(groups)]
    if figure_link:
        parts += ["", f"![validation PSNR vs step]({figure_link})"]
    if "pip" in groups and all("wrong_prompt" in r for r in groups["pip"].values()):
        parts += ["", f"Wrong-prompt matrix of PIP-NAFNet, mean over {len(groups['pip'])} seeds (PSNR dB; rows: "
                  "degradation, columns: ω given; best in bold):", "", matrix_markdown(mean_wrong_prompt(groups["pip"]))]
    return "\n".join(parts) + "\n"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options of this script."""
    d, sd = RunConfig(), StudyData()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eval-images", default=sd.eval_images,
                   help=f"folder of held-out clean images (default: {sd.eval_images}, written on first use "
                        "from scikit-image photos that the built-in training set does not use)")
    p.add_argument("--train-images", default=sd.train_images,
                   help=f"folder of clean training photos; 'builtin' for the built-in data's 7 photos (default: "
                        f"{sd.train_images}, written on first use from the built-in photos and the Debian photos "
                        "of `apt-get install mate-backgrounds lomiri-wallpapers-16.04`)")
    p.add_argument("--variants", default="bare,pip",
                   help=f"comma-separated models to train, of: {', '.join(VARIANTS)} (default: bare,pip)")
    p.add_argument("--ablations", action="store_true", help="add the three ablations (d_only, b_only, no_selective)")
    p.add_argument("--study", action="store_true", help="train every variant (the full study)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (processes)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: report the runs of this setting that --runs-dir already holds")
    p.add_argument("--runs-dir", default=os.path.join(RESULTS_DIR, "quality_runs"),
                   help="where each run's JSON goes; existing runs of the same setting are reused")
    p.add_argument("--figure", default=None,
                   help="curve PNG (default: bench_results/figures/quality_curves.png, or "
                        "docs/figures/quality_curves.png with --update-docs)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--patch", type=int, default=d.patch)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--eval-size", type=int, default=sd.eval_size, help="centre-crop evaluation images to at most this")
    p.add_argument("--val-size", type=int, default=sd.val_size, help="centre crop of the validation-curve images")
    p.add_argument("--curve-points", type=int, default=sd.curve_points, help="validation points per run")
    p.add_argument("--max-eval-images", type=int, default=None, help="use only the first N evaluation images")
    p.add_argument("--save-pip", default=None, help="export the first seed's PIP-NAFNet here (.safetensors)")
    p.add_argument("--note", action="append", default=[], help="a line to add to the report (repeatable)")
    add_output_args(p)
    args = p.parse_args(argv)
    keys = list(VARIANTS) if args.study else [k.strip() for k in args.variants.split(",") if k.strip()]
    if args.ablations:
        keys += [k for k in ABLATIONS if k not in keys]
    bad = [k for k in keys if k not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    args.keys = [k for k in VARIANTS if k in keys]
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not args.seed_list:
        p.error("--seeds is empty")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Train the compared models (resuming from ``--runs-dir``), and write the quality section and its figure."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = RunConfig(width=args.width, steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr)
    data = StudyData(train_images=args.train_images, eval_images=args.eval_images, eval_size=args.eval_size,
                     val_size=args.val_size, max_eval_images=args.max_eval_images, curve_points=args.curve_points)
    records = run_study(args.keys, args.seed_list, cfg, data, args.runs_dir, jobs=args.jobs, threads=args.threads,
                        save_pip=args.save_pip, train_missing=not args.report_only)
    figure = args.figure or os.path.join("docs" if args.update_docs else RESULTS_DIR, "figures", "quality_curves.png")
    if args.update_docs and not args.figure:
        figure = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), figure)
    made = plot_curves(group_runs(records), figure)
    link = None
    if made:
        doc = os.path.abspath(os.path.dirname(args.out)) if args.out else (
            os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs") if args.update_docs
            else os.path.abspath(RESULTS_DIR))
        link = os.path.relpath(os.path.abspath(made), doc)
    text = render_study(args, records, made, link)
    write_section(args, "quality_small", text, title="Small-scale quality: NAFNet vs. PIP-NAFNet (three tasks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
