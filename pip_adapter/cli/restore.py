"""``pip-adapter restore``: restore image files, folders or globs with a (self-describing) checkpoint."""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, List, Optional, Tuple

from pip_adapter.cli.common import (AUTO_MODES, DEFAULT_AUTO_MODE, DEFAULT_MODEL_HELP, add_model_argument,
                                    load_cli_plugins, resolve_model_arg, with_basicsr_archs)
from pip_adapter.plugins import add_plugin_argument

# image_io.DEFAULT_MAX_PIXELS, written out so that --help imports no image library (a test compares them)
DEFAULT_MAX_PIXELS = 100_000_000


def _fmt(value: Optional[float], digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _gain(after: Optional[float], before: Optional[float]) -> str:
    if after is None or before is None or not all(math.isfinite(v) for v in (after, before)):
        return "-"
    return f"{after - before:+.2f}"


def print_summary(rows: List[Any], failures: List[Tuple[str, str]], with_gt: bool, out=None) -> None:
    """A table of the restored images (ω used, seconds, and with a ground truth the input's and the result's
    PSNR/SSIM and the PSNR gain), its average row (seconds per image) and the list of failures."""
    from pip_adapter.restore.batch import BatchResult

    out = out or sys.stdout
    batch = BatchResult(restored=list(rows), failures=list(failures))
    header = ["image", "size", "omega", "seconds"]
    if with_gt:
        header += ["input PSNR", "PSNR", "gain", "input SSIM", "SSIM"]
    table = []
    for r in rows:
        line = [os.path.basename(r.input), f"{r.size[1]}x{r.size[0]}", r.chosen, f"{r.seconds:.2f}"]
        if with_gt:
            line += [_fmt(r.input_psnr, 2), _fmt(r.psnr, 2), _gain(r.psnr, r.input_psnr), _fmt(r.input_ssim, 4),
                     _fmt(r.ssim, 4)]
        table.append(line)
    if with_gt:
        avg = batch.averages()
        table.append([f"average ({avg['count']})", "", "", _fmt(avg["seconds"], 2), _fmt(avg["input_psnr"], 2),
                      _fmt(avg["psnr"], 2), _gain(avg["psnr"], avg["input_psnr"]), _fmt(avg["input_ssim"], 4),
                      _fmt(avg["ssim"], 4)])
    if rows:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
        sep = "  "
        print(sep.join(h.ljust(w) for h, w in zip(header, widths)), file=out)
        print(sep.join("-" * w for w in widths), file=out)
        for i, line in enumerate(table):
            if with_gt and i == len(table) - 1:
                print(sep.join("-" * w for w in widths), file=out)
            print(sep.join(str(x).ljust(w) for x, w in zip(line, widths)), file=out)
    unscored = batch.unscored if with_gt else []
    print(f"restored {len(rows)} image(s), {len(failures)} failed"
          + (f", {len(unscored)} restored but not scored" if unscored else ""), file=out)
    for r in unscored:
        print(f"  NOT SCORED {r.input}: {r.unscored}", file=out)
    for name, why in failures:
        print(f"  FAILED {name}: {why}", file=out)


def run(args: argparse.Namespace) -> int:
    """Restore every input; a bad file is reported and skipped; exit 1 if anything failed."""
    if args.degradation is not None and args.omega is not None:
        raise ValueError("give either --degradation or --omega, not both")
    # imported once the arguments are known to be sensible: a typo is reported without loading torch
    from tqdm import tqdm

    from pip_adapter.omega import parse_omega_spec
    from pip_adapter.restore.batch import check_batch, expand_inputs, restore_batch
    from pip_adapter.restore.restorer import AUTO, Restorer

    omega = parse_omega_spec(args.omega) if args.omega is not None else None
    if args.tile < 0 or args.tile_overlap < 0:
        raise ValueError("--tile and --tile-overlap must be >= 0")
    if args.tile and args.tile_overlap >= args.tile:
        raise ValueError(f"--tile-overlap ({args.tile_overlap}) must be smaller than --tile ({args.tile}); "
                         "a quarter of the tile is a good overlap")
    check_batch(args.output, args.suffix, args.gt)  # before the model loads: a typo costs nothing
    files, failures = expand_inputs(args.inputs)
    if not files and failures:
        for name, why in failures:
            print(f"pip-adapter restore: {name}: {why}", file=sys.stderr)
        return 1
    load_cli_plugins(args, (args.opt,))
    model = resolve_model_arg(args.model)
    restorer = with_basicsr_archs(lambda: Restorer.from_checkpoint(
        model, opt=args.opt, key=args.key, device=args.device, classifier=args.classifier, tile=args.tile,
        tile_overlap=args.tile_overlap, precision=args.precision, max_pixels=args.max_pixels))
    if args.degradation is None and omega is None:
        if restorer.classifier is None:
            raise ValueError("say which degradation to remove: --degradation NAME or --omega rain=0.7,noise=0.3 "
                             f"(this model knows {', '.join(restorer.degradations)}; it bundles no degradation "
                             "classifier, so it cannot choose by itself)")
        # the shipped models bundle their classifier: a newcomer's first command needs no -d
        print("no --degradation given: the model's classifier chooses for each image (-d auto)", file=sys.stderr)
        args.degradation = AUTO
    auto = args.degradation is not None and args.degradation.strip().lower() == AUTO

    def _tell(src: str, row: Any, why: Optional[str]) -> None:
        # written above the progress bars, as each image is done
        if why is not None:
            tqdm.write(f"error: {src}: {why}", file=sys.stderr)
        elif auto:
            tqdm.write(f"{os.path.basename(src)}: {row.chosen}", file=sys.stderr)

    # restore_batch checks ω before any image, so a typo fails fast with the known names
    result = restore_batch(restorer, files, args.output, degradation=args.degradation, omega=omega,
                           auto_mode=args.auto_mode, suffix=args.suffix, gt_dir=args.gt, overwrite=args.overwrite,
                           progress=not args.no_progress, on_image=_tell)
    failures += result.failures
    print_summary(result.restored, failures, with_gt=args.gt is not None)
    return 1 if failures else 0


def register(subparsers: Any) -> None:
    """Add the ``restore`` sub-command."""
    p = subparsers.add_parser(
        "restore", help="restore images with a trained model",
        description="Restore image files, folders or glob patterns. The model is a shipped one (by name; "
                    "without -m the default, see pip-adapter models), an exported checkpoint "
                    "(pip-adapter export) or a BasicSR net_g_<iter>.pth with --opt. Images keep their bit depth, "
                    "channels (gray, alpha) and size.")
    p.add_argument("inputs", nargs="+", help="image files, folders (their images) or glob patterns")
    add_model_argument(p, help="a shipped model's name (pip-adapter models), an exported checkpoint (.safetensors / "
                               ".pth, or .onnx run by onnxruntime), or a BasicSR net_g_<iter>.pth with --opt"
                               + DEFAULT_MODEL_HELP, required=False)
    p.add_argument("--opt", default=None, help="option YAML of a bare BasicSR net_g (not needed for exports)")
    p.add_argument("--key", default=None, choices=["params_ema", "params"],
                   help="which weights of a bare net_g (default: params_ema when present)")
    p.add_argument("-o", "--output", required=True, help="output folder (created if needed)")
    p.add_argument("-d", "--degradation", default=None,
                   help="the degradation to remove (a name such as rain), or 'auto' to let the classifier choose "
                        "(default: auto when the model bundles a classifier, as the shipped ones do)")
    p.add_argument("--omega", default=None, help="a mix of degradations, e.g. rain=0.7,noise=0.3")
    p.add_argument("--auto-mode", default=DEFAULT_AUTO_MODE, choices=list(AUTO_MODES),
                   help=f"with --degradation auto: 'argmax' gives ω to the classifier's top type only; 'weights' "
                        f"uses its probabilities as ω (for restorers trained on mixed ω, train.dmix) "
                        f"(default: {DEFAULT_AUTO_MODE})")
    p.add_argument("--classifier", default=None, help="exported degradation classifier (for --degradation auto)")
    p.add_argument("--tile", type=int, default=0, help="restore in tiles of this size, for large images or little memory (default 0: the whole "
                        "image at once)")
    p.add_argument("--tile-overlap", type=int, default=32, help="overlap between tiles, blended (default 32)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="fp32 (default), or autocast to bf16 / fp16 (fp16 only where the device supports it)")
    p.add_argument("--gt", default=None, help="folder of ground-truth images (same names): report PSNR/SSIM")
    p.add_argument("--suffix", default="", help="added to output file names before the extension (default: none, the input's name)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"refuse images larger than this many pixels, before decoding them (default: "
                        f"{DEFAULT_MAX_PIXELS}; 0: no limit)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_plugin_argument(p)
    p.set_defaults(func=run)
