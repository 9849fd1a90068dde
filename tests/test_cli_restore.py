"""``pip-adapter restore`` and ``pip-adapter export`` end to end on a tiny model."""
import os

import numpy as np
import pytest

from pip_adapter.cli import main
from pip_adapter.restore.checkpoint import export_checkpoint, save_checkpoint, make_meta
from pip_adapter.image_io import read_image, write_image
from pip_adapter.restore.restorer import Restorer
from tests.helpers_restore import TOY_NETWORK, rand_image, write_png

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def model_file(toy_basicsr_files, tmp_path):
    out = str(tmp_path / "model.safetensors")
    assert main(["export", "--ckpt", toy_basicsr_files["ckpt"], "--opt", toy_basicsr_files["opt"],
                 "--out", out]) == 0
    return out


@pytest.fixture
def inputs(tmp_path):
    d = tmp_path / "in"
    write_png(d / "a.png", rand_image(14, 18, seed=1))
    write_png(d / "b16.png", rand_image(10, 12, dtype=np.uint16, seed=2))
    write_png(d / "gray.png", rand_image(9, 11, c=1, seed=3))
    write_png(d / "rgba.png", rand_image(8, 10, c=4, seed=4))
    return d


def test_export_prints_summary(toy_basicsr_files, tmp_path, capsys):
    out = str(tmp_path / "m.safetensors")
    assert main(["export", "--ckpt", toy_basicsr_files["ckpt"], "--opt", toy_basicsr_files["opt"],
                 "--out", out, "--key", "params"]) == 0
    text = capsys.readouterr().out
    assert "restorer" in text and "noise, rain, haze, blur, low_light" in text
    # existing output refused without --overwrite, with the dispatcher's clear error
    assert main(["export", "--ckpt", toy_basicsr_files["ckpt"], "--opt", toy_basicsr_files["opt"],
                 "--out", out]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_restore_folder_keeps_kinds_and_matches_api(model_file, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["restore", str(inputs), "--model", model_file, "--output", str(out), "--degradation", "rain",
               "--no-progress"])
    assert rc == 0
    assert sorted(os.listdir(out)) == ["a.png", "b16.png", "gray.png", "rgba.png"]
    api = Restorer.from_checkpoint(model_file, device="cpu")
    import cv2
    for name in os.listdir(inputs):
        src = cv2.imread(str(inputs / name), cv2.IMREAD_UNCHANGED)
        dst = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert src.shape == dst.shape and src.dtype == dst.dtype, name
    np.testing.assert_array_equal(read_image(str(out / "a.png"))[0],
                                  read_image_array(api(str(inputs / "a.png"), degradation="rain")))
    assert "restored 4 image(s), 0 failed" in capsys.readouterr().out


def read_image_array(arr):
    from pip_adapter.image_io import array_to_float
    return array_to_float(arr)[0]


def test_restore_omega_mix_glob_and_gt_metrics(model_file, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    gt = tmp_path / "gt"
    write_png(gt / "a.png", rand_image(14, 18, seed=1))  # the input itself as "ground truth"
    rc = main(["restore", str(inputs / "a*.png"), "--model", model_file, "-o", str(out),
               "--omega", "rain=0.7,noise=0.3", "--gt", str(gt), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "rain=0.70" in text and "noise=0.30" in text and "PSNR" in text and "average (1)" in text
    assert os.listdir(out) == ["a.png"]
    # the PSNR printed is the real one of the written file against the ground truth
    from pip_adapter.restore.restorer import image_metrics
    psnr, _ = image_metrics(read_image(str(out / "a.png"))[0], read_image(str(gt / "a.png"))[0])
    assert f"{psnr:.2f}" in text


def test_restore_with_gt_shows_the_inputs_metrics_and_the_gain(model_file, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    gt = tmp_path / "gt"
    write_png(gt / "a.png", rand_image(14, 18, seed=7))
    write_png(gt / "b16.png", rand_image(10, 12, dtype=np.uint16, seed=8))
    rc = main(["restore", str(inputs / "a.png"), str(inputs / "b16.png"), "-m", model_file, "-o", str(out),
               "-d", "rain", "--gt", str(gt), "--no-progress"])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["image", "size", "omega", "seconds", "input", "PSNR", "PSNR", "gain", "input",
                                "SSIM", "SSIM"]
    from pip_adapter.restore.restorer import image_metrics
    rows = {}
    for name in ("a.png", "b16.png"):
        in_psnr, in_ssim = image_metrics(read_image(str(inputs / name))[0], read_image(str(gt / name))[0])
        psnr, ssim = image_metrics(read_image(str(out / name))[0], read_image(str(gt / name))[0])
        row = next(line.split() for line in lines if line.startswith(name))
        assert row[4:] == [f"{in_psnr:.2f}", f"{psnr:.2f}", f"{psnr - in_psnr:+.2f}", f"{in_ssim:.4f}",
                           f"{ssim:.4f}"]
        rows[name] = row
    avg = next(line.split() for line in lines if line.startswith("average (2)"))
    # the seconds column of the average row is seconds per image, not their sum
    assert float(avg[2]) == pytest.approx((float(rows["a.png"][3]) + float(rows["b16.png"][3])) / 2, abs=0.011)
    assert float(avg[3]) == pytest.approx((float(rows["a.png"][4]) + float(rows["b16.png"][4])) / 2, abs=0.011)


def test_summary_average_row_is_per_image():
    import io
    from types import SimpleNamespace

    from pip_adapter.cli.restore import print_summary

    rows = [SimpleNamespace(input=f"{n}.png", size=(8, 8), chosen="rain", seconds=s, psnr=p, ssim=0.5,
                            input_psnr=ip, input_ssim=0.25, unscored=None)
            for n, s, p, ip in (("x", 1.0, 30.0, 20.0), ("y", 3.0, 32.0, 21.0))]
    buf = io.StringIO()
    print_summary(rows, [], with_gt=True, out=buf)
    avg = next(line.split() for line in buf.getvalue().splitlines() if line.startswith("average"))
    assert avg == ["average", "(2)", "2.00", "20.50", "31.00", "+10.50", "0.2500", "0.5000"]


def test_restore_auto_with_bundled_classifier(toy_basicsr_files, inputs, tmp_path, capsys):
    import torch
    from pip_adapter.restore.classifier import DegradationClassifier
    torch.manual_seed(0)
    cls = DegradationClassifier("test_resnet", TOY_NETWORK["degradations"], crop_size=32, num_crops=1)
    cls_file = str(tmp_path / "cls.safetensors")
    save_checkpoint(cls_file, cls, make_meta(cls))
    bundle = str(tmp_path / "bundle.safetensors")
    assert main(["export", "--ckpt", toy_basicsr_files["ckpt"], "--opt", toy_basicsr_files["opt"],
                 "--out", bundle, "--classifier", cls_file]) == 0
    out = tmp_path / "out"
    rc = main(["restore", str(inputs / "a.png"), "-m", bundle, "-o", str(out), "-d", "auto", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr()
    assert "auto:" in text.out + text.err
    # the bundled classifier is the one saved: same choice as the classifier alone
    probs = cls.eval().predict_proba(torch.from_numpy(read_image(str(inputs / "a.png"))[0]).permute(2, 0, 1))
    assert f"auto:{TOY_NETWORK['degradations'][int(probs.argmax())]}" in text.out + text.err
    # without any classifier, auto is refused up front
    model_only = str(tmp_path / "m.safetensors")
    export_checkpoint(toy_basicsr_files["ckpt"], toy_basicsr_files["opt"], model_only)
    assert main(["restore", str(inputs), "-m", model_only, "-o", str(tmp_path / "o2"), "-d", "auto"]) == 2
    assert "classifier" in capsys.readouterr().err


def test_bad_files_reported_others_restored(model_file, inputs, tmp_path, capsys):
    (inputs / "broken.png").write_text("not an image")
    out = tmp_path / "out"
    rc = main(["restore", str(inputs), str(tmp_path / "missing.png"), "-m", model_file, "-o", str(out),
               "-d", "noise", "--no-progress"])
    assert rc == 1
    captured = capsys.readouterr()
    assert "broken.png" in captured.out and "missing.png" in captured.out
    assert sorted(os.listdir(out)) == ["a.png", "b16.png", "gray.png", "rgba.png"]


def test_existing_outputs_not_overwritten(model_file, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    keep = rand_image(14, 18, seed=9)
    write_image(str(out / "a.png"), keep)
    rc = main(["restore", str(inputs / "a.png"), "-m", model_file, "-o", str(out), "-d", "rain", "--no-progress"])
    assert rc == 1 and "--overwrite" in capsys.readouterr().out
    np.testing.assert_array_equal(read_image(str(out / "a.png"))[0], read_image_array(keep))
    rc = main(["restore", str(inputs / "a.png"), "-m", model_file, "-o", str(out), "-d", "rain", "--overwrite",
               "--no-progress"])
    assert rc == 0
    assert not np.array_equal(read_image(str(out / "a.png"))[0], read_image_array(keep))


@pytest.mark.parametrize("args,needle", [
    (["-d", "snow"], "knows: noise, rain, haze, blur, low_light"),
    (["--omega", "rain=-1"], "non-negative"),
    (["--omega", "rain=nan,noise=1"], "NaN"),
    (["--omega", "rain=0,noise=0"], "all zero"),
    ([], "say which degradation"),
])
def test_bad_omega_fails_fast(model_file, inputs, tmp_path, capsys, args, needle):
    out = tmp_path / "out"
    assert main(["restore", str(inputs), "-m", model_file, "-o", str(out), *args]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists() or not os.listdir(out)


def test_restore_with_bare_net_g_and_opt_and_tiles(toy_basicsr_files, inputs, tmp_path):
    out = tmp_path / "out"
    rc = main(["restore", str(inputs / "a.png"), "--ckpt", toy_basicsr_files["ckpt"], "--opt",
               toy_basicsr_files["opt"], "-o", str(out), "-d", "haze", "--tile", "8", "--tile-overlap", "4",
               "--device", "cpu", "--no-progress"])
    assert rc == 0 and read_image(str(out / "a.png"))[0].shape == (14, 18, 3)


def test_corrupt_model_named(inputs, tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    assert main(["restore", str(inputs), "-m", str(bad), "-o", str(tmp_path / "o"), "-d", "rain"]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_same_names_in_several_folders_do_not_collide(model_file, tmp_path):
    for folder in ("rain", "haze"):
        write_png(tmp_path / folder / "cat.png", rand_image(8, 8))
    out = tmp_path / "out"
    rc = main(["restore", str(tmp_path / "rain"), str(tmp_path / "haze"), "-m", model_file, "-o", str(out),
               "-d", "rain", "--no-progress"])
    assert rc == 0
    assert os.path.isfile(out / "rain" / "cat.png") and os.path.isfile(out / "haze" / "cat.png")


def test_restore_is_quiet_by_default(inputs, tmp_path):
    import subprocess
    import sys

    from pip_adapter.wrap.pipnet import PIPNet

    net = PIPNet({"type": "NAFNet", "img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1],
                  "dec_blk_nums": [1, 1]}, prompt_dims=8, prompt_sizes=4)
    model_file = str(tmp_path / "pip_nafnet.safetensors")   # a real PIP model: a wrapped backbone, built twice
    save_checkpoint(model_file, net, make_meta(net))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")

    def run():
        out = subprocess.run([sys.executable, "-m", "pip_adapter.cli", "restore", str(inputs / "a.png"),
                              "-m", model_file, "-o", str(tmp_path / "out"), "-d", "rain", "--overwrite",
                              "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return out

    quiet = run()   # the network is built twice (sizes checked on the meta device first): nothing said
    assert quiet.stderr == "" and "restored 1 image(s), 0 failed" in quiet.stdout
