"""The registry of shipped models: listing, default, checksums, size budget, restore/demo without -m,
``Restorer.from_pretrained`` and the maintainers' ``python -m pip_adapter.zoo``.

Most tests register a tiny model of their own in a temporary registry ($PIP_ADAPTER_ZOO);
``test_package_registry_*`` check the registry the wheel ships, and load every model it holds.
"""
import ast
import fnmatch
import json
import os

import numpy as np
import pytest
import torch

from pip_adapter.cli import main
from pip_adapter.restore.checkpoint import make_meta, save_checkpoint
from pip_adapter.restore.classifier import DegradationClassifier
from pip_adapter.image_io import array_to_float, read_image
from pip_adapter.restore.restorer import Restorer
from pip_adapter.wrap.pipnet import PIPNet
from pip_adapter.zoo import (BUDGET_BYTES, ZOO_ENV, ZooError, add_model, check_zoo, default_model, list_models,
                             package_zoo_dir, remove_model, resolve_model)
from pip_adapter.cli.zoo_admin import main as zoo_main
from tests.helpers_restore import rand_image, write_png

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["noise", "rain", "haze", "blur", "low_light"]


def _restorer_file(path, seed=0, classifier=True):
    """A tiny PIP-NAFNet (+ a tiny compact classifier) written as 'pip-adapter export' writes it."""
    torch.manual_seed(seed)
    net = PIPNet({"type": "NAFNet", "img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1],
                  "dec_blk_nums": [1, 1]}, degradations=NAMES, prompt_dims=[8, 8], prompt_sizes=[4, 4]).eval()
    cls = DegradationClassifier("compact", degradations=NAMES, crop_size=16, num_crops=1, widths=[8, 8]).eval()
    save_checkpoint(str(path), net, make_meta(net), classifier=cls if classifier else None)
    return str(path)


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """A registry folder holding one tiny default model 'tiny', selected through $PIP_ADAPTER_ZOO."""
    folder = tmp_path / "zoo"
    add_model(_restorer_file(tmp_path / "tiny.safetensors"), "tiny", "a tiny test model", card="docs/MODELS.md#tiny",
              zoo=str(folder))
    monkeypatch.setenv(ZOO_ENV, str(folder))
    return folder


@pytest.fixture
def photo(tmp_path):
    return write_png(tmp_path / "in" / "photo.png", rand_image(20, 28, seed=3))


def test_add_lists_and_indexes_with_checksums(zoo, tmp_path):
    (entry,) = list_models()
    assert (entry.name, entry.file, entry.default, entry.classifier) == ("tiny", "tiny.safetensors", True, True)
    assert entry.degradations == NAMES and entry.card == "docs/MODELS.md#tiny"
    doc = json.loads((zoo / "index.json").read_text())
    assert doc["format"] == "pip-adapter-zoo" and doc["models"][0]["sha256"] == entry.sha256
    assert entry.bytes == os.path.getsize(zoo / "tiny.safetensors")
    assert check_zoo() == []
    # a second model made default takes the flag; the first keeps its entry
    add_model(_restorer_file(tmp_path / "b.safetensors", seed=1), "other", "another one", default=True)
    assert [(e.name, e.default) for e in list_models()] == [("tiny", False), ("other", True)]
    assert default_model().name == "other"
    remove_model("other")
    assert [(e.name, e.default) for e in list_models()] == [("tiny", True)]
    assert not (zoo / "other.safetensors").exists() and check_zoo() == []


def test_resolve_default_name_path_and_unknown(zoo, tmp_path):
    path, entry = resolve_model(None)
    assert entry.name == "tiny" and path == str(zoo / "tiny.safetensors")
    assert resolve_model("tiny")[0] == path
    other = _restorer_file(tmp_path / "mine.safetensors")
    assert resolve_model(other) == (other, None)  # a file path is used as given
    with pytest.raises(ZooError, match=r"-m tinny: no such file and no shipped model of that name \(did you mean "
                                       r"'tiny'\?\); shipped models: tiny"):
        resolve_model("tinny")


