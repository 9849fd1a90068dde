"""Where do degradation-aware prompts pay off? PIP against controls that remove the information, not the parameters.

Run from the repository root (each command trains what its runs directory lacks, then writes the report)::

    python bench/quality_prompts.py --steps 800 --seeds 0,1,2,3 --no-report        # train (resumes; hours on 1 core)
    python bench/quality_prompts.py --steps 800 --seeds 0,1,2,3 --report-only --update-docs   # the report

One training per (variant, seed) serves all three experiments, so every variant sees exactly the same batches:

* **Sample kinds.** Degradation types in physical order haze → rain → low light → blur → noise (ω has one column
  per type, in that order). A batch cycles through the training kinds: the five single types (E1); the pairs
  haze+rain, haze+noise, rain+noise, blur+noise (E2); and the *intent* pair (E3): a dark image (the low-light
  synthesiser without its sensor noise) with Gaussian noise on top, whose target depends on ω — ω = noise → the
  dark clean image, ω = {low light, noise} → the bright clean image. In general ω says which degradations to
  remove and the target keeps the others. Two triples (haze+rain+noise, haze+blur+noise) are never trained on.
* **Variants** (``VARIANTS``): PIP-NAFNet with the true ω; the same model with ω fixed to the uniform 1/T for every
  sample, in training and evaluation (*constant ω*: same parameters and FLOPs, no information); B only (no
  degradation prompts, so ω has no effect); the bare NAFNet; the bare NAFNet widened to PIP's parameter count;
  a NAFNet given ω as T extra constant input channels (*ω as input*: conditioning without PIP's machinery); and,
  on request, PIP / B only with small prompts (``--small-prompt-dims``).
* **Protocol.** quality_small's data (fresh random crops of the training photos, degraded afresh at every step from
  a generator seeded with (seed, step); the held-out evaluation photos never trained on), its model construction
  (bare and PIP runs of a seed start from the same backbone weights) and its optimiser (Adam 0.9/0.99, cosine to
  1 %, L1 + α·L_ddl for models with degradation prompts). Evaluation: ``--eval-crops`` random ``--eval-crop``²
  crops per held-out photo, degraded from a fixed seed; PSNR on RGB in [0, 1].
* **Train vs eval mode.** After training, the L1 of every variant on a fixed set of training batches, per kind, is
  computed in train mode and in eval mode (no gradient in either), next to the running training loss of the last
  10 % of steps, per kind.

Each (variant, seed) run is saved as JSON in ``--runs-dir`` (a re-launch skips finished runs); ``--report-only``
builds the report from whatever is there and lists what is missing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (RESULTS_DIR, add_output_args, command_line, machine_info, markdown_table,  # noqa: E402
                          pyplot, write_section)
from bench.quality_small import (Optimiser, RunConfig, StudyData, build_model, degrade,  # noqa: E402
                                 equal_param_width, load_eval_images, load_train_images, mean_std, n_params,
                                 random_crop, to_tensor)

logger = logging.getLogger("bench.quality_prompts")

# ω columns, in the physical order the composites are applied in
TYPES = ("haze", "rain", "low_light", "blur", "noise")
TRAIN_SIGMAS = (15, 25, 50)      # single-type noise
COMPOSITE_SIGMAS = (15, 25)      # noise inside composites and the intent pair
EVAL_SIGMA_SINGLE = 25
EVAL_SIGMA_COMPOSITE = 15
GLOBAL_GROUP = ("haze", "low_light", "blur")


@dataclass(frozen=True)
class Kind:
    """One kind of sample: the degradations applied (physical order), the ones ω asks to remove, the target.

    ``target`` is "clean" or "dark" (the image darkened by the noise-free low-light model: low light kept).
    """
    name: str
    applied: Tuple[str, ...]
    removed: Tuple[str, ...]
    target: str = "clean"


def _k(name: str, applied: Sequence[str], removed: Optional[Sequence[str]] = None, target: str = "clean") -> Kind:
    return Kind(name, tuple(applied), tuple(applied if removed is None else removed), target)


SINGLES = tuple(_k(t, [t]) for t in ("noise", "rain", "haze", "low_light", "blur"))
PAIRS = (_k("haze+rain", ["haze", "rain"]), _k("haze+noise", ["haze", "noise"]),
         _k("rain+noise", ["rain", "noise"]), _k("blur+noise", ["blur", "noise"]))
INTENT_DARK = _k("intent: ω=noise → dark", ["low_light", "noise"], ["noise"], "dark")
INTENT_BRIGHT = _k("intent: ω=low_light+noise → bright", ["low_light", "noise"])
TRIPLES = (_k("haze+rain+noise", ["haze", "rain", "noise"]), _k("haze+blur+noise", ["haze", "blur", "noise"]))
TRAIN_KINDS = SINGLES + PAIRS + (INTENT_DARK, INTENT_BRIGHT)
EVAL_KINDS = SINGLES + PAIRS + TRIPLES + (INTENT_DARK, INTENT_BRIGHT)


def omega_of(kind: Kind) -> torch.Tensor:
    """The multi-hot ω (length T, ``TYPES`` order) of a kind: 1 for every degradation to remove."""
    return torch.tensor([1.0 if t in kind.removed else 0.0 for t in TYPES])


def synthesize(clean: np.ndarray, kind: Kind, rng: np.random.Generator, sigma: float
               ) -> Tuple[np.ndarray, np.ndarray]:
    """(degraded, target) uint8 images of ``kind`` from a clean uint8 crop.

    In composites the low-light step is the synthesiser without sensor noise (so the dark image kept by the
    intent target is clean, and the noise is the explicit noise step); the single low-light kind keeps it.
    """
    x = clean
    dark = None
    composite = len(kind.applied) > 1
    for t in TYPES:
        if t not in kind.applied:
            continue
        if t == "noise":
            x = degrade(x, "noise", rng, sigma=sigma)
        elif t == "low_light" and composite:
            x = degrade(x, "low_light", rng, photons=1e9, read_noise=0.0)
            dark = x
        else:
            x = degrade(x, t, rng)
    if kind.target == "dark":
        if dark is None:
            raise ValueError(f"kind {kind.name!r}: a dark target needs low_light among the applied degradations")
        return x, dark
    return x, clean


def sample_batch(images: Sequence[np.ndarray], step: int, seed: int, batch: int, patch: int,
                 kinds: Sequence[Kind] = TRAIN_KINDS) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch ``step`` of seed ``seed`` (the same for every variant): degraded, target, kind indices.

    Kinds cycle over the batches, so every kind gets the same share of the training samples.
    """
    if not images:
        raise ValueError("sample_batch needs at least one clean training image")
    rng = np.random.default_rng([seed, step, 26])
    lq, gt, idx = [], [], []
    for i in range(batch):
        k = (step * batch + i) % len(kinds)
        crop = random_crop(images, rng, patch)
        sig = TRAIN_SIGMAS if kinds[k].applied == ("noise",) else COMPOSITE_SIGMAS
        a, b = synthesize(crop, kinds[k], rng, float(sig[int(rng.integers(len(sig)))]))
        lq.append(to_tensor(a))
        gt.append(to_tensor(b))
        idx.append(k)
    return torch.stack(lq), torch.stack(gt), torch.tensor(idx)


