"""Eager forwards of one PIP level, as ``"auto"`` runs them: whole-map channels-last and P2F in row bands.

Run from the repository root (the same command on two trees compares them; it uses only ``PIPLevel`` and
``set_p2f_chunking``, which every version has)::

    python bench/level_eager.py                       # the three cases of docs/BENCHMARKS.md, 7 rounds
    python bench/level_eager.py --repeats 3 --cases 8,16,8,1,32

A case ``C,D,s,B,H`` is a level ``PIPLevel(C, D, s, 3)`` fed a B×C×H×H skip feature and one-hot ω.  For each
case the level runs with bands off (``whole``: the channels-last path) and on (``bands``: ``--bands`` bands of
H/bands rows, at least 8, through ``set_p2f_chunking`` as the ``Restorer`` uses it); ``torch.inference_mode``, one
thread, every (case, mode) timed round-robin in one process (``bench.common.time_interleaved``), median process
CPU time.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import torch

if __package__ in (None, ""):  # run as a script: make `bench` and `pip_adapter` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import command_line, machine_info, markdown_table, median, time_interleaved  # noqa: E402
from pip_adapter.modules import PIPLevel  # noqa: E402

Case = Tuple[int, int, int, int, int]
# level 1 of PIP-NAFNet-32 at 256² (B 1), the same at 128² with B 2 (the attention's per-sample product),
# and a wide level (C > D) at 64²
CASES: Tuple[Case, ...] = ((32, 64, 32, 1, 256), (32, 64, 32, 2, 128), (128, 64, 32, 1, 64))
BANDS = 4


def parse_case(text: str) -> Case:
    """``"C,D,s,B,H"`` → a case tuple."""
    parts = [int(p) for p in text.split(",")]
    if len(parts) != 5 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"a case is C,D,s,B,H (five positive ints), got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def measure(cases: Sequence[Case] = CASES, repeats: int = 7, bands: int = BANDS) -> Dict[str, float]:
    """Median process CPU milliseconds per forward, by ``"C… D… B×H² whole|bands"``."""
    torch.manual_seed(0)
    fns = {}
    for c, d, s, b, h in cases:
        level = PIPLevel(c, d, s, 3).eval()
        z, omega = torch.randn(b, c, h, h), torch.eye(3)[torch.arange(b) % 3]
        for mode, pixels in (("whole", 0), ("bands", h * h // bands)):
            def run(level=level, z=z, omega=omega, pixels=pixels):
                level.set_p2f_chunking(pixels)
                return level(z, omega)
            fns[f"C{c} D{d} {b}×{h}² {mode}"] = run
    cpu: Dict[str, List[float]] = {}
    with torch.inference_mode():
        time_interleaved(fns, repeats, warmup=1, cpu_out=cpu)
    return {name: 1e3 * median(times) for name, times in cpu.items()}


def render(ms: Dict[str, float]) -> str:
    """A markdown table of :func:`measure`'s result."""
    return markdown_table(["level, input, P2F", "CPU ms"], [[name, f"{v:.1f}"] for name, v in ms.items()])


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", type=parse_case, default=list(CASES), help="C,D,s,B,H per case")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--bands", type=int, default=BANDS, help="P2F bands per map in the 'bands' mode")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    ms = measure(args.cases, args.repeats, args.bands)
    info = dict(machine_info(), **{"load average (1 min) before / after": f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"})
    print(f"Command: `{command_line()}`\n\nMachine: " + "; ".join(f"{k}: {v}" for k, v in info.items()) + "\n")
    print(render(ms))
    return ms


if __name__ == "__main__":
    main()
