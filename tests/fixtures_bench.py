"""Shared fixture of the bench/inspect tests: one torch thread.

On a small shared machine two OpenMP threads per process oversubscribe the cores and tiny convolutions
become 10–100× slower (spin-waiting threads); one thread keeps these tests fast and their timing stable.
"""
import pytest
import torch


@pytest.fixture()
def one_thread():
    """Run the test with ``torch.set_num_threads(1)`` and restore the previous setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
