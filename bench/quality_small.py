"""Small-scale quality: a tiny NAFNet vs. the same NAFNet with PIP, trained identically on three tasks.

Run from the repository root (default settings: under an hour on 2 CPU cores; --ablations makes it about 3× longer)::

    python bench/quality_small.py --eval-images DIR [--train-images DIR] [--ablations]

Protocol (everything identical between the runs except the PIP modules):

* clean training images (``--train-images``; default: the built-in data's clean training images) are cut
  into a fixed pool of random ``--patch`` crops, each degraded once with the registered synthesisers
  (noise with σ drawn from 15/25/50, rain, haze; equal thirds), from one seed;
* the batch order is one seeded permutation stream, the same for every run; the backbone is built from the
  same seed (so bare and PIP runs start from identical backbone weights); same optimiser (Adam β 0.9/0.99),
  same cosine schedule, same number of steps; loss L1 (+ α·L_ddl, α 0.002, for PIP models, spec §4);
* evaluation: every clean image of ``--eval-images`` (centre-cropped to a multiple of 16, at most
  ``--eval-size``) is degraded with the same synthesisers from a fixed seed: noise σ15/25/50, rain, haze.
  PSNR/SSIM on RGB in [0, 1], no border crop, scikit-image SSIM (spec §8).
* the wrong-prompt matrix restores every evaluation task with every ω; the ablations (``--ablations``) train
  PIP with only d (``use_basic_prompt=False``), only B (``use_degradation_prompt=False``) and without the
  selective top-m P2F (``selective=False``).
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import add_output_args, command_line, machine_info, markdown_table, write_section  # noqa: E402

logger = logging.getLogger("bench.quality_small")

TASK_NAMES = ("noise", "rain", "haze")
# evaluation rows: (label, degradation type, synthesiser parameters)
EVAL_TASKS: Tuple[Tuple[str, str, Dict[str, float]], ...] = (
    ("noise σ15", "noise", {"sigma": 15}), ("noise σ25", "noise", {"sigma": 25}),
    ("noise σ50", "noise", {"sigma": 50}), ("rain", "rain", {}), ("haze", "haze", {}))
NOISE_SIGMAS = (15, 25, 50)
ABLATIONS: Dict[str, Dict[str, bool]] = {
    "PIP, d only (no B)": {"use_basic_prompt": False},
    "PIP, B only (no d)": {"use_degradation_prompt": False},
    "PIP, no selective P2F": {"selective": False},
}


# ----------------------------------------------------------------------------------------------- data
def list_images(folder: str) -> List[str]:
    """Image files of ``folder`` (recursive), sorted; a missing or empty folder is a clear error."""
    from pip_adapter.restore.image_io import is_image_file

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder not found: {folder}")
    out = sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if is_image_file(f))
    if not out:
        raise FileNotFoundError(f"no image files in {folder}")
    return out


def read_rgb_uint8(path: str) -> np.ndarray:
    """An image file as uint8 H×W×3 RGB (grey is replicated, alpha dropped)."""
    from pip_adapter.restore.image_io import read_image

    arr, _ = read_image(path)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
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


@dataclass
class Pool:
    """Degraded training patches (uint8, N×3×P×P), their clean targets and task labels."""
    lq: torch.Tensor
    gt: torch.Tensor
    labels: torch.Tensor

    def batch(self, idx: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Float batch for the given pool indices."""
        return self.lq[idx].float() / 255.0, self.gt[idx].float() / 255.0, self.labels[idx]


def build_pool(images: Sequence[np.ndarray], size: int, patch: int, seed: int,
               tasks: Sequence[str] = TASK_NAMES) -> Pool:
    """``size`` random crops with random flips, equal thirds per task, each degraded once (seeded)."""
    if not images:
        raise ValueError("build_pool needs at least one clean training image")
    rng = np.random.default_rng(seed)
    lq, gt, labels = [], [], []
    for i in range(size):
        t = i % len(tasks)
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
        crop = np.ascontiguousarray(crop)
        params = {"sigma": float(NOISE_SIGMAS[int(rng.integers(len(NOISE_SIGMAS)))])} if tasks[t] == "noise" else {}
        lq.append(torch.from_numpy(degrade(crop, tasks[t], rng, **params)).permute(2, 0, 1))
        gt.append(torch.from_numpy(crop).permute(2, 0, 1))
        labels.append(t)
    return Pool(torch.stack(lq), torch.stack(gt), torch.tensor(labels))


