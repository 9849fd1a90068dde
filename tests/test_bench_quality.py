"""bench/quality_small.py at toy sizes: identical data and init between runs, fresh batches, resumable study, report."""
import json
import os

import numpy as np
import pytest
import torch

from bench import quality_small as q

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(width=8, enc_blk_nums=(1, 1), dec_blk_nums=(1, 1), steps=4, batch=3, patch=32, lr=1e-3,
            prompt_dims=(8, 8), prompt_sizes=(8, 4), restormer_dim=8, restormer_heads=(1, 1, 1, 1),
            restormer_prompt_dims=(8, 8, 8), restormer_prompt_sizes=(4, 4, 4))


@pytest.fixture(scope="module")
def photos():
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, 48 * 40).reshape(48, 40)
    return [np.clip(np.stack([base, base[::-1], 255 - base], -1)
                    + rng.normal(0, 5, (48, 40, 3)), 0, 255).astype(np.uint8) for _ in range(2)]


def test_batches_are_fresh_balanced_and_the_same_for_every_model(photos):
    lq, gt, lab = q.sample_batch(photos, step=5, seed=3, batch=6, patch=32)
    assert lq.shape == gt.shape == (6, 3, 32, 32) and lq.dtype == torch.float32
    assert lab.bincount().tolist() == [2, 2, 2]
    assert 0 <= float(lq.min()) and float(lq.max()) <= 1
    assert not torch.equal(lq, gt)  # degraded
    again = q.sample_batch(photos, step=5, seed=3, batch=6, patch=32)
    assert all(torch.equal(a, b) for a, b in zip((lq, gt, lab), again))
    other_step = q.sample_batch(photos, step=6, seed=3, batch=6, patch=32)
    other_seed = q.sample_batch(photos, step=5, seed=4, batch=6, patch=32)
    assert not torch.equal(lq, other_step[0]) and not torch.equal(lq, other_seed[0])
    with pytest.raises(ValueError, match="at least 64"):
        q.sample_batch(photos, 0, 0, 2, 64)


def test_center_crop_multiple_and_eval_crop():
    img = np.zeros((70, 300, 3), np.uint8)
    assert q.center_crop_multiple(img, 16).shape == (64, 288, 3)
    assert q.center_crop_multiple(img, 16, max_size=100).shape == (64, 96, 3)
    with pytest.raises(ValueError):
        q.center_crop_multiple(np.zeros((10, 10, 3), np.uint8), 16)
    ev = {"a": [(torch.arange(64 * 96.).view(1, 64, 96).expand(3, -1, -1), torch.zeros(3, 64, 96))]}
    small = q.crop_eval_set(ev, 32)
    assert small["a"][0][0].shape == (3, 32, 32)
    assert torch.equal(small["a"][0][0], ev["a"][0][0][:, 16:48, 32:64])


def test_eval_set_fixed_seed(photos):
    imgs = [q.center_crop_multiple(p, 16) for p in photos]
    e1 = q.build_eval_set(imgs, 7)
    e2 = q.build_eval_set(imgs, 7)
    assert list(e1) == [r[0] for r in q.EVAL_TASKS]
    assert all(torch.equal(a[0], b[0]) for k in e1 for a, b in zip(e1[k], e2[k]))
    scores = q.input_scores(e1)
    assert scores["noise σ15"][0] > scores["noise σ50"][0]  # more noise, lower PSNR


def test_bare_and_pip_start_from_the_same_backbone_and_train(photos):
    cfg = q.RunConfig(**TINY)
    bare = q.build_model(cfg, None)
    pip = q.build_model(cfg, {})
    assert q.is_pip(pip) and not q.is_pip(bare)
    pip_params = pip.state_dict()
    for k, v in bare.state_dict().items():
        hits = [n for n in pip_params if n.endswith(k)]
        assert hits and torch.equal(pip_params[hits[0]], v), k
    before = [p.detach().clone() for p in pip.parameters()]
    imgs = [q.center_crop_multiple(p, 16) for p in photos]
    ev = q.build_eval_set(imgs, 1)
    res = q.train(pip, photos, cfg, log_every=2, val_set=q.crop_eval_set(ev, 16), curve_points=2)
    assert len(res["curve"]) == 2 and all(np.isfinite(res["curve"]))
    assert [s for s, _ in res["val_curve"]] == [2, 4] and all(np.isfinite(v) for _, v in res["val_curve"])
    assert any(not torch.equal(a, b) for a, b in zip(before, pip.parameters()))
    scores = q.evaluate(pip, ev)
    assert set(scores) == set(ev) and all(np.isfinite(v[0]) and -1 <= v[1] <= 1 for v in scores.values())
    assert q.wrong_prompt(pip, ev)["psnr"].shape == (5, 3)


