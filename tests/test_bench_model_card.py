"""bench/model_card.py on a tiny PIP model and two small photos: every section, the CBM3D cache, --report-only."""
import json
import os

import numpy as np
import pytest
import torch

from bench import model_card as mc
from pip_adapter.data.builtin import load_photo
from pip_adapter.image_io import write_image_file
from pip_adapter.data.outdir import write_manifest
from pip_adapter.restore.checkpoint import make_meta, save_checkpoint
from pip_adapter.restore.classifier import DegradationClassifier
from pip_adapter.restore.evaluate import add_benchmark_noise
from pip_adapter.wrap.pipnet import PIPNet

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["noise", "rain", "haze", "blur", "low_light"]
TINY = {"backbone": {"type": "NAFNet", "width": 8, "enc_blk_nums": [1], "dec_blk_nums": [1], "middle_blk_num": 1},
        "degradations": NAMES, "prompt_dims": 8, "prompt_sizes": 4}
CARD = """# Model card

Prose before.

<!-- model-card-heldout:begin -->
old numbers
<!-- model-card-heldout:end -->

Prose between.
"""


@pytest.fixture(scope="module")
def card_inputs(tmp_path_factory):
    """A tiny PIP-NAFNet with a bundled classifier that always answers 'noise', and two 48² held-out photos."""
    root = tmp_path_factory.mktemp("card")
    torch.manual_seed(0)
    net = PIPNet(**TINY).eval()
    cls = DegradationClassifier("test_resnet", NAMES, crop_size=16, num_crops=1).eval()
    with torch.no_grad():
        head = cls.net.get_classifier()
        head.weight.zero_()
        head.bias.zero_()
        head.bias[0] = 20.0  # noise
        head.bias[3] = 10.0  # then blur: the composite blur+noise is named by its two parts
    model = str(root / "tiny.safetensors")
    save_checkpoint(model, net, make_meta(net), classifier=cls)
    data = root / "heldout"
    for name, (y, x) in (("chelsea.png", (100, 150)), ("coffee.png", (150, 200))):
        write_image_file(str(data / name), load_photo(name)[y:y + 56, x:x + 56])
    return {"model": model, "data": str(data), "root": root}


def _argv(inp, tmp_path, *extra):
    return ["-m", inp["model"], "--data", inp["data"], "--crop", "48", "--denoise-crop", "32", "--sigmas", "25",
            "--composites", "blur+noise,haze+rain", "--json", str(tmp_path / "res.json"),
            "--cbm3d-cache", str(tmp_path / "cbm3d.json"), "--out", str(tmp_path / "MODELS.md"),
            "--figure", str(tmp_path / "figures" / "low.png"), "--quiet", *extra]


