"""How many threads a CPU run may use without oversubscribing the cores: intra-op, inter-op, data-loader workers.

On a machine that other work shares, two OpenMP threads per process on two busy cores do not run twice as fast:
they wait on each other, and small convolutions become 10–100× slower (docs/BENCHMARKS.md, ``--threads 1``).
:func:`plan_threads` counts the cores this process may run on and subtracts the load other processes put on
them; :func:`apply_threads` sets the numbers (environment variables for libraries not yet loaded, torch,
OpenCV).  Light: nothing heavy is imported until :func:`apply_threads` runs.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import Callable, Mapping, Optional

# variables read by OpenMP / BLAS runtimes when they start (numpy, torch, OpenCV loaded later pick them up)
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
MAX_AUTO_THREADS = 8   # small CPU runs (the quickstart's 48×48 crops) gain nothing from more


@dataclasses.dataclass(frozen=True)
class ThreadPlan:
    """Threads of one run: ``intra_op`` (torch and OpenMP within an operation), ``inter_op`` (operations run
    side by side) and ``workers`` (data-loader processes, one thread each); ``why`` says how they were chosen."""

    intra_op: int
    inter_op: int
    workers: int
    cores: int
    load: Optional[float]
    why: str

    def describe(self) -> str:
        """One line for the console: the numbers and how they were chosen."""
        load = f", load average {self.load:.1f}" if self.load is not None else ""
        return (f"{self.intra_op} intra-op, {self.inter_op} inter-op, {self.workers} loader worker"
                f"{'s' if self.workers != 1 else ''} ({self.cores} core{'s' if self.cores != 1 else ''}{load}; "
                f"{self.why})")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def current_load() -> Optional[float]:
    """The 1-minute load average (runnable processes), or None where the system has none."""
    try:
        return float(os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def plan_threads(requested: Optional[int] = None, workers: int = 0, cores: Optional[int] = None,
                 load: Optional[float] = None, env: Optional[Mapping[str, str]] = None) -> ThreadPlan:
    """Threads for a run that must not oversubscribe the cores.

    ``requested`` (``--threads N``) wins, then ``OMP_NUM_THREADS`` from ``env``; otherwise the cores left over by
    the load of other processes, rounded, at least 1 and at most :data:`MAX_AUTO_THREADS`.  Inter-op threads: 1
    (a training step runs its operations one after the other).  Data-loader ``workers`` (each one thread) are
    cut to the cores the intra-op threads leave free.  ``cores`` and ``load`` default to this machine's.
    """
    env = os.environ if env is None else env
    cores = available_cores() if cores is None else max(1, int(cores))
    load = current_load() if load is None else load
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}")
        intra, why = int(requested), "--threads"
    elif str(env.get("OMP_NUM_THREADS", "")).strip().isdigit() and int(env["OMP_NUM_THREADS"]) > 0:
        intra, why = int(env["OMP_NUM_THREADS"]), "OMP_NUM_THREADS; --threads N to change"
    else:
        free = cores - (load or 0.0)
        intra = max(1, min(cores, MAX_AUTO_THREADS, int(math.floor(free + 0.5))))
        why = "the cores other processes leave free; --threads N to change"
    workers = max(0, min(int(workers), cores - intra))
    return ThreadPlan(intra_op=intra, inter_op=1, workers=workers, cores=cores, load=load, why=why)


def apply_threads(plan: ThreadPlan) -> Callable[[], None]:
    """Use ``plan`` in this process; returns a function that puts torch's intra-op count back (for callers that
    keep running, e.g. tests; inter-op threads can be set once per process only, before any parallel work)."""
    if "torch" not in sys.modules and "numpy" not in sys.modules:
        for name in _THREAD_VARIABLES:  # read when those runtimes start: only useful before they are loaded
            os.environ.setdefault(name, str(plan.intra_op))
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(plan.intra_op)
    try:
        torch.set_num_interop_threads(plan.inter_op)
    except RuntimeError:  # already set, or parallel work already ran in this process: keep what it has
        pass
    try:
        import cv2

        cv2.setNumThreads(plan.intra_op)
    except ImportError:  # OpenCV is optional here
        pass

    def restore() -> None:
        torch.set_num_threads(before)

    return restore
