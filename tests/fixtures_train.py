"""Session fixtures (a pytest plugin): a tiny PIP-NAFNet trained once with ``basicsr train`` on tiny built-in data.

Other test modules reuse them:

* ``tiny_pip_experiment`` → ``TinyExperiment(exp_dir, opt_path, net_path)``: the experiment folder
  (``<root>/experiments/tiny_pip``), the option file it was trained with, and ``net_g_latest.pth``.
  The run's root (its current directory) is ``exp_dir/../..``; its built-in data is under
  ``<root>/datasets/builtin`` (see ``tiny_builtin_root``).
* ``tiny_builtin_root`` → the folder of that built-in data (LMDB train, folder val, 32 px).

Helpers for tests that run their own training are in tests/helpers_train.py.
"""
from __future__ import annotations

import os

import pytest

from tests.helpers_train import TinyExperiment, run_basicsr, tiny_options, write_options


@pytest.fixture(scope="session")
def tiny_pip_experiment(tmp_path_factory) -> TinyExperiment:
    """Train the tiny PIP-NAFNet for 10 iterations once per session (the built-in data is prepared by the run)."""
    root = str(tmp_path_factory.mktemp("tiny_pip_run"))
    opt_path = write_options(os.path.join(root, "tiny_pip.yml"), tiny_options("tiny_pip"))
    proc = run_basicsr(["train", "-opt", opt_path], cwd=root)
    assert proc.returncode == 0, f"basicsr train failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    exp_dir = os.path.join(root, "experiments", "tiny_pip")
    net_path = os.path.join(exp_dir, "models", "net_g_latest.pth")
    assert os.path.isfile(net_path), os.listdir(os.path.join(exp_dir, "models"))
    return TinyExperiment(exp_dir, opt_path, net_path)


@pytest.fixture(scope="session")
def tiny_builtin_root(tiny_pip_experiment: TinyExperiment) -> str:
    """The tiny built-in data folder that ``tiny_pip_experiment``'s run prepared."""
    root = os.path.dirname(os.path.dirname(tiny_pip_experiment.exp_dir))
    return os.path.join(root, "datasets", "builtin")
