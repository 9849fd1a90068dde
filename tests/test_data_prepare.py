"""Built-in data preparation, ensure_builtin, overwrite safety, the CLI and standard-layout conversion."""
import collections
import json
import logging
import os

import numpy as np
import pytest
import torch

from pip_adapter.data import (MixedDegradationDataset, builtin_dataset_options, convert_standard, ensure_builtin,
                              prepare_builtin)
from pip_adapter.data.builtin import BUILTIN_VERSION
from pip_adapter.data.lmdb_io import LmdbReader, read_pairs_file
from pip_adapter.degradations import register_synthesizer, unregister_synthesizer
from pip_adapter.omega import DEFAULT_DEGRADATIONS
from pip_adapter.utils.io import safe_load_yaml
from tests.helpers_data import TINY_BUILTIN


def test_builtin_layout_and_contents(builtin_data_dir):
    man = json.load(open(os.path.join(builtin_data_dir, "manifest.json")))
    assert man["complete"] and man["degradations"] == list(DEFAULT_DEGRADATIONS)
    assert man["num_train_crops"] == 4 and man["train_images"] == ["astronaut.png", "coffee.png"]
    clean = LmdbReader(os.path.join(builtin_data_dir, "train", "clean.lmdb"))
    assert len(clean) == 4 and clean.shapes[clean.keys[0]] == (32, 32, 3)
    # noise is online (no LMDB); the others share clean.lmdb's keys (BasicSR's paired-LMDB rule)
    assert not os.path.exists(os.path.join(builtin_data_dir, "train", "noise.lmdb"))
    for n in ("rain", "haze", "blur", "low_light"):
        r = LmdbReader(os.path.join(builtin_data_dir, "train", f"{n}.lmdb"))
        assert r.keys == clean.keys
        diff = np.abs(r.read(r.keys[0]).astype(int) - clean.read(r.keys[0]).astype(int)).mean()
        assert diff > 2, f"{n} barely changed the image"
    vals = sorted(os.listdir(os.path.join(builtin_data_dir, "val")))
    assert vals == ["blur", "gt", "haze", "low_light", "noise_sigma15", "noise_sigma25", "noise_sigma50", "rain"]
    assert "noise" in open(os.path.join(builtin_data_dir, "README.md")).read()
    # datasets.yml is a complete BasicSR datasets section that builds
    opts = safe_load_yaml(os.path.join(builtin_data_dir, "datasets.yml"))
    assert opts == builtin_dataset_options(builtin_data_dir)
    train = MixedDegradationDataset(dict(opts["train"], phase="train"))
    assert collections.Counter(train.labels()) == {0: 12, 1: 4, 2: 4, 3: 4, 4: 4}
    val_labels = []
    for key in sorted(k for k in opts if k.startswith("val_")):
        vds = MixedDegradationDataset(dict(opts[key], phase="val"))
        item = vds[0]
        assert item["gt"].shape[1] % 16 == 0 and item["gt"].shape[2] % 16 == 0
        val_labels.append(item["label"])
    assert val_labels == [0, 0, 0, 1, 2, 3, 4]


def test_prepare_is_reproducible_and_refuses_to_clobber(builtin_data_dir, tmp_path):
    out = str(tmp_path / "again")
    prepare_builtin(out, **TINY_BUILTIN)
    a = LmdbReader(os.path.join(builtin_data_dir, "train", "haze.lmdb"))
    b = LmdbReader(os.path.join(out, "train", "haze.lmdb"))
    assert all(np.array_equal(a.read(k), b.read(k)) for k in a.keys)  # same seed, same data
    mtime = os.path.getmtime(os.path.join(out, "manifest.json"))
    assert prepare_builtin(out, **TINY_BUILTIN) == os.path.abspath(out)  # identical and complete: a no-op
    assert os.path.getmtime(os.path.join(out, "manifest.json")) == mtime
    with pytest.raises(FileExistsError, match=r"other settings \(seed=0\).*--overwrite"):
        prepare_builtin(out, **dict(TINY_BUILTIN, seed=1))
    assert ensure_builtin(out, **TINY_BUILTIN) == os.path.abspath(out)  # reused, not rebuilt
    assert os.path.getmtime(os.path.join(out, "manifest.json")) == mtime
    prepare_builtin(out, overwrite=True, **dict(TINY_BUILTIN, seed=1))
    c = LmdbReader(os.path.join(out, "train", "haze.lmdb"))
    assert not all(np.array_equal(a.read(k), c.read(k)) for k in a.keys)
    # a foreign folder is never deleted, even with overwrite
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing to delete"):
        prepare_builtin(str(foreign), overwrite=True, **TINY_BUILTIN)
    with pytest.raises(FileExistsError, match="not complete built-in data"):
        ensure_builtin(str(foreign))
    assert (foreign / "precious.txt").read_text() == "keep me"
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p or ".old-" in p]
    # a fresh folder is built by ensure_builtin
    assert os.path.isfile(os.path.join(ensure_builtin(str(tmp_path / "fresh"), **TINY_BUILTIN), "manifest.json"))