def batch_order(pool_size: int, steps: int, batch: int, seed: int) -> torch.Tensor:
    """steps×batch pool indices: concatenated seeded permutations (every run uses the same order)."""
    g = torch.Generator().manual_seed(seed)
    need = steps * batch
    perms = [torch.randperm(pool_size, generator=g) for _ in range(math.ceil(need / pool_size))]
    return torch.cat(perms)[:need].view(steps, batch)


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


def build_eval_set(images: Sequence[np.ndarray], seed: int,
                   tasks: Sequence[Tuple[str, str, Mapping[str, float]]] = EVAL_TASKS,
                   ) -> Dict[str, List[Tuple[torch.Tensor, torch.Tensor]]]:
    """Per evaluation row: (lq, gt) 3×H×W pairs, degraded from a fixed seed (one stream per row)."""
    out: Dict[str, List[Tuple[torch.Tensor, torch.Tensor]]] = {}
    for r, (label, task, params) in enumerate(tasks):
        rng = np.random.default_rng([seed, r])
        out[label] = [(to_tensor(degrade(img, task, rng, **params)), to_tensor(img)) for img in images]
    return out


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


def build_model(cfg: RunConfig, pip: Optional[Mapping[str, bool]]) -> nn.Module:
    """The tiny NAFNet from ``cfg.seed``; wrapped with PIP (with ``pip`` options) unless ``pip`` is None."""
    from pip_adapter.backbones import NAFNet

    torch.manual_seed(cfg.seed)
    backbone = dict(img_channel=3, width=cfg.width, middle_blk_num=cfg.middle_blk_num,
                    enc_blk_nums=list(cfg.enc_blk_nums), dec_blk_nums=list(cfg.dec_blk_nums))
    net = NAFNet(**backbone)
    if pip is None:
        return net
    from pip_adapter.wrap import wrap_with_pip

    torch.manual_seed(cfg.seed + 1)
    n = len(cfg.enc_blk_nums)
    return wrap_with_pip(net, degradations=list(cfg.tasks), prompt_dims=list(cfg.prompt_dims[:n]),
                         prompt_sizes=list(cfg.prompt_sizes[:n]), backbone_config={"type": "NAFNet", **backbone},
                         **dict(pip))


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


def train(model: nn.Module, pool: Pool, order: torch.Tensor, cfg: RunConfig,
          log_every: int = 100) -> Dict[str, object]:
    """Train in place with the shared protocol; returns the loss curve and the wall time."""
    from pip_adapter.modules.ddl_loss import DirectionalDecoupledLoss

    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, order.shape[0]), eta_min=cfg.lr * 0.01)
    ddl = DirectionalDecoupledLoss(loss_weight=cfg.ddl_alpha) if is_pip(model) else None
    levels = list(model.pip_levels) if is_pip(model) else []
    curve: List[float] = []
    run = 0.0
    t0 = time.time()
    for step, idx in enumerate(order):
        lq, gt, labels = pool.batch(idx)
        loss = torch.nn.functional.l1_loss(forward(model, lq, labels), gt)
        if ddl is not None:
            prompts = [lv.all_degradation_prompts() for lv in levels if lv.all_degradation_prompts().shape[0] > 1]
            if prompts:
                loss = loss + ddl(prompts)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run += float(loss.detach())
        if (step + 1) % log_every == 0 or step + 1 == order.shape[0]:
            n = (step % log_every) + 1
            curve.append(run / n)
            logger.info("step %d/%d loss %.4f (%.1f s)", step + 1, order.shape[0], run / n, time.time() - t0)
            run = 0.0
    model.eval()
    return {"curve": curve, "seconds": time.time() - t0}


@torch.no_grad()
def evaluate(model: nn.Module, eval_set: Mapping[str, List[Tuple[torch.Tensor, torch.Tensor]]],
             tasks: Sequence[str] = TASK_NAMES,
             rows: Sequence[Tuple[str, str, Mapping[str, float]]] = EVAL_TASKS) -> Dict[str, Tuple[float, float]]:
    """Mean PSNR/SSIM per evaluation row (PIP models get the row's true type as ω)."""
    from pip_adapter.restore.restorer import image_metrics

    model.eval()
    kind = {label: task for label, task, _ in rows}
    out = {}
    for label, pairs in eval_set.items():
        scores = []
        for lq, gt in pairs:
            lab = torch.tensor([tasks.index(kind[label])])
            pred = forward(model, lq[None], lab)[0].clamp(0, 1)
            scores.append(image_metrics(pred.permute(1, 2, 0).numpy(), gt.permute(1, 2, 0).numpy()))
        out[label] = (float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores])))
    return out


