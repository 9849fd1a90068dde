"""``pip-adapter demo``: serve a local web page that restores an image with sliders for ω."""
from __future__ import annotations

import argparse
import logging
import signal
from typing import Any

from pip_adapter.cli.common import (DEFAULT_MODEL_HELP, MODEL_HELP, add_model_argument,
                                    load_cli_plugins, resolve_model_arg, with_basicsr_archs)
from pip_adapter.plugins import add_plugin_argument


def run(args: argparse.Namespace) -> int:
    """Load the model once, serve the page until Ctrl+C, then remove the temporary folder."""
    from pip_adapter.demo.app import launch
    from pip_adapter.demo.session import DemoSession
    from pip_adapter.restore.restorer import Restorer

    if args.tile < 0 or args.tile_overlap < 0:
        raise ValueError("--tile and --tile-overlap must be >= 0")
    if args.tile and args.tile_overlap >= args.tile:
        raise ValueError(f"--tile-overlap ({args.tile_overlap}) must be smaller than --tile ({args.tile})")
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    load_cli_plugins(args, (args.opt,))
    args.model = resolve_model_arg(args.model)
    restorer = with_basicsr_archs(lambda: Restorer.from_checkpoint(
        args.model, opt=args.opt, key=args.key, device=args.device, classifier=args.classifier))
    session = DemoSession(restorer, tile=args.tile, tile_overlap=args.tile_overlap)
    # Gradio logs its own start-up probes of the local server through httpx; they are not worth a line each
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # a service manager's SIGTERM must also remove the temporary folder, as Ctrl+C does
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app = launch(session, host=args.host, port=args.port, block=False)
        print(f"pip-adapter demo: serving {args.model} ({', '.join(session.degradations)}) on "
              f"http://{args.host}:{args.port} — Ctrl+C to stop", flush=True)
        try:
            app.block_thread()
        finally:
            app.close()
    finally:
        session.close()
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def register(subparsers: Any) -> None:
    """Add the ``demo`` sub-command."""
    p = subparsers.add_parser(
        "demo", help="a local web page: restore an image, steer ω with sliders (needs the [demo] extra)",
        description="Serve a web page on this machine to restore an uploaded or built-in example image, with one "
                    "slider per degradation type, the classifier's guess (auto), a before/after view, PSNR/SSIM "
                    "against an uploaded ground truth and a download of the result. Needs "
                    "pip install -e \".[demo]\". Writes only inside a temporary folder, removed on exit.")
    add_model_argument(p, help=MODEL_HELP + DEFAULT_MODEL_HELP, required=False)
    p.add_argument("--opt", default=None, help="option YAML of a bare BasicSR net_g (not needed for exports)")
    p.add_argument("--key", default=None, choices=["params_ema", "params"],
                   help="which weights of a bare net_g (default: params_ema when present)")
    p.add_argument("--classifier", default=None, help="exported degradation classifier (for auto)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                        "network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--tile", type=int, default=512,
                   help="tile size preset on the page; larger images restore in tiles (default 512; 0: whole image)")
    p.add_argument("--tile-overlap", type=int, default=32, help="overlap between tiles, blended (default 32)")
    add_plugin_argument(p)
    p.set_defaults(func=run)