EvalSet = Dict[str, Tuple[torch.Tensor, torch.Tensor]]


def build_eval_set(images: Sequence[np.ndarray], crop: int, crops_per_image: int, seed: int = 1000,
                   kinds: Sequence[Kind] = EVAL_KINDS) -> EvalSet:
    """Per kind: (degraded, target) N×3×crop×crop stacks; the same clean crops for every kind, fixed seeds."""
    rng = np.random.default_rng([seed, 0])
    clean = []
    for img in images:
        h, w = img.shape[:2]
        if h < crop or w < crop:
            raise ValueError(f"evaluation images must be at least {crop}×{crop} (--eval-crop), got {h}×{w}")
        for _ in range(crops_per_image):
            y, x = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
            clean.append(np.ascontiguousarray(img[y:y + crop, x:x + crop]))
    out: EvalSet = {}
    streams = list(dict.fromkeys(k.applied for k in kinds))
    for kind in kinds:
        # one stream per degradation chain: the two intent rows get the very same degraded inputs
        krng = np.random.default_rng([seed, streams.index(kind.applied) + 1])
        sigma = EVAL_SIGMA_SINGLE if kind.applied == ("noise",) else EVAL_SIGMA_COMPOSITE
        pairs = [synthesize(c, kind, krng, sigma) for c in clean]
        out[kind.name] = (torch.stack([to_tensor(a) for a, _ in pairs]), torch.stack([to_tensor(b) for _, b in pairs]))
    return out


# --------------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class Variant:
    """A compared model: ``model`` is pip / bare / wide / omega_in; ``omega`` is how PIP gets ω (true / const)."""
    label: str
    model: str
    pip: Optional[Mapping[str, bool]] = None
    omega: str = "true"
    small: bool = False


VARIANTS: Dict[str, Variant] = {
    "pip": Variant("PIP-NAFNet (true ω)", "pip", {}),
    "const": Variant("PIP-NAFNet, constant ω = 1/T", "pip", {}, omega="const"),
    "b_only": Variant("PIP, B only (no d)", "pip", {"use_degradation_prompt": False}),
    "omega_in": Variant("NAFNet + ω as input channels", "omega_in"),
    "bare": Variant("NAFNet (bare)", "bare"),
    "wide": Variant("NAFNet widened to PIP's parameters", "wide"),
    "pip_small": Variant("small PIP (true ω)", "pip", {}, small=True),
    "b_only_small": Variant("small PIP, B only", "pip", {"use_degradation_prompt": False}, small=True),
}
# launch order: the verdict pairs first, seed by seed
PRIORITY = ("pip", "const", "omega_in", "b_only", "bare", "wide", "pip_small", "b_only_small")


