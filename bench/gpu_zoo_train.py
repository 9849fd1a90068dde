"""Train the GPU sibling of the default model (``basicsr_options/zoo/pip_nafnet_photo_gpu.yml``) in one call of
the device machine (one GPU, 10 minutes a command), export it and write its timing; everything it returns goes
under ``--out`` (the device machine's $OUT).

Here (the machine with the Debian wallpaper packages), once::

    pip-adapter prepare-data --photos datasets/photos
    mkdir -p .whl && python -m pip wheel --no-deps --no-build-isolation -w .whl basicsr==1.4.2
    python bench/gpu_zoo_train.py --plan        # what to carry, its size against the 64 MiB limit, the command

There (the command ``--plan`` prints; basicsr is the one package the GPU image lacks)::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    python3 bench/gpu_zoo_train.py --out $OUT

Steps: the environment (torch, CUDA, GPU name), the photo set (``datasets/photos`` under ``--work``; prepared when
missing and the packages are there, else a one-line error naming what to carry), training with
``basicsr train --auto_resume`` and a time guard (``--budget-s`` seconds after the start, the run saves a
checkpoint and stops; the same command continues it, while the machine is still warm, since the experiment
folder stays there), ``pip-adapter export`` of the EMA weights, and ``summary.json`` (iterations, it/s,
wall time, GPU, peak GPU memory, status).  ``--dry-run`` runs the same path on the CPU with 2 iterations of
32-pixel crops.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTION_FILE = os.path.join("basicsr_options", "zoo", "pip_nafnet_photo_gpu.yml")
NAME = "pip_nafnet_photo_gpu"
PHOTOS = os.path.join("datasets", "photos")
# what travels to the device machine beside the working tree: the photo set minus heldout/ (full-size photos
# that only the model card reads) and the basicsr wheel
CARRY = ["datasets/photos/train", "datasets/photos/val", "datasets/photos/manifest.json", ".whl"]
CARRY_LIMIT = 64 * 2 ** 20
RUN_COMMAND = ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "
               ".whl/*.whl && export PYTHONPATH=/tmp/site || exit; PYTHONUNBUFFERED=1 python3 bench/gpu_zoo_train.py "
               "--out $OUT")
DRY_RUN_FORCE = ["train:total_iter=2", "train:scheduler:total_iter=2", "train:scheduler:warmup_iter=1",
                 "datasets:train:gt_size=32", "datasets:train:batch_size_per_gpu=2",
                 "datasets:train:num_worker_per_gpu=0", "datasets:train:pin_memory=false",
                 "datasets:train:persistent_workers=false", "datasets:train:dataset_enlarge_ratio=1",
                 "logger:print_freq=1", "logger:save_checkpoint_freq=1"]
STEADY_FROM = 20  # iterations left out of it/s (cuDNN autotuning, workers starting)


class TimeUp(Exception):
    """Raised after the time guard saved a checkpoint: training stops here and continues with --auto_resume."""


def _write_json(path: str, data: Dict[str, Any]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def environment() -> Dict[str, Any]:
    """torch, CUDA and the GPU (if any) of this machine."""
    import torch

    env: Dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                           "cpu_count": os.cpu_count()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["bf16"] = torch.cuda.is_bf16_supported()
    return env


def ensure_photos(work: str) -> str:
    """``<work>/datasets/photos`` with train/ and val/; prepared here when missing (needs the Debian packages)."""
    root = os.path.join(work, PHOTOS)
    if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "val")):
        return root
    from pip_adapter.data.photos import prepare_photos

    try:
        return prepare_photos(root, progress=False)
    except FileNotFoundError as err:  # the device machine has no wallpaper packages: the set must be carried
        raise SystemExit(f"gpu_zoo_train: no photo set in {root} and it cannot be built here ({err}); build it "
                         f"where the packages are (pip-adapter prepare-data --photos {PHOTOS}) and carry "
                         f"{', '.join(CARRY[:3])}") from None


def newest_checkpoint(models_dir: str) -> Optional[str]:
    """net_g_latest.pth if training finished, else the net_g_<iter>.pth of the highest iteration."""
    latest = os.path.join(models_dir, "net_g_latest.pth")
    if os.path.isfile(latest):
        return latest
    numbered = [(int(m.group(1)), p) for p in glob.glob(os.path.join(models_dir, "net_g_*.pth"))
                if (m := re.search(r"net_g_(\d+)\.pth$", p))]
    return max(numbered)[1] if numbered else None


class Guard:
    """Counts iterations with their times and, past ``deadline``, saves a checkpoint and raises :class:`TimeUp`."""

    def __init__(self, deadline: float, sync: Callable[[], None]) -> None:
        self.deadline = deadline
        self.sync = sync
        self.model: Any = None
        self.epoch = 0
        self.times: List[float] = []
        self.iters: List[int] = []

    def __call__(self, current_iter: int) -> None:
        self.times.append(time.time())
        self.iters.append(current_iter)
        if self.times[-1] > self.deadline and self.model is not None:
            self.model.save(self.epoch, current_iter)  # the same files as BasicSR's periodic save
            raise TimeUp(current_iter)

    def rate(self) -> Optional[float]:
        """Iterations per second after the first STEADY_FROM of this call (all of them when fewer)."""
        self.sync()
        if len(self.times) < 2:
            return None
        k = STEADY_FROM if len(self.times) > STEADY_FROM + 1 else 0
        span = time.time() - self.times[k] if k else self.times[-1] - self.times[0]
        n = len(self.times) - 1 - k
        return n / span if span > 0 and n > 0 else None


def train(work: str, force: List[str], guard: Guard) -> Dict[str, Any]:
    """Run ``basicsr train -opt <zoo gpu yml> --auto_resume`` in ``work`` under ``guard``; return what happened."""
    from pip_adapter.cli.common import bsr_pipeline

    pipeline = bsr_pipeline()  # first: registers pip_adapter's types and its compatibility fixes for basicsr
    import basicsr.train as bsr_train
    from basicsr.data.data_sampler import EnlargedSampler

    argv = ["-opt", os.path.join(REPO, OPTION_FILE), "--auto_resume"] + (["--force_yml"] + force if force else [])
    build_model, set_epoch = bsr_train.build_model, EnlargedSampler.set_epoch

    def capturing_build_model(opt: Dict[str, Any]) -> Any:
        guard.model = build_model(opt)
        return guard.model

    def tracking_set_epoch(sampler: Any, epoch: int) -> None:
        guard.epoch = epoch  # the training state saved by the guard resumes in this epoch
        set_epoch(sampler, epoch)

    bsr_train.build_model, EnlargedSampler.set_epoch = capturing_build_model, tracking_set_epoch
    status, stopped_at = "finished", None
    try:
        pipeline.train_pipeline(work, argv, on_iter=guard)
    except TimeUp as stop:
        status, stopped_at = "stopped_by_time_guard", int(stop.args[0])
    finally:
        bsr_train.build_model, EnlargedSampler.set_epoch = build_model, set_epoch
    return {"status": status, "stopped_at_iter": stopped_at}


def export(ckpt: str, out_file: str, log_path: str) -> int:
    """``pip-adapter export`` of the EMA weights of ``ckpt`` into ``out_file``; its output goes to ``log_path``."""
    cmd = [sys.executable, "-m", "pip_adapter.cli", "export", "--ckpt", ckpt, "--opt", os.path.join(REPO, OPTION_FILE),
           "--out", out_file, "--key", "params_ema", "--overwrite"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    with open(log_path, "w", encoding="utf-8") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO).returncode


def tree_bytes() -> int:
    """Bytes of what the device tool sends besides ``carry``: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return sum(os.path.getsize(os.path.join(REPO, f)) for f in out.split("\0") if f and os.path.isfile(
        os.path.join(REPO, f)))


