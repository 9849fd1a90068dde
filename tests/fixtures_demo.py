"""Fixtures for the demo tests: tiny exported models (with and without a bundled classifier) and sessions."""
import pytest
import torch

from tests.fixtures_restore import TOY_NETWORK, make_toy


def save_demo_model(path, with_classifier: bool = True) -> str:
    """Export the seeded toy network (and a tiny timm classifier) to ``path`` as ``pip-adapter export`` would."""
    from pip_adapter.restore.checkpoint import make_meta, save_checkpoint
    from pip_adapter.restore.classifier import DegradationClassifier

    net = make_toy(0)
    cls = None
    if with_classifier:
        torch.manual_seed(0)
        cls = DegradationClassifier("test_resnet", TOY_NETWORK["degradations"], crop_size=32, num_crops=1)
    save_checkpoint(str(path), net, make_meta(net, TOY_NETWORK), classifier=cls)
    return str(path)


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
