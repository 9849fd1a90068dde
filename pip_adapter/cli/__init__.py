"""``pip-adapter`` console command: argument parsing only.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
``func(args) -> int`` that calls one function of the library layers.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional

from pip_adapter.utils.io import os_error_line

# sub-command modules, in the order shown by --help
_COMMANDS = ("prepare_data", "train_cmd", "models", "export", "restore", "evaluate", "demo", "extend", "inspect")


def build_parser() -> argparse.ArgumentParser:
    """The ``pip-adapter`` parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="pip-adapter",
        description="Prompt-In-Prompt universal restoration on any U-shaped network (BasicSR plugin).")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        modname = f"{__name__}.{name}"
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as err:
            if err.name == modname:
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``pip-adapter`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, OSError) as err:
        # OS errors (permission denied, read-only file system, no space left on device): "<path>: <reason>"
        msg = os_error_line(err) if isinstance(err, OSError) and err.errno is not None else err
        print(f"pip-adapter {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
