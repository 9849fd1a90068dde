"""``pip-adapter inspect``: what a PIP checkpoint learned — levels, parameter split, prompt angles, figures."""
from __future__ import annotations

import argparse
import os
from typing import Any

from pip_adapter.cli.common import add_model_argument, load_cli_plugins, resolve_model_arg, with_basicsr_archs
from pip_adapter.plugins import add_plugin_argument


def run(args: argparse.Namespace) -> int:
    """Load ``--model`` (+ ``--opt``), print the text report, write figures to ``--out`` when possible."""
    from pip_adapter.analysis.embedding import VIZ_HINT
    from pip_adapter.analysis.report import inspect_model
    from pip_adapter.restore.checkpoint import load_checkpoint
    from pip_adapter.wrap.protocol import is_pip_model

    load_cli_plugins(args, (args.opt,))
    args.model = resolve_model_arg(args.model)
    loaded = with_basicsr_archs(lambda: load_checkpoint(args.model, args.opt, key=args.key))
    model = loaded.model
    if not is_pip_model(model):
        raise ValueError(f"{args.model} holds a network without PIP levels ({type(model).__name__}); "
                         "inspect needs a PIP model")
    images = args.images
    if images is None and os.path.isdir(os.path.join("datasets", "builtin", "val")):
        images = os.path.join("datasets", "builtin", "val")
    report = inspect_model(model, out_dir=args.out, images=images, names=loaded.degradations or None,
                           crop=args.crop, tile=args.tile, max_images=args.max_images,
                           figures=not args.no_figures, seed=args.seed)
    print(f"checkpoint: {args.model}")
    print(report.text(), end="")
    if not args.no_figures and not report.figures and not any("figures not written" in n for n in report.notes):
        print("no figures were made (give --out DIR)")
    if images is None and not args.no_figures:
        print("no --images folder: t-SNE and wrong-prompt figures need degraded validation images "
              "(e.g. datasets/builtin/val from 'pip-adapter prepare-data')")
    if any("figures not written" in n for n in report.notes):
        print(f"to get the PNG figures, {VIZ_HINT}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``inspect`` sub-command."""
    p = subparsers.add_parser(
        "inspect", help="show a PIP model's levels, parameter split, prompt angles; write t-SNE / wrong-prompt figures",
        description="Text: skip levels, backbone/PIP parameters, angles between the degradation prompts per level. "
                    "Figures (PNG, need the 'viz' extra: pip install -e \".[viz]\"): angle heat-maps, t-SNE of the "
                    "universal prompts U per level over validation images coloured by type, and a grid restoring "
                    "each degradation with each ω.")
    add_model_argument(p)
    p.add_argument("--opt", default=None, help="training option YAML (needed for a bare BasicSR net_g)")
    p.add_argument("--key", default=None, choices=["params_ema", "params"], help="weights to read from a net_g")
    p.add_argument("--out", default=None, help="folder for the PNG figures (none written without it)")
    p.add_argument("--images", default=None,
                   help="validation folder laid out like the built-in val data (gt/ and <type>[_<variant>]/); "
                        "default datasets/builtin/val when it exists")
    p.add_argument("--crop", type=int, default=96, help="centre crop of each validation image (default 96)")
    p.add_argument("--tile", type=int, default=32, help="tile size for the t-SNE points (default 32)")
    p.add_argument("--max-images", type=int, default=None, help="at most this many images per folder")
    p.add_argument("--seed", type=int, default=0, help="t-SNE seed (default 0)")
    p.add_argument("--no-figures", action="store_true", help="text only")
    add_plugin_argument(p)
    p.set_defaults(func=run)
