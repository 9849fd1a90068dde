"""bench/quality_prompts.py at toy sizes: sample kinds and targets, the controls, the mode check, resume, report."""
import json
import os

import numpy as np
import pytest
import torch

from bench import quality_prompts as qp

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(width=8, enc_blk_nums=(1, 1), dec_blk_nums=(1, 1), steps=2, batch=3, patch=32,
            prompt_dims=(8, 8), prompt_sizes=(8, 4))


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(0)
    base = np.linspace(30, 230, 48 * 40).reshape(48, 40)
    return [np.clip(np.stack([base, base[::-1], 255 - base], -1)
                    + rng.normal(0, 5, (48, 40, 3)), 0, 255).astype(np.uint8) for _ in range(2)]


def test_omega_says_what_to_remove_and_the_target_keeps_the_rest(photos):
    assert qp.omega_of(qp.INTENT_DARK).tolist() == [0, 0, 0, 0, 1]  # noise only (TYPES order)
    assert qp.omega_of(qp.INTENT_BRIGHT).tolist() == [0, 0, 1, 0, 1]
    assert qp.omega_of(qp.PAIRS[0]).tolist() == [1, 1, 0, 0, 0]
    clean = photos[0][:32, :32]
    lq_d, dark = qp.synthesize(clean, qp.INTENT_DARK, np.random.default_rng(1), 15.0)
    lq_b, bright = qp.synthesize(clean, qp.INTENT_BRIGHT, np.random.default_rng(1), 15.0)
    assert np.array_equal(lq_d, lq_b) and np.array_equal(bright, clean)  # one input, two targets
    assert dark.mean() < 0.5 * clean.mean()  # the dark target keeps the low light
    assert 3 < np.abs(lq_d.astype(float) - dark).mean() < 20  # and differs from the input by the noise only
    with pytest.raises(ValueError, match="dark target needs low_light"):
        qp.synthesize(clean, qp.Kind("bad", ("noise",), ("noise",), "dark"), np.random.default_rng(0), 15.0)


def test_batches_cycle_the_kinds_and_repeat_exactly(photos):
    lq, gt, idx = qp.sample_batch(photos, step=1, seed=2, batch=11, patch=32)
    assert sorted(idx.tolist()) == list(range(len(qp.TRAIN_KINDS)))  # 11 kinds, 11 samples: each once
    assert lq.shape == gt.shape == (11, 3, 32, 32) and 0 <= float(lq.min()) and float(lq.max()) <= 1
    again = qp.sample_batch(photos, step=1, seed=2, batch=11, patch=32)
    assert all(torch.equal(a, b) for a, b in zip((lq, gt, idx), again))
    assert not torch.equal(lq, qp.sample_batch(photos, step=2, seed=2, batch=11, patch=32)[0])


def test_eval_set_shares_clean_crops_and_intent_inputs(photos):
    es = qp.build_eval_set(photos, 32, 2)
    assert list(es) == [k.name for k in qp.EVAL_KINDS]
    assert all(v[0].shape == (4, 3, 32, 32) for v in es.values())
    assert torch.equal(es["noise"][1], es["haze+rain+noise"][1])  # the same clean crops everywhere
    d, b = es[qp.INTENT_DARK.name], es[qp.INTENT_BRIGHT.name]
    assert torch.equal(d[0], b[0]) and not torch.equal(d[1], b[1])
    assert torch.equal(es["noise"][0], qp.build_eval_set(photos, 32, 2)["noise"][0])  # fixed seed
    with pytest.raises(ValueError, match="at least 64"):
        qp.build_eval_set(photos, 64, 1)


