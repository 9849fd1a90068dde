"""Self-describing checkpoints: export → load round trip, weights-only loading, clear errors."""
import json
import os

import numpy as np
import pytest
import torch

from pip_adapter.restore.checkpoint import (CheckpointError, export_checkpoint, load_checkpoint, make_meta,
                                            save_checkpoint)
from pip_adapter.restore.restorer import Restorer
from tests.helpers_restore import TOY_NETWORK, make_toy, rand_image

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("ext", [".safetensors", ".pth"])
def test_export_round_trip_same_output(toy_basicsr_files, tmp_path, ext):
    out = str(tmp_path / f"model{ext}")
    loaded = export_checkpoint(toy_basicsr_files["ckpt"], toy_basicsr_files["opt"], out)
    assert loaded.meta["kind"] == "restorer" and loaded.degradations == TOY_NETWORK["degradations"]
    assert loaded.meta["network"]["type"] == "ToyOmegaUNet" and loaded.meta["source"]["key"] == "params_ema"
    img = rand_image(12, 18)
    # params_ema preferred: the restorer built from the file equals the in-memory EMA network
    expected = Restorer(toy_basicsr_files["params_ema"], loaded.degradations, multiple=2, device="cpu")(
        img, degradation="haze")
    got = Restorer.from_checkpoint(out, device="cpu")(img, degradation="haze")
    np.testing.assert_array_equal(got, expected)
    other = Restorer(toy_basicsr_files["params"], loaded.degradations, multiple=2, device="cpu")(img, degradation="haze")
    assert not np.array_equal(got, other)


def test_export_key_params_and_bare_net_g(toy_basicsr_files, tmp_path):
    out = str(tmp_path / "m.safetensors")
    export_checkpoint(toy_basicsr_files["ckpt"], toy_basicsr_files["opt"], out, key="params")
    img = rand_image(8, 8)
    ref = Restorer(toy_basicsr_files["params"], TOY_NETWORK["degradations"], multiple=2, device="cpu")(img, degradation="rain")
    np.testing.assert_array_equal(Restorer.from_checkpoint(out, device="cpu")(img, degradation="rain"), ref)
    # a bare BasicSR net_g with its YAML works in restore directly
    bare = Restorer.from_checkpoint(toy_basicsr_files["ckpt"], opt=toy_basicsr_files["opt"], key="params",
                                    device="cpu")
    np.testing.assert_array_equal(bare(img, degradation="rain"), ref)
    with pytest.raises(CheckpointError, match="--opt"):
        load_checkpoint(toy_basicsr_files["ckpt"])


def test_metadata_is_plain_json_in_the_safetensors_header(toy_net, tmp_path):
    from safetensors import safe_open
    path = str(tmp_path / "m.safetensors")
    save_checkpoint(path, toy_net, make_meta(toy_net, TOY_NETWORK, source={"note": "test"}))
    with safe_open(path, "pt") as fh:
        meta = json.loads(fh.metadata()["pip_adapter"])
    assert meta["format"] == "pip-adapter" and meta["format_version"] == 1
    assert meta["network"] == TOY_NETWORK and meta["degradations"] == TOY_NETWORK["degradations"]
    assert meta["multiple"] == 2


def test_weights_only_torch_file_loads_without_pickle(toy_net, tmp_path):
    path = str(tmp_path / "m.pth")
    save_checkpoint(path, toy_net, make_meta(toy_net, TOY_NETWORK))
    obj = torch.load(path, weights_only=True)  # would raise if anything but weights/strings were pickled
    assert set(obj) == {"pip_adapter", "params"}


