"""The photo set (catalogue, split, manifest, missing packages), composite tasks with multi-hot ω, the
``synthesizers``/``cache_images`` dataset options, and the zoo option file's train dataset."""
import hashlib
import json
import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pip_adapter.bsr import pipeline
from pip_adapter.data import MixedDegradationDataset, degradation_mix
from pip_adapter.data import photos
from pip_adapter.image_io import read_image_file, write_image_file
from pip_adapter.omega import DEFAULT_DEGRADATIONS, to_omega
from tests.helpers_train import REPO_ROOT

ALLOWED = {"CC0-1.0", "CC-BY-4.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "public-domain", "GPL-2+"}
assert set(photos.LICENCES) == ALLOWED
ZOO = os.path.join(REPO_ROOT, "basicsr_options", "zoo", "pip_nafnet_photo.yml")


def _photos(root, n=3, h=40, w=52, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        write_image_file(os.path.join(root, f"p{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return str(root)


# ------------------------------------------------------------------ catalogue
def test_catalogue_split_and_licences():
    names = [p.name for p in photos.PHOTOS]
    assert len(set(names)) == len(names)
    assert set(photos.HELDOUT) <= set(names) and len(photos.HELDOUT) >= 12
    assert len(names) - len(photos.HELDOUT) >= 40
    assert {p.licence for p in photos.PHOTOS} <= ALLOWED
    assert all(p.content for p in photos.PHOTOS)
    # never a standard test set or OpenCV's samples
    assert not any(s in p.path.lower() for p in photos.PHOTOS for s in ("kodak", "mcmaster", "cbsd", "set12",
                                                                         "urban100", "opencv"))


def test_missing_package_names_the_apt_get_line():
    fake = [photos.Photo("x_a", "fake-wallpapers", "/nonexistent/a.jpg", "CC0-1.0", "a"),
            photos.Photo("x_b", "other-backgrounds", "/nonexistent/b.jpg", "CC0-1.0", "b"),
            photos.Photo("skimage_chelsea", "scikit-image", "chelsea.png", "CC0-1.0", "cat")]
    assert sorted(photos.missing_packages(fake)) == ["fake-wallpapers", "other-backgrounds"]
    with pytest.raises(FileNotFoundError, match=r"apt-get install fake-wallpapers other-backgrounds`"):
        photos.check_installed(fake)


def test_prepare_photos_writes_split_manifest_and_fixed_val_sets(tmp_path, monkeypatch):
    sk = [p for p in photos.PHOTOS if p.package == "scikit-image"][:4]
    monkeypatch.setattr(photos, "PHOTOS", tuple(sk))
    monkeypatch.setattr(photos, "HELDOUT", (sk[0].name,))
    out = photos.prepare_photos(str(tmp_path / "ph"), short_side=96, val_short_side=64,
                                val_sets=["noise_s25", "blur+noise"], progress=False)
    man = json.load(open(os.path.join(out, "manifest.json")))
    assert man["kind"] == "photos" and man["complete"]
    assert [f["split"] for f in man["files"]].count("heldout") == 1
    for f in man["files"]:
        data = open(os.path.join(out, f["file"]), "rb").read()
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
        img = read_image_file(os.path.join(out, f["file"]))
        assert min(img.shape[:2]) == 96 and f["licence"] in ALLOWED and os.path.isfile(f["source"])
    gt = read_image_file(os.path.join(out, "val", "gt", sk[0].name + ".png"))
    lq = read_image_file(os.path.join(out, "val", "blur+noise", sk[0].name + ".png"))
    assert min(gt.shape[:2]) == 64 and lq.shape == gt.shape and not np.array_equal(lq, gt)
    assert np.array_equal(lq, photos.degrade_val(gt, "blur+noise", sk[0].name, 0))
    assert sorted(os.listdir(os.path.join(out, "val"))) == ["blur+noise", "gt", "noise_s25"]
    sets = {v["name"]: v for v in man["val_sets"]}
    assert sets["blur+noise"]["degradation"] == ["blur", "noise"] and sets["noise_s25"]["degradation"] == "noise"
    assert sets["blur+noise"]["omega"] == {"blur": 0.5, "noise": 0.5} and sets["noise_s25"]["lq_dir"] == "val/noise_s25"
    assert "scikit-image" in open(os.path.join(out, "README.md")).read()
    # same settings: kept; other settings without overwrite: refused
    assert photos.prepare_photos(out, short_side=96, val_short_side=64, val_sets=["noise_s25", "blur+noise"],
                                 progress=False) == out
    with pytest.raises(FileExistsError):
        photos.prepare_photos(out, short_side=80, val_short_side=64, progress=False)


def test_prepare_photos_keeps_only_the_licences_asked_for(tmp_path, monkeypatch):
    sk = [p for p in photos.PHOTOS if p.package == "scikit-image"]
    cc0 = [p for p in sk if p.licence == "CC0-1.0"][:2]
    pd_ = [p for p in sk if p.licence == "public-domain"][:2]
    monkeypatch.setattr(photos, "PHOTOS", tuple(cc0 + pd_))
    monkeypatch.setattr(photos, "HELDOUT", (cc0[0].name, pd_[0].name))
    out = photos.prepare_photos(str(tmp_path / "cc0"), short_side=64, val_short_side=64, val_sets=["blur"],
                                licences=["CC0-1.0"], progress=False)
    man = json.load(open(os.path.join(out, "manifest.json")))
    assert {f["licence"] for f in man["files"]} == {"CC0-1.0"} and len(man["files"]) == 2
    assert man["licences"] == ["CC0-1.0"] and os.listdir(os.path.join(out, "val", "blur")) == [cc0[0].name + ".png"]
    with pytest.raises(ValueError, match="unknown licence"):
        photos.prepare_photos(str(tmp_path / "x"), licences=["CC-BY-NC-4.0"], progress=False)
    monkeypatch.setattr(photos, "HELDOUT", (pd_[0].name,))
    with pytest.raises(ValueError, match="no heldout photo"):
        photos.prepare_photos(str(tmp_path / "y"), licences=["CC0-1.0"], progress=False)
    assert not os.path.exists(tmp_path / "x") and not os.path.exists(tmp_path / "y")


def test_cli_photos_names_the_apt_get_line(tmp_path, monkeypatch, capsys):
    from pip_adapter.cli import main

    monkeypatch.setattr(photos, "PHOTOS", (photos.Photo("x_a", "fake-wallpapers", "/nonexistent/a.jpg", "CC0-1.0",
                                                        "a"),) + tuple(photos.PHOTOS))
    rc = main(["prepare-data", "--photos", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc != 0 and "apt-get install fake-wallpapers" in err and not os.path.exists(tmp_path / "out")


# ------------------------------------------------------------------ composites in the dataset
def _ds(root, tasks, **kw):
    opt = dict(name="t", phase="train", gt_size=16, degradations=list(DEFAULT_DEGRADATIONS), tasks=tasks, seed=1)
    opt.update(kw)
    return MixedDegradationDataset(opt)


def test_composite_task_gives_a_normalised_multi_hot_omega(tmp_path):
    root = _photos(tmp_path / "clean")
    ds = _ds(root, [{"degradation": "noise", "dataroot_gt": root, "synth_params": {"sigma": [5, 55]}},
                    {"degradation": ["noise", "low-light"], "dataroot_gt": root,
                     "synth_params": {"noise": {"sigma": [5, 30]}}},
                    {"degradation": ["haze", "rain", "noise"], "dataroot_gt": root}],
             synthesizers="photo")
    assert [t.name for t in ds.tasks] == ["noise", "noise+low_light", "haze+rain+noise"]
    assert [s for _, s, _ in [(None, st[1].name, None) for st in ds.tasks[1].steps]] == \
        ["low_light_photo", "noise_photo"]  # physical order, whatever order the option lists
    assert ds.tasks[0].synth.name == "noise_photo"
    items = [ds[i] for i in range(len(ds))]
    omegas = {it["task"]: it["omega"] for it in items}
    assert torch.equal(omegas["noise"], torch.tensor([1.0, 0, 0, 0, 0]))
    assert torch.allclose(omegas["noise+low_light"], torch.tensor([0.5, 0, 0, 0, 0.5]))
    assert torch.allclose(omegas["haze+rain+noise"], torch.tensor([1 / 3, 1 / 3, 1 / 3, 0, 0]))
    assert all(it["omega"].sum().item() == pytest.approx(1.0) for it in items)
    batch = next(iter(DataLoader(ds, batch_size=len(ds))))
    w = to_omega(batch["omega"], list(DEFAULT_DEGRADATIONS), len(ds))
    _, _, mixed = degradation_mix(batch["lq"], batch["gt"], w, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(mixed.sum(1), torch.ones(len(ds)))


def test_no_composite_means_no_omega_key(tmp_path):
    root = _photos(tmp_path / "clean")
    item = _ds(root, [{"degradation": "blur", "dataroot_gt": root}])[0]
    assert "omega" not in item and item["label"] == 3


def test_composite_validation_is_fixed_and_training_draws_afresh(tmp_path):
    root = _photos(tmp_path / "clean", n=1, h=32, w=32)
    task = [{"degradation": ["blur", "noise"], "dataroot_gt": root}]
    val = _ds(root, task, phase="val", synthesizers="photo")
    assert torch.equal(val[0]["lq"], _ds(root, task, phase="val", synthesizers="photo")[0]["lq"])
    train = _ds(root, task, synthesizers="photo", use_hflip=False, use_rot=False, gt_size=32)
    a, b = train[0], train[0]
    assert torch.equal(a["gt"], b["gt"]) and not torch.equal(a["lq"], b["lq"])


def test_paired_composite_val_set(tmp_path):
    gt = _photos(tmp_path / "gt", n=2, h=32, w=32)
    lq = _photos(tmp_path / "lq", n=2, h=32, w=32, seed=5)
    ds = _ds(gt, [{"degradation": ["haze", "noise"], "dataroot_lq": lq, "dataroot_gt": gt}], phase="val")
    it = ds[0]
    assert torch.allclose(it["omega"], torch.tensor([0.5, 0, 0.5, 0, 0])) and it["lq_path"].startswith(lq)


@pytest.mark.parametrize("task,match", [
    ({"degradation": ["noise"]}, "two or more"),
    ({"degradation": ["noise", "noise"]}, "two or more"),
    ({"degradation": ["noise", "snowfall"]}, "unknown degradation"),
    ({"degradation": ["noise", "blur"], "sigmas": [15]}, "synth_params"),
    ({"degradation": ["noise", "blur"], "synth_params": {"rain": {}}}, "rain"),
    ({"degradation": ["noise", "blur"], "synthesizer": {"blur": "no_such_synth"}}, "no_such_synth"),
    ({"degradation": ["noise", "blur"], "source": "lmdb"}, "composite"),
])
def test_bad_composite_tasks_are_named(tmp_path, task, match):
    root = _photos(tmp_path / "clean", n=1)
    with pytest.raises(ValueError, match=match):
        _ds(root, [dict(task, dataroot_gt=root)])


def test_synthesizers_option_is_checked(tmp_path):
    root = _photos(tmp_path / "clean", n=1)
    with pytest.raises(ValueError, match="synthesizers"):
        _ds(root, [{"degradation": "noise", "dataroot_gt": root}], synthesizers="realistic")
    with pytest.raises(ValueError, match="nope"):
        _ds(root, [{"degradation": "noise", "dataroot_gt": root}], synthesizers={"noise": "nope"})
    ds = _ds(root, [{"degradation": "noise", "dataroot_gt": root}], synthesizers={"noise": "camera_noise"})
    assert ds.tasks[0].synth.name == "camera_noise"


def test_cache_images_reads_each_photo_once(tmp_path, monkeypatch):
    root = _photos(tmp_path / "clean", n=2)
    from pip_adapter.data import tasks as tasks_mod

    calls = []
    real = tasks_mod.read_image_file
    monkeypatch.setattr(tasks_mod, "read_image_file", lambda p: calls.append(p) or real(p))
    ds = _ds(root, [{"degradation": "noise", "dataroot_gt": root, "repeat": 3},
                    {"degradation": ["blur", "noise"], "dataroot_gt": root, "repeat": 2}], cache_images=True)
    for i in range(len(ds)):
        item = ds[i]
        item["lq"].add_(0)  # items are writable copies, never views of the cache
    assert sorted(calls) == sorted(os.path.join(root, f"p{i}.png") for i in range(2))


# ------------------------------------------------------------------ the zoo option file
def test_zoo_option_file_is_consistent_and_its_train_dataset_draws_items(tmp_path):
    opt = pipeline.read_option_file(ZOO)
    net = opt["network_g"]
    assert net["type"] == "PIPNet" and net["degradations"] == list(DEFAULT_DEGRADATIONS)
    assert net["backbone"] == {"type": "NAFNet", "img_channel": 3, "width": 24, "middle_blk_num": 1,
                               "enc_blk_nums": [1, 1, 2], "dec_blk_nums": [1, 1, 1]}
    tr = opt["train"]
    assert tr["total_iter"] == tr["scheduler"]["total_iter"] == 6000 and "ema_decay" in tr
    assert opt["logger"]["save_checkpoint_freq"] == 500 and opt["val"]["val_freq"] > tr["total_iter"]
    train = dict(opt["datasets"]["train"])
    assert train["num_worker_per_gpu"] == 0 and train["batch_size_per_gpu"] == 8 and train["gt_size"] == 64
    kinds = [t["degradation"] for t in train["tasks"]]
    assert set(k for k in kinds if isinstance(k, str)) == set(DEFAULT_DEGRADATIONS)
    assert sum(isinstance(k, list) and len(k) == 2 for k in kinds) >= 3
    assert sum(isinstance(k, list) and len(k) == 3 for k in kinds) >= 1
    repeats = {k: t["repeat"] for k, t in zip(map(str, kinds), train["tasks"])}
    assert repeats["blur"] == max(repeats.values())  # small residuals: blur is not drowned
    noise = next(t for t in train["tasks"] if t["degradation"] == "noise")
    assert noise["synth_params"]["sigma"] == [5, 55]
    vals = [v for k, v in opt["datasets"].items() if k.startswith("val")]
    assert {v["name"] for v in vals} >= {"noise_s25", "rain", "haze", "blur", "low_light", "low_light+noise"}
    # the train dataset, pointed at a few small photos, yields items of every task with their ω
    root = _photos(tmp_path / "train", n=2, h=72, w=80)
    for t in train["tasks"]:
        t["dataroot_gt"] = root
    ds = MixedDegradationDataset(dict(train, dataset_enlarge_ratio=1))
    seen = {}
    for t, start in zip(ds.tasks, ds._offsets):
        item = ds[start]
        assert item["lq"].shape == (3, 64, 64) and item["gt"].shape == (3, 64, 64)
        seen[item["task"]] = item["omega"]
    assert len(seen) == len(train["tasks"])
    assert torch.allclose(seen["blur+noise"], torch.tensor([0.5, 0, 0, 0.5, 0]))
    for v in vals:  # every val set is a single task whose folders are under datasets/photos
        assert v["dataroot_gt"] == "datasets/photos/val/gt" and v["dataroot_lq"].startswith("datasets/photos/val/")
