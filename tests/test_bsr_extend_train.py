"""Fine-tuning a new degradation type: old types bit-identical, new type improves, prompts stay obtuse.

Two routes: a plain PyTorch loop (what ``train.trainable: new_prompts`` does) and ``basicsr train`` with
the snow plugin's option file on the tiny experiment of ``tests/fixtures_train.py``.
"""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from pip_adapter.modules.ddl_loss import DirectionalDecoupledLoss
from pip_adapter.plugins import load_plugins
from pip_adapter.wrap.extend import apply_trainable, extend_degradations, orthogonal_prompt_init, prompt_angles
from tests.helpers_extend import one_hot, tiny_pipnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNOW_PLUGIN = os.path.join(ROOT, "plugins", "snow")
PRETRAIN_STEPS, FINETUNE_STEPS = 8, 30

pytestmark = pytest.mark.usefixtures("one_thread")


def _crops(n, size, seed):
    """n clean uint8 crops (size×size) from the built-in photos, reproducible from ``seed``."""
    from pip_adapter.data.builtin import TRAIN_IMAGES, load_photo

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = load_photo(TRAIN_IMAGES[i % len(TRAIN_IMAGES)])[::4, ::4]  # a quarter: more detail per crop
        y, x = rng.integers(0, img.shape[0] - size), rng.integers(0, img.shape[1] - size)
        out.append(np.ascontiguousarray(img[y:y + size, x:x + size, :3]))
    return out


def _pairs(name, clean, seed):
    from pip_adapter.degradations import get_synthesizer

    synth, rng = get_synthesizer(name), np.random.default_rng(seed)
    lq = [synth(c, rng, **synth.variants[i % len(synth.variants)]) for i, c in enumerate(clean)]

    def t(imgs):
        return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0

    return t(lq), t(clean)


def _psnr(out, gt):
    mse = ((out.clamp(0, 1) - gt) ** 2).flatten(1).mean(1)
    return float((10 * torch.log10(1.0 / mse)).mean())


def _min_angle_of_new(model, t_old):
    """Smallest angle (degrees) between an added prompt and any other prompt, over all levels."""
    best = 180.0
    for level in model.pip_levels:
        ang = prompt_angles(level.all_degradation_prompts())
        t = ang.shape[0]
        mask = ~torch.eye(t, dtype=torch.bool)
        mask[:t_old, :t_old] = False
        best = min(best, float(ang[mask].min()))
    return best


def test_finetune_new_prompt_only_plain_loop():
    load_plugins([SNOW_PLUGIN])
    net = tiny_pipnet(seed=0)
    old = list(net.degradations)
    # stand-in for a trained model: its prompts obtuse (L_ddl = 0), a few steps on the old types
    with torch.no_grad():
        for level in net.pip_levels:
            level.degradation_prompt.copy_(orthogonal_prompt_init(level.degradation_prompt[:0], len(old)))
    train_old = {n: _pairs(n, _crops(4, 32, i), 10 + i) for i, n in enumerate(old)}
    for level in net.pip_levels:
        level.degradation_prompt.requires_grad_(False)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=2e-3)
    for step in range(PRETRAIN_STEPS):
        for n, (lq, gt) in train_old.items():
            loss = F.l1_loss(net(lq, one_hot(old, n, len(lq))), gt)
            opt.zero_grad()
            loss.backward()
            opt.step()

    extend_degradations(net, ["snow"])
    names = list(net.degradations)
    params = apply_trainable(net, "new_prompts")
    frozen_before = {k: v.detach().clone() for k, v in net.state_dict().items() if "added_prompts" not in k}
    probe = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    snow_train = _pairs("snow", _crops(8, 32, 100), 200)
    snow_val = _pairs("snow", _crops(6, 32, 300), 400)
    net.eval()
    with torch.no_grad():
        old_out = {n: net(probe, n) for n in old}
        psnr_before = _psnr(net(snow_val[0], "snow"), snow_val[1])

    # what PIPModel does: an optimiser over the parameters that require grad (weight decay included)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=3e-2, weight_decay=0.05)
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in params}
    ddl = DirectionalDecoupledLoss(theta_thre=95.0)  # the recipe's margin (plugins/snow/extend_snow.yml)
    net.train()
    for step in range(FINETUNE_STEPS):
        idx = torch.arange(4) + 4 * (step % 2)
        lq, gt = snow_train[0][idx], snow_train[1][idx]
        loss = F.l1_loss(net(lq, one_hot(names, "snow", 4)), gt)
        loss = loss + ddl([lv.all_degradation_prompts() for lv in net.pip_levels])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        for n in old:
            assert torch.equal(net(probe, n), old_out[n]), n
        psnr_after = _psnr(net(snow_val[0], "snow"), snow_val[1])
    for k, v in net.state_dict().items():
        if "added_prompts" not in k:
            assert torch.equal(v, frozen_before[k]), k
    assert psnr_after > psnr_before + 0.02, (psnr_before, psnr_after)  # measured: 17.04 -> 17.15 dB
    for level in net.pip_levels:  # every pair, old and new
        ang = prompt_angles(level.all_degradation_prompts())
        assert float(ang[~torch.eye(len(names), dtype=torch.bool)].min()) >= 90.0


