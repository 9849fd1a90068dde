"""``pip-adapter export``: a BasicSR ``net_g_*.pth`` (+ its option YAML) → one self-describing checkpoint."""
from __future__ import annotations

import argparse
import os
from typing import Any, Optional

from pip_adapter.cli.common import add_model_argument, load_cli_plugins, resolve_model_arg, with_basicsr_archs
from pip_adapter.plugins import add_plugin_argument

FORMATS = ("safetensors", "pth", "onnx")
_SUFFIXES = {".safetensors": "safetensors", ".pth": "pth", ".pt": "pth", ".onnx": "onnx"}


def output_format(out: str, fmt: Optional[str]) -> str:
    """The export format: ``--format`` when given (it must agree with the suffix of ``--out``), else the suffix's."""
    suffix = os.path.splitext(out)[1].lower()
    implied = _SUFFIXES.get(suffix)
    if fmt is None:
        if implied is None:
            raise ValueError(f"--out {out}: cannot tell the format from {suffix or 'no suffix'!r}; end it in "
                             ".safetensors, .pth or .onnx, or pass --format")
        return implied
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    if implied != fmt:
        wanted = {"safetensors": ".safetensors", "pth": ".pth", "onnx": ".onnx"}[fmt]
        raise ValueError(f"--format {fmt} writes a {wanted} file, but --out is {out}; name it *{wanted}")
    return fmt


def run_onnx(args: argparse.Namespace) -> int:
    """Export ``--model`` to the ONNX graph ``--out``; prints its signature and the check against PyTorch."""
    from pip_adapter.restore.onnx_export import export_onnx

    info = with_basicsr_archs(lambda: export_onnx(
        args.model, args.opt, args.out, key=args.key, classifier=args.classifier,
        classifier_opt=args.classifier_opt, classifier_key=args.classifier_key, overwrite=args.overwrite))
    meta = info.meta
    channels = (meta.get("onnx") or {}).get("in_channels", "C")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB, ONNX opset {info.opset})")
    print(f"  inputs:        image N×{channels}×H×W float32 (H, W multiples of {meta.get('multiple')}), "
          f"omega N×{len(meta.get('degradations') or [])} float32")
    print("  output:        restored N×C×H×W")
    print(f"  degradations:  {', '.join(meta.get('degradations') or [])}")
    if info.max_abs_diff is not None:
        print(f"  checked:       onnxruntime vs PyTorch max |diff| {info.max_abs_diff:.2e} on {info.checked_shape}")
    else:
        print("  checked:       no (onnxruntime not installed)")
    print(f"  classifier:    {info.classifier_file if info.classifier_file else 'none'}"
          + (" (PyTorch; ONNX cannot hold it — keep it beside the graph for --degradation auto)"
             if info.classifier_file else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    """Export ``--model`` to ``--out``; prints what the file holds."""
    fmt = output_format(args.out, args.format)
    load_cli_plugins(args, (args.opt, args.classifier_opt))
    args.model = resolve_model_arg(args.model)  # a shipped model's name re-exports it (e.g. to ONNX)
    if fmt == "onnx":
        return run_onnx(args)
    from pip_adapter.restore.checkpoint import export_checkpoint

    loaded = with_basicsr_archs(lambda: export_checkpoint(
        args.model, args.opt, args.out, key=args.key, classifier=args.classifier,
        classifier_opt=args.classifier_opt, classifier_key=args.classifier_key, overwrite=args.overwrite))
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
        "export", help="make a self-describing checkpoint (safetensors + JSON metadata, or ONNX) from a BasicSR net_g",
        description="Turn a BasicSR net_g_<iter>.pth and its option YAML into one file that 'pip-adapter restore' "
                    "needs alone: .safetensors (weights + JSON metadata in the header) or a weights-only .pth. "
                    "A degradation classifier checkpoint exports the same way; --classifier bundles one into a "
                    "restorer file so that '--degradation auto' works from that file. --format onnx (or an --out ending in .onnx) "
                    "writes an ONNX graph (image, omega -> restored; dynamic batch, height and width) that "
                    "'pip-adapter restore -m' runs with onnxruntime (pip install -e \".[onnx]\").")
    add_model_argument(p, help="BasicSR net_g_<iter>.pth (or an exported file, or a shipped model's name, to "
                               "re-export)")
    p.add_argument("--opt", default=None,
                   help="the training option YAML (its network_g); optional when the checkpoint carries it")
    p.add_argument("--out", required=True, help="output file: .safetensors (recommended), .pth or .onnx")
    p.add_argument("--format", default=None, choices=FORMATS,
                   help="output format (default: from the suffix of --out; safetensors when it is .safetensors)")
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
