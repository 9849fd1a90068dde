import os
import stat

import pytest
import torch

from pip_adapter.utils.io import OptionFileError, atomic_torch_save, atomic_write, safe_load_yaml


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "net_g_latest.pth"
    atomic_torch_save({"params": torch.ones(2)}, str(target))

    def broken(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise KeyboardInterrupt  # a kill during the save

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(target), broken)
    state = torch.load(str(target), weights_only=True)
    assert torch.equal(state["params"], torch.ones(2))
    assert sorted(os.listdir(tmp_path)) == ["net_g_latest.pth"]  # no temp file left behind


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    target = tmp_path / "a.pth"
    atomic_torch_save({"x": torch.zeros(1)}, str(target))
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask


def test_safe_yaml_refuses_python_tags_and_reads_plain_yaml(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\nnet: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(OptionFileError, match="python/object/apply"):
        safe_load_yaml(str(bad))
    good = tmp_path / "good.yml"
    good.write_text("name: x\nlr: !!float 5e-4\n")
    assert safe_load_yaml(str(good)) == {"name": "x", "lr": 5e-4}
    with pytest.raises(FileNotFoundError, match="missing.yml"):
        safe_load_yaml(str(tmp_path / "missing.yml"))


def test_atomic_write_mode_follows_the_umask_without_touching_it(tmp_path, monkeypatch):
    old = os.umask(0o027)
    try:
        # os.umask changes a process-wide setting: atomic writes must never call it (other threads race)
        monkeypatch.setattr(os, "umask", lambda *_: pytest.fail("atomic_path called os.umask"))
        atomic_torch_save({"x": torch.zeros(1)}, str(tmp_path / "a.pth"))

        def replace_the_file(tmp):  # a writer that unlinks and re-creates its output (mode 0600)
            os.remove(tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)

        atomic_write(str(tmp_path / "b.bin"), replace_the_file)
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.pth").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "b.bin").st_mode) == 0o640