def input_scores(eval_set: Mapping[str, List[Tuple[torch.Tensor, torch.Tensor]]]) -> Dict[str, Tuple[float, float]]:
    """PSNR/SSIM of the degraded inputs themselves (the floor every model should beat)."""
    from pip_adapter.restore.restorer import image_metrics

    out = {}
    for label, pairs in eval_set.items():
        s = [image_metrics(lq.permute(1, 2, 0).numpy(), gt.permute(1, 2, 0).numpy()) for lq, gt in pairs]
        out[label] = (float(np.mean([a for a, _ in s])), float(np.mean([b for _, b in s])))
    return out


def wrong_prompt(model: nn.Module, eval_set: Mapping[str, List[Tuple[torch.Tensor, torch.Tensor]]],
                 tasks: Sequence[str] = TASK_NAMES) -> Dict[str, object]:
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


# -------------------------------------------------------------------------------------------- results
def quality_table(results: Mapping[str, Mapping[str, Tuple[float, float]]], baseline: str) -> str:
    """Markdown: one row per model, PSNR/SSIM per evaluation row and the average; Δ vs ``baseline``."""
    models = list(results)
    labels = list(next(iter(results.values())))
    header = ["model"] + labels + ["average", f"Δ avg PSNR vs {baseline}"]
    base_avg = float(np.mean([results[baseline][lb][0] for lb in labels])) if baseline in results else None
    rows = []
    for m in models:
        avg_p = float(np.mean([results[m][lb][0] for lb in labels]))
        avg_s = float(np.mean([results[m][lb][1] for lb in labels]))
        delta = "—" if base_avg is None or m == baseline else f"{avg_p - base_avg:+.2f}"
        rows.append([m] + [f"{results[m][lb][0]:.2f} / {results[m][lb][1]:.3f}" for lb in labels]
                    + [f"{avg_p:.2f} / {avg_s:.3f}", delta])
    return markdown_table(header, rows)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options of this script."""
    d = RunConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--eval-images", default="datasets/quality_eval",
                   help="folder of held-out clean images (default: datasets/quality_eval, written on first use "
                        "from scikit-image photos that the built-in training set does not use)")
    p.add_argument("--train-images", default=None,
                   help="folder of clean training images (default: the built-in data's training photos)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--patch", type=int, default=d.patch)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--pool", type=int, default=1536, help="number of degraded training patches")
    p.add_argument("--eval-size", type=int, default=256, help="centre-crop evaluation images to at most this")
    p.add_argument("--max-eval-images", type=int, default=None, help="use only the first N evaluation images")
    p.add_argument("--ablations", action="store_true", help="also train the three ablation variants")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--save-pip", default=None, help="export the trained PIP-NAFNet here (.safetensors)")
    p.add_argument("--note", action="append", default=[], help="a line to add to the report (repeatable)")
    add_output_args(p)
    return p.parse_args(argv)


def builtin_train_photos(short_side: int = 256) -> List[np.ndarray]:
    """The built-in data's training photos (scikit-image samples), shorter side resized like prepare_builtin."""
    from pip_adapter.data.builtin import TRAIN_IMAGES, _resize_short, load_photo

    return [_resize_short(load_photo(n), short_side) for n in TRAIN_IMAGES]


# held out from the built-in training photos: its two validation photos and grey natural photos (as RGB)
HELDOUT_PHOTOS = ("chelsea.png", "rocket.jpg", "camera.png", "coins.png", "moon.png", "brick.png", "gravel.png",
                  "grass.png")