def test_card_sections_cache_and_report_only(card_inputs, tmp_path, monkeypatch, capsys):
    (tmp_path / "MODELS.md").write_text(CARD, encoding="utf-8")
    assert mc.main(_argv(card_inputs, tmp_path, "--latency-size", "32", "--latency-repeats", "1",
                         "--skip-onnx")) == 0
    res = json.loads((tmp_path / "res.json").read_text(encoding="utf-8"))
    text = (tmp_path / "MODELS.md").read_text(encoding="utf-8")
    # the prose around the sections stays; every measured section is between its markers
    assert "Prose before." in text and "Prose between." in text and "old numbers" not in text
    assert "model-card-data" not in text  # no manifest, no data table
    for tag in set(mc.SECTIONS) - {"data"}:
        assert f"<!-- model-card-{tag}:begin -->" in text and f"<!-- model-card-{tag}:end -->" in text
    rows = res["heldout"]["images"]
    sets = [r["set"] for r in rows]
    assert sets == [s for s in NAMES for _ in range(2)] + ["blur+noise"] * 2 + ["haze+rain"] * 2
    for r in rows:
        assert r["top1"] == "noise"
        if r["set"] == "noise":  # argmax on the right type is the true ω: the same restoration
            assert r["auto_psnr"] == r["true_psnr"]
        elif len(r["parts"]) == 1:
            assert r["auto_psnr"] != pytest.approx(r["true_psnr"], abs=1e-6)
    summary = mc.summarise(res)
    assert summary["types"]["noise"]["accuracy"] == 1.0 and summary["types"]["rain"]["accuracy"] == 0.0
    assert summary["composites"]["blur+noise"]["parts_named"] == 1.0
    assert summary["composites"]["haze+rain"]["parts_named"] == 0.0
    assert "| noise | 2 |" in text and "| 100 % |" in text and "| blur+noise | 2 |" in text
    # low light: ΔE00 of input and output, and a three-panel figure
    low = [r for r in rows if r["set"] == "low_light"]
    assert all(r["delta_e"]["input"] > 0 and r["delta_e"]["true"] > 0 for r in low)
    assert "mean ΔE00" in text and "![low light: input, restored, truth](figures/low.png)" in text
    fig = mc.read_image_file(str(tmp_path / "figures" / "low.png"))
    assert fig.shape == (160, 3 * 160 + 8, 3)
    # denoising: CBM3D and the model on the same noisy inputs, whose checksums are recorded
    den = res["denoise"]["images"]
    assert [(d["image"], d["sigma"]) for d in den] == [("chelsea.png", 25.0), ("coffee.png", 25.0)]
    clean = mc.crop(load_photo("chelsea.png")[100:156, 150:206], 32)
    assert den[0]["noisy_sha256"] == mc.sha256(add_benchmark_noise(clean, "chelsea.png", 25.0, 0))
    assert all(d["cbm3d_psnr"] > d["input_psnr"] for d in den)
    cache = json.loads((tmp_path / "cbm3d.json").read_text(encoding="utf-8"))
    assert len(cache) == 2 and {e["noisy_sha256"] for e in cache.values()} == {d["noisy_sha256"] for d in den}
    assert "not a standard colour test set" in text and "| σ 25 | 2 |" in text
    # latency: eager measured in a fresh process on one thread, ONNX skipped and said so
    lat = res["latency"]
    assert lat["eager"]["threads"] == 1 and lat["eager"]["peak_rss"] >= lat["eager"]["rss_loaded"] > 0
    assert "not measured (--skip-onnx)" in text
    assert "colour denoising σ25" in text and "auto ≥ 95% accuracy per type" in text

    # a rerun takes CBM3D from the cache: bm3d is never called
    import bm3d

    def fail(*_a, **_k):
        raise AssertionError("CBM3D recomputed despite the cache")
    monkeypatch.setattr(bm3d, "bm3d_rgb", fail)
    assert mc.main(_argv(card_inputs, tmp_path, "--skip-latency", "--max-images", "1")) == 0
    res2 = json.loads((tmp_path / "res.json").read_text(encoding="utf-8"))
    assert res2["denoise"]["images"][0]["cbm3d_psnr"] == den[0]["cbm3d_psnr"]

    # --report-only rebuilds the same markdown from the saved results without a model or data
    capsys.readouterr()
    before = (tmp_path / "MODELS.md").read_text(encoding="utf-8")
    (tmp_path / "MODELS.md").write_text(CARD, encoding="utf-8")
    assert mc.main(["--report-only", "--json", str(tmp_path / "res.json"), "--out", str(tmp_path / "MODELS.md")]) == 0
    after = (tmp_path / "MODELS.md").read_text(encoding="utf-8")
    assert after.split("<!-- model-card-run:begin -->")[1] == before.split("<!-- model-card-run:begin -->")[1]


def test_cache_entry_of_other_noise_is_not_used(card_inputs, tmp_path, monkeypatch):
    """An entry whose noisy input differs (another noise draw) is recomputed, never mixed in."""
    import bm3d

    calls = []

    def identity(noisy, sigma):  # the real CBM3D runs in the test above; here only the cache's choice matters
        calls.append(sigma)
        return noisy
    monkeypatch.setattr(bm3d, "bm3d_rgb", identity)
    photos = mc.load_photos(card_inputs["data"], 32, max_images=1)
    items = mc.denoise_inputs(photos, [25.0], seed=0)
    key = mc.cache_key(items[0])
    stale = {key: {"noisy_sha256": "0" * 64, "psnr": 99.0, "ssim": 1.0}}
    mc.write_cache(str(tmp_path / "c.json"), stale)
    cache = mc.run_cbm3d(items, str(tmp_path / "c.json"), progress=False)
    assert calls == [25.0 / 255.0]
    assert cache[key]["noisy_sha256"] == items[0]["noisy_sha256"] and cache[key]["psnr"] < 99.0
    assert mc.run_cbm3d(items, str(tmp_path / "c.json"), progress=False) == cache and len(calls) == 1
    assert mc.denoise_inputs(photos, [25.0], seed=1)[0]["noisy_sha256"] != items[0]["noisy_sha256"]
    # a partial cache: CBM3D and the model are averaged over the same (paired) images only
    rows = [{"sigma": 25.0, "input_psnr": 20.0, "model_psnr": 30.0, "cbm3d_psnr": 29.0, "model_ssim": 0.9,
             "cbm3d_ssim": 0.8}, {"sigma": 25.0, "input_psnr": 20.0, "model_psnr": 10.0, "model_ssim": 0.1}]
    s = mc.summarise({"denoise": {"images": rows}})["denoise"]["25"]
    assert (s["count"], s["paired"], s["model_psnr"], s["cbm3d_psnr"]) == (2, 1, 30.0, 29.0)
    assert "| σ 25 | 1 of 2 (CBM3D missing for the others) |" in mc.report({"denoise": {"images": rows}})["denoise"]


