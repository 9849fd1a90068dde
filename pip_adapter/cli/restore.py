"""``pip-adapter restore``: restore image files, folders or globs with a (self-describing) checkpoint."""
from __future__ import annotations

import argparse
import glob
import math
import os
import sys
from typing import Any, Callable, List, Optional, Tuple

from pip_adapter.cli.common import (AUTO_MODES, DEFAULT_AUTO_MODE, DEFAULT_MODEL_HELP, add_model_argument,
                                    load_cli_plugins, resolve_model_arg, with_basicsr_archs)
from pip_adapter.plugins import add_plugin_argument
from pip_adapter.utils.io import file_id, os_error_line

# image_io.DEFAULT_MAX_PIXELS, written out so that --help imports no image library (a test compares them)
DEFAULT_MAX_PIXELS = 100_000_000


def expand_inputs(specs: List[str]) -> Tuple[List[str], List[Tuple[str, str]]]:
    """Files named by ``specs`` (files, folders — their images, not recursive — or globs), and problems found."""
    from pip_adapter.image_io import is_image_file

    files: List[str] = []
    problems: List[Tuple[str, str]] = []
    seen = set()

    def _add(path: str) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            files.append(path)

    for spec in specs:
        if os.path.isdir(spec):
            found = sorted(os.path.join(spec, f) for f in os.listdir(spec)
                           if is_image_file(f) and os.path.isfile(os.path.join(spec, f)))
            if not found:
                problems.append((spec, "folder holds no image files"))
            for f in found:
                _add(f)
        elif os.path.exists(spec):
            _add(spec)  # named explicitly: try it even without an image extension, and report if unreadable
        elif glob.has_magic(spec):
            found = sorted(f for f in glob.glob(spec, recursive=True) if os.path.isfile(f))
            if not found:
                problems.append((spec, "no file matches this pattern"))
            for f in found:
                _add(f)
        else:
            problems.append((spec, "no such file or folder"))
    return files, problems


def check_suffix(suffix: str) -> None:
    """Refuse a ``--suffix`` that could move outputs out of the output folder (a path separator, ``..``)."""
    seps = [sep for sep in (os.sep, os.altsep, "/") if sep]
    if any(sep in suffix for sep in seps) or "\0" in suffix or suffix.strip() in (".", ".."):
        raise ValueError(f"--suffix {suffix!r} must be plain text added to file names (no path separator, "
                         "no '..'): outputs stay inside the output folder")


def input_checker(files: List[str]) -> Callable[[str], bool]:
    """A test telling whether a path is one of ``files`` (links and hard links followed)."""
    reals = {os.path.realpath(f) for f in files}
    ids = {file_id(f) for f in files} - {None}
    return lambda path: os.path.realpath(path) in reals or file_id(path) in ids


def inside(path: str, folder: str) -> bool:
    """True when ``path`` resolves (links followed) to somewhere inside ``folder``."""
    folder_real = os.path.realpath(folder)
    return os.path.commonpath([os.path.realpath(path), folder_real]) == folder_real


def output_paths(files: List[str], output: str, suffix: str = "") -> List[str]:
    """Output path per input: ``output/<name>``; names that occur in several folders go to
    ``output/<folder name>/<name>`` so that nothing collides.  A ``suffix`` with a path separator is refused."""
    from collections import Counter

    check_suffix(suffix)

    def _name(src: str) -> str:
        stem, ext = os.path.splitext(os.path.basename(src))
        return f"{stem}{suffix}{ext if ext else '.png'}"

    counts = Counter(_name(f) for f in files)
    return [os.path.join(output, os.path.basename(os.path.dirname(os.path.abspath(f))), _name(f))
            if counts[_name(f)] > 1 else os.path.join(output, _name(f)) for f in files]


def find_gt(gt_dir: str, src: str) -> Optional[str]:
    """The ground truth of ``src`` in ``gt_dir``: the same file name, else the same stem with any image extension."""
    from pip_adapter.image_io import IMAGE_EXTENSIONS

    name = os.path.basename(src)
    same = os.path.join(gt_dir, name)
    if os.path.isfile(same):
        return same
    stem = os.path.splitext(name)[0]
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        cand = os.path.join(gt_dir, stem + ext)
        if os.path.isfile(cand):
            return cand
    return None


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


