"""Reliability of ``pip-adapter restore|export|extend`` (issue 15): untrusted model files and options, OS errors."""
import errno
import json
import os

import numpy as np
import pytest
import torch

from pip_adapter.cli import main
from pip_adapter.networks import build_network
from pip_adapter.restore import make_meta, save_checkpoint
from pip_adapter.restore.checkpoint import CheckpointError, load_checkpoint
from pip_adapter.wrap import pipnet
from tests.helpers_extend import TINY_NET, tiny_pipnet
from tests.helpers_restore import crafted_safetensors as _crafted
from tests.helpers_restore import rand_image, write_png

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(capsys, *args):
    capsys.readouterr()
    code = main(["--log-level", "WARNING", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny three-type PIP-NAFNet (size multiple 4) exported to safetensors."""
    net = tiny_pipnet(seed=1).eval()
    path = str(tmp_path_factory.mktemp("model") / "m.safetensors")
    save_checkpoint(path, net, make_meta(net, dict(TINY_NET)))
    return path


def test_crafted_metadata_is_refused_before_building(model_file, tmp_path, capsys, monkeypatch):
    def absurd_width(meta):
        meta["pip_config"]["backbone"]["width"] = 10 ** 9
        for i, lv in enumerate(meta["pip_config"]["pip_levels"]):
            lv["channels"] = 10 ** 9 * 2 ** i

    path = _crafted(model_file, tmp_path, absurd_width)
    with pytest.raises(CheckpointError, match=r"crafted\.safetensors: invalid network description: "
                                              r".*width = 1000000000 is far beyond"):
        load_checkpoint(path)

    def wide(meta):  # plausible numbers, but not the file's tensors: caught on the meta device
        meta["pip_config"]["backbone"]["width"] = 2048
        for i, lv in enumerate(meta["pip_config"]["pip_levels"]):
            lv["channels"] = 2048 * 2 ** i

    devices = []

    def recording_build(network):
        devices.append(torch.empty(0).device.type)
        return build_network(network)

    monkeypatch.setattr(pipnet, "build_network", recording_build)   # PIPNet builds its backbone here
    path = _crafted(model_file, tmp_path, wide, "wide.safetensors")
    with pytest.raises(CheckpointError, match=r"wide\.safetensors: the weights do not match.*\(8, 3, 3, 3\) vs model "
                                              r"\(2048, 3, 3, 3\)"):
        load_checkpoint(path)
    monkeypatch.undo()
    assert devices and set(devices) == {"meta"}  # nothing was allocated for real

    path = _crafted(model_file, tmp_path, lambda m: m.update(multiple="abc"), "abc.safetensors")
    with pytest.raises(CheckpointError, match=r"abc\.safetensors: invalid pip-adapter metadata: 'multiple' must be"):
        load_checkpoint(path)

    def dupes(meta):
        meta["degradations"] = ["noise", "rain", "Rain"]
        meta["pip_config"]["degradations"] = ["noise", "rain", "Rain"]

    path = _crafted(model_file, tmp_path, dupes, "dupes.safetensors")
    with pytest.raises(CheckpointError, match=r"dupes\.safetensors.*repeat \['rain'\]"):
        load_checkpoint(path)
    write_png(tmp_path / "p.png", rand_image(8, 8))
    code, _, err = _cli(capsys, "restore", str(tmp_path / "p.png"), "-m", path, "-o", str(tmp_path / "o"), "-d", "rain")
    assert code == 2 and "dupes.safetensors" in err and not (tmp_path / "o").exists()

    path = _crafted(model_file, tmp_path, lambda m: m.update(degradations=["noise", "rain", "haze=1"]),
                    "eq.safetensors")
    with pytest.raises(CheckpointError, match="cannot be addressed"):
        load_checkpoint(path)


def test_crafted_network_in_a_basicsr_checkpoint_is_bounded(tmp_path):
    net = tiny_pipnet(seed=1)
    for width, needle in ((10 ** 9, "is far beyond"), (2048, r"do not match.*\(2048, 3, 3, 3\)")):
        network = json.loads(json.dumps(TINY_NET))
        network["backbone"]["width"] = width
        path = tmp_path / f"net_g_{width}.pth"
        torch.save({"params": net.state_dict(), "meta": {"network_g": network}}, path)
        with pytest.raises(CheckpointError, match=needle):
            load_checkpoint(str(path))


@pytest.mark.parametrize("bad", ["", "  ", "snow=0.5,x", "9lives", "a b.c"])
def test_extend_add_names_must_be_addressable(model_file, tmp_path, capsys, bad):
    out = tmp_path / "x.safetensors"
    code, _, err = _cli(capsys, "extend", "--ckpt", model_file, "--add", bad, "--out", str(out))
    assert code == 2 and "identifier" in err and not out.exists()


def test_extend_library_refuses_unaddressable_names():
    from pip_adapter.wrap.extend import extend_degradations

    with pytest.raises(ValueError, match="non-empty identifiers"):
        extend_degradations(tiny_pipnet(), ["snow", "  "])


def test_extend_add_canonical_name_is_usable(model_file, tmp_path, capsys, photos):
    out = tmp_path / "x.safetensors"
    code, _, err = _cli(capsys, "extend", "--ckpt", model_file, "--add", "Wet-Snow", "--out", str(out))
    assert code == 0, err
    code, _, err = _cli(capsys, "restore", str(photos / "a.png"), "-m", str(out), "-o", str(tmp_path / "r"),
                        "--omega", "wet_snow=1", "--no-progress")
    assert code == 0, err


def test_output_folder_errors_are_one_line(model_file, photos, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder is expected")
    code, _, err = _cli(capsys, "restore", str(photos), "-m", model_file, "-o", str(blocker / "sub"), "-d", "rain")
    assert code == 2 and err.strip() == f"pip-adapter restore: error: {blocker / 'sub'}: not a directory"
    code, _, err = _cli(capsys, "restore", str(photos), "-m", model_file, "-o", str(blocker), "-d", "rain")
    assert code == 2 and "is not a folder" in err
    # a read-only file system (tests run as root, so permissions are simulated with the OS error itself)
    real_makedirs = os.makedirs
    readonly = str(tmp_path / "ro")

    def makedirs(path, *a, **k):
        if os.fspath(path).startswith(readonly):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_makedirs(path, *a, **k)

    monkeypatch.setattr(os, "makedirs", makedirs)
    code, _, err = _cli(capsys, "restore", str(photos), "-m", model_file, "-o", readonly + "/sub", "-d", "rain")
    assert code == 2 and err.strip() == f"pip-adapter restore: error: {readonly}/sub: read-only file system"


def test_export_and_extend_into_unwritable_folders(model_file, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for cmd in (["export", "--ckpt", model_file], ["extend", "--ckpt", model_file, "--add", "snow"]):
        code, _, err = _cli(capsys, *cmd, "--out", str(blocker / "m.safetensors"))
        assert code == 2 and err.count("\n") == 1 and str(blocker) in err, err
        assert "is a file where a folder is needed" in err
    real_open = os.open
    locked = str(tmp_path / "locked")
    os.makedirs(locked)

    def refusing_open(path, flags, *a, **k):  # root ignores permission bits: refuse creation by hand
        if os.fspath(path).startswith(locked) and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", refusing_open)
    for cmd in (["export", "--ckpt", model_file], ["extend", "--ckpt", model_file, "--add", "snow"]):
        code, _, err = _cli(capsys, *cmd, "--out", os.path.join(locked, "m.safetensors"))
        assert code == 2 and "permission denied" in err and locked in err and "Traceback" not in err, err
    assert os.listdir(locked) == []


def test_unknown_device_is_refused(model_file, photos, tmp_path, capsys):
    code, _, err = _cli(capsys, "restore", str(photos), "-m", model_file, "-o", str(tmp_path / "o"), "-d", "rain",
                        "--device", "tpu")
    assert code == 2 and "unknown device 'tpu'" in err and not (tmp_path / "o").exists()


def test_suffix_and_links_cannot_write_outside_the_output_folder(model_file, photos, tmp_path, capsys):
    out = tmp_path / "deep" / "out"
    code, _, err = _cli(capsys, "restore", str(photos), "-m", model_file, "-o", str(out), "-d", "rain",
                        "--suffix", "/../../ESCAPED")
    assert code == 2 and "--suffix" in err and "separator" in err
    assert not out.exists() and not list(tmp_path.rglob("*ESCAPED*"))
    # an output name that is a link leading out of the folder is refused for that image
    out.mkdir(parents=True)
    outside = tmp_path / "victim.png"
    write_png(outside, rand_image(4, 4))
    before = outside.read_bytes()
    os.symlink(outside, out / "a.png")
    code, stdout, _ = _cli(capsys, "restore", str(photos), "-m", model_file, "-o", str(out), "-d", "rain",
                           "--overwrite", "--no-progress")
    assert code == 1 and "outside the output folder" in stdout and outside.read_bytes() == before
    assert (out / "b.png").is_file()
    assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_gt_missing_or_mismatched_is_restored_not_scored(model_file, photos, tmp_path, capsys):
    gt = tmp_path / "gt"
    write_png(gt / "a.png", rand_image(12, 16, seed=1))
    write_png(gt / "b.png", rand_image(20, 20, seed=2))  # another size
    write_png(photos / "c.png", rand_image(8, 8, seed=3))  # no ground truth at all
    out = tmp_path / "out"
    code, stdout, err = _cli(capsys, "restore", str(photos), "-m", model_file, "-o", str(out), "-d", "rain",
                             "--gt", str(gt), "--no-progress")
    assert code == 0, err
    assert sorted(os.listdir(out)) == ["a.png", "b.png", "c.png"]  # the rule: every restored image is written
    assert "restored 3 image(s), 0 failed, 2 restored but not scored" in stdout
    assert "average (1)" in stdout and "FAILED" not in stdout
    assert f"NOT SCORED {photos / 'b.png'}" in stdout and "differ in size" in stdout
    assert f"NOT SCORED {photos / 'c.png'}" in stdout and "no ground truth named c.*" in stdout


def test_tile_and_overlap_checked_once_before_any_work(model_file, photos, tmp_path, capsys):
    out = tmp_path / "o"
    code, _, err = _cli(capsys, "restore", str(photos), "-m", model_file, "-o", str(out), "-d", "rain",
                        "--tile", "3", "--tile-overlap", "2")
    assert code == 2 and err.count("\n") == 1
    assert "--tile 3 (rounded up to the model's size multiple 4: 4)" in err and "use --tile 8 or more" in err
    assert not out.exists()
    code, _, err = _cli(capsys, "restore", str(photos), "-m", model_file, "-o", str(out), "-d", "rain",
                        "--tile", "8", "--tile-overlap", "2", "--no-progress")
    assert code == 0, err
    assert np.asarray(sorted(os.listdir(out))).tolist() == ["a.png", "b.png"]
