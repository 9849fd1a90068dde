"""Shared helpers of the benchmark scripts: machine description, fair timing, memory, markdown output.

Timing is interleaved on purpose: on a shared machine the load changes from minute to minute, so
measuring model A for a minute and then model B for a minute compares two different machines.
Running A, B, A, B, ... in the same process and taking medians compares them under the same load.
"""
from __future__ import annotations

import argparse  # noqa: F401  (type hints of add_output_args)
import json
import logging
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DOC = os.path.join(REPO_ROOT, "docs", "BENCHMARKS.md")
# where a run writes its section by default (relative to the current directory): the tracked
# docs/BENCHMARKS.md and docs/figures change only when asked (--update-docs)
RESULTS_DIR = "bench_results"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_info(device: Optional[torch.device] = None) -> Dict[str, str]:
    """A short description of where a benchmark ran (goes into BENCHMARKS.md next to the numbers)."""
    info = {
        "cpu": f"{cpu_model()} ({os.cpu_count()} logical cores visible, torch threads {torch.get_num_threads()})",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "os": f"{platform.system()} {platform.release()}",
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = str(torch.version.cuda)
    return info


def sync(device: torch.device) -> None:
    """Wait for queued kernels so that a wall-clock reading covers the work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1,
                     device: torch.device = torch.device("cpu"),
                     cpu_out: Optional[Dict[str, List[float]]] = None) -> Dict[str, List[float]]:
    """Time every callable ``repeats`` times, round-robin, after ``warmup`` untimed rounds.

    Returns wall-clock seconds per call for each name; ``cpu_out`` (if given) receives the process CPU
    seconds of the same calls.  On a shared machine CPU time is the steadier of the two: time spent
    waiting for a core that another process holds is not counted.  The order inside a round rotates so
    that no model is always measured right after the same other model (caches, thermal state).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(fns)
    for _ in range(max(0, warmup)):
        for name in names:
            fns[name]()
    sync(device)
    times: Dict[str, List[float]] = {name: [] for name in names}
    if cpu_out is not None:
        cpu_out.update({name: [] for name in names})
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            sync(device)
            c0, t0 = time.process_time(), time.perf_counter()
            fns[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
            if cpu_out is not None:
                cpu_out[name].append(time.process_time() - c0)
    return times


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    if not values:
        raise ValueError("median of an empty sequence")
    return float(statistics.median(values))


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="utf-8") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process's memory map (Linux ``VmHWM``; ``ru_maxrss`` elsewhere).

    ``ru_maxrss`` is not used on Linux: it survives ``exec`` and so starts at the parent's size in a child
    process started by a big parent (it would hide every smaller peak).
    """
    try:
        with open("/proc/self/status", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS (Linux: write 5 to /proc/self/clear_refs); False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def run_json_subprocess(code: str, timeout: float = 1800.0, env_extra: Optional[Mapping[str, str]] = None) -> dict:
    """Run ``python -c code`` from the repository root in a fresh interpreter; parse its last stdout line as JSON.

    Used for CPU peak memory: ru_maxrss only grows, so each model needs a process of its own.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark subprocess failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(f"benchmark subprocess printed nothing:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])



def pyplot(what: str = "figure") -> Optional[object]:
    """matplotlib's pyplot on the Agg backend, or None (with a warning naming ``what`` is skipped) without it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logging.getLogger("bench").warning("matplotlib is not installed (pip install -e '.[viz]'): no %s", what)
        return None
    return plt

def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]],
                   align: Optional[Sequence[str]] = None) -> str:
    """A GitHub markdown table; ``align`` holds 'l' or 'r' per column (numbers default to right)."""
    if any(len(r) != len(header) for r in rows):
        raise ValueError("every row must have as many cells as the header")
    if align is None:
        align = ["l"] + ["r"] * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_int(n: Optional[float]) -> str:
    """Thousands separators; '—' for missing values."""
    return "—" if n is None else f"{int(round(n)):,}"


def fmt_float(x: Optional[float], digits: int = 2) -> str:
    """Fixed decimals; '—' for missing values."""
    return "—" if x is None else f"{x:.{digits}f}"


_SECTION_RE = "<!-- {tag}:begin -->"


def update_doc_section(tag: str, body: str, path: str = BENCH_DOC, title: Optional[str] = None) -> str:
    """Replace (or append) the block between ``<!-- tag:begin -->`` and ``<!-- tag:end -->`` in ``path``.

    Each benchmark owns one section, so re-running one script keeps the others' results.
    The file is written through a temporary file and a rename.  Returns the new document text.
    """
    from pip_adapter.utils.io import atomic_path

    begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    if not text:
        text = "# Benchmarks\n\nEach section below is written by the script named in it; re-running a script " \
               "replaces only its own section.\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _m: block, text)
    else:
        heading = f"\n## {title}\n\n" if title else "\n"
        text = text.rstrip() + "\n" + heading + block + "\n"
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return text


def add_output_args(parser: "argparse.ArgumentParser") -> None:
    """``--out FILE``, ``--update-docs`` and ``--no-doc``: where a benchmark writes its markdown section."""
    parser.add_argument("--out", default=None,
                        help=f"markdown file to write the section into (default {RESULTS_DIR}/BENCHMARKS.md)")
    parser.add_argument("--update-docs", action="store_true",
                        help="write the section into the repository's docs/BENCHMARKS.md")
    parser.add_argument("--no-doc", action="store_true", help="only print the section")


def section_path(args: "argparse.Namespace") -> Optional[str]:
    """The markdown file a run writes: ``--out``, docs/BENCHMARKS.md with ``--update-docs``, else
    ``bench_results/BENCHMARKS.md`` in the current directory; None with ``--no-doc``."""
    if getattr(args, "no_doc", False):
        return None
    if getattr(args, "out", None):
        return args.out
    if getattr(args, "update_docs", False):
        return BENCH_DOC
    return os.path.join(RESULTS_DIR, "BENCHMARKS.md")


def write_section(args: "argparse.Namespace", tag: str, text: str, title: Optional[str] = None) -> Optional[str]:
    """Print ``text`` and write it as section ``tag`` of :func:`section_path`; return the path written."""
    print(text)
    path = section_path(args)
    if path is None:
        return None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    update_doc_section(tag, text, path=path, title=title)
    print(f"section {tag!r} written to {path}")
    return path


def command_line() -> str:
    """The command that is running, as a user would retype it from the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO_ROOT) if sys.argv and sys.argv[0] else "?"
    return " ".join(["python", script] + [_quote(a) for a in sys.argv[1:]])


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"