def test_manifest_val_sets_and_clear_errors(tmp_path):
    """Held-out data in the built-in layout (val/<set>, val/gt, manifest val_sets) incl. a composite set."""
    gt = load_photo("coffee.png")[:40, :40]
    write_image_file(str(tmp_path / "val" / "gt" / "a.png"), gt)
    write_image_file(str(tmp_path / "val" / "rain" / "a.png"), np.ascontiguousarray(gt[::-1]))
    write_image_file(str(tmp_path / "val" / "rain_noise" / "a.png"), np.ascontiguousarray(gt[:, ::-1]))
    write_image_file(str(tmp_path / "val" / "snow" / "a.png"), gt)
    man = {"kind": "heldout", "photos": [{"file": "a.png", "package": "lomiri-wallpapers", "licence": "CC-BY-4.0",
                                          "sha256": "0" * 64}], "val_sets": [{"name": "rain", "degradation": "rain"},
                                           {"name": "rain_noise", "degradation": ["rain", "noise"]},
                                           {"name": "snow", "degradation": "snow"}]}
    write_manifest(str(tmp_path), man)
    cases = mc.heldout_cases(str(tmp_path), NAMES, ["noise+rain", "blur+noise+low_light"], crop_size=32)
    triple = cases[2:]  # rain+noise is read from its folder; the triple is synthesised from val/gt
    assert [(c.set, c.name) for c in triple] == [("blur+noise+low_light", "a.png")]
    assert triple[0].omega == pytest.approx({"blur": 1 / 3, "noise": 1 / 3, "low_light": 1 / 3})
    assert triple[0].lq.shape == (32, 32, 3) and triple[0].lq.mean() < triple[0].gt.mean()  # darkened
    again = mc.heldout_cases(str(tmp_path), NAMES, ["blur+noise+low_light"], crop_size=32)
    assert (again[-1].lq == triple[0].lq).all()  # seeded by photo and set
    cases = cases[:2]
    assert [(c.set, c.parts, c.omega) for c in cases] == [
        ("rain", ("rain",), {"rain": 1.0}), ("rain_noise", ("rain", "noise"), {"rain": 0.5, "noise": 0.5})]
    # the photo set's form: {name: [{type, synthesizer, params}, ...]}
    assert mc._val_sets({"low_light+noise": [{"type": "low_light", "synthesizer": "low_light_photo"},
                                             {"type": "noise", "synthesizer": "noise_photo"}]}) == [
        ("low_light+noise", {"parts": ("low_light", "noise")})]
    assert cases[0].lq.shape == (32, 32, 3) and (cases[0].gt == mc.crop(gt, 32)).all()
    assert [p.name for p in mc.load_photos(str(tmp_path), 32)] == ["a.png"]
    train = tmp_path / "train"
    train.mkdir()
    write_manifest(str(train), {"photos": [{"file": f"{i}.png", "package": p, "licence": lic} for i, (p, lic) in
                                           enumerate([("mate", "CC0-1.0"), ("lomiri", "CC-BY-SA-4.0"),
                                                      ("lomiri", "CC-BY-4.0"), ("lomiri", "CC-BY-4.0")])]})
    data = mc.data_summary(str(train), str(tmp_path))
    assert data["weights_licence"] == "CC-BY-SA-4.0"
    assert {(r["split"], r["package"], r["licence"], r["photos"]) for r in data["rows"]} == {
        ("train", "mate", "CC0-1.0", 1), ("train", "lomiri", "CC-BY-SA-4.0", 1), ("train", "lomiri", "CC-BY-4.0", 2),
        ("heldout", "lomiri-wallpapers", "CC-BY-4.0", 1)}
    assert mc.weights_licence(["CC0-1.0", "CC-BY-4.0"]) == "CC-BY-4.0"
    assert mc.weights_licence(["CC0-1.0", "public domain"]) == "CC0-1.0"
    assert mc.weights_licence(["GPL-2+", "CC-BY-SA-4.0", "CC0-1.0"]) == "GPL-3.0-or-later"
    assert mc.weights_licence(["LicenseRef-unknown", "CC0-1.0"]) is None
    assert mc.data_summary(None, str(tmp_path / "val")) is None  # no manifest there
    text = mc.report({"data": {"rows": [], "weights_licence": None, "train_licences": ["LicenseRef-unknown"]}})
    assert "undecided" in text["data"] and "LicenseRef-unknown" in text["data"]
    with pytest.raises(FileNotFoundError, match="held-out folder not found"):
        mc.load_photos(str(tmp_path / "missing"), 32)
    with pytest.raises(SystemExit, match="--report-only needs the results"):
        mc.main(["--report-only", "--json", str(tmp_path / "none.json"), "--no-doc"])
