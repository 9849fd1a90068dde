"""Shared pytest set-up: one thread, the ``one_thread`` fixture, and the fixture plugins tests/fixtures_*.py.

tests/fixtures_*.py hold only pytest fixtures (loaded here as plugins, never imported by tests);
tests/helpers_*.py are plain modules that tests import explicitly.
"""
import glob
import os

# One thread per process: the tests use tiny tensors (thread start-up dominates) and several tests
# start worker processes (torchrun, DataLoader workers) on CI's 2 cores, which oversubscribe otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

_here = os.path.dirname(__file__)
pytest_plugins = sorted(
    "tests." + os.path.splitext(os.path.basename(p))[0]
    for p in glob.glob(os.path.join(_here, "fixtures_*.py")))


@pytest.fixture()
def one_thread():
    """Run the test on one intra-op thread and restore the previous setting afterwards: on a small shared
    machine, OpenMP threads spinning against each other make tiny ops many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
