"""Reliability of ``basicsr train|test`` (issues 15 and 18): damaged checkpoints, OS errors, typos, labels.

In-process runs of the tiny PIP-NAFNet on the session's tiny built-in data (a few seconds each).
"""
import errno
import json
import logging
import os
import re

import pytest
import torch

from pip_adapter.cli.basicsr_cmd import main as basicsr_main
from pip_adapter.data import MixedDegradationDataset
from pip_adapter.utils.io import atomic_torch_save
from tests.helpers_train import REPO_ROOT, read_train_log, tiny_options, write_options


def _opt(name, root, total_iter=20, **logger):
    """Tiny options with one val set, a constant rate and 7 iterations an epoch (several epochs per run)."""
    opt = tiny_options(name, data_root=root, total_iter=total_iter, builtin=False)
    opt["train"].pop("scheduler")
    opt["datasets"] = {"train": dict(opt["datasets"]["train"], dataset_enlarge_ratio=1),
                       "val_1": opt["datasets"]["val_1"]}
    opt["logger"].update(dict(dict(print_freq=100, save_checkpoint_freq=10), **logger))
    return opt


@pytest.fixture
def run_dir(tiny_builtin_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


def test_final_validation_label_resume_fallback_and_stale_temporaries(tiny_builtin_root, run_dir, capsys, caplog):
    path = write_options(str(run_dir / "r.yml"), _opt("rel", tiny_builtin_root))
    assert basicsr_main(["train", "-opt", path]) == 0
    exp = run_dir / "experiments" / "rel"
    log = read_train_log(str(exp))
    # 7 iterations an epoch: BasicSR's loop ends at current_iter 22; the last iteration trained is 20
    assert "Total epochs: 3; iters: 20." in log
    assert re.search(r"Best: [\d.]+ @ 20 iter", log) and "@ 22 iter" not in log
    assert json.loads((exp / "validation_latest.json").read_text())["iter"] == 20

    # a truncated newest state: resume falls back to the newest complete pair, and keeps the damaged file aside
    state20 = exp / "training_states" / "20.state"
    size = state20.stat().st_size
    os.truncate(state20, size // 2)
    stale = exp / "models" / "net_g_10.pth.3fa9c01b7d2e.tmp"  # a write killed before its rename
    stale.write_bytes(b"partial")
    foreign = exp / "models" / "notes.tmp"
    foreign.write_text("not ours")
    caplog.set_level(logging.INFO, logger="pip_adapter.bsr")
    caplog.clear()
    assert basicsr_main(["train", "-opt", path, "--auto_resume", "--force_yml", "train:total_iter=12"]) == 0
    warnings = caplog.text
    assert f"{state20} is damaged" in warnings and "skipping iteration 20" in warnings
    assert "kept as 20.state.damaged" in warnings
    assert f"removed {stale}" in warnings and not stale.exists() and foreign.exists()
    log = read_train_log(str(exp))
    assert "Resuming training from epoch: 1, iter: 10." in log
    # moved aside, never deleted: a resumed run that reaches iteration 20 again cannot overwrite it
    assert not state20.exists() and (exp / "training_states" / "20.state.damaged").stat().st_size == size // 2

    # a truncated network checkpoint of the newest pair is skipped the same way
    os.truncate(exp / "models" / "net_g_10.pth", 1000)
    caplog.clear()
    assert basicsr_main(["train", "-opt", path, "--auto_resume", "--force_yml", "train:total_iter=12"]) == 0
    assert "net_g_10.pth is damaged" in caplog.text and "kept as net_g_10.pth.damaged" in caplog.text
    assert "no complete training state" in caplog.text  # 20 and 10 are damaged: a fresh start, folder archived
    archived = [d for d in os.listdir(run_dir / "experiments") if d.startswith("rel_archived_")]
    assert archived and (run_dir / "experiments" / archived[0] / "models" / "net_g_10.pth.damaged").exists()


def test_malicious_pickle_as_pretrain_or_resume_is_one_line(tiny_builtin_root, run_dir, capsys):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {run_dir / 'pwned'}",))

    evil = run_dir / "evil.pth"
    torch.save({"params": Evil()}, evil)
    opt = _opt("evil", tiny_builtin_root)
    opt["path"] = {"pretrain_network_g": str(evil)}
    assert basicsr_main(["train", "-opt", write_options(str(run_dir / "e.yml"), opt)]) == 2
    err = capsys.readouterr().err  # BasicSR's own log goes to stderr too; the error is the last line
    last = err.strip().splitlines()[-1]
    assert last.startswith("basicsr train: error: ") and str(evil) in last and "pickled Python objects" in last
    assert "Traceback" not in err
    opt["path"] = {"resume_state": str(evil)}
    assert basicsr_main(["train", "-opt", write_options(str(run_dir / "e2.yml"), opt)]) == 2
    err = capsys.readouterr().err
    assert "training state" in err and str(evil) in err and "Traceback" not in err
    assert not (run_dir / "pwned").exists()


def test_full_disk_during_checkpoint_is_one_line_and_keeps_files(tiny_builtin_root, run_dir, capsys, monkeypatch):
    real_save = torch.save
    opt = _opt("full", tiny_builtin_root, total_iter=4, save_checkpoint_freq=2)
    opt.pop("val")
    opt["datasets"] = {"train": opt["datasets"]["train"]}
    path = write_options(str(run_dir / "f.yml"), opt)
    calls = []

    def full_disk(obj, f, *a, **k):  # what torch does when the OS refuses a write: the OSError is the context
        calls.append(f)
        if len(calls) <= 2:  # net_g_2.pth and 2.state fit; the disk is full from then on
            return real_save(obj, f, *a, **k)
        f.write(b"half a checkpoint")
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534") from None

    monkeypatch.setattr(torch, "save", full_disk)
    assert basicsr_main(["train", "-opt", path]) == 2
    err = capsys.readouterr().err
    models = run_dir / "experiments" / "full" / "models"
    assert err.strip().splitlines()[-1] == f"basicsr train: error: {models / 'net_g_4.pth'}: no space left on device"
    assert "Traceback" not in err
    assert sorted(os.listdir(models)) == ["net_g_2.pth"]  # the earlier checkpoint intact, no temporary left
    monkeypatch.setattr(torch, "save", real_save)
    torch.load(models / "net_g_2.pth", weights_only=True)


def test_unwritable_run_folder_and_missing_data(tiny_builtin_root, run_dir, capsys):
    (run_dir / "experiments").write_text("a file where BasicSR needs a folder")
    path = write_options(str(run_dir / "u.yml"), _opt("u", tiny_builtin_root, total_iter=1))
    assert basicsr_main(["train", "-opt", path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "experiments" in err[0] and ("not a directory" in err[0] or "file exists" in err[0])
    os.remove(run_dir / "experiments")

    # missing data: refused before experiments/<name> is created or the previous one archived
    paper = os.path.join(REPO_ROOT, "basicsr_options", "pip_nafnet.yml")
    assert basicsr_main(["train", "-opt", paper]) == 2
    err = capsys.readouterr().err
    assert "datasets/allinone" in err and "'Data for the paper option files'" in err
    assert not (run_dir / "experiments").exists()
    previous = run_dir / "experiments" / "PIP_NAFNet_5task"
    previous.mkdir(parents=True)
    (previous / "keep.txt").write_text("a previous run")
    assert basicsr_main(["train", "-opt", paper]) == 2
    assert os.listdir(run_dir / "experiments") == ["PIP_NAFNet_5task"] and (previous / "keep.txt").exists()
    with open(os.path.join(REPO_ROOT, "docs", "TRAINING.md"), encoding="utf-8") as fh:
        assert "### Data for the paper option files" in fh.read()  # the heading the message names


def test_force_yml_typo_is_refused_with_the_close_key(tiny_builtin_root, run_dir, capsys):
    path = write_options(str(run_dir / "t.yml"), _opt("typo", tiny_builtin_root))
    assert basicsr_main(["train", "-opt", path, "--force_yml", "train:total_iters=5"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'train:total_iter'?" in err and "+train:total_iters" in err
    assert basicsr_main(["train", "-opt", path, "--force_yml", "trian:total_iter=5"]) == 2
    assert "did you mean 'train'?" in capsys.readouterr().err
    assert not (run_dir / "experiments").exists()


def test_atomic_torch_save_reports_the_os_reason(tmp_path, monkeypatch):
    target = tmp_path / "x.pth"
    atomic_torch_save({"a": torch.zeros(2)}, str(target))
    before = target.read_bytes()

    def refuse(obj, f, *a, **k):
        try:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        except OSError:
            raise RuntimeError("basic_ios::clear: iostream error") from None

    monkeypatch.setattr(torch, "save", refuse)
    with pytest.raises(OSError) as info:
        atomic_torch_save({"a": torch.ones(2)}, str(target))
    assert info.value.errno == errno.EROFS and info.value.filename == str(target)
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["x.pth"]


def test_datasets_are_built_once_per_run(tiny_builtin_root, run_dir, monkeypatch):
    built = []
    init = MixedDegradationDataset.__init__

    def counting_init(self, opt):
        built.append(opt.get("name"))
        init(self, opt)

    monkeypatch.setattr(MixedDegradationDataset, "__init__", counting_init)
    path = write_options(str(run_dir / "once.yml"), _opt("once", tiny_builtin_root, total_iter=2))
    assert basicsr_main(["train", "-opt", path]) == 0
    # checked before any folder is made, then handed to BasicSR instead of being built a second time
    assert sorted(built) == sorted(d["name"] for d in _opt("once", tiny_builtin_root)["datasets"].values())


@pytest.mark.parametrize("force, needle", [
    ("train:amp=garbage", "train.amp must be one of"),
    ("train:total_iter=abc", "train.total_iter must be a whole number, got 'abc'"),
    ("train:total_iter=-5", "train.total_iter must be a whole number >= 1, got -5"),
    ("network_g:backbone:width=-1", "network_g: cannot build the network: NAFNet: img_channel and width must be"),
    ("train:pixel_opt:type=NoLoss", "train.pixel_opt.type 'NoLoss' is not a known loss"),
])
def test_bad_option_values_leave_the_previous_experiment_in_place(tiny_builtin_root, run_dir, capsys, force,
                                                                  needle):
    """Found before BasicSR archives experiments/<name>: no archive, no stub, one line (issue 24)."""
    opt = _opt("keep", tiny_builtin_root, total_iter=1)
    opt["train"]["pixel_opt"] = {"type": "L1Loss", "loss_weight": 1.0}
    path = write_options(str(run_dir / "k.yml"), opt)
    previous = run_dir / "experiments" / "keep"
    previous.mkdir(parents=True)
    (previous / "keep.txt").write_text("a previous run")
    assert basicsr_main(["train", "-opt", path, "--force_yml", force]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and "Traceback" not in err[0]
    assert os.listdir(run_dir / "experiments") == ["keep"] and os.listdir(previous) == ["keep.txt"]


def test_val_pair_size_mismatch_is_found_before_archiving(tiny_builtin_root, run_dir, tmp_path, capsys):
    """Issue 24: a validation lq/gt pair of two sizes was met at the first validation, after the archive."""
    import numpy as np

    from pip_adapter.image_io import write_image

    opt = _opt("valpair", tiny_builtin_root, total_iter=1)
    lq, gt = tmp_path / "pairs" / "lq", tmp_path / "pairs" / "gt"
    write_image(str(gt / "x.png"), np.zeros((32, 32, 3), np.uint8))
    write_image(str(lq / "x.png"), np.zeros((32, 24, 3), np.uint8))
    opt["datasets"]["val_1"] = {"type": "MixedDegradationDataset", "name": "pairs", "degradation": "noise",
                                "dataroot_gt": str(gt), "dataroot_lq": str(lq)}
    path = write_options(str(run_dir / "v.yml"), opt)
    previous = run_dir / "experiments" / "valpair"
    previous.mkdir(parents=True)
    assert basicsr_main(["train", "-opt", path]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "datasets.val_1: task" in err[0] and "differ in size" in err[0], err
    assert os.listdir(run_dir / "experiments") == ["valpair"] and os.listdir(previous) == []


def test_whole_valued_floats_are_whole_numbers():
    """BasicSR's option files write counts as `!!float 1e4` (quickstart.yml's val.val_freq): accepted; 2.5 is not."""
    from pip_adapter.bsr.checks import check_whole_numbers
    from pip_adapter.utils.io import OptionFileError

    check_whole_numbers({"val": {"val_freq": 1e4}, "logger": {"save_checkpoint_freq": 5e3}}, "x.yml")
    with pytest.raises(OptionFileError, match="x.yml: val.val_freq must be a whole number, got 2.5"):
        check_whole_numbers({"val": {"val_freq": 2.5}}, "x.yml")


@pytest.mark.parametrize("force, where", [
    ("manual_seed=abc", "manual_seed"),
    ("logger:print_freq=abc", "logger.print_freq"),
    ("datasets:train:batch_size_per_gpu=abc", "datasets.train.batch_size_per_gpu"),
])
def test_non_integer_options_are_named(tiny_builtin_root, run_dir, capsys, force, where):
    """Issue 24: "invalid literal for int() with base 10: 'abc'" named neither the option nor the file."""
    path = write_options(str(run_dir / "n.yml"), _opt("ints", tiny_builtin_root, total_iter=1))
    assert basicsr_main(["train", "-opt", path, "--force_yml", force]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"n.yml: {where} must be a whole number, got 'abc'" in err[0], err
    assert not (run_dir / "experiments").exists()
