"""utils/threads.py: a CPU run's threads never oversubscribe the cores."""
import pytest

from pip_adapter.utils.threads import ThreadPlan, apply_threads, plan_threads


@pytest.mark.parametrize("cores,load,expected", [
    (2, 7.0, 1),     # a busy 2-core machine (the load 4-7): one thread
    (2, 0.2, 2),     # an idle one: both cores
    (2, 0.8, 1),     # 1.2 cores free
    (16, 0.0, 8),    # capped: the quickstart's small crops gain nothing from more
    (4, 0.0, 4),
])
def test_auto_threads_use_the_cores_others_leave(cores, load, expected):
    plan = plan_threads(cores=cores, load=load, env={})
    assert (plan.intra_op, plan.inter_op, plan.workers) == (expected, 1, 0)
    assert plan.cores == cores and "--threads N" in plan.why


def test_requested_and_environment_threads_win_and_workers_fit_the_rest():
    assert plan_threads(3, cores=2, load=9.0, env={"OMP_NUM_THREADS": "2"}).intra_op == 3
    assert plan_threads(cores=8, load=0.0, env={"OMP_NUM_THREADS": "2"}).intra_op == 2
    assert plan_threads(2, workers=4, cores=4, load=0.0, env={}).workers == 2     # 2 + 2 = 4 cores
    assert plan_threads(4, workers=4, cores=4, load=0.0, env={}).workers == 0
    assert plan_threads(cores=4, load=0.0, env={"OMP_NUM_THREADS": "x"}).intra_op == 4  # unreadable: ignored
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        plan_threads(0)


def test_describe_and_apply():
    import torch

    plan = ThreadPlan(intra_op=1, inter_op=1, workers=0, cores=2, load=4.25, why="--threads")
    assert plan.describe() == "1 intra-op, 1 inter-op, 0 loader workers (2 cores, load average 4.2; --threads)"
    before = torch.get_num_threads()
    restore = apply_threads(ThreadPlan(intra_op=1, inter_op=1, workers=0, cores=2, load=None, why="test"))
    assert torch.get_num_threads() == 1
    restore()
    assert torch.get_num_threads() == before
