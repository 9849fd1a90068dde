"""Unit tests of the BasicSR glue pieces that need no training run."""
import math
import os

import numpy as np
import pytest
import torch

from pip_adapter import bsr
from pip_adapter.bsr import pipeline, resume
from pip_adapter.bsr.model import PIPModel, plain_state
from pip_adapter.bsr.scheduler import LinearWarmupCosine
from pip_adapter.utils.io import OptionFileError


def _lrs(sched_kwargs, steps, lr=1.0):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = LinearWarmupCosine(opt, **sched_kwargs)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out, opt, sched


def test_warmup_cosine_paper_curve():
    lrs, _, _ = _lrs({"total_iter": 20, "warmup_iter": 4, "warmup_start_factor": 0.0}, 22, lr=2.0)
    assert lrs[:5] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])  # linear from 0 to the peak
    assert lrs[12] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 8 / 16)))
    assert lrs[20] == pytest.approx(0.0) and lrs[21] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))  # monotone after the warm-up


def test_warmup_cosine_release_start_and_resume():
    kw = {"total_iter": 30, "warmup_iter": 10, "warmup_start_factor": 0.1, "eta_min": 1e-3}
    lrs, _, _ = _lrs(kw, 30)
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[10] == pytest.approx(1.0)
    # resuming from a state dict (saved as plain data) continues the same curve
    _, opt, sched = _lrs(kw, 13)
    state = plain_state(sched.state_dict())
    p = torch.nn.Parameter(torch.zeros(1))
    opt2 = torch.optim.SGD([p], lr=1.0)
    sched2 = LinearWarmupCosine(opt2, **kw)
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    tail = []
    for _ in range(5):
        tail.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert tail == pytest.approx(lrs[13:18])


def test_warmup_longer_than_a_shortened_schedule_follows_it():
    import logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    log = logging.getLogger("basicsr")
    log.addHandler(handler)
    try:
        lrs, _, sched = _lrs({"total_iter": 60, "warmup_iter": 100, "warmup_start_factor": 0.1}, 61)
    finally:
        log.removeHandler(handler)
    assert sched.warmup_iter == 3  # 60 // 20
    assert lrs[0] == pytest.approx(0.1) and lrs[3] == pytest.approx(1.0) and lrs[60] == pytest.approx(0.0)
    assert any("warmup_iter=100 is longer than total_iter=60" in r.getMessage() for r in records)
    # a warm-up that fits is kept as given, silently
    _, _, sched = _lrs({"total_iter": 60, "warmup_iter": 60}, 1)
    assert sched.warmup_iter == 60


@pytest.mark.parametrize("bad", [{"total_iter": 0}, {"total_iter": 5, "warmup_iter": -1},
                                 {"total_iter": 5, "warmup_start_factor": 2}])
def test_warmup_cosine_rejects_bad_options(bad):
    p = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError):
        LinearWarmupCosine(torch.optim.SGD([p], lr=1.0), **bad)


def test_get_optimizer_by_name():
    model = PIPModel.__new__(PIPModel)
    p = [torch.nn.Parameter(torch.zeros(2))]
    opt = model.get_optimizer("AdamW", p, lr=3.6e-4, betas=[0.9, 0.999], weight_decay=0.01)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert isinstance(model.get_optimizer("Adam", p, lr=1e-3), torch.optim.Adam)
    with pytest.raises(ValueError, match="AdamW"):
        model.get_optimizer("Adamm", p, lr=1e-3)


