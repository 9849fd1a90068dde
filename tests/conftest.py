"""Shared pytest set-up: fixtures live in tests/fixtures_*.py and are loaded here."""
import glob
import os

# One thread per process: the tests use tiny tensors (thread start-up dominates) and several tests
# start worker processes (torchrun, DataLoader workers) on CI's 2 cores, which oversubscribe otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

_here = os.path.dirname(__file__)
pytest_plugins = sorted(
    "tests." + os.path.splitext(os.path.basename(p))[0]
    for p in glob.glob(os.path.join(_here, "fixtures_*.py")))
