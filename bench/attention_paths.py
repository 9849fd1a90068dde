"""Why PIP's transposed attention takes its CPU paths (pip_adapter/modules/attention.py), measured side by side.

Two choices in ``TransposedCrossAttention`` rest on CPU timings:

* the norm over tokens of a channels-last B×N×C view: ``x.square().sum(1).sqrt()`` instead of
  ``torch.linalg.vector_norm(x, dim=1)``;
* the per-head Gram matrix q kᵀ on CPU: one matmul per sample instead of one batched matmul over
  (B, heads), which first copies both strided operands.

    python bench/attention_paths.py                 # B=4, 48 channels, 64×64, 4 heads, one thread
    python bench/attention_paths.py --doc           # also write the section in docs/BENCHMARKS.md
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import command_line, machine_info, markdown_table, median, time_interleaved, update_doc_section  # noqa: E402,E501


def views(b: int, dim: int, size: int, heads: int):
    """q, k as the attention sees them: channels-last maps, read as B×N×C token views and head-major views."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(b, dim, size, size, generator=gen).contiguous(memory_format=torch.channels_last)
    k = torch.randn(b, dim, size, size, generator=gen).contiguous(memory_format=torch.channels_last)
    n, c = size * size, dim // heads
    qt = q.permute(0, 2, 3, 1).reshape(b, n, dim)
    kt = k.permute(0, 2, 3, 1).reshape(b, n, dim)
    qh = qt.unflatten(-1, (heads, c)).permute(0, 2, 3, 1)
    kh = kt.unflatten(-1, (heads, c)).permute(0, 2, 1, 3)
    return qt, qh, kh


def measure(b: int, dim: int, size: int, heads: int, repeats: int) -> list:
    """Rows (operation, variant, median ms, median CPU ms, ratio to the variant used)."""
    qt, qh, kh = views(b, dim, size, heads)
    torch.testing.assert_close(torch.linalg.vector_norm(qt, dim=1), qt.square().sum(dim=1).sqrt(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(qh @ kh, torch.stack([qh[i] @ kh[i] for i in range(b)]), rtol=1e-4, atol=1e-3)
    fns = {
        "norm: square().sum(1).sqrt() (used)": lambda: qt.square().sum(dim=1).sqrt(),
        "norm: linalg.vector_norm(dim=1)": lambda: torch.linalg.vector_norm(qt, dim=1),
        "gram: per-sample matmul (used)": lambda: torch.stack([qh[i] @ kh[i] for i in range(b)]),
        "gram: batched matmul": lambda: qh @ kh,
    }
    cpu: dict = {}
    wall = time_interleaved(fns, repeats=repeats, warmup=2, cpu_out=cpu)
    rows = []
    for name in fns:
        used = [k for k in fns if k.split(":")[0] == name.split(":")[0] and k.endswith("(used)")][0]
        ratio = median(cpu[name]) / median(cpu[used])
        rows.append([name, f"{1e3 * median(wall[name]):.2f}", f"{1e3 * median(cpu[name]):.2f}", f"{ratio:.1f}×"])
    return rows


def main(argv=None) -> int:
    """Measure and print (and with ``--doc`` write) the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--dim", type=int, default=48)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--doc", action="store_true", help="write the section of docs/BENCHMARKS.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = measure(args.batch, args.dim, args.size, args.heads, args.repeats)
    info = machine_info()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    body = "\n".join([
        f"Command: `{command_line()}`",
        "",
        f"Machine: {'; '.join(f'{k}: {v}' for k, v in info.items())}; load average {load:.1f}",
        "",
        f"q, k: {args.batch}×{args.dim}×{args.size}×{args.size} channels-last, {args.heads} heads, CPU, "
        f"{args.threads} thread(s); median of {args.repeats} interleaved calls after 2 warm-up rounds. "
        "Ratio: median process CPU time relative to the variant the attention uses.",
        "",
        markdown_table(["operation", "wall (ms)", "CPU time (ms)", "CPU time ratio"], rows),
    ])
    print(body)
    if args.doc:
        update_doc_section("attention_paths", body, title="Transposed attention: CPU paths")
    return 0


if __name__ == "__main__":
    sys.exit(main())
