"""The compact degradation classifier (the one shipped models bundle) and soft/multi-hot classifier targets."""
import json
import os

import numpy as np
import pytest
import torch

from pip_adapter.restore.checkpoint import load_checkpoint, make_meta, save_checkpoint
from pip_adapter.restore.classifier import COMPACT_ARCH, DegradationClassifier

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["noise", "rain", "haze", "blur", "low_light"]


def test_compact_fits_the_two_megabyte_budget_and_round_trips(tmp_path):
    cls = DegradationClassifier(COMPACT_ARCH, degradations=NAMES, crop_size=64).eval()
    nbytes = sum(p.numel() * p.element_size() for p in cls.state_dict().values())
    assert nbytes <= 2 * 1024 * 1024
    path = str(tmp_path / "cls.safetensors")
    save_checkpoint(path, cls, make_meta(cls))
    assert (tmp_path / "cls.safetensors").stat().st_size <= 2 * 1024 * 1024
    loaded = load_checkpoint(path)
    assert loaded.meta["network"]["arch"] == "compact" and loaded.meta["network"]["widths"] == [24, 32, 48, 64, 96]
    x = torch.rand(3, 90, 70)  # larger than a crop: several native-resolution crops are averaged
    assert torch.allclose(loaded.classifier.predict_proba(x), cls.predict_proba(x), atol=1e-6)
    # batch-size independent (GroupNorm): an image's logits do not depend on its batch mates
    batch = torch.rand(4, 3, 64, 64)
    assert torch.allclose(cls(batch)[:1], cls(batch[:1]), atol=1e-5)


@pytest.mark.parametrize("kwargs,needle", [
    ({"checkpoint_path": "/etc/passwd"}, "not accepted by arch 'compact'"),
    ({"widths": [8, 4096]}, "from 8 to 512"),
    ({"widths": [24, 30]}, "multiples of 8"),
    ({"widths": []}, "multiples of 8"),
])
def test_compact_refuses_keys_and_widths_it_does_not_take(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        DegradationClassifier(COMPACT_ARCH, degradations=NAMES, **kwargs)


def test_compact_sees_global_statistics():
    """Brightness alone (low light) reaches the head through the input statistics: two images equal up to a
    gain give different logits even at random weights."""
    torch.manual_seed(0)
    cls = DegradationClassifier(COMPACT_ARCH, degradations=NAMES).eval()
    x = torch.rand(1, 3, 64, 64)
    assert not torch.allclose(cls(x), cls(x * 0.2), atol=1e-4)


def _model_opt(tmp_path, names):
    return {
        "name": "cls_compact", "model_type": "DegradationClassifierModel", "num_gpu": 0, "is_train": True,
        "dist": False, "rank": 0, "world_size": 1, "manual_seed": 0,
        "network_g": {"type": "DegradationClassifier", "arch": "compact", "widths": [8, 16],
                      "degradations": names, "crop_size": 16, "num_crops": 1},
        "path": {"pretrain_network_g": None, "strict_load_g": True, "models": str(tmp_path / "models"),
                 "log": str(tmp_path), "training_states": str(tmp_path / "states")},
        "train": {"optim_g": {"type": "Adam", "lr": 1e-2}, "total_iter": 30},
        "val": {"metrics": {"acc": {"type": "accuracy"}}},
        "datasets": {"val_1": {"name": "toy"}},
    }


class _ToySet(torch.utils.data.Dataset):
    """Type 0 is a bright image, type 1 a noisy one, type 2 a dark one; every third item of a composite set is
    bright *and* noisy (ω multi-hot on 0 and 1)."""

    def __init__(self, n, composites=False):
        self.n, self.composites = n, composites
        self.opt = {"name": "toy"}

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        kind = i % 3
        base = torch.full((3, 16, 16), 0.5)
        omega = torch.zeros(3)
        if kind == 0 or (self.composites and kind == 2):
            base = base + 0.35
            omega[0] = 1
        if kind == 1 or (self.composites and kind == 2):
            base = base + 0.15 * torch.randn(3, 16, 16, generator=g)
            omega[1] = 1
        if kind == 2 and not self.composites:
            base = base * 0.2
            omega[2] = 1
        lq = base.clamp(0, 1)
        return {"lq": lq, "gt": lq, "label": int(omega.argmax()), "omega": omega, "lq_path": f"{i}.png"}


def test_multi_hot_omega_is_a_soft_target_and_composites_count_as_their_parts(tmp_path):
    import pip_adapter.bsr  # noqa: F401  (registers DegradationClassifier[Model])
    from basicsr.models import build_model

    from pip_adapter.bsr.classifier_model import _parts_correct

    torch.manual_seed(0)  # the network's initial weights and the loader's order
    names = NAMES[:3]
    model = build_model(_model_opt(tmp_path, names))
    model.feed_data({"lq": torch.rand(2, 3, 16, 16), "omega": torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])})
    assert torch.equal(model.target, torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    model.feed_data({"lq": torch.rand(2, 3, 16, 16), "label": torch.tensor([2, 0])})
    assert torch.equal(model.target, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))
    # a composite is right when its k most probable types are its k parts
    target = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    scores = torch.tensor([[0.4, 0.35, 0.25], [0.4, 0.2, 0.4], [0.1, 0.2, 0.7]])
    assert _parts_correct(scores, target).tolist() == [True, False, True]

    loader = torch.utils.data.DataLoader(_ToySet(36, composites=True), batch_size=12, shuffle=True)
    for step in range(1, 16):
        for batch in loader:
            model.feed_data(batch)
            model.optimize_parameters(step)
    model.validation(torch.utils.data.DataLoader(_ToySet(9, composites=True), batch_size=3), 15, None, False)
    summary = json.load(open(tmp_path / "classifier_validation_latest.json"))
    # the composite items count for both of their types
    assert sum(sum(row) for row in summary["confusion"]) == 9 + 3
    assert summary["sets"]["toy"]["count"] == 9  # images, not parts
    assert set(summary["per_type_single"]) == {"noise", "rain"} and set(summary["per_type"]) == {"noise", "rain"}
    net = model.bare_net
    composite = _ToySet(9, composites=True)[2]["lq"]
    probs = net.predict_proba(composite).numpy()
    assert np.argsort(probs)[-2:].tolist() in ([0, 1], [1, 0]), probs  # the two parts lead
    assert min(probs[0], probs[1]) > 0.2, probs


