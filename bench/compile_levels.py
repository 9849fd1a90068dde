"""Where torch.compile's speed-up goes: each PIP level of PIP-NAFNet alone, eager vs. compiled, beside the models.

Run from the repository root::

    python bench/compile_levels.py [--size 256] [--repeats 5] [--update-docs]

PIP-NAFNet as in ``bench/compile_onnx.py`` (NAFNet width 32, enc 2,2,4,8 / mid 12 / dec 2,2,2,2; PIP on 3 types, the
wrapper's default sizes). Each PIP level is compiled on its own (``torch.compile``, inductor, static shapes: every
level gets its own graph) and fed the skip feature it sees in the model for a 1×3×size² input; the bare and the
PIP model are compiled whole. Everything is timed round-robin in one process (``bench.common.time_interleaved``),
one thread, ``torch.inference_mode``, median process CPU time per call.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence

import torch

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (add_output_args, command_line, machine_info, markdown_table, median,  # noqa: E402
                          time_interleaved, write_section)
from bench.efficiency import NAFNET_SIDD  # noqa: E402
from pip_adapter.backbones import NAFNet  # noqa: E402
from pip_adapter.wrap import wrap_with_pip  # noqa: E402

logger = logging.getLogger("bench.compile_levels")
TYPES = ["noise", "rain", "haze"]


def skip_features(model: torch.nn.Module, x: torch.Tensor, omega: torch.Tensor) -> List[torch.Tensor]:
    """The skip feature each PIP level of ``model`` receives for input ``x`` (hooks removed by handle after)."""
    feats: Dict[int, torch.Tensor] = {}
    handles = [lv.register_forward_hook(lambda m, a, o, i=i: feats.__setitem__(i, a[0].detach().clone()))
               for i, lv in enumerate(model.pip_levels)]
    try:
        with torch.inference_mode():
            model(x, omega)
    finally:
        for h in handles:
            h.remove()
    return [feats[i] for i in range(len(handles))]


def measure(size: int, repeats: int, width: int = 32, backend: str = "inductor") -> Dict[str, object]:
    """Median CPU ms per call of the bare / PIP model and of every PIP level, eager and compiled."""
    import torch._dynamo.config as dynamo_config

    # one graph per level, each specialised to its own sizes (as inside the whole-model graph)
    dynamo_config.automatic_dynamic_shapes = False
    dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, 16)
    naf = dict(NAFNET_SIDD, width=width)
    torch.manual_seed(0)
    bare = NAFNet(**naf).eval()
    pip = wrap_with_pip(NAFNet(**naf), degradations=TYPES).eval()
    x = torch.rand(1, 3, size, size)
    om = torch.tensor([[1.0, 0.0, 0.0]])
    feats = skip_features(pip, x, om)
    levels = list(pip.pip_levels)
    fns = {}
    with torch.inference_mode():
        cb, cp = torch.compile(bare, backend=backend), torch.compile(pip, backend=backend)
        fns["bare eager"], fns["bare compiled"] = (lambda: bare(x)), (lambda: cb(x))
        fns["PIP eager"], fns["PIP compiled"] = (lambda: pip(x, om)), (lambda: cp(x, om))
        for i, (lv, f) in enumerate(zip(levels, feats)):
            cl = torch.compile(lv, backend=backend)
            fns[f"L{i + 1} eager"] = (lambda lv=lv, f=f: lv(f, om))
            fns[f"L{i + 1} compiled"] = (lambda cl=cl, f=f: cl(f, om))
        logger.info("compiling and warming up %d callables", len(fns))
        cpu: Dict[str, List[float]] = {}
        time_interleaved(fns, repeats=repeats, warmup=2, cpu_out=cpu)
    ms = {k: median(v) * 1000 for k, v in cpu.items()}
    shapes = [(lv.channels, lv.prompt_dim, lv.prompt_size, tuple(f.shape[-2:])) for lv, f in zip(levels, feats)]
    return {"ms": ms, "shapes": shapes, "size": size, "repeats": repeats, "backend": backend, "width": width}


def render(res: Dict[str, object]) -> str:
    """The section: one row per model and per level, eager / compiled / speed-up."""
    ms = res["ms"]
    rows = []

    def row(name: str, key: str, note: str = "") -> None:
        e, c = ms[f"{key} eager"], ms[f"{key} compiled"]
        rows.append([name + note, f"{e:,.1f}", f"{c:,.1f}", f"{e / c:.2f}×"])

    row(f"NAFNet-{res['width']} (bare)", "bare")
    row(f"PIP-NAFNet-{res['width']}", "PIP")
    levels_e = levels_c = 0.0
    for i, (c, d, s, hw) in enumerate(res["shapes"]):
        row(f"PIP level {i + 1} alone", f"L{i + 1}", f" (C {c}, D {d}, s {s}, at {hw[0]}×{hw[1]})")
        levels_e += ms[f"L{i + 1} eager"]
        levels_c += ms[f"L{i + 1} compiled"]
    rows.append([f"the {len(res['shapes'])} levels", f"{levels_e:,.1f}", f"{levels_c:,.1f}", f"{levels_e / levels_c:.2f}×"])
    pe, pc = ms["PIP eager"] - ms["bare eager"], ms["PIP compiled"] - ms["bare compiled"]
    rows.append(["PIP-NAFNet − NAFNet (what PIP adds inside the model)", f"{pe:,.1f}", f"{pc:,.1f}", f"{pe / pc:.2f}×"])
    size = res["size"]
    return "\n".join([
        f"Command: `{command_line()}`", "",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine_info().items())
        + f"; load average (1 min) at the end: {os.getloadavg()[0]:.1f}", "",
        f"Input 1×3×{size}²; one thread; `torch.inference_mode`; median process CPU ms per call over "
        f"{res['repeats']} round-robin rounds; backend `{res['backend']}`; each level compiled alone with static "
        "shapes and fed the skip feature it receives in the model.", "",
        markdown_table(["", "eager ms", "compiled ms", "speed-up"], rows)]) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Measure and write the section ``compile_levels``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--width", type=int, default=32, help="NAFNet width (32: the compile/ONNX table's model)")
    p.add_argument("--backend", default="inductor", help="torch.compile backend (aot_eager: no code generation)")
    add_output_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    text = render(measure(args.size, args.repeats, args.width, args.backend))
    write_section(args, "compile_levels", text, title="Where the compiled time of PIP goes (per level)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
