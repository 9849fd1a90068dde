"""``pip-adapter export``: a BasicSR ``net_g_*.pth`` (+ its option YAML) → one self-describing checkpoint."""
from __future__ import annotations

import argparse
import os
from typing import Any, Mapping

from torch import nn

from pip_adapter.plugins import add_plugin_argument
from pip_adapter.restore.checkpoint import export_checkpoint


def cli_builder(network: Mapping[str, Any]) -> nn.Module:
    """Build with the pure registries; fall back to BasicSR's ``ARCH_REGISTRY`` for archs only it knows."""
    from pip_adapter.restore.checkpoint import default_builder

    try:
        return default_builder(network)
    except ValueError as err:
        if "unknown" not in str(err):
            raise
        try:
            from pip_adapter.bsr import build_arch
            from pip_adapter.bsr.archs import PIPNet as bsr_pipnet
        except ImportError:
            raise err from None
        opt = dict(network)
        if opt.get("type") == "PIPNet":
            opt.pop("type")
            return bsr_pipnet(**opt)
        return build_arch(opt)


def load_cli_plugins(args: argparse.Namespace, option_files=()) -> None:
    """Load ``--plugin`` entries and the ``plugins:`` of the option files given (backbones they register)."""
    from pip_adapter.plugins import load_plugins, load_plugins_from_option_file

    load_plugins(getattr(args, "plugin", None) or [])
    for path in option_files:
        if path:
            load_plugins_from_option_file(path)


def run(args: argparse.Namespace) -> int:
    """Export ``--ckpt`` to ``--out``; prints what the file holds."""
    load_cli_plugins(args, (args.opt, args.classifier_opt))
    loaded = export_checkpoint(args.ckpt, args.opt, args.out, key=args.key, classifier=args.classifier,
                               classifier_opt=args.classifier_opt, classifier_key=args.classifier_key,
                               builder=cli_builder, overwrite=args.overwrite)
    meta = loaded.meta
    net = meta.get("network") or {}
    backbone = (meta.get("pip_config") or {}).get("backbone") or net.get("backbone") or net
    params = sum(p.numel() for p in loaded.model.parameters())
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB)")
    print(f"  kind:          {meta.get('kind')}")
    print(f"  network:       {net.get('type')}" + (f" on {backbone.get('type')}" if isinstance(backbone, dict)
                                                  and backbone is not net else ""))
    print(f"  parameters:    {params:,d}")
    print(f"  degradations:  {', '.join(meta.get('degradations') or [])}")
    if loaded.kind == "restorer":
        print(f"  input multiple: {meta.get('multiple')}")
        print(f"  classifier:    {'included' if loaded.classifier is not None else 'none'}")
    return 0


def register(subparsers: Any) -> None:
    """Add the ``export`` sub-command."""
    p = subparsers.add_parser(
        "export", help="make a self-describing checkpoint (safetensors + JSON metadata) from a BasicSR net_g",
        description="Turn a BasicSR net_g_<iter>.pth and its option YAML into one file that 'pip-adapter restore' "
                    "needs alone: .safetensors (weights + JSON metadata in the header) or a weights-only .pth. "
                    "A degradation classifier checkpoint exports the same way; --classifier bundles one into a "
                    "restorer file so that '--degradation auto' works from that file.")
    p.add_argument("--ckpt", required=True, help="BasicSR net_g_<iter>.pth (or an exported file to re-export)")
    p.add_argument("--opt", default=None,
                   help="the training option YAML (its network_g); optional when the checkpoint carries it")
    p.add_argument("--out", required=True, help="output file: .safetensors (recommended) or .pth")
    p.add_argument("--key", default=None, choices=["params_ema", "params"],
                   help="which weights of the net_g file (default: params_ema when present, else params)")
    p.add_argument("--classifier", default=None,
                   help="bundle a degradation classifier: its net_g_<iter>.pth (with --classifier-opt) or an "
                        "exported classifier file")
    p.add_argument("--classifier-opt", default=None, help="option YAML of the classifier's training")
    p.add_argument("--classifier-key", default=None, choices=["params_ema", "params"],
                   help="which weights of the classifier's net_g file")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_plugin_argument(p)
    p.set_defaults(func=run)
