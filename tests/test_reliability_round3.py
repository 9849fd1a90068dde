"""Reliability, round 3 (issue 24): hostile model files bounded, a pixel limit, inputs never overwritten, TIFF
orientation applied once, ω refused when absurd, non-regular files, stale temporaries that are not ours."""
import copy
import json
import os
import struct
import time
import zlib

import numpy as np
import pytest
import torch

from pip_adapter.cli import main
from pip_adapter.omega import to_omega
from pip_adapter.restore import make_meta, save_checkpoint
from pip_adapter.restore.checkpoint import CheckpointError, load_checkpoint
from pip_adapter.restore.classifier import DegradationClassifier
from pip_adapter.image_io import (ImageReadError, apply_exif_orientation, read_image_raw, write_image)
from pip_adapter.restore.restorer import Restorer
from tests.helpers_extend import TINY_NET, tiny_pipnet
from tests.helpers_restore import crafted_safetensors as _crafted
from tests.helpers_restore import rand_image, write_png

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = TINY_NET["degradations"]


def _cli(capsys, *args):
    capsys.readouterr()
    code = main(["--log-level", "WARNING", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _error_lines(err):
    return [line for line in err.splitlines() if "error" in line]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny three-type PIP-NAFNet (size multiple 4) exported to safetensors."""
    net = tiny_pipnet(seed=1).eval()
    path = str(tmp_path_factory.mktemp("model") / "m.safetensors")
    save_checkpoint(path, net, make_meta(net, dict(TINY_NET)))
    return path


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    """A tiny timm classifier (timm's test_resnet) over the model's three types."""
    torch.manual_seed(0)
    cls = DegradationClassifier("test_resnet", NAMES, crop_size=16, num_crops=1).eval()
    path = str(tmp_path_factory.mktemp("cls") / "cls.safetensors")
    save_checkpoint(path, cls, make_meta(cls))
    return path


# ------------------------------------------------------------------------------------------------ 1. classifier

@pytest.mark.parametrize("edit, needle", [
    (lambda n: n.update(checkpoint_path="/etc/passwd"), "option 'checkpoint_path' is not accepted"),
    (lambda n: n.update(arch="hf-hub:someone/model"), "hub names and paths are refused"),
    (lambda n: n.update(pretrained_cfg_overlay={"file": "/x"}), "'pretrained_cfg_overlay' is not accepted"),
    (lambda n: n.update(arch="no_such_net"), "unknown classifier arch 'no_such_net'"),
])
def test_classifier_metadata_never_reaches_timm_unfiltered(classifier_file, model_file, photos, tmp_path, capsys,
                                                           monkeypatch, edit, needle):
    import timm

    calls = []
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: calls.append((a, k)) or real(*a, **k))
    path = _crafted(classifier_file, tmp_path, lambda m: edit(m["network"]), "evil_cls.safetensors")
    with pytest.raises(CheckpointError, match="evil_cls.safetensors: cannot build the network.*" + needle):
        load_checkpoint(path)
    assert calls == []  # refused before timm saw anything
    code, _, err = _cli(capsys, "restore", str(photos), "-m", model_file, "--classifier", path, "-d", "auto",
                        "-o", str(tmp_path / "out"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle.split("'")[0] in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_classifier_sizes_are_named(classifier_file, tmp_path):
    path = _crafted(classifier_file, tmp_path, lambda m: m["network"].update(crop_size="abc"), "cs.safetensors")
    with pytest.raises(CheckpointError, match="cs.safetensors: cannot build.*classifier crop_size must be a whole "
                                              "number, got 'abc'"):
        load_checkpoint(path)


def test_classifier_bundled_in_a_restorer_is_filtered_too(model_file, classifier_file, tmp_path):
    from pip_adapter.restore.checkpoint import export_checkpoint

    bundled = str(tmp_path / "bundled.safetensors")
    export_checkpoint(model_file, None, bundled, classifier=classifier_file)
    path = _crafted(bundled, tmp_path, lambda m: m["classifier"]["network"].update(checkpoint_path="/dev/zero"))
    with pytest.raises(CheckpointError, match=r"\(classifier\): cannot build.*'checkpoint_path' is not accepted"):
        load_checkpoint(path)


# ------------------------------------------------------------------------------------------------ 2. sizes

def _basicsr_file(tmp_path, name, edit):
    network = copy.deepcopy(TINY_NET)
    edit(network["backbone"])
    path = tmp_path / f"{name}.pth"
    torch.save({"params": tiny_pipnet(seed=1).state_dict(), "meta": {"network_g": network}}, path)
    return str(path)


@pytest.mark.parametrize("edit, needle", [
    # every number small, but 40 levels double the width past what any storage can index
    (lambda b: b.update(enc_blk_nums=[1] * 40, dec_blk_nums=[1] * 40), "cannot build the network it describes"),
    # a block count the file's 175 tensors cannot hold: stopped after a few hundred registrations
    (lambda b: b.update(middle_blk_num=20000), "invalid network description: it builds more than .* parameters and buffers while the file holds"),
])
def test_crafted_sizes_fail_closed_and_fast(tmp_path, edit, needle):
    path = _basicsr_file(tmp_path, "crafted", edit)
    start = time.process_time()
    with pytest.raises(CheckpointError, match="crafted.pth: " + needle):
        load_checkpoint(path)
    assert time.process_time() - start < 5


def test_extended_basicsr_network_passes_the_meta_build(tmp_path):
    """Failing closed must not refuse honest files: an extended network's new prompts are built on meta too."""
    from pip_adapter.wrap.extend import extend_degradations

    net = extend_degradations(tiny_pipnet(seed=1), ["snow"])
    network = dict(copy.deepcopy(TINY_NET), added_degradations=["snow"])
    path = tmp_path / "net_g_9.pth"
    torch.save({"params": net.state_dict(), "meta": {"network_g": network}}, path)
    loaded = load_checkpoint(str(path))
    assert loaded.degradations == NAMES + ["snow"]


def test_multiple_is_bounded(model_file, tmp_path):
    path = _crafted(model_file, tmp_path, lambda m: m.update(multiple=4096))
    with pytest.raises(CheckpointError, match=r"'multiple' must be an integer from 1 to 256, got 4096"):
        load_checkpoint(path)


@pytest.mark.parametrize("text, needle", [
    ("[" * 100000 + "]" * 100000, "nested too deeply|nested more than"),
    (json.dumps({"format": "pip-adapter", "format_version": 1, "deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}),
     "nested more than 32 levels"),
])
def test_deeply_nested_metadata_is_one_line(model_file, tmp_path, text, needle):
    path = _crafted(model_file, tmp_path, lambda m: text)
    with pytest.raises(CheckpointError, match=needle):
        load_checkpoint(path)


# ------------------------------------------------------------------------------------------------ 3. pixels

def _png_header_only(path, width, height):
    """A PNG that declares width×height 8-bit RGB pixels but holds one tiny compressed row."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (3 * width + 1)))
    path.write_bytes(data + chunk(b"IEND", b""))


def test_declared_size_is_checked_before_decoding(tmp_path, photos, model_file, capsys, monkeypatch):
    import cv2

    bomb = photos / "bomb.png"
    _png_header_only(bomb, 30000, 30000)
    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    with pytest.raises(ImageReadError, match=r"bomb.png: 30000×30000 is 900 megapixels, more than the limit of "
                                             r"100 MP; pass --max-pixels 900000000"):
        read_image_raw(str(bomb))
    assert decoded == []
    code, out, err = _cli(capsys, "restore", str(photos), "-m", model_file, "-d", "rain", "-o", str(tmp_path / "o"),
                          "--no-progress")
    assert code == 1 and "FAILED" in out and "bomb.png" in out and "megapixels" in out
    assert sorted(os.listdir(tmp_path / "o")) == ["a.png", "b.png"]
    # the limit is an option: 100 pixels refuses the 12×16 photo, 0 lifts it
    code, out, _ = _cli(capsys, "restore", str(photos / "a.png"), "-m", model_file, "-d", "rain",
                        "-o", str(tmp_path / "o2"), "--max-pixels", "100", "--no-progress")
    assert code == 1 and "more than the limit of 0.0001 MP" in out
    code, _, _ = _cli(capsys, "restore", str(photos / "a.png"), "-m", model_file, "-d", "rain",
                      "-o", str(tmp_path / "o3"), "--max-pixels", "0", "--no-progress")
    assert code == 0 and (tmp_path / "o3" / "a.png").exists()


def test_cli_default_pixel_limit_is_the_library_one():
    from pip_adapter.cli import restore as cli_restore
    from pip_adapter.image_io import DEFAULT_MAX_PIXELS

    assert cli_restore.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS


def test_demo_has_a_lower_pixel_limit(tmp_path):
    from pip_adapter.demo.session import DEMO_MAX_PIXELS, DemoInputError, DemoSession

    assert DEMO_MAX_PIXELS < 100_000_000
    big = tmp_path / "upload.png"
    _png_header_only(big, 12000, 12000)
    session = DemoSession(Restorer(tiny_pipnet(), NAMES, multiple=4, device="cpu"), workdir=str(tmp_path / "w"))
    with pytest.raises(DemoInputError, match="upload.png: .*144 megapixels, more than the limit of 25 MP"):
        session.load(str(big))


# ------------------------------------------------------------------------------------------------ 5. inputs

def test_symlinked_output_folder_never_overwrites_inputs(photos, model_file, tmp_path, capsys):
    before = {p: (photos / p).read_bytes() for p in os.listdir(photos)}
    link = tmp_path / "plink"
    os.symlink(photos, link)
    code, out, _ = _cli(capsys, "restore", str(photos), "-m", model_file, "-d", "rain", "-o", str(link),
                        "--overwrite", "--no-progress")
    assert code == 1 and out.count("FAILED") == 2 and "is an input file" in out
    assert {p: (photos / p).read_bytes() for p in os.listdir(photos)} == before
    # a hard link to an input inside -o is the input too
    out_dir = tmp_path / "o"
    out_dir.mkdir()
    os.link(photos / "a.png", out_dir / "a.png")
    code, out, _ = _cli(capsys, "restore", str(photos / "a.png"), "-m", model_file, "-d", "rain",
                        "-o", str(out_dir), "--overwrite", "--no-progress")
    assert code == 1 and "is an input file" in out and (photos / "a.png").read_bytes() == before["a.png"]


# ------------------------------------------------------------------------------------------------ 6. temporaries

def test_only_our_own_temporaries_are_cleaned(tmp_path):
    from pip_adapter.bsr.resume import clean_stale_temporaries

    models = tmp_path / "models"
    models.mkdir()
    user = [models / "net_g_5.pth.backup.tmp", models / "net_g_5.pth.old.tmp", models / "net_g_5.pth.0123.tmp"]
    for p in user:
        p.write_bytes(b"mine")
    ours = models / "net_g_5.pth.0a1b2c3d4e5f.tmp"  # utils.io.atomic_path's form, left by a kill
    ours.write_bytes(b"partial")
    removed = clean_stale_temporaries({"path": {"models": str(models)}})
    assert removed == [str(ours)] and all(p.exists() for p in user)


# ------------------------------------------------------------------------------------------------ 8. resume

def test_damaged_resume_files_are_moved_aside(tmp_path):
    from pip_adapter.bsr.resume import latest_complete_state

    models, states = tmp_path / "models", tmp_path / "training_states"
    models.mkdir()
    states.mkdir()
    for it in (10, 20):
        torch.save({"params": {"w": torch.zeros(3)}}, models / f"net_g_{it}.pth")
        torch.save({"iter": it}, states / f"{it}.state")
    size = (states / "20.state").stat().st_size
    os.truncate(states / "20.state", size // 2)
    opt = {"network_g": {}, "path": {"models": str(models), "training_states": str(states)}}
    assert latest_complete_state(opt) == str(states / "10.state")
    # the resumed run will write 20.state again: the damaged copy is kept under a name that says so
    assert not (states / "20.state").exists()
    assert (states / "20.state.damaged").stat().st_size == size // 2


# ------------------------------------------------------------------------------------------------ 9, 12, 13. ω

@pytest.mark.parametrize("spec, needle", [
    ("rain=1e39", "is 1e+39, absurdly large (at most 1e+06)"),
    ("rain=1e30", "is 1e+30, absurdly large (at most 1e+06)"),
    ("rain=0.5,RAIN=0.2", "names 'rain' twice"),
    ("rain=0.5,derain=0.2", "names 'rain' twice"),
])
def test_absurd_or_repeated_omega_is_refused_before_any_work(photos, model_file, tmp_path, capsys, spec, needle):
    code, _, err = _cli(capsys, "restore", str(photos), "-m", model_file, "--omega", spec, "-o", str(tmp_path / "o"))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_omega_forms_refuse_absurd_weights_and_duplicates():
    with pytest.raises(ValueError, match="names 'rain' twice"):
        to_omega({"rain": 0.5, "derain": 0.2}, NAMES)
    with pytest.raises(ValueError, match="absurdly large"):
        to_omega(torch.tensor([[1e30, 0.0, 0.0]]), NAMES)
    with pytest.raises(ValueError, match="absurdly large"):
        to_omega({"rain": float("1e39")}, NAMES)
    with pytest.raises(ValueError, match="NaN or infinite"):
        to_omega({"rain": float("inf")}, NAMES)


def test_non_finite_output_is_a_failure_not_a_black_image(tmp_path):
    class NaNNet(torch.nn.Module):
        def forward(self, x, omega):
            return x * float("nan")

    src = tmp_path / "x.png"
    write_png(src, rand_image(8, 8))
    restorer = Restorer(NaNNet(), NAMES, multiple=1, device="cpu", uses_omega=True)
    with pytest.raises(ValueError, match="NaN or infinite"):
        restorer.restore_file(str(src), str(tmp_path / "y.png"), degradation="rain")
    assert not (tmp_path / "y.png").exists()


# ------------------------------------------------------------------------------------------------ 10. FIFO

def test_named_pipe_input_is_refused_not_waited_on(photos, model_file, tmp_path, capsys):
    fifo = photos / "pipe.png"
    os.mkfifo(fifo)
    code, out, _ = _cli(capsys, "restore", str(photos / "a.png"), str(fifo), "-m", model_file, "-d", "rain",
                        "-o", str(tmp_path / "o"), "--no-progress")
    assert code == 1 and "pipe.png: not a regular file" in out and (tmp_path / "o" / "a.png").exists()


# ------------------------------------------------------------------------------------------------ 11, 14. formats

@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_once(tmp_path, orientation):
    import tifffile

    stored = rand_image(4, 6, seed=orientation)
    path = tmp_path / f"o{orientation}.tif"
    tifffile.imwrite(path, stored, photometric="rgb", extratags=[(274, "H", 1, orientation, False)])
    got, _ = read_image_raw(str(path))
    np.testing.assert_array_equal(got, apply_exif_orientation(stored, orientation))


def test_gray_alpha_16bit_png_is_named_when_it_becomes_rgba(tmp_path, caplog):
    with caplog.at_level("WARNING"):
        write_image(str(tmp_path / "la16.png"), rand_image(4, 6, c=2, dtype=np.uint16, seed=1))
    assert "la16.png: written as RGBA" in caplog.text
    assert read_image_raw(str(tmp_path / "la16.png"))[0].shape == (4, 6, 3)


def test_gray_alpha_keeps_depth_and_channels(tmp_path):
    import tifffile
    from PIL import Image

    la16 = (np.arange(4 * 6 * 2).reshape(4, 6, 2) * 997).astype(np.uint16)
    tifffile.imwrite(tmp_path / "la16.tif", la16, photometric="minisblack", extrasamples=["unassalpha"])
    pixels, info = read_image_raw(str(tmp_path / "la16.tif"))
    assert pixels.dtype == np.uint16 and info.gray and info.alpha is not None
    np.testing.assert_array_equal(pixels[:, :, 0], la16[:, :, 0])
    np.testing.assert_array_equal(info.alpha, la16[:, :, 1])
    write_image(str(tmp_path / "out.tif"), la16)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), la16)

    la8 = rand_image(5, 7, c=2, seed=3)
    Image.fromarray(la8, "LA").save(tmp_path / "la.png")
    pixels, info = read_image_raw(str(tmp_path / "la.png"))
    assert info.gray and info.alpha is not None and info.channels == 2
    write_image(str(tmp_path / "out.png"), la8)
    with Image.open(tmp_path / "out.png") as im:
        assert im.mode == "LA"
        np.testing.assert_array_equal(np.asarray(im), la8)


def test_multi_page_tiff_is_named(tmp_path, caplog):
    import tifffile

    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tif:
        for seed in (1, 2, 3):
            tif.write(rand_image(4, 6, seed=seed), photometric="rgb")
    with caplog.at_level("WARNING"):
        pixels, _ = read_image_raw(str(path))
    np.testing.assert_array_equal(pixels, rand_image(4, 6, seed=1))
    assert "pages.tif holds 3 pages; only the first is read" in caplog.text


# ------------------------------------------------------------------------------------------------ 15. extend

@pytest.mark.parametrize("out", ["x.onnx", "noext", "x.png"])
def test_extend_writes_weights_files_only(tmp_path, capsys, out):
    net = tiny_pipnet(seed=1)
    ckpt = tmp_path / "net_g_5.pth"  # a BasicSR file carrying its network: the branch that wrote any name
    torch.save({"params": net.state_dict(), "meta": {"network_g": copy.deepcopy(TINY_NET)}}, ckpt)
    code, _, err = _cli(capsys, "extend", "--ckpt", str(ckpt), "--add", "snow", "--out", str(tmp_path / out))
    assert code == 2 and "extend writes a .safetensors or .pth file" in err and not (tmp_path / out).exists()


def test_auto_is_not_a_type_name(model_file, tmp_path, capsys):
    from pip_adapter.wrap.extend import extend_degradations

    code, _, err = _cli(capsys, "extend", "--ckpt", model_file, "--add", "AUTO", "--out", str(tmp_path / "x.pth"))
    assert code == 2 and "'auto' is reserved" in err and not (tmp_path / "x.pth").exists()
    with pytest.raises(ValueError, match="not auto"):
        extend_degradations(tiny_pipnet(), ["auto"])
    path = _crafted(model_file, tmp_path, lambda m: (m.update(degradations=["noise", "rain", "auto"]),
                                                     m["pip_config"].update(degradations=["noise", "rain", "auto"])))
    with pytest.raises(CheckpointError, match="degradation name 'auto' cannot be addressed"):
        load_checkpoint(path)


# ------------------------------------------------------------------------------------------------ 9, 16. full disk

@pytest.fixture
def file_size_limit():
    """Set a real per-process file size limit (writes past it fail with EFBIG, as a full disk fails with
    ENOSPC), restored afterwards."""
    import resource
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the error, not the signal that ends the process

    def limit(size):
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))

    yield limit
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_export_to_a_full_disk_is_one_line_naming_the_target(model_file, tmp_path, capsys, file_size_limit, suffix):
    import errno as errno_

    out = tmp_path / f"out{suffix}"
    out.write_bytes(b"a previous export")
    file_size_limit(20_000)  # the tiny model's file is larger
    code, _, err = _cli(capsys, "export", "--ckpt", model_file, "--out", str(out), "--overwrite")
    reason = os.strerror(errno_.EFBIG).lower()
    assert code == 2 and err.strip() == f"pip-adapter export: error: {out}: {reason}", err
    assert out.read_bytes() == b"a previous export" and os.listdir(tmp_path) == [out.name]


# ------------------------------------------------------------------------------------------------ 16. messages

class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickle_refusal_never_quotes_the_weights_only_false_advice(tmp_path, photos, capsys):
    evil = tmp_path / "evil.pth"
    torch.save({"params": _Evil()}, evil)
    for cmd in (["restore", str(photos), "-m", str(evil), "-d", "rain", "-o", str(tmp_path / "o")],
                ["export", "--ckpt", str(evil), "--out", str(tmp_path / "e.safetensors")]):
        code, _, err = _cli(capsys, *cmd)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "evil.pth: refused to load this model file: it holds pickled Python objects" in err
        assert "unsupported GLOBAL posix.system" in err and "weights_only" not in err
    truncated = tmp_path / "cut.pth"
    torch.save({"params": {"w": torch.zeros(100)}}, truncated)
    os.truncate(truncated, 200)
    code, _, err = _cli(capsys, "export", "--ckpt", str(truncated), "--out", str(tmp_path / "e.safetensors"))
    assert code == 2 and "cut.pth: cannot read this model file: it is truncated or corrupt" in err
    assert not (tmp_path / "e.safetensors").exists() and not (tmp_path / "o").exists()


def test_damaged_images_are_reported_once_not_on_stderr(tmp_path, capfd):
    import random
    import tifffile

    rng = random.Random(5)
    tifffile.imwrite(tmp_path / "src.tif", rand_image(12, 16), photometric="rgb")
    write_png(tmp_path / "src.png", rand_image(12, 16))
    bad = []
    for src in ("src.tif", "src.png"):
        data = bytearray((tmp_path / src).read_bytes())
        for _ in range(6):
            data[rng.randrange(8, len(data))] = rng.randrange(256)
        for cut in (len(data), 60):
            path = tmp_path / f"bad{len(bad)}{os.path.splitext(src)[1]}"
            path.write_bytes(bytes(data[:cut]))
            bad.append(path)
    capfd.readouterr()
    for path in bad:
        try:
            read_image_raw(str(path))
        except ImageReadError:
            pass
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