def test_ensure_builtin_rebuilds_data_of_an_older_version(tmp_path, caplog):
    out = str(tmp_path / "old")
    prepare_builtin(out, **TINY_BUILTIN)
    man_path = os.path.join(out, "manifest.json")
    with open(man_path, encoding="utf-8") as fh:
        man = json.load(fh)
    man["version"] = BUILTIN_VERSION - 1
    with open(man_path, "w", encoding="utf-8") as fh:
        json.dump(man, fh)
    open(os.path.join(out, "stale.txt"), "w").close()  # stands for the older synthesisers' files
    with caplog.at_level(logging.WARNING, logger="pip_adapter"):
        assert ensure_builtin(out, **TINY_BUILTIN) == os.path.abspath(out)
    assert "rebuilding" in caplog.text
    with open(man_path, encoding="utf-8") as fh:
        assert json.load(fh)["version"] == BUILTIN_VERSION
    assert not os.path.exists(os.path.join(out, "stale.txt"))
    assert MixedDegradationDataset(dict(builtin_dataset_options(out)["train"], phase="train"))[0]["gt"].ndim == 3
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p or ".old-" in p]


def test_plugin_degradation_goes_through_the_registry(tmp_path):
    @register_synthesizer("test_fog_plugin", variants=[{"level": 40}])
    def fog(img, rng, level=10):
        return np.clip(img.astype(int) + level, 0, 255).astype(np.uint8)

    try:
        out = prepare_builtin(str(tmp_path / "d"), degradations=["noise", "test_fog_plugin"],
                              **dict(TINY_BUILTIN, max_train_images=1, crops_per_image=1))
        r = LmdbReader(os.path.join(out, "train", "test_fog_plugin.lmdb"))
        c = LmdbReader(os.path.join(out, "train", "clean.lmdb"))
        k = c.keys[0]
        assert np.array_equal(r.read(k), np.clip(c.read(k).astype(int) + 40, 0, 255).astype(np.uint8))
        opts = builtin_dataset_options(out)
        ds = MixedDegradationDataset(dict(opts["train"], phase="train"))
        assert ds.degradations == ["noise", "test_fog_plugin"] and ds.tasks[1].label == 1
    finally:
        unregister_synthesizer("test_fog_plugin")
    with pytest.raises(ValueError, match="no synthesiser registered"):
        prepare_builtin(str(tmp_path / "e"), degradations=["noise", "not_registered_xyz"], **TINY_BUILTIN)
    assert not os.path.exists(tmp_path / "e")