def test_widened_baseline_matches_pip_parameters_and_restormer_pair_shares_weights():
    cfg = q.RunConfig(**TINY)
    pip_n = q.n_params(q.build_variant("pip", cfg))
    w = q.equal_param_width(cfg)
    assert w > cfg.width
    wide_n = q.n_params(q.build_variant("wide", cfg))
    from pip_adapter.backbones import NAFNet
    for other in (w - 1, w + 1):  # the chosen width is the closest one
        assert abs(wide_n - pip_n) <= abs(q.n_params(NAFNet(**cfg.nafnet_kwargs(other))) - pip_n)
    bare_r, pip_r = q.build_variant("restormer", cfg), q.build_variant("pip_restormer", cfg)
    assert q.is_pip(pip_r) and len(pip_r.pip_levels) == 3
    pip_sd = pip_r.state_dict()
    for k, v in bare_r.state_dict().items():
        assert torch.equal(pip_sd["backbone." + k], v), k
    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        q.build_variant("nope", cfg)


def _folders(tmp_path, photos):
    import cv2
    for sub, n in (("train", 2), ("eval", 2)):
        (tmp_path / sub).mkdir()
        for i in range(n):
            cv2.imwrite(str(tmp_path / sub / f"{i}.png"), photos[i][..., ::-1])
    return q.StudyData(train_images=str(tmp_path / "train"), eval_images=str(tmp_path / "eval"), eval_size=32,
                       val_size=16, curve_points=2)


