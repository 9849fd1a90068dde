"""Reliability of the data layer (issue 15): damaged LMDBs and built-in data, stale temporaries, typos."""
import fcntl
import logging
import os
import shutil
import stat

import pytest

from pip_adapter.data import MixedDegradationDataset, builtin_dataset_options, ensure_builtin, prepare_builtin
from pip_adapter.data.builtin import verify_builtin
from pip_adapter.data.lmdb_io import LmdbDamagedError, LmdbReader, check_lmdb_file
from pip_adapter.data.outdir import clean_stale_stages

from .fixtures_data import TINY_BUILTIN


@pytest.fixture()
def builtin_copy(builtin_data_dir, tmp_path):
    """A private copy of the session's tiny built-in data (tests damage it)."""
    out = str(tmp_path / "builtin")
    shutil.copytree(builtin_data_dir, out)
    return out


def test_truncated_lmdb_is_refused_before_mapping(builtin_copy):
    rain = os.path.join(builtin_copy, "train", "rain.lmdb")
    need = check_lmdb_file(rain)
    assert need == os.path.getsize(os.path.join(rain, "data.mdb"))
    os.truncate(os.path.join(rain, "data.mdb"), need - 4096)
    # the reader refuses it by name (mapping it would end the process with SIGBUS, no message)
    with pytest.raises(LmdbDamagedError, match=r"rain\.lmdb is damaged: data\.mdb is \d+ bytes but its header needs"):
        LmdbReader(rain)
    opts = builtin_dataset_options(builtin_copy)
    with pytest.raises(ValueError, match=r"rain\.lmdb is damaged"):
        MixedDegradationDataset(dict(opts["train"], phase="train"))
    os.truncate(os.path.join(rain, "data.mdb"), 100)
    with pytest.raises(LmdbDamagedError, match="shorter than an LMDB header"):
        check_lmdb_file(rain)
    with open(os.path.join(rain, "data.mdb"), "wb") as fh:
        fh.write(b"\0" * 8192)
    with pytest.raises(LmdbDamagedError, match="not an LMDB data file"):
        check_lmdb_file(rain)


def test_damaged_builtin_data_is_rebuilt_not_reused(builtin_copy, caplog):
    assert verify_builtin(builtin_copy) == []
    data = os.path.join(builtin_copy, "train", "rain.lmdb", "data.mdb")
    os.truncate(data, 8192 + 100)
    os.remove(os.path.join(builtin_copy, "val", "haze", os.listdir(os.path.join(builtin_copy, "val", "haze"))[0]))
    problems = verify_builtin(builtin_copy)
    assert any("rain.lmdb is damaged" in p for p in problems) and any("haze" in p for p in problems)
    with caplog.at_level(logging.WARNING, logger="pip_adapter.data.builtin"):
        assert ensure_builtin(builtin_copy, **TINY_BUILTIN) == builtin_copy
    assert "is damaged" in caplog.text and "rebuilding" in caplog.text
    assert verify_builtin(builtin_copy) == []
    LmdbReader(os.path.join(builtin_copy, "train", "rain.lmdb")).read("astronaut_000")
    # prepare-data --builtin (no --overwrite) also rebuilds damaged data of its own making
    os.truncate(data, 9000)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pip_adapter.data.builtin"):
        prepare_builtin(builtin_copy, **TINY_BUILTIN)
    assert "is damaged" in caplog.text and verify_builtin(builtin_copy) == []


def test_prepare_builtin_on_identical_data_is_a_logged_no_op(builtin_copy, caplog):
    mtime = os.path.getmtime(os.path.join(builtin_copy, "manifest.json"))
    with caplog.at_level(logging.INFO, logger="pip_adapter.data.builtin"):
        assert prepare_builtin(builtin_copy, **TINY_BUILTIN) == builtin_copy
    assert "already complete" in caplog.text and "nothing to do" in caplog.text
    assert os.path.getmtime(os.path.join(builtin_copy, "manifest.json")) == mtime


def test_builtin_folder_gets_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try:
        out = prepare_builtin(str(tmp_path / "b"), **dict(TINY_BUILTIN, degradations=["noise"]))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o755  # not mkdtemp's 0700


def test_stale_staging_folders_are_removed_but_not_a_running_build(tmp_path, caplog):
    out = str(tmp_path / "builtin")
    stale = tmp_path / "builtin.partial-abc123"
    stale.mkdir()
    (stale / ".building.lock").write_text("")
    (stale / "junk.bin").write_bytes(b"x" * 10)
    old = tmp_path / "builtin.old-xyz"
    old.mkdir()
    running = tmp_path / "builtin.partial-live"
    running.mkdir()
    with open(running / ".building.lock", "w") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # a build in progress holds its lock
        other = tmp_path / "other.partial-1"  # another folder's staging: not ours to judge
        other.mkdir()
        with caplog.at_level(logging.INFO, logger="pip_adapter.data.outdir"):
            removed = clean_stale_stages(out)
    assert sorted(map(os.path.basename, removed)) == ["builtin.old-xyz", "builtin.partial-abc123"]
    assert not stale.exists() and not old.exists() and running.exists() and other.exists()
    assert "interrupted data preparation" in caplog.text
    # the next build of that folder cleans them too
    stale.mkdir()
    (stale / ".building.lock").write_text("")
    prepare_builtin(out, **dict(TINY_BUILTIN, degradations=["noise"]))
    assert not stale.exists()


def test_dataset_level_typos_and_bad_ratios_are_refused(builtin_data_dir):
    train = builtin_dataset_options(builtin_data_dir)["train"]
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'ratios'"):
        MixedDegradationDataset(dict(train, phase="train", ratios=[-1, 2, 3, 4, 5]))
    with pytest.raises(ValueError, match=r"'gt_szie' \(did you mean 'gt_size'\?\)"):
        MixedDegradationDataset(dict(train, phase="train", gt_szie=32))
    with pytest.raises(ValueError, match="dataset_enlarge_ratio must be a positive integer, got -2"):
        MixedDegradationDataset(dict(train, phase="train", dataset_enlarge_ratio=-2))
    bad_task = dict(train["tasks"][1], repaet=3)
    with pytest.raises(ValueError, match=r"'repaet' \(did you mean 'repeat'\?\)"):
        MixedDegradationDataset(dict(train, phase="train", tasks=[bad_task]))
    neg = dict(train["tasks"][1], repeat=-1)
    with pytest.raises(ValueError, match="repeat must be a positive integer, got -1"):
        MixedDegradationDataset(dict(train, phase="train", tasks=[neg]))


def test_absurd_repeat_is_refused_before_allocating(builtin_data_dir):
    train = builtin_dataset_options(builtin_data_dir)["train"]
    huge = dict(train["tasks"][1], repeat=1e12)
    with pytest.raises(ValueError, match=r"repeat 1000000000000(\.0)? is absurd"):
        MixedDegradationDataset(dict(train, phase="train", tasks=[huge]))
    big = dict(train["tasks"][1], repeat=1_000_000)  # 4 crops × 1e6 × enlarge 20
    with pytest.raises(ValueError, match="items per epoch .* is more than 10,000,000"):
        MixedDegradationDataset(dict(train, phase="train", tasks=[big], dataset_enlarge_ratio=20))
