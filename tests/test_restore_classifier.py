"""Degradation classifier: the pure module, its BasicSR model, training through ``basicsr train``, export."""
import json
import os

import numpy as np
import pytest
import torch

from pip_adapter.restore.checkpoint import load_checkpoint, make_meta, save_checkpoint
from pip_adapter.restore.classifier import DegradationClassifier

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["noise", "rain", "haze", "blur", "low_light"]


def _small(**kw):
    torch.manual_seed(0)
    return DegradationClassifier("test_resnet", NAMES, crop_size=32, num_crops=4, **kw)


def test_forward_crops_and_probabilities():
    cls = _small().eval()
    assert cls(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    img = torch.rand(3, 50, 70)
    crops = cls.crops(img)
    assert crops.shape == (4, 3, 32, 32)
    # crops are native-resolution pieces of the image (corners of the grid)
    assert torch.equal(crops[0], img[:, :32, :32]) and torch.equal(crops[-1], img[:, -32:, -32:])
    assert cls.crops(torch.rand(3, 20, 12)).shape[-2:] == (32, 32)  # small images padded, not resized
    p = cls.predict_proba(img)
    assert p.shape == (5,) and torch.isclose(p.sum(), torch.tensor(1.0)) and (p >= 0).all()
    with pytest.raises(ValueError, match="B×3×H×W"):
        cls(torch.rand(3, 32, 32))


def test_never_pretrained():
    with pytest.raises(ValueError, match="pretrained"):
        DegradationClassifier("test_resnet", NAMES, pretrained=True)


def test_export_round_trip(tmp_path):
    cls = _small().eval()
    path = str(tmp_path / "cls.safetensors")
    save_checkpoint(path, cls, make_meta(cls))
    loaded = load_checkpoint(path)
    assert loaded.kind == "classifier" and loaded.classifier is loaded.model
    assert loaded.meta["network"]["arch"] == "test_resnet" and loaded.degradations == NAMES
    x = torch.rand(3, 40, 40)
    assert torch.allclose(loaded.classifier.predict_proba(x), cls.predict_proba(x), atol=1e-6)


def _model_opt(tmp_path):
    return {
        "name": "cls_unit", "model_type": "DegradationClassifierModel", "num_gpu": 0, "is_train": True,
        "dist": False, "rank": 0, "world_size": 1, "manual_seed": 0,
        "network_g": {"type": "DegradationClassifier", "arch": "test_resnet", "degradations": NAMES[:3],
                      "crop_size": 16, "num_crops": 1},
        "path": {"pretrain_network_g": None, "strict_load_g": True, "models": str(tmp_path / "models"),
                 "log": str(tmp_path), "training_states": str(tmp_path / "states")},
        "train": {"optim_g": {"type": "Adam", "lr": 3e-3}, "total_iter": 30},
        "val": {"metrics": {"acc": {"type": "accuracy"}}},
        "datasets": {"val_1": {"name": "toy"}},
    }


class _ToySet(torch.utils.data.Dataset):
    """Class k: brightness k/3 plus mild noise — separable, so a few steps must learn it."""

    def __init__(self, n):
        self.n = n
        self.opt = {"name": "toy"}

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        label = i % 3
        lq = (label / 3 + 0.15 + 0.05 * torch.randn(3, 16, 16, generator=g)).clamp(0, 1)
        return {"lq": lq, "gt": lq, "label": label, "lq_path": f"{i}.png"}


def test_basicsr_model_learns_and_reports_per_type(tmp_path):
    import pip_adapter.bsr  # noqa: F401  (registers DegradationClassifier[Model])
    from basicsr.models import build_model

    model = build_model(_model_opt(tmp_path))
    loader = torch.utils.data.DataLoader(_ToySet(24), batch_size=12, shuffle=True)
    losses = []
    for step in range(1, 11):
        for batch in loader:
            model.feed_data(batch)
            model.optimize_parameters(step)
            losses.append(float(model.get_current_log()["l_ce"]))
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    val = torch.utils.data.DataLoader(_ToySet(9), batch_size=3)
    model.validation(val, 10, None, False)
    summary = json.load(open(tmp_path / "classifier_validation_latest.json"))
    assert set(summary["per_type"]) == {"noise", "rain", "haze"}
    assert summary["accuracy"] >= 2 / 3
    model.save(0, 10)
    saved = torch.load(tmp_path / "models" / "net_g_10.pth", weights_only=True)
    assert saved["meta"]["network_g"]["type"] == "DegradationClassifier"
    with pytest.raises(ValueError, match="label"):
        model.feed_data({"lq": torch.rand(1, 3, 16, 16)})


def test_training_batches_are_cropped_to_the_crop_size(tmp_path):
    """Whole degraded training crops in, random crop_size windows of them to the network; validation whole."""
    import pip_adapter.bsr  # noqa: F401
    from basicsr.models import build_model

    model = build_model(_model_opt(tmp_path))  # crop_size 16
    x = torch.arange(2 * 3 * 40 * 40, dtype=torch.float32).reshape(2, 3, 40, 40)
    model.feed_data({"lq": x, "label": torch.tensor([0, 1])})
    assert model.lq.shape == (2, 3, 16, 16)
    for img, crop in zip(x, model.lq):  # each crop is a window of its own image, at native resolution
        t, l = divmod(int(crop[0, 0, 0] - img[0, 0, 0]), 40)
        assert torch.equal(crop, img[:, t:t + 16, l:l + 16])
    model._validating = True
    model.feed_data({"lq": x, "label": torch.tensor([0, 1])})
    assert model.lq.shape == (2, 3, 40, 40)


def test_train_with_basicsr_export_and_auto_restore(tiny_pip_experiment, tiny_builtin_root, tmp_path, capsys):
    """classifier_builtin.yml's model trained by ``basicsr train`` on the tiny built-in data, exported,
    bundled with the PIP model, and used by ``restore --degradation auto``."""
    import yaml

    from pip_adapter.cli import main
    from tests.helpers_train import run_basicsr

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    opt = yaml.safe_load(open(os.path.join(here, "basicsr_options", "classifier_builtin.yml")))
    opt.pop("builtin_data")
    text = yaml.safe_dump(opt).replace("datasets/builtin", tiny_builtin_root)
    opt = yaml.safe_load(text)
    opt["name"] = "cls_tiny"
    opt["num_gpu"] = 0
    opt["network_g"].update(arch="test_resnet", crop_size=32, num_crops=1)
    opt["network_g"].pop("norm_layer", None)  # timm's 32-group GroupNorm needs the real net's channel counts
    opt["datasets"]["train"].update(gt_size=32, batch_size_per_gpu=5, num_worker_per_gpu=0, dataset_enlarge_ratio=2)
    opt["train"].update(total_iter=2, scheduler={"type": "LinearWarmupCosine", "warmup_iter": 1})
    opt["val"]["val_freq"] = 2
    opt["logger"].update(print_freq=1, save_checkpoint_freq=2)
    opt_path = tmp_path / "cls.yml"
    opt_path.write_text(yaml.safe_dump(opt))
    proc = run_basicsr(["train", "-opt", str(opt_path)], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    exp = tmp_path / "experiments" / "cls_tiny"
    summary = json.load(open(exp / "classifier_validation_latest.json"))
    assert set(summary["per_type"]) == set(NAMES)  # every type validated and reported
    assert 0.0 <= summary["accuracy"] <= 1.0
    cls_file = str(tmp_path / "cls.safetensors")
    assert main(["export", "--ckpt", str(exp / "models" / "net_g_latest.pth"), "--opt", str(opt_path),
                 "--out", cls_file]) == 0
    bundle = str(tmp_path / "bundle.safetensors")
    assert main(["export", "--ckpt", tiny_pip_experiment.net_path, "--opt", tiny_pip_experiment.opt_path,
                 "--out", bundle, "--classifier", cls_file]) == 0
    capsys.readouterr()
    rain = os.path.join(tiny_builtin_root, "val", "rain")
    assert main(["restore", rain, "-m", bundle, "-o", str(tmp_path / "out"), "-d", "auto", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "auto:" in captured.out + captured.err
    assert len(os.listdir(tmp_path / "out")) == len(os.listdir(rain))


def test_auto_omega_same_from_stored_pixels_and_floats(toy_net):
    """Restorer passes stored uint16/gray pixels with a scale: the classifier sees the same image."""
    from pip_adapter.restore.restorer import Restorer
    from tests.helpers_restore import rand_image

    cls = _small().eval()
    r = Restorer(toy_net, NAMES, multiple=2, device="cpu", classifier=cls)
    img = rand_image(40, 36, c=1, dtype=np.uint16, seed=5)
    out = r(img, degradation="auto", auto_mode="weights")  # the probabilities, to compare them
    assert out.shape == img.shape and out.dtype == np.uint16
    x = torch.from_numpy(img.astype(np.float32) / 65535.0)[None].expand(3, -1, -1)
    expected = cls.predict_proba(x)
    got = torch.tensor([r.last_omega[n] for n in NAMES])
    assert torch.allclose(got, expected, atol=1e-5)
    small = rand_image(12, 10, seed=6)  # smaller than the crop: padded as floats
    r(small, degradation="auto", auto_mode="weights")
    assert abs(sum(r.last_omega.values()) - 1) < 1e-5
