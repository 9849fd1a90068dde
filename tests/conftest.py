"""Shared pytest set-up: fixtures live in tests/fixtures_*.py and are loaded here."""
import glob
import os

import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

_here = os.path.dirname(__file__)
pytest_plugins = sorted(
    "tests." + os.path.splitext(os.path.basename(p))[0]
    for p in glob.glob(os.path.join(_here, "fixtures_*.py")))
