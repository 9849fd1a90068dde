"""bench/quality_small.py at toy sizes: identical data and init between runs, training moves the loss, tables."""
import numpy as np
import pytest
import torch

from bench import quality_small as q

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 48 * 40).reshape(48, 40)
    return [np.clip(np.stack([base, base[::-1], 255 - base], -1)
                    + rng.normal(0, 5, (48, 40, 3)), 0, 255).astype(np.uint8) for _ in range(2)]


def test_pool_is_balanced_and_deterministic(photos):
    a = q.build_pool(photos, 12, 32, seed=3)
    b = q.build_pool(photos, 12, 32, seed=3)
    c = q.build_pool(photos, 12, 32, seed=4)
    assert a.lq.shape == (12, 3, 32, 32) and a.lq.dtype == torch.uint8
    assert a.labels.bincount().tolist() == [4, 4, 4]
    assert torch.equal(a.lq, b.lq) and torch.equal(a.gt, b.gt)
    assert not torch.equal(a.lq, c.lq)
    assert not torch.equal(a.lq, a.gt)  # degraded
    lq, gt, lab = a.batch(torch.tensor([0, 1]))
    assert lq.dtype == torch.float32 and float(lq.max()) <= 1.0 and lab.tolist() == [0, 1]
    with pytest.raises(ValueError, match="at least"):
        q.build_pool(photos, 3, 64, seed=0)


def test_batch_order_same_seed_same_order_and_covers_pool():
    o1 = q.batch_order(10, steps=7, batch=3, seed=1)
    assert o1.shape == (7, 3) and torch.equal(o1, q.batch_order(10, 7, 3, 1))
    assert sorted(o1.flatten()[:10].tolist()) == list(range(10))  # first permutation: every patch once


def test_center_crop_multiple():
    img = np.zeros((70, 300, 3), np.uint8)
    assert q.center_crop_multiple(img, 16).shape == (64, 288, 3)
    assert q.center_crop_multiple(img, 16, max_size=100).shape == (64, 96, 3)
    with pytest.raises(ValueError):
        q.center_crop_multiple(np.zeros((10, 10, 3), np.uint8), 16)


def test_eval_set_fixed_seed(photos):
    imgs = [q.center_crop_multiple(p, 16) for p in photos]
    e1 = q.build_eval_set(imgs, 7)
    e2 = q.build_eval_set(imgs, 7)
    assert list(e1) == [r[0] for r in q.EVAL_TASKS]
    assert all(torch.equal(a[0], b[0]) for k in e1 for a, b in zip(e1[k], e2[k]))
    scores = q.input_scores(e1)
    assert scores["noise σ15"][0] > scores["noise σ50"][0]  # more noise, lower PSNR


def test_bare_and_pip_start_from_the_same_backbone_and_train(photos):
    cfg = q.RunConfig(width=8, enc_blk_nums=(1, 1), dec_blk_nums=(1, 1), steps=4, batch=2, patch=32, lr=1e-3,
                      prompt_dims=(8, 8), prompt_sizes=(8, 4))
    bare = q.build_model(cfg, None)
    pip = q.build_model(cfg, {})
    assert q.is_pip(pip) and not q.is_pip(bare)
    bare_state = bare.state_dict()
    pip_params = pip.state_dict()
    matched = 0
    for k, v in bare_state.items():
        hits = [n for n in pip_params if n.endswith(k)]
        if hits:
            matched += 1
            assert torch.equal(pip_params[hits[0]], v), k
    assert matched == len(bare_state)
    pool = q.build_pool(photos, 6, 32, seed=0)
    order = q.batch_order(6, cfg.steps, cfg.batch, 0)
    before = [p.detach().clone() for p in pip.parameters()]
    res = q.train(pip, pool, order, cfg, log_every=2)
    assert len(res["curve"]) == 2 and all(np.isfinite(res["curve"]))
    assert any(not torch.equal(a, b) for a, b in zip(before, pip.parameters()))
    imgs = [q.center_crop_multiple(p, 16) for p in photos]
    ev = q.build_eval_set(imgs, 1)
    scores = q.evaluate(pip, ev)
    assert set(scores) == set(ev) and all(np.isfinite(v[0]) and -1 <= v[1] <= 1 for v in scores.values())
    wrong = q.wrong_prompt(pip, ev)
    assert wrong["psnr"].shape == (5, 3)


def test_quality_table_delta():
    res = {"NAFNet (bare)": {"a": (20.0, 0.5), "b": (30.0, 0.7)},
           "PIP-NAFNet": {"a": (21.0, 0.6), "b": (30.5, 0.7)}}
    t = q.quality_table(res, "NAFNet (bare)")
    assert "| PIP-NAFNet | 21.00 / 0.600 | 30.50 / 0.700 | 25.75 / 0.650 | +0.75 |" in t
    assert "| NAFNet (bare) | 20.00 / 0.500 | 30.00 / 0.700 | 25.00 / 0.600 | — |" in t


def test_saved_pip_checkpoint_reloads_identically(tmp_path):
    from pip_adapter.restore.checkpoint import load_checkpoint

    cfg = q.RunConfig(width=8, enc_blk_nums=(1, 1), dec_blk_nums=(1, 1), patch=32, prompt_dims=(8, 8),
                      prompt_sizes=(8, 4))
    model = q.build_model(cfg, {}).eval()
    path = q.save_pip_checkpoint(model, str(tmp_path / "pip.safetensors"))
    loaded = load_checkpoint(path)
    assert loaded.degradations == list(q.TASK_NAMES)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x, torch.tensor([2])), model(x, torch.tensor([2])))
