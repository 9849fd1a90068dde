"""``pip-adapter evaluate``: the all-in-one table on a tiny fabricated copy of the standard layout."""
import json
import os

import numpy as np
import pytest
import torch

from pip_adapter.cli import main
from pip_adapter.image_io import read_image_file, write_image_file
from pip_adapter.restore.checkpoint import make_meta, save_checkpoint
from pip_adapter.restore.classifier import DegradationClassifier
from pip_adapter.restore.evaluate import (SETTINGS, add_benchmark_noise, crop_to_multiple, evaluate,
                                          format_markdown, noise_seed)
from pip_adapter.restore.restorer import Restorer, image_metrics
from tests.helpers_restore import TOY_NETWORK, ToyOmegaUNet, make_toy

pytestmark = pytest.mark.usefixtures("one_thread")


def make_benchmark_layout(root: str, seed: int = 0) -> str:
    """The test half of the standard layout, 1–2 tiny images per set (sizes not multiples of 16)."""
    rng = np.random.default_rng(seed)
    d = os.path.join(root, "data", "test")

    def img(h=40, w=36):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    for name in ("a.png", "b.png"):
        write_image_file(os.path.join(d, "denoise", "bsd68", name), img())
    pairs = {"derain/Rain100L": [("rain-1.png", "norain-1.png")],
             "dehaze/SOTS": [("0001_0.8_0.2.png", "0001.png"), ("0002_0.9_0.1.png", "0002.png")],
             "deblur/GoPro": [("GOPR0384_11_00-000001.png", "GOPR0384_11_00-000001.png")],
             "enhance/LOL": [("1.png", "1.png")]}
    for folder, names in pairs.items():
        for lq_name, gt_name in names:
            g = img(36, 50)
            write_image_file(os.path.join(d, folder, "target", gt_name), g)
            write_image_file(os.path.join(d, folder, "input", lq_name), (g // 2 + 40).astype(np.uint8))
    return root


@pytest.fixture
def layout(tmp_path):
    return make_benchmark_layout(str(tmp_path / "allinone"))


@pytest.fixture
def toy_classifier():
    torch.manual_seed(0)
    return DegradationClassifier("test_resnet", TOY_NETWORK["degradations"], crop_size=32, num_crops=1).eval()


@pytest.fixture
def model_files(tmp_path, toy_classifier):
    net = make_toy(0)
    plain = str(tmp_path / "toy.safetensors")
    save_checkpoint(plain, net, make_meta(net, TOY_NETWORK))
    bundle = str(tmp_path / "toy_bundle.safetensors")
    save_checkpoint(bundle, net, make_meta(net, TOY_NETWORK), classifier=toy_classifier)
    return {"plain": plain, "bundle": bundle}


def test_noise_is_seeded_per_image_not_by_order():
    clean = np.full((32, 32, 3), 128, np.uint8)
    a = add_benchmark_noise(clean, "some/dir/x.png", 25)
    assert a.dtype == np.uint8 and a.shape == clean.shape
    np.testing.assert_array_equal(a, add_benchmark_noise(clean, "other/x.png", 25))  # the name, not the path
    assert not np.array_equal(a, add_benchmark_noise(clean, "y.png", 25))
    assert noise_seed("x.png", 15) != noise_seed("x.png", 25) != noise_seed("x.png", 25, seed=1)
    # σ is on the 0–255 scale: the measured deviation matches it
    assert abs(float((a.astype(float) - 128).std()) - 25) < 2.5
    assert crop_to_multiple(np.zeros((40, 36, 3))).shape == (32, 32, 3)


def test_cli_five_tasks_end_to_end(model_files, layout, tmp_path, capsys):
    out = str(tmp_path / "res")
    rc = main(["evaluate", "-m", model_files["plain"], "--data", layout, "--setting", "5task", "--out", out,
               "--no-progress", "--device", "cpu"])
    assert rc == 0
    text = capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["5task_true.json", "5task_true.md"]
    with open(os.path.join(out, "5task_true.json"), encoding="utf-8") as fh:
        res = json.load(fh)
    assert [s["title"] for s in res["sets"]] == [s.title for s in SETTINGS["5task"]]
    assert {s["key"]: s["count"] for s in res["sets"]} == {"sots": 2, "rain100l": 1, "bsd68_15": 2, "bsd68_25": 2,
                                                           "bsd68_50": 2, "gopro": 1, "lol": 1}
    # the printed table is the markdown written, with the published rows and their sources
    with open(os.path.join(out, "5task_true.md"), encoding="utf-8") as fh:
        assert fh.read() in text
    assert "| Method | SOTS | Rain100L | BSD68 σ15 |" in text and "AirNet [1]" in text and "25.49/0.846" in text
    assert "PIP_NAFNet" in text and "arXiv:2312.05038" in text and "CVPR 2023" in text

    # every number is the protocol's: recompute SOTS by hand (crop to 16, true ω, float output, skimage SSIM)
    r = Restorer.from_checkpoint(model_files["plain"], device="cpu")
    d = os.path.join(layout, "data", "test", "dehaze", "SOTS")
    psnrs, ssims = [], []
    for lq_name, gt_name in (("0001_0.8_0.2.png", "0001.png"), ("0002_0.9_0.1.png", "0002.png")):
        lq = crop_to_multiple(read_image_file(os.path.join(d, "input", lq_name)))
        gt = crop_to_multiple(read_image_file(os.path.join(d, "target", gt_name)))
        assert lq.shape == (32, 48, 3)
        out_img, _, _ = r.restore_array(lq.astype(np.float32) / 255, degradation="haze")
        p, s = image_metrics(out_img.astype(np.float64), gt / 255.0)
        psnrs.append(p)
        ssims.append(s)
    sots = res["sets"][0]
    assert sots["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-9)
    assert sots["ssim"] == pytest.approx(np.mean(ssims), abs=1e-9)
    avg = res["averages"]["average"]
    assert avg["psnr"] == pytest.approx(np.mean([s["psnr"] for s in res["sets"]]))
    five = res["averages"]["average_5"]
    by_key = {s["key"]: s for s in res["sets"]}
    assert five["psnr"] == pytest.approx(np.mean([by_key[k]["psnr"] for k in ("sots", "rain100l", "bsd68_25",
                                                                             "gopro", "lol")]))
    # an existing result is not overwritten silently
    assert main(["evaluate", "-m", model_files["plain"], "--data", layout, "--setting", "5task", "--out", out,
                 "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_noisy_set_does_not_depend_on_other_images(model_files, layout, tmp_path):
    r = Restorer.from_checkpoint(model_files["plain"], device="cpu")
    full = evaluate(r, layout, "3task", progress=False)
    os.remove(os.path.join(layout, "data", "test", "denoise", "bsd68", "a.png"))
    alone = evaluate(r, layout, "3task", progress=False)
    for k in (2, 3, 4):  # BSD68 σ15/25/50: b.png gets the same noise, so the same numbers
        row_full = [x for x in full["sets"][k]["images"] if x["image"] == "b.png"][0]
        assert alone["sets"][k]["images"] == [row_full]
    # and another seed draws other noise
    other = evaluate(r, layout, "3task", seed=1, progress=False)
    assert other["sets"][2]["images"][0]["input_psnr"] != alone["sets"][2]["images"][0]["input_psnr"]


def test_auto_omega_reports_classifier_accuracy(model_files, layout, toy_classifier):
    r = Restorer.from_checkpoint(model_files["bundle"], device="cpu")
    res = evaluate(r, layout, "3task", omega="auto", auto_mode="argmax", progress=False, max_images=1)
    names = TOY_NETWORK["degradations"]
    for s in res["sets"]:
        assert s["count"] == 1 and 0.0 <= s["classifier_accuracy"] <= 1.0
    # the prediction recorded for Rain100L is the classifier's own choice on the cropped input
    lq = crop_to_multiple(read_image_file(os.path.join(layout, "data", "test", "derain", "Rain100L", "input",
                                                       "rain-1.png")))
    probs = toy_classifier.predict_proba(torch.from_numpy(lq.astype(np.float32) / 255).permute(2, 0, 1))
    rain = res["sets"][1]
    assert rain["images"][0]["predicted"] == names[int(probs.argmax())]
    assert rain["classifier_accuracy"] == float(names[int(probs.argmax())] == "rain")
    md = format_markdown(res)
    assert "ω: auto (argmax)" in md and "Classifier accuracy" in md and "first 1 images" in md


def test_refusals_name_the_problem(model_files, layout, tmp_path, capsys):
    three_cfg = dict(TOY_NETWORK, degradations=["noise", "rain", "haze"])
    three = ToyOmegaUNet(width=4, degradations=three_cfg["degradations"])
    path = str(tmp_path / "three.safetensors")
    save_checkpoint(path, three, make_meta(three, three_cfg))
    assert main(["evaluate", "-m", path, "--data", layout, "--setting", "5task", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "blur" in err and "low_light" in err and "3task" in err
    # auto without a classifier, and a layout without a set, fail before any image is restored
    assert main(["evaluate", "-m", model_files["plain"], "--data", layout, "--omega", "auto", "--no-progress",
                 "--out", str(tmp_path / "o")]) == 2
    assert "classifier" in capsys.readouterr().err
    empty = tmp_path / "empty"
    (empty / "data" / "test").mkdir(parents=True)
    assert main(["evaluate", "-m", model_files["plain"], "--data", str(empty), "--no-progress",
                 "--out", str(tmp_path / "o")]) == 2
    assert "SOTS" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_out_file_refused_before_restoring_and_small_images_named(model_files, layout, tmp_path, capsys,
                                                                  monkeypatch):
    """Issue 24: --out as a file is found before any set is restored; a too-small image is named."""
    import pip_adapter.restore.evaluate as ev

    restored = []
    real = ev.evaluate_set
    monkeypatch.setattr(ev, "evaluate_set", lambda *a, **k: restored.append(1) or real(*a, **k))
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    for out in (blocker, blocker / "below"):
        assert main(["evaluate", "-m", model_files["plain"], "--data", layout, "--no-progress",
                     "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"{blocker}: is a file where a folder is needed" in err and len(err.strip().splitlines()) == 1
    assert restored == [] and blocker.read_text() == "a file"
    tiny = os.path.join(layout, "data", "test", "denoise", "bsd68", "tiny.png")
    write_image_file(tiny, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"tiny\.png: an image of 8x8 pixels is smaller than the crop multiple 16"):
        ev.load_pair(None, tiny, ev.BSD68_15)
