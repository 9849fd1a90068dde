"""``pip-adapter models``: the models shipped in the package (name, default, size, summary, card)."""
from __future__ import annotations

import argparse
from typing import Any

from pip_adapter.zoo.registry import list_models, zoo_dir


def run(args: argparse.Namespace) -> int:
    """Print the registry's models, the default marked with ``*``; an empty registry says what to do."""
    folder = zoo_dir()
    entries = list_models()
    if not entries:
        print(f"no shipped model in this installation ({folder}); restore with a model file instead: "
              "pip-adapter restore IMAGE -m MODEL.safetensors -o OUT (train one: pip-adapter quickstart)")
        return 0
    header = ["", "name", "size", "degradations", "auto", "summary"]
    rows = [["*" if e.default else "", e.name, f"{e.bytes / 1e6:.1f} MB", ", ".join(e.degradations) or "-",
             "yes" if e.classifier else "no", e.summary] for e in entries]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    widths[-1] = 0  # the summary is last: never padded
    for line in [header] + rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    print()
    print("* the default: pip-adapter restore IMAGE -o OUT (without -m) uses it; -m NAME picks another")
    for e in entries:
        print(f"{e.name}: model card {e.card}")
    print(f"registry: {folder}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``models`` sub-command."""
    p = subparsers.add_parser(
        "models", help="list the models shipped with pip-adapter (restore and demo use the default without -m)",
        description="List the named models shipped inside the package: the default (marked *) is what "
                    "'pip-adapter restore IMAGE -o OUT' and 'pip-adapter demo' use without -m; -m NAME, "
                    "Restorer.from_pretrained(NAME) pick one by name. Each file's checksum is verified when it "
                    "is loaded.")
    p.set_defaults(func=run)
