"""bench/gpu_zoo_train.py: the GPU sibling's training path dry-run on the CPU (time guard, resume, validation,
export, summary), and the carry plan against the device tool's size limit."""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml
from safetensors import safe_open

from bench import gpu_zoo_train as gzt
from pip_adapter.data.photos import VAL_SETS
from tests.helpers_train import REPO_ROOT, subprocess_env


def _fake_photo_set(root):
    """Two training photos and one 40×48 photo per val set: the layout prepare-data --photos writes."""
    rng = np.random.default_rng(0)
    paths = [os.path.join(root, "train", f"t{i}.png") for i in range(2)]
    paths += [os.path.join(root, "val", s, "v0.png") for s in ["gt", *VAL_SETS]]
    for p in paths:
        os.makedirs(os.path.dirname(p), exist_ok=True)
        cv2.imwrite(p, (rng.random((40, 48, 3)) * 255).astype(np.uint8))


def _run(tmp_path, out, *extra):
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "bench", "gpu_zoo_train.py"), "--dry-run",
                           "--work", str(tmp_path), "--out", str(out), *extra], cwd=str(tmp_path),
                          env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


def test_dry_run_stops_at_the_guard_then_resumes_validates_and_exports(tmp_path):
    _fake_photo_set(tmp_path / "datasets" / "photos")
    first = _run(tmp_path, tmp_path / "out1", "--budget-s", "0")  # the guard fires after the first iteration
    assert first["status"] == "stopped_by_time_guard" and first["stopped_at_iter"] == 1
    assert first["checkpoint"].endswith("net_g_1.pth") and "continue" in first
    assert (tmp_path / "experiments" / gzt.NAME / "training_states" / "1.state").is_file()
    assert not (tmp_path / "out1" / "validation_latest.json").exists()  # stopped before the final validation

    second = _run(tmp_path, tmp_path / "out2")  # the same command continues from iteration 1
    assert second["status"] == "finished" and second["last_iter"] == 2 and second["iters_this_call"] == 1
    assert second["checkpoint"].endswith("net_g_latest.pth") and second["export"]["rc"] == 0
    assert second["mode"] == "dry run (CPU)" and second["environment"]["cuda_available"] is False
    assert "Resuming training from epoch: 0, iter: 1" in (tmp_path / "out2" / "train.log").read_text()
    val = json.loads((tmp_path / "out2" / "validation_latest.json").read_text())
    assert set(val["tasks"]) == set(VAL_SETS) and val["iter"] == 2
    with safe_open(str(tmp_path / "out2" / f"{gzt.NAME}.safetensors"), "pt") as f:  # the sibling's network
        meta = json.loads(f.metadata()["pip_adapter"])
    with open(os.path.join(REPO_ROOT, gzt.OPTION_FILE), encoding="utf-8") as fh:
        assert meta["network"]["backbone"] == yaml.safe_load(fh)["network_g"]["backbone"]
    # what returns from the device machine: at most 8 files of at most 16 MiB each
    files = list((tmp_path / "out2").iterdir())
    assert len(files) <= 8 and max(p.stat().st_size for p in files) <= 16 * 2 ** 20


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git (apt-get install git)")
def test_plan_sizes_the_carry_against_the_limit(tmp_path, monkeypatch, capsys):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "tracked.txt").write_bytes(b"x" * 1000)
    (tmp_path / ".gitignore").write_text("/datasets/\n/.whl/\n")
    _fake_photo_set(tmp_path / "datasets" / "photos")
    monkeypatch.setattr(gzt, "REPO", str(tmp_path))
    assert gzt.plan() == 1  # no manifest, no basicsr wheel
    assert "missing: datasets/photos/manifest.json" in capsys.readouterr().out
    (tmp_path / "datasets" / "photos" / "manifest.json").write_text("{}")
    (tmp_path / ".whl").mkdir()
    (tmp_path / ".whl" / "basicsr-1.4.2-py3-none-any.whl").write_bytes(b"w" * 5000)
    assert gzt.plan() == 0
    out = capsys.readouterr().out
    assert f'carry:   {json.dumps(gzt.CARRY)}' in out and "command: " + gzt.RUN_COMMAND in out
    assert "(working tree)" in out and "total (limit 64 MiB)" in out
    monkeypatch.setattr(gzt, "CARRY_LIMIT", 2000)  # the fake carry is larger than this
    assert gzt.plan() == 1 and "too large for the device tool" in capsys.readouterr().out


def test_refuses_a_machine_without_cuda_unless_dry_run(tmp_path, capsys):
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU: the refusal is for machines without one")
    assert gzt.main(["--out", str(tmp_path / "o"), "--work", str(tmp_path)]) == 1
    assert "no CUDA device here; use --dry-run" in capsys.readouterr().err
