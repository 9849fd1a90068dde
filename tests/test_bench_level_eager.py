"""bench/level_eager.py: its cases, its modes and its table (the timing itself is a benchmark)."""
import argparse

import pytest

from bench import level_eager as le
from pip_adapter.modules import record_dispatch

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiny_run_times_every_case_whole_and_in_bands(capsys):
    with record_dispatch() as seen:
        ms = le.main(["--cases", "8,8,4,1,20", "16,8,4,2,12", "--repeats", "1"])
    # warm-up and timed round: each case once whole, once really in bands
    assert sorted(d.path for _, d in seen) == ["bands"] * 4 + ["channels_last"] * 4
    assert list(ms) == ["C8 D8 1×20² whole", "C8 D8 1×20² bands", "C16 D8 2×12² whole", "C16 D8 2×12² bands"]
    assert all(v > 0 for v in ms.values())
    assert "| C16 D8 2×12² bands |" in capsys.readouterr().out
    with pytest.raises(argparse.ArgumentTypeError, match="C,D,s,B,H"):
        le.parse_case("8,8,4")