def test_controls_constant_omega_b_only_and_omega_input():
    cfg = qp.default_config(**TINY)
    x = torch.rand(2, 3, 32, 32)
    w1, w2 = torch.eye(5)[[0, 4]], torch.eye(5)[[2, 2]]
    pip, const = qp.build_variant("pip", cfg), qp.build_variant("const", cfg)
    assert qp.n_params(pip) == qp.n_params(const)
    with torch.no_grad():
        assert not torch.allclose(qp.run_model("pip", pip, x, w1), qp.run_model("pip", pip, x, w2))
        assert torch.equal(qp.run_model("const", const, x, w1), qp.run_model("const", const, x, w2))
        b = qp.build_variant("b_only", cfg)
        assert torch.equal(qp.run_model("b_only", b, x, w1), qp.run_model("b_only", b, x, w2))
    bare, oi = qp.build_variant("bare", cfg), qp.build_variant("omega_in", cfg)
    assert qp.n_params(oi) - qp.n_params(bare) == 5 * 8 * 9  # T extra input channels of the 3×3 intro conv
    with torch.no_grad():
        # it starts as the bare NAFNet (zero weights on the ω channels), and ω reaches the output
        assert torch.allclose(oi(x, w1), bare(x), atol=1e-6)
        oi.intro.weight[:, 3:].normal_()
        assert not torch.allclose(oi(x, w1), oi(x, w2))
    assert not any("_owner" in k for k in oi.state_dict())
    with pytest.raises(ValueError, match="omega must be B×T"):
        oi(x, torch.ones(2, 3))
    wide = qp.build_variant("wide", cfg)
    assert abs(qp.n_params(wide) - qp.n_params(pip)) < 0.1 * qp.n_params(pip)
    with pytest.raises(ValueError, match="unknown variant"):
        qp.build_variant("nope", cfg)


@pytest.mark.parametrize("key", ["pip", "b_only", "omega_in"])
def test_train_mode_computes_the_eval_mode_function(photos, key):
    cfg = qp.default_config(**TINY)
    model = qp.build_variant(key, cfg)
    res = qp.train(key, model, photos, cfg, log_every=1)
    assert len(res["curve"]) == 2 and set(res["tail_loss"]) <= {k.name for k in qp.TRAIN_KINDS}
    check = qp.mode_check(key, model, photos, cfg, batches=2)
    assert check["train"] == check["eval"] and len(check["train"]) == 6


def _folders(tmp_path, photos):
    import cv2
    for sub in ("train", "eval"):
        (tmp_path / sub).mkdir()
        for i, p in enumerate(photos):
            cv2.imwrite(str(tmp_path / sub / f"{i}.png"), p[..., ::-1])
    return qp.EvalConfig(train_images=str(tmp_path / "train"), eval_images=str(tmp_path / "eval"), eval_crop=32,
                         eval_crops=1, small_prompt_dims=(8, 8), mode_batches=1)


