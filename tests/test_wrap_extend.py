"""Extending ω: prompt initialisation, extend_degradations, state-dict migration, apply_trainable, CLI."""
import os
import warnings

import pytest
import torch
import yaml

from pip_adapter.modules.ddl_loss import DirectionalDecoupledLoss
from pip_adapter.restore.extend import extend_checkpoint
from pip_adapter.wrap.extend import (apply_trainable, extend_degradations, min_prompt_angle, orthogonal_prompt_init,
                                     prompt_angles)
from tests.helpers_extend import TINY_NET, one_hot, tiny_pipnet

pytestmark = pytest.mark.usefixtures("one_thread")



def _max_cos_new(all_prompts, t_old):
    p = all_prompts.detach().float()
    n = p / p.norm(dim=1, keepdim=True)
    cos = n @ n.t()
    cos.fill_diagonal_(-1.0)
    return float(cos[t_old:].max())


# ---------------------------------------------------------------------------------------------- init
@pytest.mark.parametrize("t,d,k", [(5, 16, 1), (5, 16, 3), (3, 64, 2), (5, 6, 1), (0, 8, 3)])
def test_init_is_obtuse_scaled_and_independent(t, d, k):
    gen = torch.Generator().manual_seed(t * 100 + d + k)
    old = torch.randn(t, d, generator=gen) * 1.7
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # T+k <= D: no warning
        new = orthogonal_prompt_init(old, k)
    assert new.shape == (k, d) and new.dtype == old.dtype
    both = torch.cat([old, new])
    assert _max_cos_new(both, t) < -0.01                       # strictly past 90° in float32 too
    assert min_prompt_angle(both, from_index=t) > 90.5
    target = old.norm(dim=1).mean() if t else torch.tensor(d ** 0.5)
    assert torch.allclose(new.norm(dim=1), target.expand(k), rtol=1e-5)
    assert torch.linalg.matrix_rank(both.double()) == t + k     # room left for the next extension
    # a second extension on top of the first is still obtuse to everything
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # T+k+1 may exceed D here
        newer = orthogonal_prompt_init(both, 1)
    assert _max_cos_new(torch.cat([both, newer]), t + k) < 0


def test_init_when_width_is_too_small_maximises_the_angle_and_warns():
    gen = torch.Generator().manual_seed(0)
    old = torch.randn(5, 4, generator=gen)
    with pytest.warns(UserWarning, match="maximise the minimum angle"):
        new = orthogonal_prompt_init(old, 2)
    ang = min_prompt_angle(torch.cat([old, new]), from_index=5)
    # better than random vectors would do, and reported
    rand = torch.randn(2, 4, generator=gen)
    assert ang > min_prompt_angle(torch.cat([old, rand]), from_index=5)
    assert prompt_angles(torch.cat([old, new])).shape == (7, 7)


def test_init_rejects_bad_shapes():
    with pytest.raises(ValueError, match="T×D"):
        orthogonal_prompt_init(torch.zeros(4), 1)
    with pytest.raises(ValueError, match=">= 1"):
        orthogonal_prompt_init(torch.zeros(2, 4), 0)


# ---------------------------------------------------------------------------------------------- model
def test_extend_keeps_old_outputs_bit_identical_and_ddl_zero(tiny_pip):
    x = torch.rand(2, 3, 32, 32)
    names = list(tiny_pip.degradations)
    mix = torch.tensor([[0.2, 0.5, 0.3], [0.0, 1.0, 0.0]])
    with torch.no_grad():
        before = {n: tiny_pip(x, one_hot(names, n, 2)) for n in names}
        before_mix = tiny_pip(x, mix)
    assert extend_degradations(tiny_pip, ["Snow", "jpeg"]) is tiny_pip
    assert tiny_pip.degradations == names + ["snow", "jpeg"]
    assert all(lv.num_types == 5 and len(lv.added_prompts) == 2 for lv in tiny_pip.pip_levels)
    with torch.no_grad():
        for n in names:
            assert torch.equal(tiny_pip(x, one_hot(tiny_pip.degradations, n, 2)), before[n]), n
            assert torch.equal(tiny_pip(x, n), before[n])
        assert torch.equal(tiny_pip(x, torch.cat([mix, torch.zeros(2, 2)], 1)), before_mix)
        assert not torch.equal(tiny_pip(x, "snow"), before["noise"])
    prompts = [lv.all_degradation_prompts() for lv in tiny_pip.pip_levels]
    for lv, p in zip(tiny_pip.pip_levels, prompts):
        assert _max_cos_new(p, 3) < 0
        assert torch.allclose(p[3:].norm(dim=1), lv.degradation_prompt.norm(dim=1).mean().expand(2), rtol=1e-5)
    # the new prompts leave L_ddl exactly where the old ones put it (the old pairs are untouched)
    for form in ("paper", "release"):
        ddl = DirectionalDecoupledLoss(form=form)
        old_only = sum(ddl.level_loss(lv.degradation_prompt) * 3 * 2 / (5 * 4) if form == "paper"
                       else ddl.level_loss(lv.degradation_prompt) for lv in tiny_pip.pip_levels)
        assert torch.allclose(sum(ddl.level_loss(p) for p in prompts), old_only, atol=1e-7)


