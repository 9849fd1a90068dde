"""``pip-adapter evaluate``: the all-in-one benchmark table (BSD68, Rain100L, SOTS (, GoPro, LOL)) of a model."""
from __future__ import annotations

import argparse
import os
from typing import Any

from pip_adapter.cli.common import (AUTO_MODES, DEFAULT_AUTO_MODE, DEFAULT_MODEL_HELP, MODEL_HELP,
                                    add_model_argument, load_cli_plugins, resolve_model_arg,
                                    with_basicsr_archs)
from pip_adapter.plugins import add_plugin_argument


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the markdown table, write it and the JSON under ``--out``."""
    from pip_adapter.restore.evaluate import check_results_folder, evaluate, format_markdown, write_results
    from pip_adapter.restore.restorer import Restorer

    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f"--max-images must be >= 1, got {args.max_images}")
    if not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data folder not found: {args.data} (the standard all-in-one layout; "
                                "see docs/DATA.md, 'The standard layout')")
    load_cli_plugins(args, (args.opt,))
    args.model = resolve_model_arg(args.model)
    restorer = with_basicsr_archs(lambda: Restorer.from_checkpoint(
        args.model, opt=args.opt, key=args.key, device=args.device, classifier=args.classifier, tile=args.tile))
    name = args.name or os.path.splitext(os.path.basename(args.model))[0]
    out = args.out or os.path.join("results", f"evaluate_{name}")
    stem = os.path.join(out, f"{args.setting}_{args.omega}")
    check_results_folder(out)  # before hours of restoring, not after
    if not args.overwrite and (os.path.exists(stem + ".md") or os.path.exists(stem + ".json")):
        raise FileExistsError(f"{stem}.md/.json exist; pass --overwrite to replace them, or choose another --out")
    result = evaluate(restorer, args.data, setting=args.setting, omega=args.omega, auto_mode=args.auto_mode,
                      seed=args.seed, max_images=args.max_images, progress=not args.no_progress, model_name=name)
    paths = write_results(result, out, overwrite=args.overwrite)
    print(format_markdown(result), end="")
    print(f"\nwrote {paths['markdown']} and {paths['json']}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``evaluate`` sub-command."""
    p = subparsers.add_parser(
        "evaluate", help="the all-in-one benchmark table of a model (BSD68, Rain100L, SOTS, GoPro, LOL)",
        description="Restore the test sets of the standard all-in-one layout and print the PSNR/SSIM table as "
                    "the papers print it (RGB, crop to a multiple of 16, scikit-image SSIM), beside the published "
                    "numbers of AirNet, PromptIR and PIP. Writes <out>/<setting>_<omega>.md and .json.")
    add_model_argument(p, help=MODEL_HELP + DEFAULT_MODEL_HELP, required=False)
    p.add_argument("--opt", default=None, help="option YAML of a bare BasicSR net_g (not needed for exports)")
    p.add_argument("--key", default=None, choices=["params_ema", "params"],
                   help="which weights of a bare net_g (default: params_ema when present)")
    p.add_argument("--data", default="datasets/allinone",
                   help="root of the standard layout (default datasets/allinone)")
    p.add_argument("--setting", default="3task", choices=["3task", "5task"],
                   help="3task: SOTS, Rain100L, BSD68 σ15/25/50; 5task: + GoPro, LOL (default 3task)")
    p.add_argument("--omega", default="true", choices=["true", "auto"],
                   help="ω of each image: the set's true label (default) or chosen by the degradation classifier")
    p.add_argument("--auto-mode", default=DEFAULT_AUTO_MODE, choices=list(AUTO_MODES),
                   help=f"with --omega auto: 'argmax' gives ω to the classifier's top type only; 'weights' uses its "
                        f"probabilities as ω (for restorers trained on mixed ω, train.dmix) (default: {DEFAULT_AUTO_MODE})")
    p.add_argument("--classifier", default=None, help="exported degradation classifier (for --omega auto)")
    p.add_argument("--out", default=None, help="output folder (default results/evaluate_<model name>)")
    p.add_argument("--name", default=None, help="name of the model in the table (default: the file's stem)")
    p.add_argument("--seed", type=int, default=0, help="added to the per-image noise seeds (default 0)")
    p.add_argument("--max-images", type=int, default=None,
                   help="only the first N images of each set (a quick check; not the published protocol)")
    p.add_argument("--tile", type=int, default=0, help="restore in tiles of this size (0: whole image, default)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--overwrite", action="store_true", help="replace existing result files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_plugin_argument(p)
    p.set_defaults(func=run)
