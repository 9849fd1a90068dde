"""Training helpers for the tests (a plain module): tiny option files and the ``basicsr`` command.

:func:`tiny_options` (an option dict to tweak and :func:`write_options` to a file) and :func:`run_basicsr`
(the ``basicsr`` command in a subprocess); tests/fixtures_train.py trains the shared tiny experiment with them.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Dict, List, NamedTuple, Optional

import yaml



REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


TASK_VAL_SETS = {"noise": "noise_sigma25", "rain": "rain", "haze": "haze", "blur": "blur", "low_light": "low_light"}


# prepare_builtin arguments of the tiny data: 2 photos × 2 crops of 32 px, one 32-px val photo
TINY_BUILTIN = {"image_size": 64, "crop_size": 32, "crops_per_image": 2, "val_size": 32,
                "max_train_images": 2, "max_val_images": 1, "progress": False}


class TinyExperiment(NamedTuple):
    exp_dir: str
    opt_path: str
    net_path: str


def tiny_options(name: str, data_root: str = "datasets/builtin", total_iter: int = 10,
                 builtin: bool = True) -> Dict[str, Any]:
    """Options of a tiny PIP-NAFNet (width 8, two skip levels) on the tiny built-in data at ``data_root``."""
    train_dir, val_dir = f"{data_root}/train", f"{data_root}/val"
    tasks = [{"degradation": "noise", "source": "synthetic", "dataroot_gt": f"{train_dir}/clean.lmdb",
              "sigmas": [15, 25, 50]}]
    tasks += [{"degradation": d, "source": "lmdb", "dataroot_lq": f"{train_dir}/{d}.lmdb",
               "dataroot_gt": f"{train_dir}/clean.lmdb"} for d in ("rain", "haze", "blur", "low_light")]
    datasets: Dict[str, Any] = {"train": {
        "name": "tiny_train", "type": "MixedDegradationDataset", "gt_size": 32, "tasks": tasks,
        "num_worker_per_gpu": 0, "batch_size_per_gpu": 4, "dataset_enlarge_ratio": 20}}
    for i, (deg, folder) in enumerate(TASK_VAL_SETS.items(), 1):
        datasets[f"val_{i}"] = {"name": f"tiny_{deg}", "type": "MixedDegradationDataset", "degradation": deg,
                                "dataroot_lq": f"{val_dir}/{folder}", "dataroot_gt": f"{val_dir}/gt"}
    opt: Dict[str, Any] = {
        "name": name, "model_type": "PIPModel", "num_gpu": 0, "manual_seed": 0,
        "datasets": datasets,
        "network_g": {"type": "PIPNet", "degradations": list(TASK_VAL_SETS),
                      "backbone": {"type": "NAFNet", "img_channel": 3, "width": 8, "middle_blk_num": 1,
                                   "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]},
                      "prompt_dims": [16, 16], "prompt_sizes": [8, 4]},
        "path": {},
        "train": {"total_iter": total_iter,
                  "optim_g": {"type": "AdamW", "lr": 1e-3, "betas": [0.9, 0.99], "weight_decay": 0.0},
                  "scheduler": {"type": "LinearWarmupCosine", "warmup_iter": 2, "warmup_start_factor": 0.1},
                  "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
                  "ddl_opt": {"form": "paper", "theta_thre": 90, "loss_weight": 0.002}},
        "val": {"val_freq": 10 ** 8, "pad_multiple": 4,
                "metrics": {"psnr": {"type": "calculate_psnr_aio", "crop_border": 0},
                            "ssim": {"type": "calculate_ssim_aio", "crop_border": 0}}},
        "logger": {"print_freq": 1, "save_checkpoint_freq": 5, "use_tb_logger": False},
    }
    if builtin:
        opt["builtin_data"] = {"root": data_root, **TINY_BUILTIN}
    return opt


def write_options(path: str, opt: Dict[str, Any]) -> str:
    """Write an option dict as YAML and return the path."""
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(opt, fh, sort_keys=False)
    return path


def subprocess_env() -> Dict[str, str]:
    """Environment for child processes: the repository importable, one thread each (2 shared cores)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    env["MKL_NUM_THREADS"] = "1"
    return env


def run_basicsr(args: List[str], cwd: str, timeout: float = 180,
                launcher: Optional[List[str]] = None) -> subprocess.CompletedProcess:
    """Run ``basicsr <args>`` (as ``python -m pip_adapter.cli.basicsr_cmd``) in ``cwd``; output captured."""
    cmd = (launcher or [sys.executable]) + ["-m", "pip_adapter.cli.basicsr_cmd"] + list(args)
    return subprocess.run(cmd, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)


def read_train_log(exp_dir: str) -> str:
    """Text of the newest ``train_*.log`` of an experiment."""
    logs = sorted(f for f in os.listdir(exp_dir) if f.startswith("train_") and f.endswith(".log"))
    assert logs, f"no train log in {exp_dir}: {os.listdir(exp_dir)}"
    with open(os.path.join(exp_dir, logs[-1]), encoding="utf-8") as fh:
        return fh.read()
