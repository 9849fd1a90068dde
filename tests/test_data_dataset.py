"""MixedDegradationDataset: every source kind, ratios, validation mode, clear errors, DataLoaders."""
import collections
import os
import random

import numpy as np
import pytest
import torch

from pip_adapter.data import MixedDegradationDataset
from pip_adapter.data.lmdb_io import LmdbWriter
from pip_adapter.image_io import write_image_file


def _write_pairs(root, n=3, h=30, w=26, seed=0, lq_suffix=""):
    """Folder pairs whose lq is the exact inverse of gt (alignment is checkable pixel by pixel)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        g = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        write_image_file(os.path.join(root, "gt", f"{i:03d}.png"), g)
        write_image_file(os.path.join(root, "lq", f"{i:03d}{lq_suffix}.png"), 255 - g)
    return os.path.join(root, "lq"), os.path.join(root, "gt")


def _write_lmdbs(root, n=3, h=30, w=26, seed=0):
    rng = np.random.default_rng(seed)
    imgs = {f"k{i}": rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for i in range(n)}
    for name in ("lq", "gt"):
        with LmdbWriter(os.path.join(root, f"{name}.lmdb")) as wr:
            for k, v in imgs.items():
                wr.put(k, v if name == "gt" else 255 - v)
    return os.path.join(root, "lq.lmdb"), os.path.join(root, "gt.lmdb")


def _assert_inverse(item):
    assert item["lq"].dtype == torch.float32 and item["lq"].shape == item["gt"].shape
    assert torch.allclose(item["lq"] + item["gt"], torch.ones_like(item["gt"]), atol=1e-6)


def _opt(tasks, **kw):
    opt = dict(name="t", phase="train", gt_size=16, use_hflip=True, use_rot=True, tasks=tasks)
    opt.update(kw)
    return opt


def test_each_source_kind_gives_aligned_labelled_pairs(tmp_path, standard_layout_dir):
    random.seed(0)
    lq_dir, gt_dir = _write_pairs(str(tmp_path / "folders"))
    lq_db, gt_db = _write_lmdbs(str(tmp_path / "dbs"))
    ds = MixedDegradationDataset(_opt([
        {"degradation": "rain", "source": "paired", "dataroot_lq": lq_dir, "dataroot_gt": gt_dir},
        {"degradation": "haze", "source": "lmdb", "dataroot_lq": lq_db, "dataroot_gt": gt_db},
        {"degradation": "blur", "source": "standard", "dataroot": standard_layout_dir},
        {"degradation": "noise", "dataroot_gt": gt_dir, "sigmas": [25]},  # source inferred: synthetic
    ]))
    assert [t.label for t in ds.tasks] == [1, 2, 3, 0]
    seen = collections.Counter()
    for i in range(len(ds)):
        item = ds[i]
        seen[item["label"]] += 1
        assert item["lq"].shape == (3, 16, 16)
        if item["label"] == 0:
            diff = (item["lq"] - item["gt"]) * 255
            assert 10 < diff.std() < 40  # σ = 25 minus clipping
            assert item["lq_path"].endswith("_sigma25.png") and item["gt_path"].startswith(gt_dir)
        else:
            _assert_inverse(item)
            assert os.path.basename(item["lq_path"]).split(".")[0] == os.path.basename(item["gt_path"]).split(".")[0]
    assert seen == {1: 3, 2: 3, 3: 2, 0: 3}


def test_augmentation_keeps_pairs_aligned_and_varies(tmp_path):
    lq_dir, gt_dir = _write_pairs(str(tmp_path), n=1, h=20, w=20)
    ds = MixedDegradationDataset(_opt([{"degradation": "rain", "dataroot_lq": lq_dir, "dataroot_gt": gt_dir}],
                                      gt_size=20))
    random.seed(1)
    outs = [ds[0] for _ in range(24)]
    for o in outs:
        _assert_inverse(o)
    distinct = {o["gt"].numpy().tobytes() for o in outs}
    assert len(distinct) > 4  # flips and rotations happen


def test_ratios_give_the_expected_mix_over_an_epoch(tmp_path):
    lq_dir, gt_dir = _write_pairs(str(tmp_path / "a"), n=2)
    clean = _write_pairs(str(tmp_path / "b"), n=3)[1]
    ds = MixedDegradationDataset(_opt([
        {"degradation": "noise", "dataroot_gt": clean, "sigmas": [15, 25, 50], "repeat": 3},
        {"degradation": "rain", "dataroot_lq": lq_dir, "dataroot_gt": gt_dir, "repeat": 120},
        {"degradation": "low_light", "dataroot_lq": lq_dir, "dataroot_gt": gt_dir, "repeat": 20},
    ]))
    expected = {0: 3 * 3 * 3, 1: 2 * 120, 4: 2 * 20}
    assert len(ds) == sum(expected.values())
    assert collections.Counter(ds.labels()) == expected
    # one shuffled epoch through a DataLoader sees exactly that mix, and every σ equally often
    loader = torch.utils.data.DataLoader(ds, batch_size=32, shuffle=True, num_workers=0)
    labels, sigmas = collections.Counter(), collections.Counter()
    for batch in loader:
        labels.update(batch["label"].tolist())
        sigmas.update(p.rsplit("_", 1)[-1] for p, lab in zip(batch["lq_path"], batch["label"]) if lab == 0)
    assert labels == expected
    assert sigmas == {"sigma15.png": 9, "sigma25.png": 9, "sigma50.png": 9}


def test_validation_mode_whole_images_and_fixed_noise(tmp_path):
    gt_dir = _write_pairs(str(tmp_path), n=2, h=37, w=50)[1]
    opt = dict(name="v", phase="val", degradation="noise", dataroot_gt=gt_dir, sigmas=[50], seed=3)
    a, b = MixedDegradationDataset(opt), MixedDegradationDataset(opt)
    assert len(a) == 2
    x, y = a[1], b[1]
    assert x["gt"].shape == (3, 32, 48)  # centre crop to multiples of 16
    assert torch.equal(x["lq"], y["lq"])  # reproducible val noise
    assert not torch.equal(x["lq"], a[0]["lq"][:, :32, :48]) and x["label"] == 0
    c = MixedDegradationDataset(dict(opt, crop_multiple=8))[1]
    assert c["gt"].shape == (3, 32, 48)  # 37 -> 32, 50 -> 48 both multiples of 8 too
    with pytest.raises(ValueError, match="one task per val set"):
        MixedDegradationDataset(dict(name="v", phase="val", tasks=[
            {"degradation": "noise", "dataroot_gt": gt_dir}, {"degradation": "noise", "dataroot_gt": gt_dir}]))


def test_many_to_one_pairs_file_and_filename_tmpl(tmp_path):
    lq_dir, gt_dir = _write_pairs(str(tmp_path / "t"), n=2, lq_suffix="_x4")
    ds = MixedDegradationDataset(_opt([{"degradation": "blur", "dataroot_lq": lq_dir, "dataroot_gt": gt_dir,
                                        "filename_tmpl": "{}_x4"}]))
    for i in range(len(ds)):
        _assert_inverse(ds[i])
    # pairs file: two lq keys map to one gt key
    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    with LmdbWriter(str(tmp_path / "gt.lmdb")) as wr:
        wr.put("clean", g)
    with LmdbWriter(str(tmp_path / "lq.lmdb")) as wr:
        wr.put("h1", 255 - g)
        wr.put("h2", 255 - g)
    with open(tmp_path / "lq.lmdb" / "pairs.txt", "w") as fh:
        fh.write("h1 clean\nh2 clean\n")
    ds = MixedDegradationDataset(_opt([{"degradation": "haze", "dataroot_lq": str(tmp_path / "lq.lmdb"),
                                        "dataroot_gt": str(tmp_path / "gt.lmdb")}]))
    assert len(ds) == 2 and all(ds[i]["gt_path"].endswith("clean.png") for i in range(2))
    _assert_inverse(ds[1])


def test_clear_errors_name_the_task_and_path(tmp_path):
    lq_dir, gt_dir = _write_pairs(str(tmp_path / "p"), n=2)
    missing = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"task 'rain'.*nowhere"):
        MixedDegradationDataset(_opt([{"degradation": "rain", "dataroot_lq": missing, "dataroot_gt": gt_dir}]))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"task 'noise'.*no images.*empty"):
        MixedDegradationDataset(_opt([{"degradation": "noise", "dataroot_gt": str(tmp_path / "empty")}]))
    with pytest.raises(ValueError, match=r"task 'noise'.*'sigmas' is empty"):
        MixedDegradationDataset(_opt([{"degradation": "noise", "dataroot_gt": gt_dir, "sigmas": []}]))
    os.remove(os.path.join(lq_dir, "001.png"))
    with pytest.raises(ValueError, match=r"task 'my rain'.*1 clean image.*no degraded image.*001"):
        MixedDegradationDataset(_opt([{"name": "my rain", "degradation": "rain", "dataroot_lq": lq_dir,
                                       "dataroot_gt": gt_dir}]))
    lq_db, gt_db = _write_lmdbs(str(tmp_path / "db"), n=2)
    with open(os.path.join(lq_db, "meta_info.txt"), "a") as fh:
        fh.write("ghost.png (30,26,3) 1\n")
    with open(os.path.join(gt_db, "meta_info.txt"), "a") as fh:
        fh.write("ghost.png (30,26,3) 1\n")
    with pytest.raises(ValueError, match=r"task 'haze'.*LMDB .*lq\.lmdb lacks 1 key.*ghost"):
        MixedDegradationDataset(_opt([{"degradation": "haze", "dataroot_lq": lq_db, "dataroot_gt": gt_db}]))
    with pytest.raises(ValueError, match=r"task 'snowfall'.*unknown degradation 'snowfall'"):
        MixedDegradationDataset(_opt([{"degradation": "snowfall", "dataroot_gt": gt_dir}]))
    with pytest.raises(ValueError, match=r"task 'rain'.*unknown key.*dataroot_lqq"):
        MixedDegradationDataset(_opt([{"degradation": "rain", "dataroot_lqq": lq_dir, "dataroot_gt": gt_dir}]))
    with pytest.raises(ValueError, match=r"task 'rain'.*repeat must be a positive integer"):
        MixedDegradationDataset(_opt([{"degradation": "rain", "dataroot_gt": gt_dir, "repeat": 0}]))
    with pytest.raises(ValueError, match=r"task 'rain'.*sigmas only apply to synthetic"):
        MixedDegradationDataset(_opt([{"degradation": "rain", "dataroot_lq": lq_dir, "dataroot_gt": gt_dir,
                                       "sigmas": [15]}]))
    with pytest.raises(ValueError, match="non-empty list"):
        MixedDegradationDataset(_opt([]))


def test_custom_degradation_list_and_labels(tmp_path):
    gt_dir = _write_pairs(str(tmp_path), n=1)[1]
    ds = MixedDegradationDataset(_opt([{"degradation": "noise", "dataroot_gt": gt_dir, "sigmas": 15}],
                                      degradations=["rain", "noise"]))
    assert ds[0]["label"] == 1


def test_basicsr_dataloader_iterates(builtin_data_dir):
    """BasicSR's build_dataset (registry, via the glue) and build_dataloader (worker seeding, one worker)."""
    import pip_adapter.bsr  # noqa: F401  (registers MixedDegradationDataset in DATASET_REGISTRY)
    from basicsr.data import build_dataloader, build_dataset
    from pip_adapter.data import builtin_dataset_options

    opts = builtin_dataset_options(builtin_data_dir, batch_size=4, num_workers=1)
    train_opt = dict(opts["train"], phase="train", gt_size=16)
    ds = build_dataset(train_opt)
    assert isinstance(ds, MixedDegradationDataset)
    loader = build_dataloader(ds, train_opt, num_gpu=0, dist=False, sampler=None, seed=0)
    n = 0
    for batch in loader:
        assert batch["lq"].shape == (4, 3, 16, 16) and batch["label"].dtype == torch.int64
        assert batch["lq"].min() >= 0 and batch["lq"].max() <= 1
        n += 1
    assert n == len(ds) // 4  # drop_last
    val_opt = dict(opts["val_4"], phase="val", num_worker_per_gpu=0, batch_size_per_gpu=1)
    vds = build_dataset(val_opt)
    batches = list(build_dataloader(vds, val_opt, num_gpu=0, dist=False, sampler=None, seed=0))
    assert len(batches) == len(vds) and batches[0]["label"].item() == 1  # val_4 = rain
