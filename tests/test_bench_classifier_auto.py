"""bench/classifier_auto.py on the tiny built-in data: true vs auto ω per val set, confusion matrix."""
import pytest
import torch

from bench import classifier_auto as ca
from pip_adapter.restore.checkpoint import make_meta, save_checkpoint
from pip_adapter.restore.classifier import DegradationClassifier
from tests.helpers_restore import TOY_NETWORK, make_toy

pytestmark = pytest.mark.usefixtures("one_thread")


def test_true_vs_auto_and_confusion(builtin_data_dir, tmp_path):
    net = make_toy(0)
    model = str(tmp_path / "toy.safetensors")
    save_checkpoint(model, net, make_meta(net, TOY_NETWORK))
    torch.manual_seed(0)
    cls = DegradationClassifier("test_resnet", TOY_NETWORK["degradations"], crop_size=16, num_crops=1).eval()
    rain = TOY_NETWORK["degradations"].index("rain")
    with torch.no_grad():  # a classifier that always answers "rain"
        head = cls.net.get_classifier()
        head.weight.zero_()
        head.bias.zero_()
        head.bias[rain] = 20.0
    cls_file = str(tmp_path / "cls.safetensors")
    save_checkpoint(cls_file, cls, make_meta(cls))
    res = ca.run(model, cls_file, builtin_data_dir)
    sets = {r["set"]: r for r in res["sets"]}
    assert set(sets) == {"noise_sigma15", "noise_sigma25", "noise_sigma50", "rain", "haze", "blur", "low_light"}
    n_images = sum(r["count"] for r in res["sets"])
    assert sum(map(sum, res["confusion"])) == n_images == 7  # one validation photo per set at the tiny size
    for r in res["sets"]:
        assert r["accuracy"] == float(r["degradation"] == "rain")
        if r["degradation"] == "rain":  # one-hot argmax ω on the right type restores exactly as the true ω
            assert r["argmax_psnr"] == pytest.approx(r["true_psnr"], abs=1e-9)
        else:
            assert r["argmax_psnr"] != pytest.approx(r["true_psnr"], abs=1e-6)
    assert [row[rain] for row in res["confusion"]] == [3, 1, 1, 1, 1]  # every image predicted rain
    res["fresh"] = ca.fresh_draws_confusion(cls, builtin_data_dir, draws=3)
    assert [row[rain] for row in res["fresh"]["confusion"]] == [3, 3, 3, 3, 3]  # 1 photo × 3 draws per type
    assert res["fresh"]["per_type"]["rain"] == 1.0 and res["fresh"]["per_type"]["noise"] == 0.0
    text = ca.report(res)
    assert "true ω" in text and "Confusion" in text and "| average | 7 |" in text and "3 fresh draws" in text