def test_photo_classifier_recipe_trains_on_the_zoo_data_and_fits_the_budget(tmp_path):
    """basicsr_options/zoo/classifier_photo.yml: compact (≤ 2 MB), the restorer's types, val sets and
    composite kinds; its train dataset, pointed at a few small photos, feeds multi-hot soft targets."""
    import pip_adapter.bsr  # noqa: F401
    from basicsr.models import build_model

    from pip_adapter.bsr import pipeline
    from pip_adapter.data import MixedDegradationDataset
    from pip_adapter.image_io import write_image_file
    from tests.helpers_train import REPO_ROOT

    zoo = os.path.join(REPO_ROOT, "basicsr_options", "zoo")
    opt = pipeline.read_option_file(os.path.join(zoo, "classifier_photo.yml"))
    restorer = pipeline.read_option_file(os.path.join(zoo, "pip_nafnet_photo.yml"))
    net = opt["network_g"]
    assert net["type"] == "DegradationClassifier" and net["arch"] == "compact"
    assert net["degradations"] == restorer["network_g"]["degradations"]
    vals = {k: v for k, v in opt["datasets"].items() if k.startswith("val")}
    assert vals == {k: v for k, v in restorer["datasets"].items() if k.startswith("val")}
    kinds = [str(t["degradation"]) for t in opt["datasets"]["train"]["tasks"]]
    assert set(kinds) <= {str(t["degradation"]) for t in restorer["datasets"]["train"]["tasks"]}
    assert sum(k.startswith("[") for k in kinds) >= 3 and len(set(kinds)) == len(kinds)

    rng = np.random.default_rng(0)
    for i in range(2):
        write_image_file(str(tmp_path / "train" / f"p{i}.png"), rng.integers(0, 256, (100, 110, 3), dtype=np.uint8))
    train = dict(opt["datasets"]["train"], dataset_enlarge_ratio=1)
    train["tasks"] = [dict(t, dataroot_gt=str(tmp_path / "train")) for t in train["tasks"]]
    ds = MixedDegradationDataset(train)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=len(ds), shuffle=False)))
    model_opt = dict(opt, is_train=True, dist=False, rank=0, world_size=1, num_gpu=0,
                     path={"pretrain_network_g": None, "strict_load_g": True, "models": str(tmp_path / "m"),
                           "log": str(tmp_path), "training_states": str(tmp_path / "s")})
    model = build_model(model_opt)
    nbytes = sum(t.numel() * t.element_size() for t in model.bare_net.state_dict().values())
    assert nbytes <= 2 * 1024 * 1024
    model.feed_data(batch)
    assert model.lq.shape[-2:] == (64, 64)  # one 64-px window of each 96-px degraded crop
    composite = [i for i, row in enumerate(model.target) if (row > 0).sum() > 1]
    assert composite and all(torch.allclose(model.target[i].sum(), torch.tensor(1.0)) for i in composite)
    model.optimize_parameters(1)
    assert np.isfinite(float(model.get_current_log()["l_ce"]))
