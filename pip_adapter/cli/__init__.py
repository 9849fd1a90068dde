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
from pip_adapter.utils.messages import warnings_to_log_only

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# sub-command modules, in the order shown by --help
_COMMANDS = ("prepare_data", "train_cmd", "models", "export", "restore", "evaluate", "demo", "extend", "inspect")


def build_parser() -> argparse.ArgumentParser:
    """The ``pip-adapter`` parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="pip-adapter",
        description="Prompt-In-Prompt universal restoration on any U-shaped network (BasicSR plugin).")
    parser.add_argument("--log-level", default="WARNING", type=str.upper, choices=LOG_LEVELS,
                        help="what goes to the console besides a command's own output (default WARNING: "
                             "warnings and errors; INFO adds pip-adapter's notes, DEBUG everything, other "
                             "libraries' messages included); training logs keep INFO in their log file")
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


def configure_logging(level: str = "WARNING") -> bool:
    """Console logging for a command, quiet by default: a command prints its results itself, so the console gets
    pip-adapter's records from ``level`` up and other libraries' (onnxscript's optimiser, httpx, ...) from WARNING
    up, unless ``level`` is DEBUG.  The ``pip_adapter`` logger itself stays at INFO (or DEBUG) so that a training
    run's log file receives its notes.  Leaves logging alone when the host program configured it (returns False).
    """
    root = logging.getLogger()
    if root.handlers:
        return False
    value = getattr(logging, str(level).upper())
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s: %(message)s"))
    handler.setLevel(value)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if value <= logging.DEBUG else logging.WARNING)
    logging.getLogger("pip_adapter").setLevel(min(value, logging.INFO))
    warnings_to_log_only()   # a library warning is printed once, as a log line, not also as a UserWarning
    return True


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``pip-adapter`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
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
