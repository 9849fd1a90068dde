"""``pip-adapter quickstart`` and ``pip-adapter train``: BasicSR training from the ``pip-adapter`` command.

``quickstart`` trains the small PIP-NAFNet of ``basicsr_options/quickstart.yml`` on the built-in data
(prepared into ``datasets/builtin`` on the first run, from photos shipped with scikit-image) and prints the
per-task PSNR/SSIM of the degraded inputs and of the restored images.  ``train`` is ``basicsr train``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List

from pip_adapter.cli.basicsr_cmd import main as basicsr_main
from pip_adapter.cli.common import bsr_pipeline

_QUICKSTART = os.path.join("basicsr_options", "quickstart.yml")


def find_quickstart_options() -> str:
    """``basicsr_options/quickstart.yml`` in the current directory, else the one beside the package."""
    if os.path.isfile(_QUICKSTART):
        return _QUICKSTART
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(repo, _QUICKSTART)
    if os.path.isfile(path):
        return path
    raise FileNotFoundError(f"{_QUICKSTART} not found in {os.getcwd()} nor in {repo}; pass -opt PATH")


def format_summary(summary: dict) -> str:
    """A table of per-task input vs restored metrics from ``validation_latest.json``."""
    rows = [f"{'task':<34} {'input PSNR':>10} {'PSNR':>8} {'gain':>7} {'input SSIM':>10} {'SSIM':>7}"]
    for task, m in summary.get("tasks", {}).items():
        psnr, ssim = m.get("psnr", float("nan")), m.get("ssim", float("nan"))
        in_psnr, in_ssim = m.get("input_psnr", float("nan")), m.get("input_ssim", float("nan"))
        rows.append(f"{task:<34} {in_psnr:>10.2f} {psnr:>8.2f} {psnr - in_psnr:>+7.2f} {in_ssim:>10.4f} {ssim:>7.4f}")
    avg = summary.get("average", {})
    rows.append(f"{'average':<34} {'':>10} {avg.get('psnr', float('nan')):>8.2f} {'':>7} {'':>10} "
                f"{avg.get('ssim', float('nan')):>7.4f}")
    return "\n".join(rows)


def quickstart_header(opt: Dict[str, Any], opt_path: str, threads: str) -> str:
    """The lines ``quickstart`` prints before anything heavy is imported: model, data, iterations, threads, log."""
    net = opt.get("network_g") or {}
    backbone = net.get("backbone") if isinstance(net.get("backbone"), dict) else {}
    model = str(net.get("type", "?"))
    if net.get("type") == "PIPNet" and backbone:
        model = f"PIP-{backbone.get('type', '?')}"
        if "width" in backbone:
            model += f" (width {backbone['width']})"
    types = net.get("degradations") or []
    train = (opt.get("datasets") or {}).get("train") or {}
    vals = [k for k in (opt.get("datasets") or {}) if str(k).startswith("val")]
    builtin = (opt.get("builtin_data") or {}).get("root") if isinstance(opt.get("builtin_data"), dict) else None
    data = (f"{builtin} ({'present' if os.path.isdir(builtin) else 'prepared first, from scikit-image photos'})"
            if builtin else str(train.get("name", "?")))
    name = opt.get("name", "?")
    iters = (opt.get("train") or {}).get("total_iter", "?")
    lines = [f"quickstart: {model}, {len(types)} degradation types ({', '.join(map(str, types))}), from {opt_path}",
             f"  data:       {data}",
             f"  training:   {iters} iterations, batch {train.get('batch_size_per_gpu', '?')}, crops "
             f"{train.get('gt_size', '?')} px; then validation on {len(vals)} sets",
             f"  threads:    {threads}",
             f"  log:        experiments/{name}/train_{name}_<time>.log (every option, the network, losses)"]
    return "\n".join(lines)


def _quickstart(args: argparse.Namespace) -> int:
    from pip_adapter.utils.options import apply_force_yml, read_option_file
    from pip_adapter.utils.threads import apply_threads, plan_threads

    opt_path = args.opt or find_quickstart_options()
    opt = read_option_file(opt_path)
    force = list(args.force_yml or [])
    if force:
        apply_force_yml(opt, force)
    train_set = (opt.get("datasets") or {}).get("train") or {}
    wanted_workers = int(train_set.get("num_worker_per_gpu") or 0)
    plan = plan_threads(args.threads, workers=wanted_workers)
    if plan.workers != wanted_workers:  # fewer loader processes than the option file asks: cores are taken
        force.append(f"datasets:train:num_worker_per_gpu={plan.workers}")
    verbose = str(getattr(args, "log_level", "WARNING")).upper() in ("INFO", "DEBUG")
    # printed before torch and BasicSR are imported (seconds on a busy machine): the user sees what runs at once
    print(quickstart_header(opt, opt_path, plan.describe()), flush=True)
    restore_threads = apply_threads(plan)
    try:
        return _run_quickstart(args, opt_path, force, opt, quiet=not verbose)
    finally:
        restore_threads()


def _run_quickstart(args: argparse.Namespace, opt_path: str, force: List[str], opt: Dict[str, Any],
                    quiet: bool) -> int:
    from tqdm import tqdm

    pipeline = bsr_pipeline()
    argv: List[str] = ["-opt", opt_path]
    if args.auto_resume:
        argv.append("--auto_resume")
    if force:
        argv += ["--force_yml", *force]
    total = int((opt.get("train") or {}).get("total_iter") or 0)
    start = time.time()
    with tqdm(total=total, desc="training", unit="it", disable=args.no_progress or not total, file=sys.stderr,
              dynamic_ncols=True) as bar:
        def on_iter(current: int) -> None:
            if bar.n == 0 and current > 1:  # resumed: the bar (and its ETA) starts where the run does
                bar.initial = bar.n = bar.last_print_n = current - 1
            bar.update(current - bar.n)
            if current >= total:
                bar.set_postfix_str("saving and validating")

        exp_dir = pipeline.train_pipeline(os.getcwd(), argv, quiet_console=quiet, on_iter=on_iter)
    seconds = time.time() - start
    summary_path = os.path.join(exp_dir, "validation_latest.json")
    print(f"quickstart: trained in {seconds / 60:.1f} min; experiment in {exp_dir}")
    if os.path.isfile(summary_path):
        with open(summary_path, encoding="utf-8") as fh:
            print(format_summary(json.load(fh)))
    return 0


def _train(args: argparse.Namespace) -> int:
    return basicsr_main(["train", *args.basicsr_args])


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quickstart`` and ``train`` sub-commands."""
    q = subparsers.add_parser(
        "quickstart", help="train a small PIP-NAFNet on the built-in data (CPU, minutes) and print per-task PSNR",
        description="Train basicsr_options/quickstart.yml (preparing datasets/builtin when missing) in the "
                    "current directory and print input vs restored PSNR/SSIM per task. Prints a short header "
                    "(model, data, iterations, threads, log file) and a progress bar with the time left; the "
                    "full option and network dump goes to the log file (pip-adapter --log-level INFO "
                    "quickstart shows BasicSR's log on the console as well).")
    q.add_argument("-opt", "--opt", default=None, help="option file (default basicsr_options/quickstart.yml)")
    q.add_argument("--auto_resume", "--auto-resume", dest="auto_resume", action="store_true",
                   help="continue an interrupted quickstart")
    q.add_argument("--force_yml", "--force-yml", dest="force_yml", nargs="+", default=None,
                   help="override options, e.g. train:total_iter=500")
    q.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for training (default: the cores other processes leave free, at least 1, "
                        "or OMP_NUM_THREADS when set); the choice is printed first")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=_quickstart)
    t = subparsers.add_parser("train", help="same as 'basicsr train' (BasicSR flags: -opt X.yml ...)",
                              description="Run 'basicsr train' with the arguments given.")
    t.add_argument("basicsr_args", nargs=argparse.REMAINDER, help="-opt X.yml [--launcher ...] [--auto_resume] ...")
    t.set_defaults(func=_train)
