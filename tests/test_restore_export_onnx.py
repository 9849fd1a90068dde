"""ONNX export (``pip-adapter export --format onnx``) and restoring through onnxruntime, on tiny models."""
import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import torch
import yaml

from pip_adapter.cli import main
from pip_adapter.cli.export import output_format
from pip_adapter.restore.checkpoint import CheckpointError, load_checkpoint, make_meta, save_checkpoint
from pip_adapter.restore.classifier import DegradationClassifier
from pip_adapter.image_io import read_image_raw
from pip_adapter.restore.onnx_export import MissingDependencyError, export_onnx_model
from pip_adapter.restore.onnx_runtime import OnnxRuntimeNet, read_onnx_metadata_props
from pip_adapter.restore.restorer import Restorer
from pip_adapter.wrap.pipnet import PIPNet
from tests.helpers_restore import TOY_NETWORK, make_toy, rand_image, write_png

pytestmark = pytest.mark.usefixtures("one_thread")

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason='ONNX tests need onnx, onnxscript and onnxruntime: '
                                                      'pip install -e ".[onnx]" (CI installs them with .[dev])')
NAMES = TOY_NETWORK["degradations"]


def _export_cli(args):
    """Run ``pip-adapter export`` in a fresh thread setting (module fixtures run outside ``one_thread``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(["export"] + args)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    """A BasicSR-style toy net_g + option YAML, its safetensors export and its ONNX export (through the CLI)."""
    if not HAVE_ONNX:
        pytest.skip('pip install -e ".[onnx]"')
    d = tmp_path_factory.mktemp("onnx_toy")
    net = make_toy(0)
    ckpt, opt = str(d / "net_g_10.pth"), str(d / "train.yml")
    torch.save({"params": net.state_dict()}, ckpt)
    with open(opt, "w") as fh:
        yaml.safe_dump({"name": "toy", "model_type": "PIPModel", "network_g": dict(TOY_NETWORK)}, fh)
    st, onnx = str(d / "model.safetensors"), str(d / "model.onnx")
    assert _export_cli(["--ckpt", ckpt, "--opt", opt, "--out", st]) == 0
    assert _export_cli(["--ckpt", ckpt, "--opt", opt, "--out", onnx]) == 0  # format from the suffix
    return {"dir": d, "net": net, "ckpt": ckpt, "opt": opt, "safetensors": st, "onnx": onnx}


@needs_onnx
def test_onnx_equals_pytorch_at_two_sizes_through_one_file(toy_files):
    net, ort_net = toy_files["net"], OnnxRuntimeNet(toy_files["onnx"])
    assert ort_net.degradations == NAMES and ort_net.multiple == 2 and ort_net.uses_omega
    gen = torch.Generator().manual_seed(0)
    for shape in [(2, 3, 8, 12), (1, 3, 14, 6)]:
        x = torch.rand(*shape, generator=gen)
        w = torch.rand(shape[0], len(NAMES), generator=gen)
        with torch.no_grad():
            expected = net(x, w)
        got = ort_net(x, w)
        assert got.shape == expected.shape and got.dtype == torch.float32
        assert (got - expected).abs().max().item() < 1e-4
    # ω reaches the graph: another ω, another output
    x = torch.rand(1, 3, 8, 8, generator=gen)
    assert (ort_net(x, torch.eye(5)[:1]) - ort_net(x, torch.eye(5)[1:2])).abs().max() > 1e-3


@needs_onnx
def test_metadata_round_trip(toy_files):
    props = read_onnx_metadata_props(toy_files["onnx"])
    assert json.loads(props["degradations"]) == NAMES and props["multiple"] == "2"
    assert json.loads(props["backbone_config"]) == TOY_NETWORK and json.loads(props["pip_config"]) is None
    doc = json.loads(props["pip_adapter"])
    expected = make_meta(toy_files["net"], TOY_NETWORK)
    for key in ("format", "format_version", "kind", "network", "degradations", "multiple"):
        assert doc[key] == expected[key], key
    assert doc["onnx"] == {"opset": 20, "inputs": ["image", "omega"], "output": "restored", "in_channels": 3,
                           "uses_omega": True}
    assert doc["source"]["ckpt"] == "net_g_10.pth"
    r = Restorer.from_checkpoint(toy_files["onnx"], device="cpu")
    assert r.degradations == NAMES and r.multiple == 2 and isinstance(r.model, OnnxRuntimeNet)
    # an ONNX graph is not a weights file
    with pytest.raises(CheckpointError, match="graph"):
        load_checkpoint(toy_files["onnx"])
    with pytest.raises(ValueError, match="--opt"):
        Restorer.from_checkpoint(toy_files["onnx"], opt=toy_files["opt"], device="cpu")


@needs_onnx
def test_restore_cli_onnx_matches_safetensors_gray_rgba_16bit_tiles(toy_files, tmp_path, capsys):
    src = tmp_path / "in"
    write_png(src / "gray.png", rand_image(14, 18, c=1, seed=1))
    write_png(src / "rgba16.png", rand_image(13, 11, c=4, dtype=np.uint16, seed=2))
    common = [str(src), "--omega", "rain=0.7,noise=0.3", "--tile", "8", "--tile-overlap", "2", "--no-progress",
              "--device", "cpu"]
    assert main(["restore", "-m", toy_files["onnx"], "-o", str(tmp_path / "onnx")] + common) == 0
    assert main(["restore", "-m", toy_files["safetensors"], "-o", str(tmp_path / "torch")] + common) == 0
    assert "restored 2 image(s), 0 failed" in capsys.readouterr().out
    for name in ("gray.png", "rgba16.png"):
        a, info = read_image_raw(str(tmp_path / "onnx" / name))
        b, _ = read_image_raw(str(tmp_path / "torch" / name))
        orig, orig_info = read_image_raw(str(src / name))
        assert a.shape == orig.shape and a.dtype == orig.dtype and info.gray == orig_info.gray
        assert np.abs(a.astype(np.int64) - b.astype(np.int64)).max() <= 1, name  # float rounding only


class _Plain(torch.nn.Module):
    """A plain (no ω) two-conv network: the bare-backbone path at the cost of a few nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x):
        return x + self.b(torch.relu(self.a(x)))