def path_bytes(path: str) -> int:
    """Bytes of a file or of every file under a folder (0 when missing)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def plan() -> int:
    """Print the carry list with its size against the device tool's limit and the command; 1 if not ready."""
    ok = True
    sizes = {"(working tree)": tree_bytes()}
    for rel in CARRY:
        path = os.path.join(REPO, rel)
        sizes[rel] = path_bytes(path)
        if not os.path.exists(path):
            ok = False
            print(f"missing: {rel}")
    if not glob.glob(os.path.join(REPO, ".whl", "basicsr-*.whl")):
        ok = False
        print("missing: .whl/basicsr-*.whl (python -m pip wheel --no-deps --no-build-isolation -w .whl basicsr==1.4.2)")
    for rel, n in sizes.items():
        print(f"{n / 2 ** 20:8.1f} MiB  {rel}")
    total = sum(sizes.values())
    print(f"{total / 2 ** 20:8.1f} MiB  total (limit {CARRY_LIMIT / 2 ** 20:.0f} MiB)")
    if total > CARRY_LIMIT:
        ok = False
        print("too large for the device tool: carry less (e.g. fewer val sets)")
    print("carry:   " + json.dumps(CARRY))
    print("command: " + RUN_COMMAND)
    print("timeout_s: 600")
    return 0 if ok else 1


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the exit status (0: trained or stopped by the guard, and exported)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu_zoo_out", help="results folder (default: $OUT)")
    p.add_argument("--work", default=REPO, help="where datasets/photos is and experiments/ goes (default: the "
                                                "repository, whose experiments/ stays on a warm device machine)")
    p.add_argument("--budget-s", type=float, default=500.0,
                   help="seconds after the start when training saves a checkpoint and stops (default 500: the "
                        "final validation and the export fit in the 600 s of one device command)")
    p.add_argument("--dry-run", action="store_true", help="CPU, 2 iterations of 32-pixel crops, batch 2")
    p.add_argument("--plan", action="store_true", help="here: check what to carry and print the device command")
    p.add_argument("--force_yml", nargs="*", default=[], help="more KEY:SUB=VALUE overrides for basicsr train")
    args = p.parse_args(argv)
    if args.plan:
        return plan()
    t0 = time.time()
    if args.dry_run:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    os.makedirs(args.out, exist_ok=True)
    work = os.path.abspath(args.work)
    env = environment()
    summary: Dict[str, Any] = {"mode": "dry run (CPU)" if args.dry_run else "GPU", "option_file": OPTION_FILE,
                               "environment": env, "budget_s": args.budget_s}
    if not args.dry_run and not env["cuda_available"]:
        print("gpu_zoo_train: no CUDA device here; use --dry-run on a CPU", file=sys.stderr)
        return 1
    import importlib.util

    if importlib.util.find_spec("basicsr") is None:
        print("gpu_zoo_train: basicsr is not installed here; carry its wheel (.whl, see --plan) and install it "
              "first: " + RUN_COMMAND.split(" || ")[0], file=sys.stderr)
        return 2
    ensure_photos(work)
    cuda = env["cuda_available"]
    guard = Guard(t0 + args.budget_s, torch.cuda.synchronize if cuda else (lambda: None))
    force = (DRY_RUN_FORCE if args.dry_run else []) + list(args.force_yml)
    t_train = time.time()
    summary.update(train(work, force, guard))
    rate = guard.rate()
    summary.update({"train_wall_s": round(time.time() - t_train, 1), "iters_this_call": len(guard.iters),
                    "last_iter": guard.iters[-1] if guard.iters else None,
                    "it_per_s": round(rate, 3) if rate else None,
                    "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2) if cuda else None})
    exp = os.path.join(work, "experiments", NAME)
    logs = sorted(glob.glob(os.path.join(exp, f"train_{NAME}_*.log")), key=os.path.getmtime)
    if logs:
        with open(logs[-1], encoding="utf-8") as src, open(os.path.join(args.out, "train.log"), "w",
                                                           encoding="utf-8") as dst:
            dst.write(src.read())
    val = os.path.join(exp, "validation_latest.json")
    if summary["status"] == "finished" and os.path.isfile(val):
        with open(val, encoding="utf-8") as fh:
            _write_json(os.path.join(args.out, "validation_latest.json"), json.load(fh))
    ckpt = newest_checkpoint(os.path.join(exp, "models"))
    summary["checkpoint"] = os.path.relpath(ckpt, work) if ckpt else None
    rc = 1
    if ckpt:
        out_file = os.path.join(args.out, NAME + ".safetensors")
        rc = export(ckpt, out_file, os.path.join(args.out, "export.log"))
        summary["export"] = {"rc": rc, "file": os.path.basename(out_file),
                             "mb": round(os.path.getsize(out_file) / 1e6, 2) if rc == 0 else None}
    summary["total_wall_s"] = round(time.time() - t0, 1)
    if summary["status"] != "finished":
        summary["continue"] = "rerun the same command at once (a warm machine keeps experiments/)"
    _write_json(os.path.join(args.out, "summary.json"), summary)
    print(json.dumps(summary, indent=1, sort_keys=True))
    return rc


if __name__ == "__main__":
    sys.exit(main())
