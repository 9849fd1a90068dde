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
