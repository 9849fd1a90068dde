"""Restore/export/classifier fixtures (a pytest plugin; the toy network lives in tests/helpers_restore.py)."""
import pytest
import torch
import yaml

from tests.helpers_restore import TOY_NETWORK, make_toy, rand_image, write_png


@pytest.fixture
def toy_net():
    """A seeded :class:`ToyOmegaUNet`."""
    return make_toy(0)


@pytest.fixture
def toy_basicsr_files(tmp_path):
    """A BasicSR-style ``net_g_10.pth`` (params + different params_ema) and its option YAML."""
    net, ema = make_toy(0), make_toy(1)
    ckpt = tmp_path / "net_g_10.pth"
    torch.save({"params": net.state_dict(), "params_ema": ema.state_dict()}, ckpt)
    opt = tmp_path / "train_toy.yml"
    opt.write_text(yaml.safe_dump({"name": "toy", "model_type": "PIPModel", "network_g": dict(TOY_NETWORK)}))
    return {"ckpt": str(ckpt), "opt": str(opt), "params": net, "params_ema": ema, "dir": str(tmp_path)}


@pytest.fixture
def photos(tmp_path):
    """A folder ``in/`` with two small random photos of different sizes (a.png 12×16, b.png 10×8)."""
    d = tmp_path / "in"
    write_png(d / "a.png", rand_image(12, 16, seed=1))
    write_png(d / "b.png", rand_image(10, 8, seed=2))
    return d