def test_study_runs_resumes_and_reports(tmp_path, photos, monkeypatch):
    data = _folders(tmp_path, photos)
    cfg = q.RunConfig(**{**TINY, "steps": 2})
    runs = str(tmp_path / "runs")
    order = []
    real = q._run_job
    monkeypatch.setattr(q, "_run_job", lambda job: order.append((job[0], job[1].seed)) or real(job))
    recs = q.run_study(["bare", "d_only", "pip"], [0, 1], cfg, data, runs)
    # the main comparison of every seed first, then the rest; records in (seed, variant) order
    assert order == [("bare", 0), ("pip", 0), ("bare", 1), ("pip", 1), ("d_only", 0), ("d_only", 1)]
    assert [(r["variant"], r["seed"]) for r in recs] == [("bare", 0), ("d_only", 0), ("pip", 0), ("bare", 1),
                                                          ("d_only", 1), ("pip", 1)]
    recs = [r for r in recs if r["variant"] != "d_only"]
    assert "wrong_prompt" in recs[1] and "wrong_prompt" not in recs[0]
    files = sorted(os.listdir(runs))
    assert len(files) == 6
    stamps = {f: os.path.getmtime(os.path.join(runs, f)) for f in files}
    order.clear()
    again = q.run_study(["bare", "pip"], [0, 1], cfg, data, runs)  # resumed: nothing is retrained
    assert order == []
    assert {f: os.path.getmtime(os.path.join(runs, f)) for f in files} == stamps
    assert again == recs
    longer = q.replace(cfg, steps=3)  # another setting never reuses these runs
    assert q.run_id("bare", longer, data) != q.run_id("bare", cfg, data)
    groups = q.group_runs(recs)
    table = q.study_table(groups)
    assert "| PIP-NAFNet | 2 |" in table and " ± " in table
    fig = q.plot_curves(groups, str(tmp_path / "fig" / "curves.png"))
    with open(fig, "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    args = q.parse_args(["--seeds", "0,1"])
    text = q.render_study(args, recs, fig, "fig/curves.png")
    assert "Wrong-prompt matrix of PIP-NAFNet, mean over 2 seeds" in text and "![validation PSNR" in text
    with open(os.path.join(runs, files[0]), encoding="utf-8") as fh:
        assert json.load(fh)["config"]["steps"] == 2


def test_study_table_paired_delta_and_checks():
    def rec(key, seed, vals, inp=(20.0, 10.0)):
        return {"variant": key, "seed": seed, "scores": {"a": (vals[0], 0.5), "b": (vals[1], 0.6)},
                "input": {"a": (inp[0], 0.4), "b": (inp[1], 0.3)}, "val_curve": [[1, 10.0], [2, 10.5]]}
    recs = [rec("bare", 0, (21.0, 11.0)), rec("bare", 1, (23.0, 11.0)),
            rec("pip", 0, (22.0, 12.0)), rec("pip", 1, (24.0, 12.0))]
    table = q.study_table(q.group_runs(recs))
    assert "| NAFNet (bare) | 2 | 22.00 ± 1.41 | 11.00 ± 0.00 | 16.50 ± 0.71 | — |" in table
    assert "| PIP-NAFNet | 2 | 23.00 ± 1.41 | 12.00 ± 0.00 | 17.50 ± 0.71 | +1.00 ± 0.00 |" in table
    lines = q.convergence_lines(q.group_runs(recs))
    assert lines[0].startswith("- NAFNet (bare): smallest margin over the degraded input +1.00 dB (b)")
    assert "0.50 ± 0.00 dB" in lines[0]


def test_train_folder_needs_the_debian_photos(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install lomiri-wallpapers-16.04 mate-backgrounds"):
        q.make_train_folder(str(tmp_path / "out"), source_dir=str(tmp_path))
    assert not (tmp_path / "out").exists()
    assert len(q.DEBIAN_PHOTOS) == 24 and all(lic for _, _, lic in q.DEBIAN_PHOTOS)


def test_parse_args_rejects_unknown_variants_and_bad_seeds():
    assert q.parse_args(["--study"]).keys == list(q.VARIANTS)
    assert q.parse_args(["--variants", "pip,bare", "--ablations"]).keys == ["bare", "pip", "d_only", "b_only",
                                                                          "no_selective"]
    with pytest.raises(SystemExit):
        q.parse_args(["--variants", "bare,nope"])
    with pytest.raises(SystemExit):
        q.parse_args(["--seeds", "a"])


def test_saved_pip_checkpoint_reloads_identically(tmp_path):
    from pip_adapter.restore.checkpoint import load_checkpoint

    cfg = q.RunConfig(**TINY)
    model = q.build_model(cfg, {}).eval()
    path = q.save_pip_checkpoint(model, str(tmp_path / "pip.safetensors"))
    loaded = load_checkpoint(path)
    assert loaded.degradations == list(q.TASK_NAMES)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.model(x, torch.tensor([2])), model(x, torch.tensor([2])))


def test_report_only_trains_nothing_and_names_missing_runs(tmp_path, photos, monkeypatch):
    data = _folders(tmp_path, photos)
    cfg = q.RunConfig(**{**TINY, "steps": 1})
    runs = str(tmp_path / "runs")
    monkeypatch.setattr(q, "_run_job", lambda job: pytest.fail("report-only must not train"))
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        q.run_study(["bare"], [0], cfg, data, runs, train_missing=False)
    monkeypatch.undo()
    q.run_study(["bare", "pip"], [0], cfg, data, runs)
    monkeypatch.setattr(q, "_run_job", lambda job: pytest.fail("report-only must not train"))
    recs = q.run_study(["bare", "pip"], [0, 1], cfg, data, runs, train_missing=False)
    assert [(r["variant"], r["seed"]) for r in recs] == [("bare", 0), ("pip", 0)]
    args = q.parse_args(["--variants", "bare,pip", "--seeds", "0,1", "--report-only"])
    text = q.render_study(args, recs, None, None)
    assert "Not run (the study was stopped before them): NAFNet (bare) seed 1, PIP-NAFNet seed 1." in text
