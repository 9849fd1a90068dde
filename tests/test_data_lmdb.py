"""LMDB read/write in BasicSR's format, checked against BasicSR's own readers."""
import os

import numpy as np
import pytest

from pip_adapter.data.lmdb_io import LmdbReader, LmdbWriter, lmdb_key, read_meta_info


def _imgs(n, seed=0):
    rng = np.random.default_rng(seed)
    return {f"img_{i:02d}": rng.integers(0, 256, (10 + i, 12, 3), dtype=np.uint8) for i in range(n)}


def test_roundtrip_meta_info_and_map_growth(tmp_path):
    imgs = _imgs(12)
    path = str(tmp_path / "x.lmdb")
    with LmdbWriter(path, map_size=1 << 14, batch=5) as wr:  # tiny map: must grow on demand
        for k, v in imgs.items():
            wr.put(k, v)
    lines = open(os.path.join(path, "meta_info.txt")).read().splitlines()
    assert lines[0] == "img_00.png (10,12,3) 1" and len(lines) == 12
    assert read_meta_info(path)[3] == ("img_03", (13, 12, 3))
    r = LmdbReader(path)
    assert r.keys == list(imgs) and r.missing_keys() == []
    for k, v in imgs.items():
        assert np.array_equal(r.read(k), v)
    with pytest.raises(KeyError, match="not found in LMDB"):
        r.read("nope")


def test_keys_are_basicsr_safe(tmp_path):
    assert lmdb_key("synthetic/part1/0001_0.8_0.2.jpg") == "synthetic__part1__0001_0_8_0_2"
    with LmdbWriter(str(tmp_path / "k.lmdb")) as wr:
        with pytest.raises(ValueError, match="without dots"):
            wr.put("a.b", np.zeros((2, 2, 3), np.uint8))
        wr.put("a", np.zeros((2, 2, 3), np.uint8))
        with pytest.raises(ValueError, match="duplicate"):
            wr.put("a", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(FileExistsError):
        LmdbWriter(str(tmp_path / "k.lmdb"))
    with pytest.raises(ValueError, match=r"end with '\.lmdb'"):
        LmdbWriter(str(tmp_path / "k_folder"))


def test_basicsr_reads_our_lmdb(tmp_path):
    from pip_adapter._compat import ensure_torchvision_functional_tensor

    ensure_torchvision_functional_tensor()
    from basicsr.data.data_util import paired_paths_from_lmdb
    from basicsr.utils import FileClient, imfrombytes

    imgs = _imgs(3, seed=1)
    for name in ("lq", "gt"):
        with LmdbWriter(str(tmp_path / f"{name}.lmdb")) as wr:
            for k, v in imgs.items():
                wr.put(k, v if name == "gt" else 255 - v)
    paths = paired_paths_from_lmdb([str(tmp_path / "lq.lmdb"), str(tmp_path / "gt.lmdb")], ["lq", "gt"])
    assert [p["gt_path"] for p in paths] == sorted(imgs)
    client = FileClient("lmdb", db_paths=[str(tmp_path / "lq.lmdb"), str(tmp_path / "gt.lmdb")],
                        client_keys=["lq", "gt"])
    bgr = imfrombytes(client.get("img_01", "gt"), float32=False)
    assert np.array_equal(bgr[..., ::-1], imgs["img_01"])  # BasicSR reads BGR; same colours
