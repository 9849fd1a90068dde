"""Fixtures for the demo tests: tiny exported models (with and without a bundled classifier) and sessions."""
import pytest

from tests.helpers_demo import save_demo_model


@pytest.fixture
def demo_model(tmp_path):
    """Path of an exported toy model with a bundled classifier."""
    return save_demo_model(tmp_path / "demo_bundle.safetensors")


@pytest.fixture
def demo_session(demo_model, tmp_path):
    """A :class:`DemoSession` over the bundled toy model, writing in ``tmp_path/work``, tiles of 32 px."""
    from pip_adapter.demo import DemoSession
    from pip_adapter.restore import Restorer

    session = DemoSession(Restorer.from_checkpoint(demo_model, device="cpu"), workdir=str(tmp_path / "work"),
                          tile=32, tile_overlap=8)
    yield session
    session.close()
