"""Helpers of the demo tests: tiny exported models (with and without a bundled classifier)."""
import torch

from tests.helpers_restore import TOY_NETWORK, make_toy


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
