"""Training cost of PIP: one optimisation step of ``PIPModel`` (PIPNet) vs. BasicSR's ``SRModel`` (bare backbone).

Run from the repository root::

    python bench/train_cost.py                       # NAFNet width 32 (official blocks), batch 4, 128², CPU
    python bench/train_cost.py --quick               # tiny sizes (seconds)

Both models are built by BasicSR's ``build_model`` from option dicts that differ only in ``model_type``,
``network_g`` (the same backbone, wrapped in ``PIPNet`` for PIP) and the L_ddl option; same optimiser (Adam),
same L1 loss, same batch.  A step is ``feed_data`` + ``optimize_parameters`` + ``update_learning_rate``,
timed interleaved (SR, PIP, SR, PIP, ...) after warm-up steps; the median is reported.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import tempfile
from typing import Any, Dict, List, Optional, Sequence

import torch

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (add_output_args, command_line, fmt_float, fmt_int, machine_info,  # noqa: E402
                          markdown_table, median, time_interleaved, write_section)

logger = logging.getLogger("bench.train_cost")

DEGRADATIONS = ["noise", "rain", "haze"]


def backbone_option(width: int, quick: bool) -> Dict[str, Any]:
    """The NAFNet option shared by both models."""
    if quick:
        return {"type": "NAFNet", "img_channel": 3, "width": width, "middle_blk_num": 1,
                "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}
    # the official NAFNet block layout (SIDD models: enc 2,2,4,8 / mid 12 / dec 2,2,2,2)
    return {"type": "NAFNet", "img_channel": 3, "width": width, "middle_blk_num": 12,
            "enc_blk_nums": [2, 2, 4, 8], "dec_blk_nums": [2, 2, 2, 2]}


def model_options(kind: str, backbone: Dict[str, Any], root: str, device: str = "cpu") -> Dict[str, Any]:
    """A BasicSR training option dict for ``kind`` "SRModel" (bare) or "PIPModel" (PIPNet around ``backbone``)."""
    if kind not in ("SRModel", "PIPModel"):
        raise ValueError(f"kind must be 'SRModel' or 'PIPModel', got {kind!r}")
    network = copy.deepcopy(backbone)  # PIP sizes: the wrapper's defaults (the paper's NAFNet table)
    train: Dict[str, Any] = {
        "ema_decay": 0,
        "optim_g": {"type": "Adam", "lr": 2e-4, "weight_decay": 0, "betas": [0.9, 0.99]},
        "scheduler": {"type": "CosineAnnealingRestartLR", "periods": [1000], "restart_weights": [1],
                      "eta_min": 1e-6},
        "total_iter": 1000, "warmup_iter": -1,
        "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"},
    }
    if kind == "PIPModel":
        network = {"type": "PIPNet", "backbone": network, "degradations": list(DEGRADATIONS)}
        train["ddl_opt"] = {"form": "paper", "theta_thre": 90, "loss_weight": 0.002}
    path = {k: os.path.join(root, k) for k in ("models", "training_states", "log", "visualization")}
    path.update({"pretrain_network_g": None, "strict_load_g": True, "resume_state": None,
                 "experiments_root": root})
    return {"name": f"train_cost_{kind}", "model_type": kind, "is_train": True, "dist": False, "rank": 0,
            "world_size": 1, "num_gpu": 1 if device == "cuda" else 0, "scale": 1, "manual_seed": 0,
            "network_g": network, "path": path, "train": train, "datasets": {}, "logger": {}}


def build(kind: str, backbone: Dict[str, Any], root: str, device: str = "cpu"):
    """A BasicSR model of ``kind`` built by ``basicsr.models.build_model``."""
    import pip_adapter.bsr  # noqa: F401  (registers PIPModel, PIPNet and our archs)
    from basicsr.models import build_model

    torch.manual_seed(0)
    return build_model(model_options(kind, backbone, root, device))


def make_batch(batch: int, patch: int, seed: int = 0) -> Dict[str, torch.Tensor]:
    """A random training batch with labels (the bare model ignores them)."""
    g = torch.Generator().manual_seed(seed)
    gt = torch.rand(batch, 3, patch, patch, generator=g)
    lq = (gt + 0.1 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    return {"lq": lq, "gt": gt, "label": torch.arange(batch) % len(DEGRADATIONS)}


def step_fn(model, data: Dict[str, torch.Tensor]):
    """One full training step of a BasicSR model (what its train loop does per iteration)."""
    state = {"iter": 0}

    def run() -> None:
        state["iter"] += 1
        model.feed_data(data)
        model.optimize_parameters(state["iter"])
        model.update_learning_rate(state["iter"], warmup_iter=-1)
    return run


def measure(width: int = 32, batch: int = 4, patch: int = 128, repeats: int = 3, warmup: int = 1,
            quick: bool = False, device: str = "cpu") -> Dict[str, Any]:
    """Median step time of SRModel and PIPModel on the same backbone and batch; their ratio."""
    backbone = backbone_option(width, quick)
    with tempfile.TemporaryDirectory() as root:
        models = {k: build(k, backbone, os.path.join(root, k), device) for k in ("SRModel", "PIPModel")}
        data = make_batch(batch, patch)
        cpu: Dict[str, List[float]] = {}
        times = time_interleaved({k: step_fn(m, data) for k, m in models.items()}, repeats, warmup,
                                 torch.device(device), cpu)
        params = {k: sum(p.numel() for p in m.net_g.parameters()) for k, m in models.items()}
    sr, pip = median(times["SRModel"]), median(times["PIPModel"])
    sr_cpu, pip_cpu = median(cpu["SRModel"]), median(cpu["PIPModel"])
    return {"backbone": backbone, "batch": batch, "patch": patch, "repeats": repeats, "warmup": warmup,
            "device": device, "params": params, "times": times, "cpu_times": cpu, "SRModel_s": sr,
            "PIPModel_s": pip, "ratio": pip / sr, "SRModel_cpu_s": sr_cpu, "PIPModel_cpu_s": pip_cpu,
            "cpu_ratio": pip_cpu / sr_cpu}


def render(res: Dict[str, Any], info: Dict[str, str], command: str) -> str:
    """The training-cost section of BENCHMARKS.md."""
    bb = {k: v for k, v in res["backbone"].items() if k != "type"}
    rows = [["SRModel (bare NAFNet)", fmt_int(res["params"]["SRModel"]), fmt_float(res["SRModel_s"] * 1e3, 1),
             "1.000", fmt_float(res["SRModel_cpu_s"] * 1e3, 1), "1.000"],
            ["PIPModel (PIPNet: NAFNet + PIP)", fmt_int(res["params"]["PIPModel"]),
             fmt_float(res["PIPModel_s"] * 1e3, 1), fmt_float(res["ratio"], 3),
             fmt_float(res["PIPModel_cpu_s"] * 1e3, 1), fmt_float(res["cpu_ratio"], 3)]]
    return "\n".join([
        f"Command: `{command}`", "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), "",
        f"Backbone NAFNet {bb}; batch {res['batch']}×3×{res['patch']}×{res['patch']}, {res['device'].upper()}. "
        "A step = `feed_data` + `optimize_parameters` (L1, + 0.002·L_ddl for PIP; Adam) + `update_learning_rate`; "
        f"median of {res['repeats']} interleaved steps after {res['warmup']} warm-up steps each.", "",
        "Process CPU time is given beside wall time: on a shared machine it is the steadier measure.", "",
        markdown_table(["model", "parameters", "step wall time (ms)", "ratio", "step CPU time (ms)", "ratio"],
                       rows)]) + "\n"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options of this script."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny NAFNet, batch 2, 32² patches, 2 steps")
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--patch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cuda", action="store_true", help="run on the GPU")
    add_output_args(p)
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure and write the training-cost section."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        res = measure(width=8, batch=2, patch=32, repeats=2, warmup=1, quick=True)
    else:
        res = measure(args.width, args.batch, args.patch, args.repeats, args.warmup,
                      device="cuda" if args.cuda else "cpu")
    dev = torch.device("cuda") if args.cuda else None
    text = render(res, machine_info(dev), command_line())
    write_section(args, "train_cost", text, title="Training cost: PIPModel vs. SRModel")
    return 0


if __name__ == "__main__":
    sys.exit(main())