def test_cli_prepare_data(tmp_path, capsys):
    from pip_adapter.cli import main

    out = str(tmp_path / "cli")
    args = ["prepare-data", "--builtin", out, "--image-size", "48", "--crop-size", "32", "--crops-per-image", "1",
            "--val-size", "32", "--max-train-images", "1", "--max-val-images", "1", "--no-progress"]
    assert main(args) == 0
    assert "data ready" in capsys.readouterr().out
    assert main(args) == 0  # the same data again: a no-op (docs/DATA.md's quick start after the quickstart)
    capsys.readouterr()
    assert main(args + ["--seed", "3"]) == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert main(["prepare-data", "--from-standard", str(tmp_path / "missing"), str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    # a plugin named on the command line registers its synthesiser before the data is made
    plugin = tmp_path / "cli_plugin_dots.py"
    plugin.write_text("import numpy as np\n"
                      "from pip_adapter.degradations import register_synthesizer\n"
                      "@register_synthesizer('test_cli_dots')\n"
                      "def dots(img, rng):\n"
                      "    out = img.copy(); out[::4, ::4] = 255\n"
                      "    return out\n")
    try:
        assert main(args[:2] + [str(tmp_path / "cli2")] + args[3:] +
                    ["--plugin", str(plugin), "--degradations", "rain", "test_cli_dots"]) == 0
        assert sorted(os.listdir(tmp_path / "cli2" / "val")) == ["gt", "rain", "test_cli_dots"]
    finally:
        unregister_synthesizer("test_cli_dots")


def test_standard_layout_read_in_place(standard_layout_dir):
    for deg, n in (("rain", 2), ("haze", 4), ("blur", 2), ("low_light", 1)):
        ds = MixedDegradationDataset(dict(phase="train", gt_size=16, tasks=[
            {"degradation": deg, "source": "standard", "dataroot": standard_layout_dir}]))
        assert len(ds) == n, deg
        for i in range(n):
            item = ds[i]
            assert torch.allclose(item["lq"] + item["gt"], torch.ones_like(item["gt"]), atol=1e-6), deg
    noise = MixedDegradationDataset(dict(phase="train", gt_size=16, tasks=[
        {"degradation": "noise", "source": "standard", "dataroot": standard_layout_dir, "sigmas": [15, 25]}]))
    assert len(noise) == 3 * 2  # list file keeps 3 of 4 images
    haze_test = MixedDegradationDataset(dict(phase="val", degradation="haze", source="standard",
                                             dataroot=standard_layout_dir))
    item = haze_test[0]
    assert item["gt"].shape == (3, 32, 32) and item["gt_path"].endswith("0005.png")
    assert torch.allclose(item["lq"] + item["gt"], torch.ones_like(item["gt"]), atol=1e-6)


def test_convert_standard(standard_layout_dir, tmp_path):
    out = convert_standard(standard_layout_dir, str(tmp_path / "lmdb"), progress=False)
    t = os.path.join(out, "train")
    assert sorted(os.listdir(t)) == ["blur_gt.lmdb", "blur_lq.lmdb", "haze_gt.lmdb", "haze_lq.lmdb",
                                     "low_light_gt.lmdb", "low_light_lq.lmdb", "noise_gt.lmdb", "rain_gt.lmdb",
                                     "rain_lq.lmdb"]
    assert len(LmdbReader(os.path.join(t, "noise_gt.lmdb"))) == 3
    # haze: 4 hazy images, 2 clean images stored once, pairs.txt maps them
    assert len(LmdbReader(os.path.join(t, "haze_lq.lmdb"))) == 4
    assert len(LmdbReader(os.path.join(t, "haze_gt.lmdb"))) == 2
    pairs = read_pairs_file(os.path.join(t, "haze_lq.lmdb", "pairs.txt"))
    assert collections.Counter(g for _, g in pairs) == {"original__0001": 3, "original__0002": 1}
    # one-to-one data follows BasicSR's equal-key rule (no pairs file)
    assert LmdbReader(os.path.join(t, "rain_lq.lmdb")).keys == LmdbReader(os.path.join(t, "rain_gt.lmdb")).keys
    assert not os.path.exists(os.path.join(t, "rain_lq.lmdb", "pairs.txt"))
    opts = safe_load_yaml(os.path.join(out, "datasets.yml"))
    assert [x["repeat"] for x in opts["train"]["tasks"]] == [3, 120, 1, 5, 20]
    ds = MixedDegradationDataset(dict(opts["train"], phase="train", gt_size=16))
    assert collections.Counter(ds.labels()) == {0: 3 * 3 * 3, 1: 2 * 120, 2: 4, 3: 2 * 5, 4: 20}
    for i in range(27, len(ds), 7):  # paired tasks: inverse images after conversion too
        item = ds[i]
        assert torch.allclose(item["lq"] + item["gt"], torch.ones_like(item["gt"]), atol=1e-6)
    vals = {opts[k]["name"]: opts[k] for k in opts if k.startswith("val_")}
    assert set(vals) == {"test_noise_sigma15", "test_noise_sigma25", "test_noise_sigma50", "test_rain", "test_haze"}
    v = MixedDegradationDataset(dict(vals["test_rain"], phase="val"))
    assert v[0]["label"] == 1 and v[0]["gt"].shape == (3, 32, 32)
    with pytest.raises(FileExistsError):
        convert_standard(standard_layout_dir, out, progress=False)