class OmegaInputNAFNet(nn.Module):
    """A NAFNet whose first convolution also sees ω as T constant input channels (conditioning without PIP)."""

    def __init__(self, net: nn.Module, num_types: int) -> None:
        super().__init__()
        self.net = net
        self.num_types = num_types
        old = net.intro
        self.intro = nn.Conv2d(old.in_channels + num_types, old.out_channels, 3, padding=1, bias=True)
        with torch.no_grad():  # the image part starts as the bare NAFNet's intro (same seed, same start)
            self.intro.weight.zero_()
            self.intro.weight[:, :old.in_channels].copy_(old.weight)
            self.intro.bias.copy_(old.bias)
        self._omega: Optional[torch.Tensor] = None
        net.intro = _OmegaIntro(self)

    def forward(self, x: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        """Restore ``x`` (B×3×H×W) given ``omega`` (B×T)."""
        if omega.shape != (x.shape[0], self.num_types):
            raise ValueError(f"omega must be B×T = {x.shape[0]}×{self.num_types}, got {tuple(omega.shape)}")
        self._omega = omega.to(x)
        try:
            return self.net(x)
        finally:
            self._omega = None


class _OmegaIntro(nn.Module):
    """Stands in for NAFNet's intro conv: concatenates the owner's current ω as constant channels."""

    def __init__(self, owner: OmegaInputNAFNet) -> None:
        super().__init__()
        object.__setattr__(self, "_owner", owner)  # not a submodule: no parameter or state-dict cycle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self._owner._omega
        planes = w[:, :, None, None].expand(-1, -1, x.shape[-2], x.shape[-1])
        return self._owner.intro(torch.cat([x, planes], dim=1))


def study_config(cfg: RunConfig, small: bool, small_dims: Sequence[int]) -> RunConfig:
    """``cfg`` with the small prompt dims for the small variants."""
    return replace(cfg, prompt_dims=tuple(small_dims)) if small else cfg


def build_variant(key: str, cfg: RunConfig, small_dims: Sequence[int] = (8, 8, 8)) -> nn.Module:
    """The model of variant ``key`` from ``cfg.seed`` (every model of a seed starts from the same backbone)."""
    if key not in VARIANTS:
        raise ValueError(f"unknown variant {key!r}; expected one of {', '.join(VARIANTS)}")
    v = VARIANTS[key]
    if v.model == "pip":
        return build_model(study_config(cfg, v.small, small_dims), v.pip)
    if v.model == "wide":
        return build_model(cfg, None, width=equal_param_width(cfg))
    net = build_model(cfg, None)
    return OmegaInputNAFNet(net, len(TYPES)) if v.model == "omega_in" else net


def omega_for(key: str, omega: torch.Tensor) -> torch.Tensor:
    """The ω a variant is given: the true multi-hot ω, or the uniform 1/T for the constant-ω control."""
    if VARIANTS[key].omega == "const":
        return torch.full_like(omega, 1.0 / omega.shape[1])
    return omega


def run_model(key: str, model: nn.Module, x: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Forward of any variant: bare models ignore ω."""
    if VARIANTS[key].model in ("bare", "wide"):
        return model(x)
    return model(x, omega_for(key, omega))


# ---------------------------------------------------------------------------------------------- train
def train(key: str, model: nn.Module, images: Sequence[np.ndarray], cfg: RunConfig, log_every: int = 100
          ) -> Dict[str, object]:
    """Train in place (quality_small's optimiser and loss); the loss curve and the per-kind loss of the last 10 %."""
    omegas = torch.stack([omega_of(k) for k in TRAIN_KINDS])
    model.train()
    optimiser = Optimiser(model, cfg)
    tail_from = cfg.steps - max(1, cfg.steps // 10)
    tail_sum = torch.zeros(len(TRAIN_KINDS), dtype=torch.float64)
    tail_n = torch.zeros(len(TRAIN_KINDS), dtype=torch.float64)
    curve: List[Tuple[int, float]] = []
    run, t0 = 0.0, time.time()
    for step in range(cfg.steps):
        lq, gt, idx = sample_batch(images, step, cfg.seed, cfg.batch, cfg.patch)
        per = (run_model(key, model, lq, omegas[idx]) - gt).abs().mean(dim=(1, 2, 3))
        run += optimiser.step(per.mean())
        if step >= tail_from:
            tail_sum.index_add_(0, idx, per.detach().double())
            tail_n.index_add_(0, idx, torch.ones(len(idx), dtype=torch.float64))
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            n = (step % log_every) + 1
            curve.append((step + 1, run / n))
            logger.info("step %d/%d loss %.4f (%.1f s)", step + 1, cfg.steps, run / n, time.time() - t0)
            run = 0.0
    model.eval()
    tail = {k.name: float(tail_sum[i] / tail_n[i]) for i, k in enumerate(TRAIN_KINDS) if tail_n[i] > 0}
    return {"curve": curve, "tail_loss": tail, "seconds": time.time() - t0}


@torch.no_grad()
def mode_check(key: str, model: nn.Module, images: Sequence[np.ndarray], cfg: RunConfig, batches: int = 4
               ) -> Dict[str, Dict[str, float]]:
    """L1 per kind on fixed training batches, in train mode and in eval mode (same weights, no gradient)."""
    omegas = torch.stack([omega_of(k) for k in TRAIN_KINDS])
    out: Dict[str, Dict[str, float]] = {}
    for mode in ("train", "eval"):
        model.train(mode == "train")
        s = torch.zeros(len(TRAIN_KINDS), dtype=torch.float64)
        n = torch.zeros(len(TRAIN_KINDS), dtype=torch.float64)
        for b in range(batches):
            lq, gt, idx = sample_batch(images, cfg.steps - batches + b, cfg.seed, cfg.batch, cfg.patch)
            per = (run_model(key, model, lq, omegas[idx]) - gt).abs().mean(dim=(1, 2, 3))
            s.index_add_(0, idx, per.double())
            n.index_add_(0, idx, torch.ones(len(idx), dtype=torch.float64))
        out[mode] = {k.name: float(s[i] / n[i]) for i, k in enumerate(TRAIN_KINDS) if n[i] > 0}
    model.eval()
    return out


@torch.no_grad()
def evaluate(key: str, model: nn.Module, eval_set: EvalSet, chunk: int = 16) -> Dict[str, Dict[str, float]]:
    """Per evaluation kind: PSNR (mean over crops) and L1; for the intent input also the PSNR to the other target."""
    from pip_adapter.utils.metrics import psnr

    model.eval()
    out: Dict[str, Dict[str, float]] = {}
    by_name = {k.name: k for k in EVAL_KINDS}
    for name, (lq, gt) in eval_set.items():
        w = omega_of(by_name[name])
        preds = torch.cat([run_model(key, model, lq[i:i + chunk], w.expand(len(lq[i:i + chunk]), -1)).clamp(0, 1)
                           for i in range(0, len(lq), chunk)])
        row = {"psnr": float(np.mean([float(psnr(p[None], g[None])) for p, g in zip(preds, gt)])),
               "l1": float((preds - gt).abs().mean())}
        other = {INTENT_DARK.name: INTENT_BRIGHT.name, INTENT_BRIGHT.name: INTENT_DARK.name}.get(name)
        if other is not None and other in eval_set:
            row["psnr_other_target"] = float(np.mean([float(psnr(p[None], g[None]))
                                                      for p, g in zip(preds, eval_set[other][1])]))
        out[name] = row
    return out


def input_scores(eval_set: EvalSet) -> Dict[str, float]:
    """PSNR of the degraded inputs to their targets (the floor)."""
    from pip_adapter.utils.metrics import psnr

    return {n: float(np.mean([float(psnr(a[None], b[None])) for a, b in zip(lq, gt)])) for n, (lq, gt) in
            eval_set.items()}


# ----------------------------------------------------------------------------------------------- runs
@dataclass
class EvalConfig:
    """The evaluation and sizing settings every run of a study shares."""
    train_images: str = StudyData.train_images
    eval_images: str = StudyData.eval_images
    eval_crop: int = 96
    eval_crops: int = 4
    max_eval_images: Optional[int] = None
    small_prompt_dims: Tuple[int, ...] = (8, 8, 8)
    mode_batches: int = 4
    kinds: List[str] = field(default_factory=lambda: [k.name for k in TRAIN_KINDS])


def default_config(**over: object) -> RunConfig:
    """The study's RunConfig: NAFNet-16, 3 levels, 48² patches, the five types."""
    base = dict(width=16, enc_blk_nums=(1, 1, 1), dec_blk_nums=(1, 1, 1), middle_blk_num=1, steps=700, batch=8,
                patch=48, prompt_dims=(16, 24, 32), prompt_sizes=(24, 12, 6), tasks=TYPES)
    base.update(over)
    return RunConfig(**base)


def run_id(key: str, cfg: RunConfig, ev: EvalConfig) -> str:
    """File stem of a run: variant, seed and a hash of the rest of the setting (other settings never mix)."""
    setting = {k: v for k, v in asdict(cfg).items() if k != "seed"}
    blob = json.dumps([setting, asdict(ev)], sort_keys=True, default=list).encode()
    return f"{key}_seed{cfg.seed}_{hashlib.sha1(blob).hexdigest()[:10]}"


def run_one(key: str, cfg: RunConfig, ev: EvalConfig) -> Dict[str, object]:
    """Train and evaluate variant ``key`` with seed ``cfg.seed``: a JSON-able record."""
    train_imgs = load_train_images(ev.train_images)
    eval_imgs = load_eval_images(StudyData(eval_images=ev.eval_images, max_eval_images=ev.max_eval_images))
    eval_set = build_eval_set(eval_imgs, ev.eval_crop, ev.eval_crops)
    model = build_variant(key, cfg, ev.small_prompt_dims)
    logger.info("training %s, seed %d (%d parameters)", VARIANTS[key].label, cfg.seed, n_params(model))
    tr = train(key, model, train_imgs, cfg)
    t0 = time.time()
    rec = {"variant": key, "label": VARIANTS[key].label, "seed": cfg.seed, "config": asdict(cfg), "eval": asdict(ev),
           "parameters": n_params(model), "seconds": tr["seconds"], "train_curve": tr["curve"],
           "tail_loss": tr["tail_loss"], "mode_check": mode_check(key, model, train_imgs, cfg, ev.mode_batches),
           "scores": evaluate(key, model, eval_set), "input": input_scores(eval_set),
           "n_train_images": len(train_imgs), "n_eval_crops": len(next(iter(eval_set.values()))[0])}
    logger.info("evaluated in %.1f s", time.time() - t0)
    return rec


def run_study(keys: Sequence[str], seeds: Sequence[int], cfg: RunConfig, ev: EvalConfig, runs_dir: str,
              train_missing: bool = True) -> Tuple[List[Dict[str, object]], List[Tuple[str, int]]]:
    """Train every missing (variant, seed) run in priority order; returns (records, runs still missing).

    Order (so a study stopped early holds the verdict pairs): PIP, constant ω and ω as input for the first three
    seeds, seed by seed; then B only and bare for them; PIP and constant ω for further seeds; the widened
    NAFNet; the small variants; the rest.
    """
    from pip_adapter.utils.io import atomic_path

    os.makedirs(runs_dir, exist_ok=True)
    def rank(ks: Tuple[str, int]) -> Tuple[int, int, int]:
        k, i = ks[0], seeds.index(ks[1])
        group = (0 if k in PRIORITY[:3] and i < 3 else 1 if k in PRIORITY[3:5] and i < 3
                 else 2 if k in ("pip", "const") else 3 if k == "wide" else 4 if VARIANTS[k].small else 5)
        return group, i, PRIORITY.index(k)

    order = sorted(((k, s) for s in seeds for k in keys), key=rank)
    path = {ks: os.path.join(runs_dir, run_id(ks[0], replace(cfg, seed=ks[1]), ev) + ".json") for ks in order}
    todo = [ks for ks in order if not os.path.isfile(path[ks])]
    logger.info("%d of %d runs to do (%s)", len(todo) if train_missing else 0, len(order), runs_dir)
    if train_missing:
        for k, s in todo:
            rec = run_one(k, replace(cfg, seed=s), ev)
            with atomic_path(path[(k, s)]) as tmp:
                with open(tmp, "w", encoding="utf-8") as fh:
                    json.dump(rec, fh, indent=1)
            logger.info("saved %s", path[(k, s)])
    records, missing = [], []
    for ks in order:
        if os.path.isfile(path[ks]):
            with open(path[ks], encoding="utf-8") as fh:
                records.append(json.load(fh))
        else:
            missing.append(ks)
    return records, missing


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options of this script."""
    d, ev = default_config(), EvalConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default=",".join(PRIORITY[:6]),
                   help=f"comma-separated variants, of: {', '.join(VARIANTS)} (default: {','.join(PRIORITY[:6])}; "
                        "the small ones add 22 %% of NAFNet-16's parameters even at D = 8, see docs/BENCHMARKS.md)")
    p.add_argument("--seeds", default="0,1,2,3", help="comma-separated seeds (default: 0,1,2,3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--report-only", action="store_true", help="train nothing: report the saved runs")
    p.add_argument("--no-report", action="store_true", help="train only (the report comes from --report-only)")
    p.add_argument("--runs-dir", default=os.path.join(RESULTS_DIR, "prompt_runs"),
                   help="where each run's JSON goes; finished runs of the same setting are reused")
    p.add_argument("--figure", default=None, help="bar-chart PNG (default: bench_results/figures/"
                   "quality_prompts.png, or docs/figures/quality_prompts.png with --update-docs)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--patch", type=int, default=d.patch)
    p.add_argument("--width", type=int, default=d.width)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--prompt-dims", default=",".join(map(str, d.prompt_dims)), help="D per level")
    p.add_argument("--prompt-sizes", default=",".join(map(str, d.prompt_sizes)), help="s per level")
    p.add_argument("--small-prompt-dims", default=",".join(map(str, ev.small_prompt_dims)),
                   help="D per level of the small variants")
    p.add_argument("--train-images", default=ev.train_images, help="folder of clean training photos")
    p.add_argument("--eval-images", default=ev.eval_images, help="folder of held-out clean photos")
    p.add_argument("--eval-crop", type=int, default=ev.eval_crop, help="side of the evaluation crops")
    p.add_argument("--eval-crops", type=int, default=ev.eval_crops, help="evaluation crops per photo")
    p.add_argument("--max-eval-images", type=int, default=None, help="use only the first N evaluation photos")
    p.add_argument("--mode-batches", type=int, default=ev.mode_batches,
                   help="training batches of the train/eval-mode check")
    p.add_argument("--note", action="append", default=[], help="a line to add to the report (repeatable)")
    add_output_args(p)
    args = p.parse_args(argv)
    keys = [k.strip() for k in args.variants.split(",") if k.strip()]
    bad = [k for k in keys if k not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    args.keys = [k for k in PRIORITY if k in keys]
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
        dims = tuple(int(v) for v in args.prompt_dims.split(","))
        sizes = tuple(int(v) for v in args.prompt_sizes.split(","))
        small = tuple(int(v) for v in args.small_prompt_dims.split(","))
    except ValueError:
        p.error("--seeds, --prompt-dims, --prompt-sizes and --small-prompt-dims take comma-separated integers")
    if not args.seed_list:
        p.error("--seeds is empty")
    args.cfg = default_config(width=args.width, steps=args.steps, batch=args.batch, patch=args.patch, lr=args.lr,
                              prompt_dims=dims, prompt_sizes=sizes)
    args.ev = EvalConfig(train_images=args.train_images, eval_images=args.eval_images, eval_crop=args.eval_crop,
                         eval_crops=args.eval_crops, max_eval_images=args.max_eval_images,
                         small_prompt_dims=small, mode_batches=args.mode_batches)
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Train what ``--runs-dir`` lacks (unless ``--report-only``), then write the report and its figure."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    records, missing = run_study(args.keys, args.seed_list, args.cfg, args.ev, args.runs_dir,
                                 train_missing=not args.report_only)
    if args.no_report:
        return 0
    if not records:
        raise SystemExit(f"no finished runs of this setting in {args.runs_dir}; run without --report-only first")
    figure = args.figure or os.path.join("docs" if args.update_docs else RESULTS_DIR, "figures",
                                         "quality_prompts.png")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if args.update_docs and not args.figure:
        figure = os.path.join(root, figure)
    made = plot_bars(records, figure)
    link = None
    if made:
        doc = os.path.abspath(os.path.dirname(args.out)) if args.out else (
            os.path.join(root, "docs") if args.update_docs else os.path.abspath(RESULTS_DIR))
        link = os.path.relpath(os.path.abspath(made), doc)
    text = render_report(args, records, missing, link)
    write_section(args, "quality_prompts", text,
                  title="Where degradation-aware prompts pay off (E1–E3, five types, composites, intent)")
    return 0



# -------------------------------------------------------------------------------------------- report
E1_COLS = tuple(k.name for k in SINGLES)
SEEN_COLS = tuple(k.name for k in PAIRS)
UNSEEN_COLS = tuple(k.name for k in TRIPLES)
# the groups the verdict and the figure use: label → evaluation kinds averaged (PSNR)
GROUPS: Tuple[Tuple[str, Tuple[str, ...]], ...] = (
    ("noise (control)", ("noise",)), ("rain", ("rain",)), ("global: haze, low light, blur", GLOBAL_GROUP),
    ("haze, blur", ("haze", "blur")),
    ("seen pairs", SEEN_COLS), ("unseen triples", UNSEEN_COLS),
    ("E3 dark target (ω = noise)", (INTENT_DARK.name,)), ("E3 bright target (ω = both)", (INTENT_BRIGHT.name,)))
# the paired comparisons of the verdict: (a, b) → Δ = a − b per seed
PAIRINGS = (("pip", "const"), ("pip", "b_only"), ("pip", "omega_in"), ("pip", "bare"), ("pip", "wide"),
            ("b_only", "bare"), ("const", "bare"), ("omega_in", "bare"), ("wide", "bare"))


def group_runs(records: Sequence[Mapping[str, object]]) -> Dict[str, Dict[int, Mapping[str, object]]]:
    """variant → seed → record, in ``PRIORITY`` order."""
    out: Dict[str, Dict[int, Mapping[str, object]]] = {}
    for k in PRIORITY:
        runs = {int(r["seed"]): r for r in records if r["variant"] == k}
        if runs:
            out[k] = dict(sorted(runs.items()))
    return out


def group_psnr(rec: Mapping[str, object], kinds: Sequence[str]) -> float:
    """Mean PSNR of a run over evaluation kinds."""
    return float(np.mean([rec["scores"][k]["psnr"] for k in kinds]))


def paired(groups: Mapping[str, Mapping[int, Mapping[str, object]]], a: str, b: str, kinds: Sequence[str]
           ) -> List[float]:
    """Per-seed Δ PSNR (a − b) over the seeds both variants have, averaged over ``kinds``."""
    if a not in groups or b not in groups:
        return []
    return [group_psnr(groups[a][s], kinds) - group_psnr(groups[b][s], kinds) for s in groups[a] if s in groups[b]]


def _pm(values: Sequence[float], digits: int = 2, sign: bool = False) -> str:
    if not len(values):
        return "—"
    m, s = mean_std(values)
    head = f"{m:+.{digits}f}" if sign else f"{m:.{digits}f}"
    return f"{head} ± {s:.{digits}f}" if len(values) > 1 else head


def psnr_table(groups: Mapping[str, Mapping[int, Mapping[str, object]]], cols: Sequence[str],
               extra: Sequence[Tuple[str, Sequence[str]]] = ()) -> str:
    """Markdown: PSNR mean ± std over seeds per kind (and per averaged group of ``extra``), input first."""
    first = next(iter(next(iter(groups.values())).values()))
    inp = first["input"]
    header = ["model", "seeds"] + list(cols) + [e[0] for e in extra]
    rows = [["degraded input", "—"] + [f"{inp[c]:.2f}" for c in cols]
            + [f"{np.mean([inp[c] for c in e[1]]):.2f}" for e in extra]]
    for k, runs in groups.items():
        rows.append([VARIANTS[k].label, str(len(runs))]
                    + [_pm([r["scores"][c]["psnr"] for r in runs.values()]) for c in cols]
                    + [_pm([group_psnr(r, e[1]) for r in runs.values()]) for e in extra])
    return markdown_table(header, rows)


def delta_table(groups: Mapping[str, Mapping[int, Mapping[str, object]]]) -> str:
    """Markdown: paired Δ PSNR (mean ± std over common seeds, and the per-seed values) per comparison and group."""
    header = ["Δ (paired, dB)", "seeds"] + [g for g, _ in GROUPS]
    rows = []
    for a, b in PAIRINGS:
        if a not in groups or b not in groups:
            continue
        cells = []
        for _, kinds in GROUPS:
            d = paired(groups, a, b, kinds)
            cells.append(_pm(d, sign=True) + (" (" + " / ".join(f"{v:+.2f}" for v in d) + ")" if len(d) > 1 else ""))
        n = len([s for s in groups[a] if s in groups[b]])
        rows.append([f"{VARIANTS[a].label} − {VARIANTS[b].label}", str(n)] + cells)
    return markdown_table(header, rows)


def intent_table(groups: Mapping[str, Mapping[int, Mapping[str, object]]]) -> str:
    """Markdown: E3 — the same dark noisy inputs restored with ω = noise and ω = low light + noise."""
    dark, bright = INTENT_DARK.name, INTENT_BRIGHT.name
    first = next(iter(next(iter(groups.values())).values()))
    inp = first["input"]
    header = ["model", "seeds", "ω = noise: PSNR to dark target", "ω = noise: PSNR to bright",
              "ω = both: PSNR to bright target", "ω = both: PSNR to dark", "separation (dB)"]
    rows = [["degraded input", "—", f"{inp[dark]:.2f}", f"{inp[bright]:.2f}", f"{inp[bright]:.2f}",
             f"{inp[dark]:.2f}", "—"]]
    for k, runs in groups.items():
        rs = list(runs.values())
        # separation: how much better each output fits its own target than the other ω's output does
        sep = [(r["scores"][dark]["psnr"] - r["scores"][bright]["psnr_other_target"])
               + (r["scores"][bright]["psnr"] - r["scores"][dark]["psnr_other_target"]) for r in rs]
        rows.append([VARIANTS[k].label, str(len(rs)), _pm([r["scores"][dark]["psnr"] for r in rs]),
                     _pm([r["scores"][dark]["psnr_other_target"] for r in rs]),
                     _pm([r["scores"][bright]["psnr"] for r in rs]),
                     _pm([r["scores"][bright]["psnr_other_target"] for r in rs]), _pm(sep)])
    return markdown_table(header, rows)


def _mean_of(values: Mapping[str, float], names: Sequence[str]) -> float:
    """Mean of ``values`` over the ``names`` it has (a short run may not have seen every kind); nan if none."""
    have = [values[n] for n in names if n in values]
    return float(np.mean(have)) if have else float("nan")


def mode_table(groups: Mapping[str, Mapping[int, Mapping[str, object]]]) -> str:
    """Markdown: train-mode vs eval-mode L1 on the same training batches, the training loss, the eval L1."""
    singles = [k.name for k in SINGLES]
    header = ["model", "seeds", "train-mode L1 (fixed batches)", "eval-mode L1 (same batches)",
              "largest train−eval difference",
              "training L1, last 10 % (all kinds)", "training L1, last 10 %: singles", "…: intent pair",
              "held-out L1, singles"]
    rows = []
    for k, runs in groups.items():
        rs = list(runs.values())
        tr = [float(np.mean(list(r["mode_check"]["train"].values()))) for r in rs]
        ev = [float(np.mean(list(r["mode_check"]["eval"].values()))) for r in rs]
        gap = max(abs(r["mode_check"]["train"][n] - r["mode_check"]["eval"][n]) for r in rs
                  for n in r["mode_check"]["train"])
        tail = [float(np.mean(list(r["tail_loss"].values()))) for r in rs]
        tail_s = [_mean_of(r["tail_loss"], singles) for r in rs]
        tail_i = [_mean_of(r["tail_loss"], (INTENT_DARK.name, INTENT_BRIGHT.name)) for r in rs]
        held = [float(np.mean([r["scores"][n]["l1"] for n in singles])) for r in rs]
        rows.append([VARIANTS[k].label, str(len(rs)), _pm(tr, 4), _pm(ev, 4), f"{gap:.1e}", _pm(tail, 4),
                     _pm(tail_s, 4), _pm(tail_i, 4), _pm(held, 4)])
    return markdown_table(header, rows)


def per_kind_l1_table(groups: Mapping[str, Mapping[int, Mapping[str, object]]]) -> str:
    """Markdown: per single kind, eval-mode L1 on the training batches → L1 on the held-out crops (mean over seeds)."""
    singles = [k.name for k in SINGLES]
    rows = []
    for k, runs in groups.items():
        rs = list(runs.values())
        cells = []
        for n in singles:
            tr = [r["mode_check"]["eval"][n] for r in rs if n in r["mode_check"]["eval"]]
            held = [r["scores"][n]["l1"] for r in rs]
            cells.append(f"{np.mean(tr):.3f} → {np.mean(held):.3f}" if tr else f"— → {np.mean(held):.3f}")
        rows.append([VARIANTS[k].label, str(len(rs))] + cells)
    return markdown_table(["model", "seeds"] + singles, rows)


def info_table(groups: Mapping[str, Mapping[int, Mapping[str, object]]]) -> str:
    """Markdown: parameters (and vs the bare NAFNet), minutes per run, final logged training loss."""
    base = next(iter(groups["bare"].values()))["parameters"] if "bare" in groups else None
    rows = []
    for k, runs in groups.items():
        r0 = next(iter(runs.values()))
        rel = f"{100 * (r0['parameters'] / base - 1):+.1f} %" if base else "—"
        rows.append([VARIANTS[k].label, f"{int(r0['parameters']):,}", rel,
                     f"{np.mean([r['seconds'] for r in runs.values()]) / 60:.1f}",
                     _pm([r["train_curve"][-1][1] for r in runs.values()], 4)])
    return markdown_table(["model", "parameters", "vs bare", "training min / run",
                           "final logged training loss (L1 + α·L_ddl)"], rows)


def verdict_lines(groups: Mapping[str, Mapping[int, Mapping[str, object]]]) -> List[str]:
    """The issue's criteria, computed: Δ(full − constant ω) on the global group and composites, ω-as-input vs PIP,
    and the E3 separation of PIP vs B only."""
    out = []
    glob = paired(groups, "pip", "const", GLOBAL_GROUP)
    comp = paired(groups, "pip", "const", SEEN_COLS + UNSEEN_COLS)
    noise = paired(groups, "pip", "const", ("noise",))
    # low light shares its dark inputs with the intent pair, so a blind model is also penalised there for E3's
    # ambiguity: the global group without it is the cleaner reading
    hb = paired(groups, "pip", "const", ("haze", "blur"))
    if glob and comp:
        m_g, m_c = mean_std(glob)[0], mean_std(comp)[0]
        state = ("refuted (≤ 0.2 dB on both)" if m_g <= 0.2 and m_c <= 0.2 else
                 "as expected (≥ 0.5 dB on both)" if m_g >= 0.5 and m_c >= 0.5 else "in between (neither criterion)")
        out.append(f"- **Information (E1/E2)**: Δ(PIP − constant ω) = {_pm(glob, sign=True)} dB on the global group, "
                   f"{_pm(comp, sign=True)} dB on the composites (seen pairs and unseen triples), "
                   f"{_pm(noise, sign=True)} dB on noise, {_pm(hb, sign=True)} dB on haze and blur alone "
                   f"({len(glob)} seeds): {state}.")
    oi = paired(groups, "pip", "omega_in", [k.name for k in EVAL_KINDS if k not in (INTENT_DARK, INTENT_BRIGHT)])
    oi_g = paired(groups, "pip", "omega_in", GLOBAL_GROUP)
    if oi:
        matched = mean_std(oi)[0] <= 0.2
        out.append(f"- **PIP's machinery vs any conditioning**: Δ(PIP − NAFNet with ω as input) = {_pm(oi, sign=True)} "
                   f"dB over E1+E2 ({_pm(oi_g, sign=True)} on the global group; {len(oi)} seeds): "
                   + ("the ω-input NAFNet matches or beats PIP (refuted: conditioning matters, PIP's design does not)."
                      if matched else "PIP is ahead by more than 0.2 dB."))
    sep = {}
    for k in ("pip", "b_only", "omega_in"):
        if k in groups:
            sep[k] = [(r["scores"][INTENT_DARK.name]["psnr"] - r["scores"][INTENT_BRIGHT.name]["psnr_other_target"])
                      + (r["scores"][INTENT_BRIGHT.name]["psnr"] - r["scores"][INTENT_DARK.name]["psnr_other_target"])
                      for r in groups[k].values()]
    if "pip" in sep:
        out.append("- **Intent (E3)**: separation of the two targets (dB, see the E3 table) " + "; ".join(
            f"{VARIANTS[k].label} {_pm(v)}" for k, v in sep.items()) + ".")
    return out


def plot_bars(records: Sequence[Mapping[str, object]], path: str,
              keys: Sequence[str] = ("pip", "const", "b_only", "omega_in", "wide")) -> Optional[str]:
    """PNG: paired Δ PSNR vs the bare NAFNet per group (mean over seeds, bars: ± std); None without matplotlib."""
    plt = pyplot("figure")
    if plt is None:
        return None
    from pip_adapter.utils.io import atomic_path

    groups = group_runs(records)
    keys = [k for k in keys if k in groups and "bare" in groups]
    if not keys:
        return None
    # E3's separations are ten times E1/E2's differences: their own panel keeps both readable
    panels = [[g for g in GROUPS if not g[0].startswith("E3")], [g for g in GROUPS if g[0].startswith("E3")]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110, gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(keys)
    for ax, panel in zip(axes, panels):
        x = np.arange(len(panel))
        for j, k in enumerate(keys):
            ds = [paired(groups, k, "bare", kinds) for _, kinds in panel]
            ax.bar(x + (j - (len(keys) - 1) / 2) * width, [mean_std(d)[0] if d else 0 for d in ds], width,
                   yerr=[mean_std(d)[1] if d else 0 for d in ds], capsize=2,
                   label=f"{VARIANTS[k].label} ({len(ds[0])} paired seeds)")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x)
        ax.set_xticklabels([g for g, _ in panel], fontsize=7, rotation=15)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("Δ PSNR vs bare NAFNet (dB, paired)")
    axes[0].set_title("E1, E2 (error bars: ± std over seeds)", fontsize=8)
    axes[1].set_title("E3 (intent)", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def render_report(args: argparse.Namespace, records: Sequence[Mapping[str, object]],
                  missing: Sequence[Tuple[str, int]], figure_link: Optional[str]) -> str:
    """The study's section: command, settings, E1–E3 tables, paired Δs, the mode check, verdict lines."""
    groups = group_runs(records)
    r0 = records[0]
    cfg = r0["config"]
    ev = r0["eval"]
    wide = groups.get("wide")
    parts = [f"Command: `{command_line()}`", "",
             "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine_info().items()), "",
             f"Settings: NAFNet width {cfg['width']}, enc {list(cfg['enc_blk_nums'])} / mid {cfg['middle_blk_num']} / "
             f"dec {list(cfg['dec_blk_nums'])}"
             + (f" (widened: {next(iter(wide.values()))['parameters']:,} parameters)" if wide else "")
             + f"; PIP prompt dims {list(cfg['prompt_dims'])}, sizes {list(cfg['prompt_sizes'])}, T = {len(TYPES)} "
             f"({', '.join(TYPES)}). {cfg['steps']} steps, batch {cfg['batch']}, {cfg['patch']}² patches degraded "
             f"afresh every step from {r0['n_train_images']} clean training photos (`{ev['train_images']}`), "
             f"{len(TRAIN_KINDS)} training kinds in turn ({', '.join(ev['kinds'])}); Adam(0.9, 0.99) lr "
             f"{cfg['lr']:g} cosine to {cfg['lr'] * 0.01:g}, L1 (+ {cfg['ddl_alpha']:g}·L_ddl with degradation "
             f"prompts). Evaluation: {r0['n_eval_crops']} crops of {ev['eval_crop']}² ({ev['eval_crops']} per "
             f"held-out photo of `{ev['eval_images']}`), noise σ {EVAL_SIGMA_SINGLE} alone and σ "
             f"{EVAL_SIGMA_COMPOSITE} in composites. Seeds: {sorted({int(r['seed']) for r in records})}."]
    if missing:
        parts += ["", "Not run (the study was stopped before them): "
                  + ", ".join(f"{VARIANTS[k].label} seed {s}" for k, s in missing) + "."]
    parts += [""] + [f"- {n}" for n in getattr(args, "note", [])]
    parts += ["", "**Verdict numbers** (computed from the runs below):", ""] + verdict_lines(groups)
    parts += ["", "**E1: single degradations** — PSNR (dB), mean ± std over seeds; ω one-hot (uniform for the "
              "constant-ω control):", "",
              psnr_table(groups, E1_COLS, [("global group", GLOBAL_GROUP)]),
              "", "**E2: composites** (multi-hot ω; the triples were never trained on):", "",
              psnr_table(groups, SEEN_COLS + UNSEEN_COLS, [("seen pairs", SEEN_COLS), ("unseen triples", UNSEEN_COLS)]),
              "", "**E3: intent** — the same dark noisy inputs (low light without sensor noise, then Gaussian noise "
              f"σ {EVAL_SIGMA_COMPOSITE}); ω = noise asks for the dark clean image, ω = low light + noise for the "
              "bright clean image. Separation = (dark-target PSNR of the ω = noise output − that of the ω = both output) + "
              "(bright-target PSNR of the ω = both output − that of the ω = noise output); 0 for a model that "
              "ignores ω:", "", intent_table(groups),
              "", "**Paired Δ PSNR per seed** (a − b on the seeds both have; per-seed values in brackets):", "",
              delta_table(groups)]
    if figure_link:
        parts += ["", f"![paired Δ PSNR vs the bare NAFNet]({figure_link})"]
    parts += ["", "**Train mode vs eval mode** — L1 on the last training batches of each run, with the trained "
              "weights, in train mode and in eval mode; the running training L1 of the last 10 % of steps; the "
              "held-out L1 on the single kinds:", "", mode_table(groups), "",
              "Per single kind: eval-mode L1 on those training batches → L1 on the held-out crops (mean over seeds):",
              "", per_kind_l1_table(groups), "", info_table(groups)]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