def test_training_state_loads_weights_only(tmp_path):
    """AdamW + BasicSR's MultiStepRestartLR (a Counter inside) + ours survive weights_only loading."""
    from basicsr.models.lr_scheduler import MultiStepRestartLR

    from pip_adapter.utils.io import atomic_torch_save

    p = torch.nn.Parameter(torch.randn(4))
    opt = torch.optim.AdamW([p], lr=1e-3)
    p.sum().backward()
    opt.step()
    s1 = MultiStepRestartLR(opt, milestones=[2, 4])
    s2 = LinearWarmupCosine(opt, total_iter=10, warmup_iter=2)
    state = {"epoch": 0, "iter": 3, "optimizers": [plain_state(opt.state_dict())],
             "schedulers": [plain_state(s1.state_dict()), plain_state(s2.state_dict())]}
    path = tmp_path / "3.state"
    atomic_torch_save(state, str(path))
    back = torch.load(str(path), map_location="cpu", weights_only=True)
    assert torch.equal(back["optimizers"][0]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    s1b = MultiStepRestartLR(torch.optim.AdamW([torch.nn.Parameter(torch.randn(4))], lr=1e-3), milestones=[9])
    s1b.load_state_dict(back["schedulers"][0])
    assert 2 in s1b.milestones and 9 not in s1b.milestones


def test_aio_metrics_match_definitions():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    gt = rng.random((24, 20, 3))
    noisy = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
    mse = np.mean((noisy - gt) ** 2)
    assert bsr.calculate_psnr_aio(noisy * 255, gt * 255) == pytest.approx(10 * np.log10(1 / mse))
    ref = structural_similarity(noisy, gt, data_range=1.0, channel_axis=-1)
    assert bsr.calculate_ssim_aio(noisy * 255, gt * 255) == pytest.approx(ref)
    # registered in BasicSR's registry and reachable through calculate_metric
    from basicsr.metrics import calculate_metric

    val = calculate_metric({"img": noisy * 255, "img2": gt * 255}, {"type": "calculate_ssim_aio", "crop_border": 2})
    assert val == pytest.approx(structural_similarity(noisy[2:-2, 2:-2], gt[2:-2, 2:-2], data_range=1.0,
                                                      channel_axis=-1))


def test_smooth_l1_registered():
    from basicsr.losses import build_loss

    loss = build_loss({"type": "SmoothL1Loss", "loss_weight": 2.0})
    a, b = torch.zeros(1, 1, 2, 2), torch.tensor([0.5, 2.0, 0.0, 0.0]).view(1, 1, 2, 2)
    assert loss(a, b).item() == pytest.approx(2.0 * (0.125 + 1.5) / 4)


def test_registration_is_idempotent():
    bsr.register_all()
    bsr.register_all()
    import importlib

    importlib.reload(bsr)  # a re-import must not trip BasicSR's duplicate-name assertion
    for name in ("PIPNet", "NAFNet", "Restormer", "RestormerPIPRelease"):
        assert name in bsr.ARCH_REGISTRY
    assert "PIPModel" in bsr.MODEL_REGISTRY


_MINIMAL = """name: t
model_type: PIPModel
datasets:
  train: {name: x, type: MixedDegradationDataset}
train: {total_iter: 5}
"""


def test_python_tag_is_refused(tmp_path):
    opt = tmp_path / "evil.yml"
    opt.write_text(_MINIMAL + "path: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(OptionFileError, match="python"):
        pipeline.parse_options(str(tmp_path), True, ["-opt", str(opt)])
    assert not (tmp_path / "pwned").exists()


def test_force_yml_is_parsed_safely(tmp_path):
    opt = tmp_path / "o.yml"
    opt.write_text(_MINIMAL)
    parsed, _ = pipeline.parse_options(
        str(tmp_path), True, ["-opt", str(opt), "--force_yml", "train:total_iter=7",
                                       "train:note=__import__('os').system('touch pwned')"])
    assert parsed["train"]["total_iter"] == 7
    assert parsed["num_gpu"] == (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    assert parsed["path"]["experiments_root"] == os.path.join(str(tmp_path), "experiments", "t")
    assert parsed["train"]["note"] == "__import__('os').system('touch pwned')"  # a string, never run
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ValueError, match="nothere"):
        pipeline.parse_options(str(tmp_path), True, ["-opt", str(opt), "--force_yml", "nothere:x=1"])


def test_force_yml_typos_of_the_files_keys_only():
    opt = {"train": {"total_iter": 10}, "builtin_data": {"root": "r"}}
    with pytest.raises(ValueError, match="did you mean 'train:total_iter'"):
        pipeline.apply_force_yml(opt, ["train:total_iters=5"])
    # two new keys of one command may look alike: only the option file's own keys are typo candidates
    pipeline.apply_force_yml(opt, ["builtin_data:max_train_images=2", "builtin_data:max_val_images=1"])
    assert opt["builtin_data"] == {"root": "r", "max_train_images": 2, "max_val_images": 1}
    pipeline.apply_force_yml(opt, ["+train:total_iters=3"])
    assert opt["train"] == {"total_iter": 10, "total_iters": 3}


def test_force_yml_name_cannot_escape(tmp_path):
    opt = tmp_path / "o.yml"
    opt.write_text(_MINIMAL)
    with pytest.raises(OptionFileError, match="folder name"):
        pipeline.parse_options(str(tmp_path), True, ["-opt", str(opt), "--force_yml", "name=../../x"])


def test_launcher_pytorch_without_torchrun_env(tmp_path, monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    opt = tmp_path / "o.yml"
    opt.write_text(_MINIMAL)
    with pytest.raises(ValueError, match="torchrun"):
        pipeline.parse_options(str(tmp_path), True, ["-opt", str(opt), "--launcher", "pytorch"])


def test_latest_complete_state_skips_incomplete(tmp_path):
    models, states = tmp_path / "models", tmp_path / "training_states"
    models.mkdir()
    states.mkdir()
    for it in (5, 10, 15):
        torch.save({"iter": it}, states / f"{it}.state")
    for it in (5, 10):
        torch.save({"params": {}}, models / f"net_g_{it}.pth")
    (states / "20.state.abc.tmp").write_bytes(b"half")  # a kill during a save leaves at most this
    opt = {"network_g": {}, "path": {"models": str(models), "training_states": str(states)}}
    assert resume.latest_complete_state(opt) == str(states / "10.state")


def test_save_network_is_atomic(tmp_path, monkeypatch):
    """A failure half-way through a save leaves the previous checkpoint intact."""
    model = PIPModel.__new__(PIPModel)
    model.opt = {"path": {"models": str(tmp_path)}, "network_g": {"type": "X"}, "model_type": "PIPModel"}
    net = torch.nn.Linear(2, 2)
    model.net_g = net
    model.save_network(net, "net_g", 5)
    path = tmp_path / "net_g_5.pth"
    good = path.read_bytes()

    real_save = torch.save

    def dying_save(obj, f, *a, **k):
        f.write(b"partial")  # atomic_torch_save hands torch an open file (so OS errors keep their reason)
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(torch, "save", dying_save)
    with torch.no_grad():
        net.weight.add_(1)
    with pytest.raises(KeyboardInterrupt):
        model.save_network(net, "net_g", 5)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == good
    ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
    assert set(ckpt) == {"params", "meta"} and ckpt["meta"]["network_g"] == {"type": "X"}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_archiving_twice_in_one_second_keeps_both(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "get_time_str", lambda: "20260101_000000")  # both runs in the same second
    run = tmp_path / "experiments" / "x"
    for i in range(3):
        run.mkdir(parents=True, exist_ok=True)
        (run / "log.txt").write_text(f"run {i}")
        pipeline.mkdir_and_rename(str(run))
    archived = sorted(p.name for p in (tmp_path / "experiments").iterdir() if p.name != "x")
    assert archived == ["x_archived_20260101_000000", "x_archived_20260101_000000_2",
                        "x_archived_20260101_000000_3"]
    assert [(tmp_path / "experiments" / a / "log.txt").read_text() for a in archived] == ["run 0", "run 1", "run 2"]
    assert run.is_dir() and not any(run.iterdir())


@pytest.mark.parametrize("quiet", [True, False])
def test_run_logger_sends_our_notes_to_the_log_file_and_can_keep_the_console_quiet(tmp_path, quiet):
    import logging

    log_file = tmp_path / "train.log"
    console, file_handler = logging.StreamHandler(), logging.FileHandler(log_file)
    bsr_log = logging.getLogger("basicsr_run_logger_test")

    def bsr_get_root_logger(*args, **kwargs):   # what BasicSR's does: a console and a file handler
        bsr_log.handlers = [console, file_handler]
        return bsr_log

    attached = []
    get_root_logger = pipeline._run_logger(bsr_get_root_logger, quiet, attached)
    own = logging.getLogger("pip_adapter")
    try:
        assert get_root_logger() is bsr_log and attached == [file_handler] and file_handler in own.handlers
        assert console.level == (logging.WARNING if quiet else logging.NOTSET) and file_handler.level == 0
        logging.getLogger("pip_adapter.some.module").warning("a note of ours")
        file_handler.flush()
        assert "a note of ours" in log_file.read_text()
    finally:
        own.removeHandler(file_handler)
        file_handler.close()


def test_counting_build_model_reports_every_iteration():
    seen = []

    class Model:
        def optimize_parameters(self, current_iter):
            seen.append(("step", current_iter))

    model = pipeline._counting_build_model(lambda opt: Model(), lambda it: seen.append(("told", it)))({})
    model.optimize_parameters(1)
    model.optimize_parameters(2)
    assert seen == [("step", 1), ("told", 1), ("step", 2), ("told", 2)]
