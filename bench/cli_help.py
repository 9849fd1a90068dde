"""How long ``pip-adapter --help``, every ``<command> --help`` and an argument error take (wall clock, fresh
interpreter each time), beside ``python -c "import torch"`` — what each of them cost while parsing imported torch.

    python bench/cli_help.py --repeats 7 --update-docs
    python bench/cli_help.py --baseline /path/to/older/checkout   # also time that checkout's --help, interleaved

Each case runs ``python -m pip_adapter.cli ...`` in a new process (what the console script does, plus the
interpreter start); cases are interleaved (A, B, C, A, B, C, ...) so that a change of load on a shared machine
hits them alike; the medians go into docs/BENCHMARKS.md (section ``cli-help``) with the load average.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from bench.common import REPO_ROOT, add_output_args, command_line, machine_info, markdown_table, median, \
    write_section

COMMANDS = ("prepare-data", "quickstart", "train", "export", "restore", "evaluate", "demo", "extend", "inspect",
            "models")


def cases(baseline: Optional[str] = None) -> Dict[str, Tuple[str, List[str]]]:
    """Name → (checkout on the path, arguments of ``python``) for every case timed."""
    cli = ["-m", "pip_adapter.cli"]
    out = {"python (interpreter only)": (REPO_ROOT, ["-c", "pass"]),
           "import torch, torchvision": (REPO_ROOT, ["-c", "import torch, torchvision"]),
           "pip-adapter --help": (REPO_ROOT, cli + ["--help"])}
    for c in COMMANDS:
        out[f"pip-adapter {c} --help"] = (REPO_ROOT, cli + [c, "--help"])
    out["pip-adapter restore x.png (argument error)"] = (REPO_ROOT, cli + ["restore", "x.png"])
    if baseline:
        out["baseline: pip-adapter --help"] = (baseline, cli + ["--help"])
        out["baseline: pip-adapter restore --help"] = (baseline, cli + ["restore", "--help"])
    return out


def time_once(checkout: str, argv: Sequence[str]) -> float:
    """Seconds of one run of ``python argv`` with ``checkout`` first on the path (output discarded)."""
    env = dict(os.environ, PYTHONPATH=checkout + os.pathsep + os.environ.get("PYTHONPATH", ""))
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=checkout, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Time every case ``--repeats`` times, interleaved; print and write the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7, help="runs of each case (default 7)")
    p.add_argument("--baseline", default=None,
                   help="another checkout of the repository (e.g. a git worktree of an older commit) whose --help "
                        "is timed in the same rounds")
    add_output_args(p)
    args = p.parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    runs = cases(args.baseline)
    times: Dict[str, List[float]] = {name: [] for name in runs}
    load_before = os.getloadavg()[0]
    for r in range(args.repeats):
        names = list(runs)
        names = names[r % len(names):] + names[:r % len(names)]
        for name in names:
            times[name].append(time_once(*runs[name]))
    load_after = os.getloadavg()[0]
    rows = [[name, f"{median(t):.2f}", f"{max(t):.2f}"] for name, t in times.items()]
    info = machine_info()
    text = "\n".join([
        f"`{command_line()}` — {info['cpu']}, Python {info['python']}, torch {info['torch']}; "
        f"load average {load_before:.1f} → {load_after:.1f} (1 min) during the run.",
        "",
        markdown_table(["command", "median s", "max s"], rows),
    ])
    write_section(args, "cli-help", text, title="Command-line help latency")
    return 0


if __name__ == "__main__":
    sys.exit(main())
