"""End-to-end ``basicsr train|test`` runs of a tiny PIP-NAFNet on the tiny built-in data (CPU)."""
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from tests.helpers_train import (REPO_ROOT, TASK_VAL_SETS, read_train_log, run_basicsr, subprocess_env,
                                  tiny_options, write_options)


def test_train_logs_per_task_metrics_and_checkpoints(tiny_pip_experiment):
    exp_dir, _, net_path = tiny_pip_experiment
    log = read_train_log(exp_dir)
    for deg in TASK_VAL_SETS:
        assert re.search(rf"Validation tiny_{deg}\n\s+# psnr: [\d.]+\t\(input: [\d.]+\)", log), deg
    assert "Validation average over 5 tasks" in log
    assert re.search(r"iter:\s+10, lr:", log)
    assert "l_ddl" in log and "l_pix" in log

    ckpt = torch.load(net_path, map_location="cpu", weights_only=True)
    assert any("degradation_prompt" in k for k in ckpt["params"])
    assert ckpt["meta"]["degradations"] == list(TASK_VAL_SETS)
    assert os.path.isfile(os.path.join(exp_dir, "models", "net_g_10.pth"))
    state = torch.load(os.path.join(exp_dir, "training_states", "10.state"), map_location="cpu", weights_only=True)
    assert state["iter"] == 10 and len(state["optimizers"]) == 1 and len(state["schedulers"]) == 1

    summary = json.load(open(os.path.join(exp_dir, "validation_latest.json")))
    assert set(summary["tasks"]) == {f"tiny_{d}" for d in TASK_VAL_SETS}
    mean = sum(t["psnr"] for t in summary["tasks"].values()) / 5
    assert summary["average"]["psnr"] == pytest.approx(mean)


