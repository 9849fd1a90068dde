"""PIPModel in-process: ω from batches, losses, Degradation-Mix, EMA, trainable modes, validation logging."""
import copy
import os

import pytest
import torch

from pip_adapter import bsr  # noqa: F401  (registrations)
from pip_adapter.bsr.model import PIPModel
from tests.helpers_train import tiny_options

NAMES = ["noise", "rain", "haze", "blur", "low_light"]


def _model(tmp_path, **train_updates) -> PIPModel:
    opt = tiny_options("m", builtin=False)
    opt.update({"dist": False, "rank": 0, "world_size": 1, "is_train": True, "num_gpu": 0})
    opt["path"] = {"models": str(tmp_path / "models"), "training_states": str(tmp_path / "states"),
                   "log": str(tmp_path), "visualization": str(tmp_path / "vis"), "experiments_root": str(tmp_path)}
    opt["train"].update(train_updates)
    torch.manual_seed(0)
    return PIPModel(copy.deepcopy(opt))


def _batch(labels, size=16):
    g = torch.Generator().manual_seed(1)
    gt = torch.rand(len(labels), 3, size, size, generator=g)
    return {"lq": (gt + 0.1 * torch.randn(gt.shape, generator=g)).clamp(0, 1), "gt": gt,
            "label": torch.tensor(labels), "lq_path": [f"img{i}.png" for i in range(len(labels))]}


def test_omega_from_labels_and_soft_rows(tmp_path):
    model = _model(tmp_path)
    model.feed_data(_batch([0, 3]))
    assert torch.equal(model.omega, torch.eye(5)[[0, 3]])
    soft = torch.tensor([[0.5, 0.5, 0, 0, 0], [0, 0, 0, 0, 1.0]])
    model.feed_data({**_batch([0, 0]), "omega": soft})
    assert torch.equal(model.omega, soft)
    # a dataset numbering its types in another order is mapped through the names
    model._label_names = ["haze", "noise"]
    model.feed_data(_batch([0, 1]))
    assert model.omega.argmax(1).tolist() == [NAMES.index("haze"), NAMES.index("noise")]
    model._label_names = ["snow"]
    with pytest.raises(ValueError, match="snow"):
        model.feed_data(_batch([0]))
    model._label_names = None
    with pytest.raises(ValueError, match="label"):
        model.feed_data({"lq": torch.rand(1, 3, 8, 8)})


def test_step_uses_pixel_and_ddl_losses(tmp_path):
    model = _model(tmp_path)
    before = {k: v.clone() for k, v in model.bare_net.state_dict().items()}
    model.feed_data(_batch([0, 1, 2, 3]))
    model.optimize_parameters(1)
    assert set(model.log_dict) == {"l_pix", "l_ddl"} and model.log_dict["l_ddl"] >= 0
    after = model.bare_net.state_dict()
    prompts = [k for k in after if "degradation_prompt" in k]
    assert prompts and any(not torch.equal(before[k], after[k]) for k in prompts)
    assert isinstance(model.optimizer_g, torch.optim.AdamW)


def test_release_losses_and_ema(tmp_path):
    model = _model(tmp_path, pixel_opt={"type": "SmoothL1Loss", "beta": 1.0},
                   ddl_opt={"form": "release", "theta_thre": 90, "loss_weight": 0.002}, ema_decay=0.5)
    assert type(model.cri_pix).__name__ == "SmoothL1Loss" and model.cri_ddl.form == "release"
    model.feed_data(_batch([1, 2]))
    model.optimize_parameters(1)
    net, ema = dict(model.bare_net.named_parameters()), dict(model.net_g_ema.named_parameters())
    moved = [k for k in net if not torch.equal(net[k], ema[k])]
    assert moved  # the EMA copy lags behind the trained weights
    model.test()  # validation runs the EMA network with ω
    assert model.output.shape == model.lq.shape


def test_degradation_mix_in_training_only(tmp_path):
    model = _model(tmp_path, dmix={"prob": 1.0})
    batch = _batch([0, 1, 2, 3])
    model.feed_data(batch)
    assert not torch.equal(model.lq, batch["lq"])
    assert torch.allclose(model.omega.sum(1), torch.ones(4)) and (model.omega.max(1).values < 1).any()
    model._validating = True
    model.feed_data(batch)
    assert torch.equal(model.lq, batch["lq"]) and torch.equal(model.omega, torch.eye(5)[[0, 1, 2, 3]])


