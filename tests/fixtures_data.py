"""Data fixtures (a pytest plugin; the helpers they use live in tests/helpers_data.py).

``builtin_data_dir``: the built-in dataset built once per session at tiny size (2 training photos × 2 crops
of 32 px, 1 validation photo at 32 px, all five default degradations).  Use it with
``pip_adapter.data.builtin_dataset_options(builtin_data_dir, batch_size=2, num_workers=0)`` to get a
BasicSR ``datasets:`` section (``train`` + ``val_1..val_7``), or read ``<dir>/datasets.yml``.

``standard_layout_dir``: a tiny fake PromptIR-style tree (``data/Train/...``, ``data/test/...``,
``data_dir/`` list files) whose degraded images are the exact inverse (255 − x) of their clean images,
so alignment can be checked pixel by pixel.
"""
import pytest

from pip_adapter.data import prepare_builtin
from tests.helpers_data import TINY_BUILTIN, make_standard_layout


@pytest.fixture(scope="session")
def builtin_data_dir(tmp_path_factory):
    return prepare_builtin(str(tmp_path_factory.mktemp("builtin") / "data"), **TINY_BUILTIN)


@pytest.fixture(scope="session")
def standard_layout_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("standard"))
    make_standard_layout(root)
    return root
