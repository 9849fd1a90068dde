"""bench/train_cost.py at toy size: both BasicSR models build from the same backbone, train, and the ratio is right."""
import pytest
import torch

from bench import train_cost as tc

pytestmark = pytest.mark.usefixtures("one_thread")


def test_options_differ_only_where_they_should(tmp_path):
    bb = tc.backbone_option(8, quick=True)
    sr = tc.model_options("SRModel", bb, str(tmp_path))
    pip = tc.model_options("PIPModel", bb, str(tmp_path))
    assert sr["network_g"] == bb and pip["network_g"]["backbone"] == bb and pip["network_g"]["type"] == "PIPNet"
    assert sr["train"]["optim_g"] == pip["train"]["optim_g"] and sr["train"]["pixel_opt"] == pip["train"]["pixel_opt"]
    assert "ddl_opt" in pip["train"] and "ddl_opt" not in sr["train"]
    with pytest.raises(ValueError):
        tc.model_options("GANModel", bb, str(tmp_path))


def test_measure_quick_steps_both_models():
    res = tc.measure(width=8, batch=2, patch=32, repeats=2, warmup=1, quick=True)
    assert len(res["times"]["SRModel"]) == 2 and len(res["times"]["PIPModel"]) == 2
    assert res["ratio"] == pytest.approx(res["PIPModel_s"] / res["SRModel_s"])
    assert res["params"]["PIPModel"] > res["params"]["SRModel"]
    text = tc.render(res, {"cpu": "x"}, "python bench/train_cost.py --quick")
    assert "| SRModel (bare NAFNet) |" in text and f"{res['ratio']:.3f}" in text
    assert res["cpu_ratio"] == pytest.approx(res["PIPModel_cpu_s"] / res["SRModel_cpu_s"])


def test_a_step_updates_the_weights(tmp_path):
    model = tc.build("PIPModel", tc.backbone_option(8, quick=True), str(tmp_path))
    before = [p.detach().clone() for p in model.net_g.parameters()]
    tc.step_fn(model, tc.make_batch(2, 32))()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.net_g.parameters()))
    assert "l_ddl" in model.log_dict and "l_pix" in model.log_dict