def test_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    path = str(tmp_path / "evil.pth")
    torch.save({"params": {}, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_checkpoint(path, opt=None)


@pytest.mark.parametrize("content", [b"", b"\x00" * 20, b"not a checkpoint at all"])
def test_corrupt_file_named(tmp_path, content):
    for name in ("bad.safetensors", "bad.pth"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(str(path))


def test_truncated_safetensors_named(toy_net, tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(str(path), toy_net, make_meta(toy_net, TOY_NETWORK))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="m.safetensors.*corrupt"):
        load_checkpoint(str(path))
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_checkpoint(str(tmp_path / "missing.safetensors"))


def test_other_configuration_says_what_does_not_match(toy_basicsr_files, tmp_path):
    import yaml
    opt = yaml.safe_load(open(toy_basicsr_files["opt"]))
    opt["network_g"]["width"] = 6
    opt["network_g"]["degradations"] = ["noise", "rain", "haze"]
    other = tmp_path / "other.yml"
    other.write_text(yaml.safe_dump(opt))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(toy_basicsr_files["ckpt"], opt=str(other))
    msg = str(err.value)
    assert "shape mismatches" in msg and "enc.weight: checkpoint (4, 3, 3, 3) vs model (6, 3, 3, 3)" in msg
    assert "shape mismatches (8)" in msg and "net_g_10.pth" in msg
    # another set of degradation types: the ω-dependent weight is named
    opt["network_g"]["width"] = 4
    other.write_text(yaml.safe_dump(opt))
    with pytest.raises(CheckpointError, match=r"pip_levels.0.weight: checkpoint \(4, 5\) vs model \(4, 3\)"):
        load_checkpoint(toy_basicsr_files["ckpt"], opt=str(other))
    # missing / unexpected keys are named too
    sd = make_toy(0).state_dict()
    sd["extra.weight"] = torch.zeros(1)
    del sd["out.bias"]
    ckpt = tmp_path / "net_g_keys.pth"
    torch.save({"params": sd}, ckpt)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): out.bias.*unexpected keys \(1\): extra.weight"):
        load_checkpoint(str(ckpt), opt=toy_basicsr_files["opt"])


def test_export_does_not_overwrite(toy_basicsr_files, tmp_path):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_checkpoint(toy_basicsr_files["ckpt"], toy_basicsr_files["opt"], str(out))
    assert out.read_bytes() == b"keep"
    export_checkpoint(toy_basicsr_files["ckpt"], toy_basicsr_files["opt"], str(out), overwrite=True)
    assert load_checkpoint(str(out)).kind == "restorer"


def test_net_g_with_saved_meta_needs_no_yaml(tmp_path):
    net = make_toy(3)
    ckpt = tmp_path / "net_g_5.pth"
    torch.save({"params": net.state_dict(), "meta": {"network_g": dict(TOY_NETWORK)}}, ckpt)
    loaded = load_checkpoint(str(ckpt))
    assert loaded.meta["network"] == TOY_NETWORK and loaded.meta["source"]["key"] == "params"


def _tiny_pipnet():
    from pip_adapter.wrap.pipnet import PIPNet
    torch.manual_seed(0)
    return PIPNet({"type": "NAFNet", "img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1],
                   "dec_blk_nums": [1, 1]}, prompt_dims=[16, 16], prompt_sizes=[8, 4]).eval()


def test_pipnet_round_trip_in_memory(tmp_path):
    net = _tiny_pipnet()
    path = str(tmp_path / "pip.safetensors")
    save_checkpoint(path, net, make_meta(net))
    loaded = load_checkpoint(path)
    assert loaded.meta["pip_config"]["backbone"]["type"] == "NAFNet" and loaded.multiple == 4
    img = rand_image(20, 27)  # not a multiple of 4: padded and cropped back
    a = Restorer(net, net.degradations, multiple=4, device="cpu")(img, omega={"rain": 0.6, "blur": 0.4})
    b = Restorer.from_checkpoint(path, device="cpu")(img, omega={"rain": 0.6, "blur": 0.4})
    np.testing.assert_array_equal(a, b)


def test_trained_experiment_export_and_restore(tiny_pip_experiment, tmp_path, capsys):
    """basicsr-trained net_g + YAML → export (CLI) → restore (CLI) = the in-memory model's output."""
    from pip_adapter.cli import main
    from pip_adapter.restore.checkpoint import network_from_options, select_params
    from pip_adapter.image_io import read_image
    from pip_adapter.wrap.pipnet import PIPNet
    from tests.helpers_restore import write_png

    out = str(tmp_path / "tiny.safetensors")
    assert main(["export", "--ckpt", tiny_pip_experiment.net_path, "--opt", tiny_pip_experiment.opt_path,
                 "--out", out]) == 0
    meta = load_checkpoint(out).meta
    assert meta["network"]["type"] == "PIPNet" and meta["pip_config"]["levels"]
    # the in-memory reference, built the way BasicSR builds network_g
    opt = network_from_options(tiny_pip_experiment.opt_path)
    opt.pop("type")
    ref = PIPNet(**opt)
    ref.load_state_dict(select_params(torch.load(tiny_pip_experiment.net_path, weights_only=True),
                                      tiny_pip_experiment.net_path))
    img = rand_image(24, 30, seed=7)
    src = write_png(tmp_path / "in" / "x.png", img)
    assert main(["restore", src, "-m", out, "-o", str(tmp_path / "o"), "-d", "rain", "--no-progress"]) == 0
    expected = Restorer(ref, ref.degradations, multiple=4, device="cpu")(img, degradation="rain")
    from pip_adapter.image_io import float_to_array
    got_rgb, info = read_image(str(tmp_path / "o" / "x.png"))
    np.testing.assert_array_equal(float_to_array(got_rgb, info), expected)


def test_model_that_cannot_be_rebuilt_is_refused_at_export():
    with pytest.raises(CheckpointError, match="network option"):
        make_meta(torch.nn.Conv2d(3, 3, 3))


def test_device_choice():
    from pip_adapter.restore.restorer import resolve_device
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