def test_extend_errors(tiny_pip):
    with pytest.raises(ValueError, match="already has"):
        extend_degradations(tiny_pip, ["rain"])
    with pytest.raises(ValueError, match="repeated"):
        extend_degradations(tiny_pip, ["snow", "snow"])
    with pytest.raises(ValueError, match="at least one"):
        extend_degradations(tiny_pip, [])
    with pytest.raises(ValueError, match="no PIP levels"):
        extend_degradations(torch.nn.Conv2d(3, 3, 1), ["snow"])
    assert tiny_pip.degradations == ["noise", "rain", "haze"]  # nothing half-done


def test_old_checkpoint_loads_into_extended_model_with_migration(tiny_pip, caplog):
    old_state = {k: v.clone() for k, v in tiny_pip.state_dict().items()}
    extend_degradations(tiny_pip, ["snow"])
    ext_state = {k: v.clone() for k, v in tiny_pip.state_dict().items()}
    snow = [lv.added_prompts[0].detach().clone() for lv in tiny_pip.pip_levels]
    # the model's own pre-extension checkpoint: old part loaded, its snow prompts fit and are kept
    with caplog.at_level("INFO", logger="pip_adapter.wrap.extend"):
        tiny_pip.load_state_dict(old_state)  # strict, 3 types into 4
    assert "checkpoint has 3 degradation types, model has 4" in caplog.text and "kept" in caplog.text
    for lv, s in zip(tiny_pip.pip_levels, snow):
        assert torch.equal(lv.added_prompts[0], s)
    # another model's 3-type checkpoint: the snow prompts start over, obtuse to the loaded prompts
    other = tiny_pipnet(seed=5)
    tiny_pip.load_state_dict(other.state_dict())
    for lv, lo in zip(tiny_pip.pip_levels, other.pip_levels):
        assert torch.equal(lv.degradation_prompt, lo.degradation_prompt)
        assert _max_cos_new(lv.all_degradation_prompts(), 3) < 0
    tiny_pip.load_state_dict(ext_state)  # a 4-type checkpoint loads exactly
    assert all(torch.equal(v, ext_state[k]) for k, v in tiny_pip.state_dict().items())
    # a checkpoint with more types, or another trained T, is refused clearly
    bigger = tiny_pipnet(added_degradations=["snow", "jpeg"]).state_dict()
    with pytest.raises(RuntimeError, match="checkpoint has 5 degradation types but this model has 4"):
        tiny_pip.load_state_dict(bigger)
    two = tiny_pipnet(degradations=["noise", "rain"]).state_dict()
    with pytest.raises(RuntimeError, match="2 trained degradation types but this model was built with 3"):
        tiny_pip.load_state_dict(two)


def test_pipnet_added_degradations_and_rebuild_from_config():
    from pip_adapter.wrap.pipnet import build_pipnet

    base = tiny_pipnet(seed=1).eval()
    x = torch.rand(1, 3, 32, 32)
    ext = tiny_pipnet(seed=2, added_degradations=["snow"]).eval()
    assert ext.degradations == ["noise", "rain", "haze", "snow"]
    ext.load_state_dict(base.state_dict())
    re = build_pipnet(ext.pip_config()).eval()       # the config records the added type
    re.load_state_dict(ext.state_dict())
    with torch.no_grad():
        for n in ("noise", "haze"):
            assert torch.equal(ext(x, n), base(x, n))
        assert torch.equal(re(x, "snow"), ext(x, "snow"))
    re.load_state_dict(base.state_dict())             # the rebuilt model migrates old checkpoints too
    with torch.no_grad():
        assert torch.equal(re(x, "rain"), base(x, "rain"))


# ---------------------------------------------------------------------------------------------- trainable
def test_apply_trainable_modes(tiny_pip):
    with pytest.raises(ValueError, match="extend it first"):
        apply_trainable(tiny_pip, "new_prompts")
    extend_degradations(tiny_pip, ["snow"])
    params = apply_trainable(torch.nn.DataParallel(tiny_pip), "new_prompts")
    added = {id(lv.added_prompts[0]) for lv in tiny_pip.pip_levels}
    assert {id(p) for p in params} == added
    assert {id(p) for p in tiny_pip.parameters() if p.requires_grad} == added
    with pytest.warns(UserWarning, match="may drift"):
        pip_params = apply_trainable(tiny_pip, "pip")
    assert {id(p) for p in pip_params} == {id(p) for p in tiny_pip.pip_levels.parameters()}
    assert not any(p.requires_grad for p in tiny_pip.backbone.parameters())
    with pytest.warns(UserWarning, match="will drift"):
        assert len(apply_trainable(tiny_pip, "all")) == len(list(tiny_pip.parameters()))
    with pytest.raises(ValueError, match="new_prompts, pip, all"):
        apply_trainable(tiny_pip, "prompts")
    assert {id(p) for p in tiny_pip.set_trainable("new_prompts")} == added   # the same policy, as a method
    assert {id(p) for p in tiny_pip.parameters() if p.requires_grad} == added