@needs_onnx
def test_plain_backbone_exports_and_needs_no_omega(tmp_path):
    torch.manual_seed(0)
    net = _Plain().eval()
    meta = make_meta(net, {"type": "PlainTest"})
    path = str(tmp_path / "plain.onnx")
    info = export_onnx_model(net, meta, path)
    assert info.max_abs_diff is not None and info.max_abs_diff < 1e-4 and info.opset == 20
    assert info.meta["onnx"]["uses_omega"] is False and info.meta["multiple"] == 16
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_onnx_model(net, meta, path)
    ort_net = OnnxRuntimeNet(path)
    for shape in [(1, 3, 16, 32), (2, 3, 48, 16)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            assert (ort_net(x) - net(x)).abs().max().item() < 1e-4
    r = Restorer.from_checkpoint(path, device="cpu")
    img = rand_image(10, 9, seed=3)
    out = r(img)  # a plain backbone: no degradation needed
    expected = Restorer(net, meta["degradations"], multiple=16, device="cpu")(img)
    assert out.shape == img.shape and np.abs(out.astype(int) - expected.astype(int)).max() <= 1


PIP_NAFNET = {"backbone": {"type": "NAFNet", "width": 8, "enc_blk_nums": [1], "dec_blk_nums": [1],
                           "middle_blk_num": 1},
              "degradations": ["noise", "rain", "haze"], "prompt_dims": 8, "prompt_sizes": 4}


@needs_onnx
def test_pip_nafnet_cli_export_dynamic_sizes_and_restore(tmp_path, capsys):
    """A real PIP model: CLI export, one graph at two sizes and batches, and restore equal to PyTorch's."""
    torch.manual_seed(0)
    model = PIPNet(**PIP_NAFNET).eval()
    st, onnx = str(tmp_path / "pip.safetensors"), str(tmp_path / "pip.onnx")
    save_checkpoint(st, model, make_meta(model))
    assert _export_cli(["--ckpt", st, "--out", onnx, "--format", "onnx"]) == 0
    printed = capsys.readouterr().out
    assert "ONNX opset 20" in printed and "omega N×3" in printed and "max |diff|" in printed
    props = read_onnx_metadata_props(onnx)
    assert json.loads(props["pip_config"]) == model.pip_config()
    assert json.loads(props["backbone_config"]) == PIP_NAFNET["backbone"]
    ort_net = OnnxRuntimeNet(onnx)
    assert ort_net.uses_omega and ort_net.degradations == ["noise", "rain", "haze"]
    gen = torch.Generator().manual_seed(0)
    for shape in [(1, 3, 6, 10), (2, 3, 12, 8)]:
        x = torch.rand(*shape, generator=gen)
        w = torch.rand(shape[0], 3, generator=gen)
        with torch.no_grad():
            expected = model(x, w)
        assert (ort_net(x, w) - expected).abs().max().item() < 1e-4
    img = rand_image(13, 17, c=1, dtype=np.uint16, seed=7)
    a = Restorer.from_checkpoint(onnx, device="cpu")(img, degradation="haze", tile=8, tile_overlap=2)
    b = Restorer.from_checkpoint(st, device="cpu")(img, degradation="haze", tile=8, tile_overlap=2)
    assert a.shape == img.shape and np.abs(a.astype(np.int64) - b.astype(np.int64)).max() <= 1


@needs_onnx
def test_classifier_written_beside_the_graph_for_auto(toy_files, tmp_path, capsys):
    torch.manual_seed(0)
    cls = DegradationClassifier("test_resnet", NAMES, crop_size=16, num_crops=2).eval()
    cls_file = str(tmp_path / "cls.safetensors")
    save_checkpoint(cls_file, cls, make_meta(cls))
    out = str(tmp_path / "bundle.onnx")
    assert _export_cli(["--ckpt", toy_files["safetensors"], "--out", out, "--format", "onnx",
                        "--classifier", cls_file]) == 0
    side = str(tmp_path / "bundle.classifier.safetensors")
    assert os.path.isfile(side) and "bundle.classifier.safetensors" in capsys.readouterr().out
    write_png(tmp_path / "in" / "a.png", rand_image(12, 10, seed=4))
    assert main(["restore", str(tmp_path / "in"), "-m", out, "-o", str(tmp_path / "out"), "-d", "auto",
                 "--no-progress", "--device", "cpu"]) == 0
    assert "auto:" in capsys.readouterr().out
    r = Restorer.from_checkpoint(out, device="cpu")
    torch_r = Restorer(toy_files["net"], NAMES, multiple=2, device="cpu", classifier=cls)
    img = rand_image(12, 10, seed=4)
    r(img, degradation="auto")
    torch_r(img, degradation="auto")
    assert r.last_omega == pytest.approx(torch_r.last_omega, abs=1e-6)
    os.remove(side)  # without its classifier the graph still restores, and 'auto' says what is missing
    with pytest.raises(ValueError, match="classifier"):
        Restorer.from_checkpoint(out, device="cpu")(img, degradation="auto")


def test_format_from_flag_or_suffix():
    assert output_format("m.onnx", None) == "onnx" and output_format("m.ONNX", "onnx") == "onnx"
    assert output_format("m.safetensors", None) == "safetensors" and output_format("m.pt", None) == "pth"
    with pytest.raises(ValueError, match=r"\.onnx"):
        output_format("m.safetensors", "onnx")
    with pytest.raises(ValueError, match="--format"):
        output_format("model", None)


def test_missing_onnxruntime_names_the_install_command(monkeypatch, tmp_path, capsys):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not really a graph")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes ``import onnxruntime`` fail
    with pytest.raises(MissingDependencyError, match=r'pip install -e "\.\[onnx\]"'):
        Restorer.from_checkpoint(str(fake), device="cpu")
    write_png(tmp_path / "a.png", rand_image(8, 8, seed=0))
    assert main(["restore", str(tmp_path / "a.png"), "-m", str(fake), "-o", str(tmp_path / "out"), "-d", "rain",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "onnxruntime" in err and '.[onnx]' in err
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    net = make_toy(0)
    with pytest.raises(MissingDependencyError, match="onnxscript"):
        export_onnx_model(net, make_meta(net, TOY_NETWORK), str(tmp_path / "x.onnx"))


def _onnx_with_meta(src, dst, edit):
    """A copy of the ONNX file ``src`` whose pip-adapter document was changed by ``edit(doc)``."""
    import onnx

    model = onnx.load(src)
    for prop in model.metadata_props:
        if prop.key == "pip_adapter":
            doc = json.loads(prop.value)
            edit(doc)
            prop.value = json.dumps(doc)
    onnx.save(model, dst)
    return dst


@needs_onnx
@pytest.mark.parametrize("edit, needle", [
    (lambda d: d.update(multiple=10 ** 6), "'multiple' must be an integer from 1 to 256"),
    (lambda d: d.update(multiple=-8), "'multiple' must be an integer"),
    (lambda d: d.update(multiple=8.7), "'multiple' must be an integer"),
    (lambda d: d.update(degradations=["noise", "rain", "Rain", "blur", "low_light"]), r"repeat \['rain'\]"),
    (lambda d: d.update(degradations=["noise", "", "haze", "blur", "low_light"]), "cannot be addressed"),
    (lambda d: d.update(degradations=["noise", "rain,haze", "haze", "blur", "low_light"]), "cannot be addressed"),
    (lambda d: d.update(pip_config={"backbone": {"type": "X"}}, onnx={**d["onnx"], "uses_omega": False}),
     "'uses_omega: false' for a PIP network"),
    (lambda d: d.update(onnx={**d["onnx"], "uses_omega": "yes"}), "'uses_omega' is 'yes'"),
])
def test_onnx_metadata_is_checked_like_safetensors(toy_files, tmp_path, capsys, edit, needle):
    path = _onnx_with_meta(toy_files["onnx"], str(tmp_path / "crafted.onnx"), edit)
    with pytest.raises(CheckpointError, match=needle):
        OnnxRuntimeNet(path)
    write_png(tmp_path / "in.png", rand_image(8, 8))
    code = main(["restore", str(tmp_path / "in.png"), "-m", path, "-d", "rain", "-o", str(tmp_path / "o"),
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "crafted.onnx" in err and "Traceback" not in err


@needs_onnx
def test_onnx_runtime_errors_fail_the_image_not_the_run(toy_files, tmp_path, capsys):
    # two names for a graph that takes a 5-wide ω: onnxruntime refuses the input of every image
    path = _onnx_with_meta(toy_files["onnx"], str(tmp_path / "two.onnx"),
                           lambda d: d.update(degradations=["noise", "rain"]))
    write_png(tmp_path / "in" / "a.png", rand_image(8, 8))
    code = main(["restore", str(tmp_path / "in"), "-m", path, "-d", "rain", "-o", str(tmp_path / "o"),
                 "--device", "cpu", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED" in out and "two.onnx: onnxruntime cannot run this input" in out
    assert len([line for line in out.splitlines() if "FAILED" in line]) == 1


@needs_onnx
def test_onnxruntime_telemetry_is_off(toy_files, monkeypatch):
    import onnxruntime

    calls = []
    monkeypatch.setattr(onnxruntime, "disable_telemetry_events", lambda: calls.append(1), raising=False)
    OnnxRuntimeNet(toy_files["onnx"])
    assert calls