def make_eval_folder(out_dir: str, short_side: int = 256) -> str:
    """Write held-out clean evaluation images (never in the built-in training set) to ``out_dir`` as PNG."""
    import cv2

    from pip_adapter.data.builtin import TRAIN_IMAGES, _resize_short, skimage_data_dir

    os.makedirs(out_dir, exist_ok=True)
    for name in HELDOUT_PHOTOS:
        if name in TRAIN_IMAGES:
            raise ValueError(f"{name} is a built-in training photo; it cannot be held out")
        img = read_rgb_uint8(os.path.join(skimage_data_dir(), name))
        img = _resize_short(img, short_side)
        dst = os.path.join(out_dir, os.path.splitext(name)[0] + ".png")
        cv2.imwrite(dst, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return out_dir


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Train the compared models, evaluate them, and write the quality section of BENCHMARKS.md."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = RunConfig(width=args.width, steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr,
                    seed=args.seed)
    t_start = time.time()
    if args.train_images:
        train_imgs = [read_rgb_uint8(p) for p in list_images(args.train_images)]
    else:
        train_imgs = builtin_train_photos()
    if not os.path.isdir(args.eval_images) and args.eval_images == "datasets/quality_eval":
        make_eval_folder(args.eval_images)
    eval_paths = list_images(args.eval_images)[:args.max_eval_images]
    eval_imgs = [center_crop_multiple(read_rgb_uint8(p), 16, args.eval_size) for p in eval_paths]
    logger.info("%d training images, %d evaluation images", len(train_imgs), len(eval_imgs))
    pool = build_pool(train_imgs, args.pool, cfg.patch, cfg.seed)
    order = batch_order(len(pool.labels), cfg.steps, cfg.batch, cfg.seed)
    eval_set = build_eval_set(eval_imgs, cfg.seed + 1000)

    variants: Dict[str, Optional[Dict[str, bool]]] = {"NAFNet (bare)": None, "PIP-NAFNet": {}}
    if args.ablations:
        variants.update(ABLATIONS)
    results: Dict[str, Dict[str, Tuple[float, float]]] = {"degraded input": input_scores(eval_set)}
    info_rows = []
    wrong = None
    for name, opts in variants.items():
        model = build_model(cfg, opts)
        n_params = sum(p.numel() for p in model.parameters())
        logger.info("training %s (%d parameters)", name, n_params)
        tr = train(model, pool, order, cfg)
        results[name] = evaluate(model, eval_set)
        info_rows.append([name, f"{n_params:,}", f"{tr['seconds'] / 60:.1f}", f"{tr['curve'][-1]:.4f}"])
        if name == "PIP-NAFNet":
            wrong = wrong_prompt(model, eval_set)
            if args.save_pip:
                save_pip_checkpoint(model, args.save_pip)
    text = render(args, cfg, results, info_rows, wrong, len(train_imgs), len(eval_imgs), time.time() - t_start)
    write_section(args, "quality_small", text, title="Small-scale quality: NAFNet vs. PIP-NAFNet (three tasks)")
    return 0


def render(args: argparse.Namespace, cfg: RunConfig, results: Mapping[str, Mapping[str, Tuple[float, float]]],
           info_rows: Sequence[Sequence[str]], wrong: Optional[Mapping[str, object]], n_train: int, n_eval: int,
           seconds: float) -> str:
    """The quality section: command, settings, the PSNR/SSIM table, training info, wrong-prompt matrix."""
    from pip_adapter.analysis.wrong_prompt import matrix_markdown

    parts = [f"Command: `{command_line()}`", "",
             "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine_info().items()), "",
             f"Settings: NAFNet width {cfg.width}, enc {list(cfg.enc_blk_nums)} / mid {cfg.middle_blk_num} / "
             f"dec {list(cfg.dec_blk_nums)}; {cfg.steps} steps, batch {cfg.batch}, {cfg.patch}² patches from a pool "
             f"of {args.pool} ({n_train} clean training photos), Adam(0.9, 0.99) lr {cfg.lr:g} cosine to "
             f"{cfg.lr * 0.01:g}, L1 (+ {cfg.ddl_alpha:g}·L_ddl for PIP), seed {cfg.seed}. Evaluation: {n_eval} "
             f"held-out images from `{args.eval_images}`, centre-cropped to ≤{args.eval_size}² (multiple of 16). "
             f"Total wall time {seconds / 60:.1f} min."]
    parts += [""] + [f"- {n}" for n in args.note]
    parts += ["", "PSNR (dB) / SSIM per task:", "", quality_table(results, "NAFNet (bare)"), "",
              markdown_table(["model", "parameters", "training (min)", "final train loss"], info_rows)]
    if wrong is not None:
        parts += ["", "Wrong-prompt matrix of PIP-NAFNet (PSNR dB; rows: degradation, columns: ω given; best in bold):",
                  "", matrix_markdown(wrong)]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
