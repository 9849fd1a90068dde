"""``pip-adapter prepare-data``: build the built-in dataset or convert the standard layout to LMDBs."""
from __future__ import annotations

import argparse
import os

from pip_adapter.plugins import add_plugin_argument, load_plugins


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``prepare-data`` sub-command."""
    p = subparsers.add_parser(
        "prepare-data", help="build the built-in dataset, or convert PromptIR-style data to BasicSR LMDBs",
        description="Build the built-in dataset from scikit-image's sample photos (--builtin OUT), the photo set "
                    "from Debian wallpaper packages and scikit-image (--photos OUT), or convert "
                    "the standard PromptIR/AirNet/PIP layout to BasicSR LMDBs (--from-standard ROOT OUT). "
                    "An existing non-empty OUT is refused unless --overwrite (and it was made by this command).")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--builtin", metavar="OUT", help="build the built-in dataset in OUT")
    mode.add_argument("--photos", metavar="OUT",
                      help="build the photo set in OUT: real photos from Debian wallpaper packages and scikit-image "
                           "(train/ and heldout/ splits, fixed degraded val sets, manifest with licences)")
    mode.add_argument("--from-standard", nargs=2, metavar=("ROOT", "OUT"),
                      help="convert the standard layout under ROOT (data/Train/..., data_dir/ list files) into OUT")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it was made by prepare-data")
    p.add_argument("--degradations", nargs="+", metavar="NAME",
                   help="degradation types (default: noise rain haze blur low_light); built-in data needs a "
                        "registered synthesiser for each")
    g = p.add_argument_group("built-in data")
    g.add_argument("--image-size", type=int, default=256, help="photos resized to this shorter side (default 256)")
    g.add_argument("--crop-size", type=int, default=128, help="training crop size (default 128)")
    g.add_argument("--crops-per-image", type=int, default=8, help="training crops per photo (default 8)")
    g.add_argument("--val-size", type=int, default=128, help="shorter side of validation images (default 128)")
    g.add_argument("--max-train-images", type=int, default=None, help="use only the first N training photos")
    g.add_argument("--max-val-images", type=int, default=None, help="use only the first N validation photos")
    g.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    ph = p.add_argument_group("photo set")
    ph.add_argument("--short-side", type=int, default=448,
                    help="photos resized so their shorter side is this many pixels (default 448)")
    ph.add_argument("--licences", nargs="+", metavar="LICENCE", default=None,
                    help="keep only photos under these licences (default: all: public-domain CC0-1.0 CC-BY-4.0 "
                         "CC-BY-SA-3.0 CC-BY-SA-4.0 GPL-2+)")
    s = p.add_argument_group("standard-layout conversion")
    s.add_argument("--keep-encoding", action="store_true",
                   help="store the original file bytes (e.g. JPEG) instead of re-encoding to PNG")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_plugin_argument(p)  # e.g. --plugin plugins/snow, then --degradations ... snow
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch to ``prepare_builtin``, ``prepare_photos`` or ``convert_standard`` and print where the data went."""
    from pip_adapter.data import convert_standard, prepare_builtin
    from pip_adapter.data.photos import prepare_photos

    load_plugins(getattr(args, "plugin", None) or [])  # plugins register synthesisers before they are looked up
    if args.photos:
        out = prepare_photos(args.photos, overwrite=args.overwrite, short_side=args.short_side, seed=args.seed,
                             licences=args.licences, progress=not args.no_progress)
        print(f"photo set ready in {out} (train/, heldout/, val/<set>/, manifest.json)")
        return 0
    if args.builtin:
        out = prepare_builtin(args.builtin, overwrite=args.overwrite, degradations=args.degradations,
                              image_size=args.image_size, crop_size=args.crop_size,
                              crops_per_image=args.crops_per_image, val_size=args.val_size,
                              max_train_images=args.max_train_images, max_val_images=args.max_val_images,
                              seed=args.seed, progress=not args.no_progress)
    else:
        root, dest = args.from_standard
        out = convert_standard(root, dest, overwrite=args.overwrite, degradations=args.degradations,
                               reencode=not args.keep_encoding, progress=not args.no_progress)
    print(f"data ready in {out}")
    print(f"BasicSR datasets section: {os.path.join(out, 'datasets.yml')}")
    return 0