def test_study_runs_in_priority_order_resumes_and_reports(tmp_path, photos, monkeypatch):
    ev = _folders(tmp_path, photos)
    cfg = qp.default_config(**{**TINY, "steps": 1})
    runs = str(tmp_path / "runs")
    order = []
    real = qp.run_one
    monkeypatch.setattr(qp, "run_one", lambda k, c, e: order.append((k, c.seed)) or real(k, c, e))
    recs, missing = qp.run_study(["bare", "const", "pip"], [0, 1], cfg, ev, runs, train_missing=False)
    assert recs == [] and len(missing) == 6 and order == []
    recs, missing = qp.run_study(["bare", "const", "pip"], [0], cfg, ev, runs)
    assert order == [("pip", 0), ("const", 0), ("bare", 0)] and missing == []
    rec = recs[0]
    assert set(rec["scores"]) == {k.name for k in qp.EVAL_KINDS}
    assert "psnr_other_target" in rec["scores"][qp.INTENT_DARK.name]
    order.clear()
    again, missing = qp.run_study(["bare", "const", "pip"], [0, 1], cfg, ev, runs, train_missing=False)
    assert order == [] and again == recs and missing == [("pip", 1), ("const", 1), ("bare", 1)]
    assert qp.run_id("pip", qp.replace(cfg, steps=2), ev) != qp.run_id("pip", cfg, ev)
    with open(os.path.join(runs, sorted(os.listdir(runs))[0]), encoding="utf-8") as fh:
        assert json.load(fh)["config"]["steps"] == 1
    args = qp.parse_args(["--seeds", "0,1", "--variants", "pip,const,bare"])
    fig = qp.plot_bars(recs, str(tmp_path / "fig" / "bars.png"))
    with open(fig, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    text = qp.render_report(args, recs, missing, "fig/bars.png")
    assert "Not run (the study was stopped before them): PIP-NAFNet (true ω) seed 1" in text
    assert "**E3: intent**" in text and "![paired Δ PSNR" in text and "Δ(PIP − constant ω)" in text


def _rec(key, seed, base, intent=(30.0, 20.0, 25.0, 22.0)):
    """A synthetic record: PSNR ``base`` + per-kind offset; the intent rows from ``intent``."""
    scores = {k.name: {"psnr": base + i * 0.1, "l1": 0.1} for i, k in enumerate(qp.EVAL_KINDS)}
    scores[qp.INTENT_DARK.name].update(psnr=intent[0], psnr_other_target=intent[1])
    scores[qp.INTENT_BRIGHT.name].update(psnr=intent[2], psnr_other_target=intent[3])
    return {"variant": key, "seed": seed, "scores": scores, "input": {k.name: 10.0 for k in qp.EVAL_KINDS}}


def test_paired_deltas_and_verdict():
    recs = [_rec("pip", 0, 21.0), _rec("pip", 1, 22.0), _rec("const", 0, 20.0), _rec("const", 1, 21.5),
            _rec("omega_in", 0, 21.0), _rec("omega_in", 1, 22.0), _rec("b_only", 0, 20.0, (25, 25, 23, 23))]
    groups = qp.group_runs(recs)
    assert list(groups) == ["pip", "const", "omega_in", "b_only"]
    assert qp.paired(groups, "pip", "const", qp.GLOBAL_GROUP) == pytest.approx([1.0, 0.5])
    assert qp.paired(groups, "pip", "b_only", ("noise",)) == pytest.approx([1.0])
    table = qp.delta_table(groups)
    assert "| PIP-NAFNet (true ω) − PIP-NAFNet, constant ω = 1/T | 2 | +0.75 ± 0.35 (+1.00 / +0.50) |" in table
    lines = qp.verdict_lines(groups)
    assert "+0.75 ± 0.35 dB on the global group" in lines[0] and "as expected (≥ 0.5 dB on both)" in lines[0]
    assert "matches or beats PIP" in lines[1]
    # separation: (30 − 22) + (25 − 20) = 13 for PIP; 0 for B only, which gives both ω the same output
    assert "PIP-NAFNet (true ω) 13.00 ± 0.00" in lines[2] and "PIP, B only (no d) 0.00" in lines[2]
    assert "| PIP, B only (no d) | 1 | 25.00 | 25.00 | 23.00 | 23.00 | 0.00 |" in qp.intent_table(groups)
    same = qp.group_runs([_rec("pip", 0, 21.0), _rec("const", 0, 20.9), _rec("pip", 1, 21.0), _rec("const", 1, 20.5)])
    assert "in between" in qp.verdict_lines(same)[0]
    same = qp.group_runs([_rec("pip", 0, 21.0), _rec("const", 0, 20.9)])
    assert "refuted (≤ 0.2 dB on both)" in qp.verdict_lines(same)[0]


def test_parse_args():
    args = qp.parse_args(["--variants", "bare,pip", "--seeds", "3,1", "--prompt-dims", "8,8,8"])
    assert args.keys == ["pip", "bare"] and args.seed_list == [3, 1] and args.cfg.prompt_dims == (8, 8, 8)
    assert args.cfg.tasks == qp.TYPES
    for bad in (["--variants", "nope"], ["--seeds", "x"], ["--seeds", ","]):
        with pytest.raises(SystemExit):
            qp.parse_args(bad)