def test_trainable_pip_freezes_the_backbone(tmp_path):
    model = _model(tmp_path, trainable="pip")
    trainable = {n for n, p in model.bare_net.named_parameters() if p.requires_grad}
    assert trainable and all("pip" in n or "level" in n for n in trainable)
    optimised = {id(p) for g in model.optimizer_g.param_groups for p in g["params"]}
    assert optimised == {id(p) for p in model.bare_net.parameters() if p.requires_grad}


def test_pretrain_loading_picks_the_state_dict_like_the_restore_reader(tmp_path):
    model = _model(tmp_path)
    state = model.bare_net.state_dict()
    only_params = str(tmp_path / "only_params.pth")
    torch.save({"params": state}, only_params)
    other = _model(tmp_path)
    other.load_network(other.net_g, only_params, param_key="params_ema")  # BasicSR's fallback to params
    assert all(torch.equal(v, other.bare_net.state_dict()[k]) for k, v in state.items())
    neither = str(tmp_path / "neither.pth")
    torch.save({"weights": state}, neither)
    with pytest.raises(ValueError, match=r"no key 'params_ema'; it holds \['weights'\]"):
        other.load_network(other.net_g, neither, param_key="params_ema")
    not_tensors = str(tmp_path / "not_tensors.pth")
    torch.save({"params": {"a": 1}}, not_tensors)
    with pytest.raises(ValueError, match="'params' is not a state dict of tensors"):
        other.load_network(other.net_g, not_tensors)


def test_checkpoint_round_trip_and_validation_logging(tmp_path):
    model = _model(tmp_path)
    model.save(0, 3)
    path = os.path.join(str(tmp_path / "models"), "net_g_3.pth")
    other = _model(tmp_path)
    other.load_network(other.net_g, path)
    for k, v in model.bare_net.state_dict().items():
        assert torch.equal(v, other.bare_net.state_dict()[k])

    class _Set(torch.utils.data.Dataset):
        def __init__(self, name, label):
            self.opt = {"name": name, "degradations": NAMES}
            self.label = label

        def __len__(self):
            return 2

        def __getitem__(self, i):
            b = _batch([self.label])
            return {k: (v[0] if isinstance(v, (torch.Tensor, list)) else v) for k, v in b.items()}

    class _TB:
        def __init__(self):
            self.scalars = {}

        def add_scalar(self, tag, value, step):
            self.scalars[tag] = (value, step)

    tb = _TB()
    loaders = [torch.utils.data.DataLoader(_Set(f"set{i}", i), batch_size=1) for i in range(5)]
    for loader in loaders:
        model.validation(loader, 7, tb, save_img=False)
    assert {f"metrics/set{i}/psnr" for i in range(5)} <= set(tb.scalars)
    avg = sum(tb.scalars[f"metrics/set{i}/psnr"][0] for i in range(5)) / 5
    assert tb.scalars["metrics/average/psnr"] == (pytest.approx(avg), 7)
    assert model.last_validation["tasks"]["set0"]["input_psnr"] > 0
    assert os.path.isfile(tmp_path / "validation_latest.json")


def test_zero_init_starts_from_identity(tmp_path):
    model = _model(tmp_path, zero_init=["ending"])
    model.feed_data(_batch([3]))
    model.test()
    assert torch.allclose(model.output, model.lq, atol=1e-6)  # NAFNet adds its input back
    with pytest.raises(ValueError, match="nothere"):
        _model(tmp_path, zero_init="nothere")


def test_compiled_training_step(tmp_path):
    eager = _model(tmp_path / "e")
    model = _model(tmp_path / "c", compile={"backend": "aot_eager", "dynamic": False})
    assert model._train_net is not model.net_g and eager._train_net is eager.net_g
    for m in (eager, model):
        m.feed_data(_batch([0, 1, 2, 3]))
        m.optimize_parameters(1)
    torch.testing.assert_close(model.output, eager.output, rtol=0, atol=1e-5)
    for (name, p), q in zip(model.bare_net.named_parameters(), eager.bare_net.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)   # the compiled backward
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    assert all(not k.startswith("_orig_mod") for k in model.bare_net.state_dict())   # checkpoints unchanged
    with pytest.raises(ValueError, match="unknown key"):
        _model(tmp_path / "x", compile={"backend": "aot_eager", "bogus": 1})
