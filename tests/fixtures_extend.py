"""Extension fixtures (a pytest plugin; tests/helpers_extend.py holds the tiny PIP-NAFNet they build)."""
from __future__ import annotations

import pytest

from tests.helpers_extend import tiny_pipnet


@pytest.fixture
def tiny_pip():
    """A tiny three-type PIPNet in eval mode."""
    return tiny_pipnet().eval()
