"""bench/gpu_check.sh --dry-run: every step of the GPU check runs on the CPU (tiny sizes, Gloo), output under $OUT."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers_train import REPO_ROOT, subprocess_env

STEPS = ["env", "tests", "train_fp32", "train_bf16", "efficiency", "precision", "compiled"]


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="needs bash and coreutils' timeout (apt-get install bash coreutils)")
def test_gpu_check_dry_run_writes_every_step_under_out(tmp_path):
    out = tmp_path / "out"
    env = subprocess_env()
    env["PYTHON"] = sys.executable  # the interpreter running the tests, whatever python PATH holds
    env["OUT"] = str(out)
    env["TMPDIR"] = str(tmp_path)
    proc = subprocess.run(["bash", os.path.join(REPO_ROOT, "bench", "gpu_check.sh"), "--dry-run"], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=900)
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 0, f"{summary}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    for step in STEPS:
        assert f"{step} rc=0 " in summary, summary
        assert (out / f"{step}.log").is_file()
    assert "mode: dry run" in summary and "failed=0" in summary
    assert "tests collected" in (out / "tests.log").read_text()
    for amp in ("fp32", "bf16"):  # each torchrun training validated every task
        res = json.loads((out / f"train_{amp}" / "validation_latest.json").read_text())
        assert len(res["tasks"]) == 7 and all(t["psnr"] > 0 for t in res["tasks"].values())
        logs = [(out / f"train_{amp}" / f).read_text() for f in os.listdir(out / f"train_{amp}") if f.endswith(".log")]
        assert len(logs) == 1
        assert ("Mixed precision: autocast to torch.bfloat16" in logs[0]) == (amp == "bf16")
    assert "| PIP-NAFNet-8 | NAFNet-8 |" in (out / "efficiency_cuda.md").read_text()
    prec = (out / "precision" / "precision.md").read_text()
    assert "| PIP-NAFNet-8 | bf16, P2F in bands |" in prec and "| PIPModel (PIPNet: NAFNet + PIP) | bf16 |" in prec
    assert "| NAFNet-8 | fp32, compiled |" in (out / "precision_compiled" / "precision.md").read_text()
    assert not list(tmp_path.glob("gpu_check.*"))  # the scratch folder (datasets, checkpoints) is removed


def test_gpu_check_refuses_unknown_arguments(tmp_path):
    proc = subprocess.run(["bash", os.path.join(REPO_ROOT, "bench", "gpu_check.sh"), "--fast"], cwd=str(tmp_path),
                          env={**subprocess_env(), "OUT": str(tmp_path / "o")}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "unknown argument '--fast'" in proc.stderr


def test_gpu_check_refuses_an_interpreter_without_torch(tmp_path):
    proc = subprocess.run(["bash", os.path.join(REPO_ROOT, "bench", "gpu_check.sh"), "--dry-run"], cwd=str(tmp_path),
                          env={**subprocess_env(), "OUT": str(tmp_path / "o"), "PYTHON": "/bin/false"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "'/bin/false' cannot import torch; set PYTHON" in proc.stderr
    assert not (tmp_path / "o").exists()  # refused before writing anything