def test_finetune_through_basicsr_train_with_snow_plugin(tiny_pip_experiment, tmp_path):
    from pip_adapter.cli import main
    from pip_adapter.restore.checkpoint import default_builder
    from tests.helpers_train import read_train_log, run_basicsr

    root = os.path.dirname(os.path.dirname(tiny_pip_experiment.exp_dir))
    with open(tiny_pip_experiment.opt_path) as fh:
        tiny = yaml.safe_load(fh)
    ext = str(tmp_path / "tiny_snow.pth")
    assert main(["--log-level", "WARNING", "extend", "--ckpt", tiny_pip_experiment.net_path,
                 "--opt", tiny_pip_experiment.opt_path, "--add", "snow", "--out", ext]) == 0

    with open(os.path.join(SNOW_PLUGIN, "extend_snow.yml")) as fh:
        opt = yaml.safe_load(fh)
    assert opt["train"]["trainable"] == "new_prompts" and opt["network_g"]["added_degradations"] == ["snow"]
    # the example file, shrunk to the tiny experiment's network and data
    opt.update(name="tiny_snow_finetune", num_gpu=0, plugins=[SNOW_PLUGIN])
    opt.pop("builtin_data")
    opt["network_g"] = dict(tiny["network_g"], added_degradations=["snow"])
    train = opt["datasets"]["train"]
    train.update(gt_size=32, batch_size_per_gpu=4, num_worker_per_gpu=0)
    opt["path"]["pretrain_network_g"] = ext
    opt["train"].update(total_iter=6, ema_decay=0.9)
    opt["train"]["scheduler"].update(warmup_iter=2, total_iter=6)
    opt["val"]["pad_multiple"] = 4
    opt["logger"].update(print_freq=2, save_checkpoint_freq=6)
    opt_path = str(tmp_path / "extend_snow_tiny.yml")
    with open(opt_path, "w") as fh:
        yaml.safe_dump(opt, fh, sort_keys=False)
    proc = run_basicsr(["train", "-opt", opt_path], cwd=root)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    exp_dir = os.path.join(root, "experiments", "tiny_snow_finetune")
    assert "Trainable parameters: new_prompts" in read_train_log(exp_dir)

    before = torch.load(ext, weights_only=True)
    after = torch.load(os.path.join(exp_dir, "models", "net_g_latest.pth"), weights_only=True)
    for key in ("params", "params_ema"):
        src = before["params"]  # the extended file has no EMA copy: both nets started from params
        changed = [k for k in src if not torch.equal(src[k], after[key][k])]
        assert changed and all("added_prompts" in k for k in changed), (key, changed)

    # old types: bit-identical outputs of the original checkpoint and the fine-tuned one
    orig = default_builder(tiny["network_g"]).eval()
    orig.load_state_dict(torch.load(tiny_pip_experiment.net_path, weights_only=True)["params"])
    tuned = default_builder(opt["network_g"]).eval()
    tuned.load_state_dict(after["params_ema"])
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for n in orig.degradations:
            assert torch.equal(tuned(x, n), orig(x, n)), n
    assert _min_angle_of_new(tuned, len(orig.degradations)) >= 90.0
    with open(os.path.join(exp_dir, "validation_latest.json")) as fh:
        val = json.load(fh)
    assert set(val["tasks"]) == {"snow", "rain"}
