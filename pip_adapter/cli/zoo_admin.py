"""Maintainers' command for the model registry: ``python -m pip_adapter.zoo add|remove|check|list``
(``pip_adapter/zoo/__main__.py`` runs :func:`main`).

    python -m pip_adapter.zoo add pip-nafnet-photo model.safetensors --default \\
        --summary "PIP-NAFNet for photos: noise, blur, low light, ..." --card docs/MODELS.md#pip-nafnet-photo

    # or in one step from the training run: exported (with --classifier bundled) on the way in
    python -m pip_adapter.zoo add pip-nafnet-photo experiments/pip_nafnet_photo/models/net_g_latest.pth \\
        --opt basicsr_options/zoo/pip_nafnet_photo.yml --classifier classifier_photo.safetensors --default \\
        --summary "..."

``add`` loads the file completely (network and bundled classifier) before copying it in, so a file that
``pip-adapter restore`` could not use never enters the registry.  ``--zoo DIR`` (or ``$PIP_ADAPTER_ZOO``) works
on another registry folder than the package's.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from typing import List, Optional

from pip_adapter.cli.common import with_basicsr_archs
from pip_adapter.restore.checkpoint import export_checkpoint, load_checkpoint
from pip_adapter.restore.file_format import read_checkpoint
from pip_adapter.zoo.registry import (BUDGET_BYTES, ZooError, add_model, check_zoo, list_models, registry_bytes,
                                      remove_model, zoo_dir)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pip_adapter.zoo",
                                description="Add, replace, remove or check the models shipped in the package.")
    p.add_argument("--zoo", default=None, help="registry folder (default: $PIP_ADAPTER_ZOO, else the package's)")
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="copy an exported restorer (.safetensors) into the registry under a name")
    add.add_argument("name", help="the model's name (lower case, digits, . _ -)")
    add.add_argument("file", help="a .safetensors file written by 'pip-adapter export' (classifier bundled), or a "
                                  "BasicSR net_g_<iter>.pth (with --opt), exported on the way in")
    add.add_argument("--opt", default=None, help="the option YAML of a BasicSR net_g FILE")
    add.add_argument("--key", default=None, choices=["params_ema", "params"],
                     help="which weights of a net_g FILE (default: params_ema when present)")
    add.add_argument("--classifier", default=None,
                     help="an exported degradation classifier to bundle (FILE is exported with it first)")
    add.add_argument("--classifier-opt", default=None, help="option YAML of a classifier net_g")
    add.add_argument("--summary", required=True, help="one line: what it restores, on what data")
    add.add_argument("--card", default=None, help="where its model card is (default docs/MODELS.md)")
    add.add_argument("--default", action="store_true", help="make it the default model of restore/demo")
    add.add_argument("--replace", action="store_true", help="replace an existing model of that name")
    rm = sub.add_parser("remove", help="drop a model from the registry and delete its file")
    rm.add_argument("name")
    sub.add_parser("check", help="verify every file's size and checksum and the size budget")
    sub.add_parser("list", help="the indexed models")
    return p


def _add(args: argparse.Namespace, folder: str):
    """Export ``args.file`` first when it is not a ready self-describing .safetensors (or a classifier is to be
    bundled), load the result completely, then copy it into the registry."""
    if not os.path.isfile(args.file):
        raise ZooError(f"{args.file}: no such file")
    with tempfile.TemporaryDirectory(prefix="pip-zoo-") as tmp:
        path = args.file
        ready = path.endswith(".safetensors") and read_checkpoint(path)[1] is not None
        if args.classifier or args.opt or args.key or not ready:
            path = os.path.join(tmp, f"{args.name}.safetensors")
            with_basicsr_archs(lambda: export_checkpoint(args.file, args.opt, path, key=args.key,
                                                         classifier=args.classifier,
                                                         classifier_opt=args.classifier_opt))
        loaded = load_checkpoint(path)  # refuses anything restore could not load
        if loaded.kind != "restorer":
            raise ZooError(f"{args.file}: a {loaded.kind} file; the registry holds restorers")
        if loaded.classifier is None:
            logging.warning("%s bundles no degradation classifier: '-d auto' will not work with it "
                            "(add --classifier FILE)", args.file)
        return add_model(path, args.name, args.summary, card=args.card, default=args.default, zoo=folder,
                         replace=args.replace)


def main(argv: Optional[List[str]] = None) -> int:
    """Run one maintainer action; errors are one line on stderr and exit status 2."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    folder = zoo_dir(args.zoo)
    try:
        if args.action == "add":
            entry = _add(args, folder)
            print(f"{entry.name}: {entry.path} ({entry.bytes / 1e6:.2f} MB, sha256 {entry.sha256[:16]}…)"
                  + (" [default]" if entry.default else ""))
        elif args.action == "remove":
            remove_model(args.name, zoo=folder)
            print(f"removed {args.name}")
        elif args.action == "list":
            for e in list_models(folder):
                print(f"{'*' if e.default else ' '} {e.name}  {e.file}  {e.bytes / 1e6:.2f} MB  {e.summary}")
        problems = check_zoo(folder)
        for line in problems:
            print(f"problem: {line}", file=sys.stderr)
        if args.action == "check" and not problems:
            print(f"{folder}: {len(list_models(folder))} model(s), {registry_bytes(folder) / 1e6:.2f} MB of "
                  f"{BUDGET_BYTES / 1e6:g} MB, every checksum matches")
        return 1 if problems else 0
    except (ValueError, OSError) as err:
        print(f"python -m pip_adapter.zoo {args.action}: error: {err}", file=sys.stderr)
        return 2