# ---------------------------------------------------------------------------------------------- checkpoints / CLI
def _cli(capsys, *args):
    """Run ``pip-adapter <args>`` in this process; returns (exit status, stdout, stderr)."""
    from pip_adapter.cli import main

    capsys.readouterr()
    code = main(["--log-level", "WARNING", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_extend_basicsr_checkpoint_then_exported_file(tmp_path):
    from pip_adapter.restore import load_checkpoint

    a, b = tiny_pipnet(seed=1), tiny_pipnet(seed=2)
    ckpt, opt = str(tmp_path / "net_g_10.pth"), str(tmp_path / "train.yml")
    torch.save({"params": a.state_dict(), "params_ema": b.state_dict()}, ckpt)
    with open(opt, "w") as fh:
        yaml.safe_dump({"name": "t", "network_g": TINY_NET}, fh)
    out = str(tmp_path / "ext.pth")
    info = extend_checkpoint(ckpt, ["snow"], out, opt=opt)
    assert info["format"] == "basicsr" and info["added"] == ["snow"] and info["keys"] == ["params", "params_ema"]
    saved = torch.load(out, weights_only=True)
    assert saved["meta"]["network_g"]["added_degradations"] == ["snow"]
    assert saved["meta"]["degradations"] == ["noise", "rain", "haze", "snow"]
    for key, src in (("params", a), ("params_ema", b)):
        st = saved[key]
        for k, v in src.state_dict().items():
            assert torch.equal(st[k], v), k                    # every old tensor untouched
        for i, lv in enumerate(src.pip_levels):
            allp = torch.cat([lv.degradation_prompt, st[f"pip_levels.{i}.added_prompts.0"]])
            assert _max_cos_new(allp, 3) < 0                    # obtuse to *its own* old prompts
    with pytest.raises(FileExistsError, match="--overwrite"):
        extend_checkpoint(ckpt, ["snow"], out, opt=opt)
    # the extended file names its types: an option file with other types is refused by name
    other_opt = str(tmp_path / "other.yml")
    with open(other_opt, "w") as fh:
        yaml.safe_dump({"network_g": dict(TINY_NET, degradations=["noise", "haze", "rain", "snow"])}, fh)
    with pytest.raises(ValueError, match="not the first types"):
        extend_checkpoint(out, ["jpeg"], str(tmp_path / "bad.pth"), opt=other_opt)
    # the file carries its network: no --opt needed for a second extension, to an exported file
    exp = str(tmp_path / "ext2.safetensors")
    info2 = extend_checkpoint(out, ["jpeg"], exp)
    assert info2["format"] == "exported"
    loaded = load_checkpoint(exp)
    assert loaded.degradations == ["noise", "rain", "haze", "snow", "jpeg"]
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x, "rain"), b.eval()(x, "rain"))


def test_cli_extend_refuses_overwrite_and_restores_new_type(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from pip_adapter.restore import make_meta, save_checkpoint

    net = tiny_pipnet(seed=3).eval()
    src = str(tmp_path / "base.safetensors")
    save_checkpoint(src, net, make_meta(net, TINY_NET))
    out = str(tmp_path / "snow.safetensors")
    code, stdout, stderr = _cli(capsys, "extend", "--ckpt", src, "--add", "snow", "--out", out)
    assert code == 0, stderr
    assert "added: snow" in stdout and "smallest angle" in stdout
    mtime = os.path.getmtime(out)
    code, stdout, stderr = _cli(capsys, "extend", "--ckpt", src, "--add", "snow", "--out", out)
    assert code == 2 and "exists" in stderr and os.path.getmtime(out) == mtime
    code, stdout, stderr = _cli(capsys, "extend", "--ckpt", src, "--add", "rain", "--out", str(tmp_path / "x.pth"))
    assert code == 2 and "already has" in stderr and not os.path.exists(tmp_path / "x.pth")
    img = (np.random.default_rng(0).random((24, 20, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "in.png")
    code, stdout, stderr = _cli(capsys, "restore", "-m", out, "-d", "snow", "-o", str(tmp_path / "res"),
                                str(tmp_path / "in.png"), "--no-progress")
    assert code == 0, stderr
    restored = np.asarray(Image.open(tmp_path / "res" / "in.png"))
    assert restored.shape == img.shape
    # it is the snow prompt that was used: the same file restored as rain gives another image
    code, _, stderr = _cli(capsys, "restore", "-m", out, "-d", "rain", "-o", str(tmp_path / "res_rain"),
                           str(tmp_path / "in.png"), "--no-progress")
    assert code == 0, stderr
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "res_rain" / "in.png")), restored)