def test_empty_registry_says_what_to_do(tmp_path, monkeypatch, photo, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "index.json").write_text(json.dumps({"format": "pip-adapter-zoo", "format_version": 1, "models": []}))
    monkeypatch.setenv(ZOO_ENV, str(empty))
    with pytest.raises(ZooError, match="holds none yet. Give a model file with -m FILE"):
        Restorer.from_pretrained()
    assert main(["restore", photo, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no shipped model" in err and "-m FILE" in err
    assert main(["models"]) == 0
    assert "no shipped model in this installation" in capsys.readouterr().out
    monkeypatch.setenv(ZOO_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(ZooError, match=f"{ZOO_ENV}=.*nowhere: no index.json there"):
        list_models()


def test_checksum_mismatch_refused_before_loading(zoo, photo, tmp_path, capsys):
    data = bytearray((zoo / "tiny.safetensors").read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor: same size, same header
    (zoo / "tiny.safetensors").write_bytes(bytes(data))
    with pytest.raises(ZooError, match="shipped model 'tiny': checksum mismatch .* reinstall pip-adapter; it was "
                                       "not loaded"):
        Restorer.from_pretrained("tiny")
    out = tmp_path / "out"
    assert main(["restore", photo, "-o", str(out)]) == 2
    assert "checksum mismatch" in capsys.readouterr().err and not out.exists()
    assert any("checksum mismatch" in p for p in check_zoo())
    (zoo / "tiny.safetensors").write_bytes(bytes(data[:-1]))
    with pytest.raises(ZooError, match="has .* bytes, the registry says"):
        resolve_model("tiny")


def test_from_pretrained_matches_the_file_and_bundles_the_classifier(zoo, photo):
    shipped = Restorer.from_pretrained(device="cpu")
    by_name = Restorer.from_pretrained("tiny", device="cpu")
    direct = Restorer.from_checkpoint(str(zoo / "tiny.safetensors"), device="cpu")
    assert shipped.classifier is not None and shipped.degradations == NAMES
    a = shipped(photo, degradation="rain")
    np.testing.assert_array_equal(a, by_name(photo, degradation="rain"))
    np.testing.assert_array_equal(a, direct(photo, degradation="rain"))
    assert not np.array_equal(a, shipped(photo, degradation="noise"))  # ω reaches the network


def test_restore_without_m_uses_the_default_and_auto(zoo, photo, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["restore", photo, "-o", str(out), "--no-progress", "--device", "cpu"]) == 0
    text = capsys.readouterr()
    assert "model: tiny (the default shipped model) — a tiny test model" in text.err and "-d auto" in text.err
    assert "photo.png: auto:" in text.err + text.out and "restored 1 image(s)" in text.out
    restored = read_image(str(out / "photo.png"))[0]
    assert restored.shape == (20, 28, 3)
    # the same as the API with the classifier's choice
    api = Restorer.from_pretrained(device="cpu")(photo, degradation="auto")
    np.testing.assert_array_equal(restored, array_to_float(api)[0])
    # -m NAME picks by name; an unknown name lists the shipped ones
    assert main(["restore", photo, "-m", "tiny", "-o", str(tmp_path / "o2"), "-d", "haze", "--no-progress"]) == 0
    assert main(["restore", photo, "-m", "nope", "-o", str(tmp_path / "o3"), "-d", "haze"]) == 2
    assert "-m nope: no such file and no shipped model of that name; shipped models: tiny" in capsys.readouterr().err


def test_restore_without_m_or_d_needs_a_classifier(tmp_path, monkeypatch, photo, capsys):
    folder = tmp_path / "zoo"
    add_model(_restorer_file(tmp_path / "p.safetensors", classifier=False), "plain", "no classifier", zoo=str(folder))
    monkeypatch.setenv(ZOO_ENV, str(folder))
    assert main(["restore", photo, "-o", str(tmp_path / "out")]) == 2
    assert "it bundles no degradation classifier" in capsys.readouterr().err


def test_models_lists_name_default_size_summary_card(zoo, tmp_path, capsys):
    add_model(_restorer_file(tmp_path / "b.safetensors", seed=1), "second", "the second model", zoo=str(zoo))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    tiny = next(line for line in lines if " tiny " in f" {line} ")
    assert tiny.startswith("*") and "MB" in tiny and "a tiny test model" in tiny and "yes" in tiny
    second = next(line for line in lines if "second" in line and "MB" in line)
    assert not second.startswith("*") and "the second model" in second
    assert "tiny: model card docs/MODELS.md#tiny" in out and f"registry: {zoo}" in out


def test_demo_and_export_take_a_registry_name(zoo, tmp_path, monkeypatch, capsys):
    import pip_adapter.demo.app as demo_app  # the demo command imports launch from here when it runs

    seen = {}

    def fake_launch(session, **kwargs):
        seen["degradations"] = session.degradations
        raise KeyboardInterrupt  # stop before serving

    monkeypatch.setattr(demo_app, "launch", fake_launch)
    with pytest.raises(KeyboardInterrupt):
        main(["demo", "--device", "cpu"])
    assert seen["degradations"] == NAMES
    out = str(tmp_path / "copy.safetensors")
    assert main(["export", "--ckpt", "tiny", "--out", out]) == 0
    assert "classifier:    included" in capsys.readouterr().out
    assert Restorer.from_checkpoint(out).classifier is not None


def test_add_refuses_what_restore_could_not_use(tmp_path):
    folder = str(tmp_path / "zoo")
    model = _restorer_file(tmp_path / "m.safetensors")
    with pytest.raises(ZooError, match="lower-case letters"):
        add_model(model, "Bad Name", "x", zoo=folder)
    with pytest.raises(ZooError, match="give a one-line --summary"):
        add_model(model, "m", "  ", zoo=folder)
    cls = DegradationClassifier("compact", degradations=NAMES, widths=[8, 8])
    cls_file = str(tmp_path / "c.safetensors")
    save_checkpoint(cls_file, cls, make_meta(cls))
    with pytest.raises(ZooError, match="a 'classifier' file; the registry holds restorers"):
        add_model(cls_file, "c", "x", zoo=folder)
    pth = str(tmp_path / "m.pth")
    net = PIPNet({"type": "NAFNet", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1], "dec_blk_nums": [1]})
    save_checkpoint(pth, net, make_meta(net))
    with pytest.raises(ZooError, match="are .safetensors files"):
        add_model(pth, "p", "x", zoo=folder)
    with pytest.raises(ZooError, match="over the 0.001 MB budget"):
        add_model(model, "m", "x", zoo=folder, budget=1000)
    add_model(model, "m", "first", zoo=folder)
    with pytest.raises(ZooError, match="already has a model called 'm'; pass --replace"):
        add_model(model, "m", "again", zoo=folder)
    add_model(_restorer_file(tmp_path / "m2.safetensors", seed=5), "m", "replaced", zoo=folder, replace=True)
    (entry,) = list_models(folder)
    assert entry.summary == "replaced" and entry.default and check_zoo(folder) == []
    assert sorted(os.listdir(folder)) == ["index.json", "m.safetensors"]  # no temporary left behind


def test_index_cannot_point_outside_its_folder(tmp_path):
    folder = tmp_path / "zoo"
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({"format": "pip-adapter-zoo", "format_version": 1, "models": [
        {"name": "x", "file": "../../etc/passwd", "sha256": "0" * 64, "bytes": 1}]}))
    with pytest.raises(ZooError, match="must be a plain file name inside the registry folder"):
        list_models(str(folder))


def test_maintainer_command_adds_checks_and_lists(tmp_path, capsys):
    folder = str(tmp_path / "zoo")
    model = _restorer_file(tmp_path / "m.safetensors")
    assert zoo_main(["--zoo", folder, "add", "photo-x", model, "--summary", "test model", "--default"]) == 0
    assert "photo-x:" in capsys.readouterr().out
    assert zoo_main(["--zoo", folder, "check"]) == 0
    assert "every checksum matches" in capsys.readouterr().out
    assert zoo_main(["--zoo", folder, "list"]) == 0
    assert "* photo-x  photo-x.safetensors" in capsys.readouterr().out
    # a file that does not load is refused before anything is copied
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    assert zoo_main(["--zoo", folder, "add", "b", str(broken), "--summary", "x"]) == 2
    assert "broken.safetensors" in capsys.readouterr().err
    assert [e.name for e in list_models(folder)] == ["photo-x"]
    (tmp_path / "zoo" / "stray.bin").write_bytes(b"x")
    assert zoo_main(["--zoo", folder, "check"]) == 1
    assert "stray.bin: not named by index.json" in capsys.readouterr().err


# --------------------------------------------------------------------------------- the registry the wheel ships

def _package_data_patterns():
    tree = ast.parse(open(os.path.join(REPO, "setup.py"), encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "package_data":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no package_data")


def test_package_registry_is_sound_within_budget_and_in_the_wheel(monkeypatch):
    monkeypatch.delenv(ZOO_ENV, raising=False)
    folder = package_zoo_dir()
    assert check_zoo(folder) == []  # every indexed file exists with its size and checksum; nothing unindexed
    total = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    assert total <= BUDGET_BYTES == 10_000_000
    patterns = _package_data_patterns()["pip_adapter.zoo"]
    for name in os.listdir(folder):
        assert any(fnmatch.fnmatch(f"models/{name}", p) for p in patterns), f"{name} would not be in the wheel"
    entries = list_models(folder)
    assert sum(e.default for e in entries) == (1 if entries else 0)


def test_package_registry_models_restore(monkeypatch, tmp_path):
    """Every shipped model loads from its name (checksum verified) and restores a small photo with -d auto;
    while the registry is empty, the CLI and the API say so in one clear line."""
    monkeypatch.delenv(ZOO_ENV, raising=False)
    entries = list_models()
    photo = write_png(tmp_path / "photo.png", rand_image(40, 56, seed=7))
    if not entries:
        with pytest.raises(ZooError, match="holds none yet"):
            Restorer.from_pretrained()
        return
    for e in entries:
        r = Restorer.from_pretrained(e.name, device="cpu")
        assert r.degradations == e.degradations and (r.classifier is not None) == e.classifier
        out = r(photo, degradation="auto" if e.classifier else e.degradations[0])
        assert out.shape == (40, 56, 3) and out.dtype == np.uint8
    assert main(["restore", photo, "-o", str(tmp_path / "out"), "--no-progress", "--device", "cpu"]) == 0
    assert os.path.isfile(tmp_path / "out" / "photo.png")


def test_maintainer_add_exports_a_net_g_with_its_classifier_in_one_step(toy_basicsr_files, tmp_path, capsys):
    folder = str(tmp_path / "zoo")
    cls = DegradationClassifier("compact", degradations=NAMES, crop_size=16, num_crops=1, widths=[8, 8])
    cls_file = str(tmp_path / "cls.safetensors")
    save_checkpoint(cls_file, cls, make_meta(cls))
    assert zoo_main(["--zoo", folder, "add", "toy", toy_basicsr_files["ckpt"], "--opt", toy_basicsr_files["opt"],
                     "--classifier", cls_file, "--summary", "toy restorer", "--default"]) == 0
    (entry,) = list_models(folder)
    assert entry.classifier and entry.default and entry.file == "toy.safetensors"
    assert sorted(os.listdir(folder)) == ["index.json", "toy.safetensors"]
    r = Restorer.from_pretrained("toy", zoo=folder, device="cpu")
    assert r.classifier is not None and r.degradations == NAMES
    # a classifier of other types than the restorer's is refused before anything enters the registry
    other = DegradationClassifier("compact", degradations=NAMES[:3], widths=[8, 8])
    save_checkpoint(cls_file, other, make_meta(other))
    assert zoo_main(["--zoo", folder, "add", "bad", toy_basicsr_files["ckpt"], "--opt", toy_basicsr_files["opt"],
                     "--classifier", cls_file, "--summary", "x"]) == 2
    assert "their ω orders must match" in capsys.readouterr().err
    assert [e.name for e in list_models(folder)] == ["toy"]
