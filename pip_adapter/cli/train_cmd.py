"""``pip-adapter quickstart`` and ``pip-adapter train``: BasicSR training from the ``pip-adapter`` command.

``quickstart`` trains the small PIP-NAFNet of ``basicsr_options/quickstart.yml`` on the built-in data
(prepared into ``datasets/builtin`` on the first run, from photos shipped with scikit-image) and prints the
per-task PSNR/SSIM of the degraded inputs and of the restored images.  ``train`` is ``basicsr train``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import List

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


def _quickstart(args: argparse.Namespace) -> int:
    pipeline = bsr_pipeline()
    opt_path = args.opt or find_quickstart_options()
    argv: List[str] = ["-opt", opt_path]
    if args.auto_resume:
        argv.append("--auto_resume")
    if args.force_yml:
        argv += ["--force_yml", *args.force_yml]
    start = time.time()
    exp_dir = pipeline.train_pipeline(os.getcwd(), argv)
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
                    "current directory and print input vs restored PSNR/SSIM per task.")
    q.add_argument("-opt", "--opt", default=None, help="option file (default basicsr_options/quickstart.yml)")
    q.add_argument("--auto_resume", "--auto-resume", dest="auto_resume", action="store_true",
                   help="continue an interrupted quickstart")
    q.add_argument("--force_yml", "--force-yml", dest="force_yml", nargs="+", default=None,
                   help="override options, e.g. train:total_iter=500")
    q.set_defaults(func=_quickstart)
    t = subparsers.add_parser("train", help="same as 'basicsr train' (BasicSR flags: -opt X.yml ...)",
                              description="Run 'basicsr train' with the arguments given.")
    t.add_argument("basicsr_args", nargs=argparse.REMAINDER, help="-opt X.yml [--launcher ...] [--auto_resume] ...")
    t.set_defaults(func=_train)