def _mean(values: List[Optional[float]]) -> Optional[float]:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def print_summary(rows: List[Any], failures: List[Tuple[str, str]], with_gt: bool, out=None) -> None:
    """A table of the restored images (ω used, seconds, and with a ground truth the input's and the result's
    PSNR/SSIM and the PSNR gain), its average row (seconds per image) and the list of failures."""
    out = out or sys.stdout
    header = ["image", "size", "omega", "seconds"]
    if with_gt:
        header += ["input PSNR", "PSNR", "gain", "input SSIM", "SSIM"]
    table = []
    for r in rows:
        line = [os.path.basename(r.input), f"{r.size[1]}x{r.size[0]}", r.chosen, f"{r.seconds:.2f}"]
        if with_gt:
            in_psnr, in_ssim = getattr(r, "input_psnr", None), getattr(r, "input_ssim", None)
            line += [_fmt(in_psnr, 2), _fmt(r.psnr, 2), _gain(r.psnr, in_psnr), _fmt(in_ssim, 4), _fmt(r.ssim, 4)]
        table.append(line)
    if with_gt:
        # an identical pair (infinite PSNR) has no meaningful average: left out of the PSNR columns
        scored = [r for r in rows if r.psnr is not None and not math.isinf(r.psnr)]
        avg_psnr = _mean([r.psnr for r in scored])
        avg_in = _mean([getattr(r, "input_psnr", None) for r in scored
                        if getattr(r, "input_psnr", None) is not None and not math.isinf(r.input_psnr)])
        avg_ssim = _mean([r.ssim for r in rows if r.psnr is not None])
        avg_in_ssim = _mean([getattr(r, "input_ssim", None) for r in rows if r.psnr is not None])
        table.append([f"average ({len(scored)})", "", "", _fmt(_mean([r.seconds for r in rows]), 2),
                      _fmt(avg_in, 2), _fmt(avg_psnr, 2), _gain(avg_psnr, avg_in), _fmt(avg_in_ssim, 4),
                      _fmt(avg_ssim, 4)])
    if rows:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *table)]
        sep = "  "
        print(sep.join(h.ljust(w) for h, w in zip(header, widths)), file=out)
        print(sep.join("-" * w for w in widths), file=out)
        for i, line in enumerate(table):
            if with_gt and i == len(table) - 1:
                print(sep.join("-" * w for w in widths), file=out)
            print(sep.join(str(x).ljust(w) for x, w in zip(line, widths)), file=out)
    unscored = [r for r in rows if getattr(r, "unscored", None)] if with_gt else []
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

    from pip_adapter.omega import name_to_index, parse_omega_spec, to_omega
    from pip_adapter.restore.restorer import Restorer

    omega = parse_omega_spec(args.omega) if args.omega is not None else None
    if args.tile < 0 or args.tile_overlap < 0:
        raise ValueError("--tile and --tile-overlap must be >= 0")
    if args.tile and args.tile_overlap >= args.tile:
        raise ValueError(f"--tile-overlap ({args.tile_overlap}) must be smaller than --tile ({args.tile}); "
                         "a quarter of the tile is a good overlap")
    if args.gt is not None and not os.path.isdir(args.gt):
        raise FileNotFoundError(f"--gt folder not found: {args.gt}")
    check_suffix(args.suffix)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise FileExistsError(f"-o {args.output} exists and is not a folder; give an output folder")
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
        args.degradation = "auto"
    # validate ω once, before any work, so that a typo fails fast with the known names
    if omega is not None:
        to_omega(omega, restorer.degradations, batch_size=1)
    elif args.degradation.strip().lower() != "auto":
        name_to_index(args.degradation, restorer.degradations)
    elif restorer.classifier is None:
        raise ValueError("--degradation auto needs a degradation classifier: pass --classifier FILE, or export "
                         "the model with one (pip-adapter export ... --classifier)")
    os.makedirs(args.output, exist_ok=True)
    is_an_input = input_checker(files)
    rows = []
    targets = set()
    show = not args.no_progress
    with tqdm(total=len(files), desc="restoring", unit="img", disable=not show, file=sys.stderr) as bar:
        for src, dst in zip(files, output_paths(files, args.output, args.suffix)):
            stem = os.path.splitext(os.path.basename(src))[0]
            bar.set_postfix_str(os.path.basename(src))
            try:
                if os.path.realpath(dst) in targets:
                    raise FileExistsError(f"another input already writes {dst}; rename one of them")
                if not inside(dst, args.output):  # e.g. a link inside -o pointing elsewhere
                    raise ValueError(f"{dst} would be written outside the output folder {args.output}")
                if is_an_input(dst):
                    # links included: -o may be a link to the input folder
                    raise FileExistsError(f"{dst} is an input file (the output folder leads to the inputs); "
                                          "choose another --output or a --suffix")
                gt = None
                unscored = None
                if args.gt is not None:
                    gt = find_gt(args.gt, src)
                    if gt is None:
                        unscored = f"no ground truth named {stem}.* in {args.gt}"
                targets.add(os.path.realpath(dst))
                with tqdm(total=0, desc="  tiles", unit="tile", leave=False, file=sys.stderr,
                          disable=not show or not args.tile) as tiles:
                    def _steps(n: int, bar=tiles) -> None:
                        bar.total = n
                        bar.refresh()

                    result = restorer.restore_file(src, dst, degradation=args.degradation, omega=omega,
                                                   auto_mode=args.auto_mode, overwrite=args.overwrite, gt=gt,
                                                   progress=tiles.update, on_steps=_steps)
                if unscored:
                    result.unscored = unscored
                rows.append(result)
                if args.degradation is not None and args.degradation.strip().lower() == "auto":
                    bar.write(f"{os.path.basename(src)}: {result.chosen}")
            except (ValueError, OSError, RuntimeError) as err:
                why = os_error_line(err) if isinstance(err, OSError) and err.errno is not None else str(err)
                why = why[len(src) + 2:] if why.startswith(f"{src}: ") else why
                failures.append((src, why))
                bar.write(f"error: {src}: {why}")
            bar.update(1)
    print_summary(rows, failures, with_gt=args.gt is not None)
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