def test_basicsr_test_reproduces_final_validation(tiny_pip_experiment, tmp_path):
    exp_dir, opt_path, net_path = tiny_pip_experiment
    root = os.path.dirname(os.path.dirname(exp_dir))
    train_opt = tiny_options("x", data_root=os.path.join(root, "datasets", "builtin"), builtin=False)
    test_opt = {"name": "tiny_pip_test", "model_type": "PIPModel", "num_gpu": 0,
                "datasets": {k.replace("val", "test"): v for k, v in train_opt["datasets"].items() if k != "train"},
                "network_g": train_opt["network_g"],
                "path": {"pretrain_network_g": net_path, "strict_load_g": True},
                "val": {"save_img": True, "pad_multiple": 4, "metrics": train_opt["val"]["metrics"]}}
    path = write_options(str(tmp_path / "test.yml"), test_opt)
    proc = run_basicsr(["test", "-opt", path], cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = tmp_path / "results" / "tiny_pip_test"
    log = next(results.glob("test_*.log")).read_text()
    assert "Validation average over 5 tasks" in log
    assert "Best" not in log and "@ tiny_pip_test iter" not in log  # a test has no iterations to compare
    assert len(list((results / "visualization").rglob("*.png"))) == 5
    tested = json.load(open(results / "validation_latest.json"))
    trained = json.load(open(os.path.join(exp_dir, "validation_latest.json")))
    for deg in TASK_VAL_SETS:  # the same weights on the same images give the same numbers
        assert tested["tasks"][f"tiny_{deg}"]["psnr"] == pytest.approx(trained["tasks"][f"tiny_{deg}"]["psnr"],
                                                                       abs=1e-4)


_RANK_DUMP_PLUGIN = '''
import os
import torch
from basicsr.utils.registry import MODEL_REGISTRY
from pip_adapter.bsr.model import PIPModel


class RankDumpPIPModel(PIPModel):
    """Writes every rank's parameters after the last iteration (the test compares them)."""

    def save(self, epoch, current_iter):
        super().save(epoch, current_iter)
        if current_iter == -1:
            state = {k: v.detach().clone() for k, v in self.bare_net.state_dict().items()}
            torch.save(state, os.path.join(self.opt["path"]["experiments_root"], f"rank{self.opt['rank']}.pth"))


if "RankDumpPIPModel" not in MODEL_REGISTRY:
    MODEL_REGISTRY.register(RankDumpPIPModel)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_cpu_processes_stay_identical(tiny_builtin_root, tmp_path):
    (tmp_path / "rank_dump.py").write_text(_RANK_DUMP_PLUGIN)
    opt = tiny_options("ddp", data_root=tiny_builtin_root, total_iter=4, builtin=False)
    opt["model_type"] = "RankDumpPIPModel"
    opt["plugins"] = ["rank_dump.py"]
    opt["logger"]["save_checkpoint_freq"] = 1
    opt["datasets"] = {k: v for k, v in opt["datasets"].items() if k in ("train", "val_1")}
    path = write_options(str(tmp_path / "ddp.yml"), opt)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
                "--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
    proc = run_basicsr(["train", "-opt", path, "--launcher", "pytorch"], cwd=str(tmp_path), timeout=240,
                       launcher=launcher)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-6000:]
    exp = tmp_path / "experiments" / "ddp"
    log = read_train_log(str(exp))
    assert re.search(r"World size \(gpu number\): 2", log)
    assert "backend gloo" in proc.stderr or "backend gloo" in proc.stdout
    r0 = torch.load(str(exp / "rank0.pth"), weights_only=True)
    r1 = torch.load(str(exp / "rank1.pth"), weights_only=True)
    latest = torch.load(str(exp / "models" / "net_g_latest.pth"), weights_only=True)["params"]
    first = torch.load(str(exp / "models" / "net_g_1.pth"), weights_only=True)["params"]
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
        assert torch.equal(r0[key], latest[key]), key
    # the ranks trained on (parameters moved after the first step) rather than agreeing by doing nothing
    assert any(not torch.equal(latest[k], first[k]) for k in latest)
    assert re.search(r"iter:\s+4, lr:", log)


def _latest_state(exp_dir: str) -> int:
    states = [int(f.split(".")[0]) for f in os.listdir(os.path.join(exp_dir, "training_states"))
              if re.fullmatch(r"\d+\.state", f)]
    return max(states) if states else 0


def test_kill_after_checkpoint_then_auto_resume(tiny_builtin_root, tmp_path):
    opt = tiny_options("resume", data_root=tiny_builtin_root, total_iter=100000, builtin=False)
    opt["logger"]["save_checkpoint_freq"] = 3
    opt["train"].pop("scheduler")  # constant rate: the resumed run's total_iter may differ
    opt.pop("val")
    opt["datasets"] = {"train": opt["datasets"]["train"]}
    path = write_options(str(tmp_path / "resume.yml"), opt)
    exp = str(tmp_path / "experiments" / "resume")
    cmd = [sys.executable, "-m", "pip_adapter.cli.basicsr_cmd", "train", "-opt", path]
    child = subprocess.Popen(cmd, cwd=str(tmp_path), env=subprocess_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (os.path.isdir(os.path.join(exp, "training_states"))
                                              and _latest_state(exp) >= 3):
            time.sleep(0.05)
            assert child.poll() is None, "training ended before it could be killed"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    saved = _latest_state(exp)
    assert saved >= 3
    saved_net = torch.load(os.path.join(exp, "models", f"net_g_{saved}.pth"), weights_only=True)["params"]

    proc = run_basicsr(["train", "-opt", path, "--auto_resume", "--force_yml", f"train:total_iter={saved + 2}"],
                       cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = read_train_log(exp)
    assert f"Resuming training from epoch" in log and f"iter: {saved}." in log
    first = int(re.search(r"iter:\s+([\d,]+), lr:", log).group(1).replace(",", ""))
    assert first == saved + 1
    final = torch.load(os.path.join(exp, "models", "net_g_latest.pth"), weights_only=True)["params"]
    assert any(not torch.equal(final[k], saved_net[k]) for k in final)  # it trained on from there
    assert not [f for f in os.listdir(os.path.join(exp, "models")) if f.endswith(".tmp")]


def test_python_tag_refused_by_the_command(tmp_path, capsys):
    from pip_adapter.cli.basicsr_cmd import main

    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\ndatasets: {train: {}}\nnetwork_g: !!python/name:os.system\n")
    assert main(["train", "-opt", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "python" in err and "safe loader" in err
    assert not (tmp_path / "experiments").exists()


def test_missing_paper_data_fails_before_training(tmp_path):
    opt = os.path.join(REPO_ROOT, "basicsr_options", "pip_nafnet.yml")
    proc = run_basicsr(["train", "-opt", opt], cwd=str(tmp_path))
    assert proc.returncode == 2
    assert "datasets/allinone" in proc.stderr and "basicsr train: error" in proc.stderr
    assert "Start training" not in proc.stderr + proc.stdout


def test_quickstart_command_prints_per_task_table(tiny_builtin_root, tmp_path, monkeypatch, capsys):
    """``pip-adapter quickstart`` end to end, shortened to 2 iterations on the tiny built-in data."""
    from pip_adapter.cli import main

    (tmp_path / "datasets").mkdir()
    os.symlink(tiny_builtin_root, tmp_path / "datasets" / "builtin")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    rc = main(["quickstart", "-opt", os.path.join(REPO_ROOT, "basicsr_options", "quickstart.yml"), "--threads", "1",
               "--force_yml", "train:total_iter=2", "train:scheduler:total_iter=2", "train:scheduler:warmup_iter=1",
               "logger:save_checkpoint_freq=2", "datasets:train:dataset_enlarge_ratio=1"])
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert rc == 0
    assert torch.get_num_threads() == threads   # the run's thread count is not left behind
    # a short header first (model, data, iterations, threads, log), then a progress bar; BasicSR's option and
    # network dump goes to the log file only
    head = out.splitlines()[:5]
    assert head[0].startswith("quickstart: PIP-NAFNet (width 16), 5 degradation types")
    assert [line.split(":")[0].strip() for line in head[1:]] == ["data", "training", "threads", "log"]
    assert "2 iterations" in head[2] and "1 intra-op, 1 inter-op, 0 loader workers" in head[3]
    assert "training: 100%" in err and "2/2" in err
    (log_file,) = glob.glob(str(tmp_path / "experiments" / "quickstart_pip_nafnet" / "train_*.log"))
    with open(log_file, encoding="utf-8") as fh:
        log = fh.read()
    for dumped in ("network_g:", "Network: PIPNet"):   # the options, the network
        assert dumped in log and dumped not in out + err
    rows = [line.split() for line in out.splitlines() if re.match(r"(noise_s\d+|rain|haze|blur|low_light) ", line)]
    assert [r[0] for r in rows] == ["noise_s15", "noise_s25", "noise_s50", "rain", "haze", "blur", "low_light"]
    assert all(len(r) == 6 for r in rows) and "average" in out
    assert (tmp_path / "experiments" / "quickstart_pip_nafnet" / "models" / "net_g_latest.pth").is_file()
