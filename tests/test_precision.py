"""Mixed precision (``train.amp``, ``Restorer(precision=...)``, ``restore --precision``) and PIPLevel's P2F bands.

The device-parametrised tests also run on CUDA where there is a GPU (``bench/gpu_check.sh`` runs this file there).
"""
import json
import os

import numpy as np
import pytest
import torch

from pip_adapter.bsr.model import amp_dtype
from pip_adapter.modules import PIPLevel, record_dispatch, set_p2f_chunking
from pip_adapter.restore.restorer import P2F_CHUNK_PIXELS, Restorer, resolve_precision
from pip_adapter.image_io import read_image
from tests.helpers_train import read_train_log, run_basicsr, tiny_options, write_options

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def exact_cuda():
    """On CUDA: no TF32 and no cuDNN.  cuDNN picks its algorithm by shape (a band is not the whole map) and some
    (Winograd, FFT) round differently beyond 1e-6; what is tested is the banding, not that choice."""
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.enabled)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.enabled = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.enabled = before


def _level(c, d, selective, device):
    torch.manual_seed(0)
    level = PIPLevel(c, d, 8, 3, selective=selective)
    with torch.no_grad():
        for p in level.parameters():  # away from the initial values (ones, zeros, 0.2) so every path matters
            p.add_(0.1 * torch.randn_like(p))
    return level.eval().to(device)


# C == D, C < D (implicit query padding + reduce_channel), C > D (channels kept aside), plain softmax, batch 2
@pytest.mark.parametrize("c,d,b,h,w,selective", [(16, 16, 1, 37, 29, True), (8, 16, 2, 24, 20, True),
                                                  (32, 16, 2, 19, 33, False)])
@pytest.mark.parametrize("device", DEVICES)
def test_p2f_in_bands_equals_whole_map(c, d, b, h, w, selective, device, exact_cuda):
    level = _level(c, d, selective, device)
    g = torch.Generator().manual_seed(1)
    z = torch.randn(b, c, h, w, generator=g).to(device)
    omega = torch.softmax(torch.randn(b, 3, generator=g), 1).to(device)
    with torch.no_grad():
        ref = level(z, omega)
        for pixels in (1, 9 * w + 5):            # 8-row bands (the minimum) and 9-row bands with a short last one
            level.set_p2f_chunking(pixels)
            assert level.choose_path(z).path == "bands"  # really in bands (more than one)
            out = level(z, omega)
            assert out.shape == ref.shape and out.is_contiguous()
            torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)
    # training through the bands gives the same gradients
    zg = z.clone().requires_grad_(True)
    level(zg, omega).square().sum().backward()
    level.set_p2f_chunking(0)
    zr = z.clone().requires_grad_(True)
    level(zr, omega).square().sum().backward()
    torch.testing.assert_close(zg.grad, zr.grad, rtol=1e-5, atol=1e-5)


def test_bands_are_off_by_default_and_export_keeps_the_whole_map_graph():
    level = _level(16, 16, True, "cpu")
    z, omega = torch.randn(1, 16, 32, 32), torch.tensor([[0.0, 1.0, 0.0]])
    assert level.p2f_chunk_pixels == 0 and level.choose_path(z).path == "channels_last"
    level.set_p2f_chunking(64)
    assert level.choose_path(z).path == "bands" and "p2f_chunk_pixels=64" in repr(level)
    assert level.choose_path(z[:, :, :8]).path == "channels_last"  # one band (8 rows at least) would be the whole map
    # torch.export (what the ONNX export runs) with bands on: the exported graph is the whole-map channels-last
    # one, without a loop over the input size
    with torch.no_grad():
        ref = level(z, omega)
        with record_dispatch() as seen:
            program = torch.export.export(level, (z, omega))
    assert [(d.call.graph, d.path) for _, d in seen] == [("export", "channels_last")]
    assert "not under torch.export" in seen[0][1].refused["bands"]
    torch.testing.assert_close(program.module()(z, omega), ref, rtol=0, atol=1e-6)
    level.path = "bands"
    with pytest.raises(ValueError, match="path 'bands' cannot run this call: bands run in eager calls only"):
        torch.export.export(level, (z, omega))
    for bad in (-1, 1.5, "64", True):
        with pytest.raises(ValueError, match="p2f chunk size"):
            level.set_p2f_chunking(bad)


def test_restorer_turns_bands_on_and_matches_whole_map():
    from pip_adapter.wrap import wrap_with_pip
    from pip_adapter.backbones import NAFNet

    torch.manual_seed(0)
    net = wrap_with_pip(NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]),
                        degradations=["noise", "rain"], prompt_dims=8, prompt_sizes=4)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    img = np.random.default_rng(0).random((200, 96, 3), dtype=np.float32)
    whole = Restorer(net, ["noise", "rain"], multiple=4, device="cpu", p2f_chunk=0).restore_array(img, "rain")[0]
    assert all(lv.p2f_chunk_pixels == 0 for lv in net.pip_levels)
    r = Restorer(net, ["noise", "rain"], multiple=4, device="cpu")
    assert all(lv.p2f_chunk_pixels == P2F_CHUNK_PIXELS for lv in net.pip_levels)
    assert set_p2f_chunking(net, 2048) == 2      # smaller bands: several per level at this size
    banded = r.restore_array(img, "rain")[0]
    np.testing.assert_allclose(banded, whole, rtol=0, atol=1e-6)


def test_precision_names_and_unsupported_devices(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("BF16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown precision 'fp64'.*fp32, bf16, fp16"):
        resolve_precision("fp64", cpu)

    def no_autocast(*_a, **_k):
        raise RuntimeError("this device has no float16 kernels")

    monkeypatch.setattr(torch, "autocast", no_autocast)
    with pytest.raises(ValueError, match="precision fp16 is not supported on cpu.*--precision bf16 or fp32"):
        resolve_precision("fp16", cpu)
    assert amp_dtype("bf16") == torch.bfloat16 and amp_dtype(False) is None and amp_dtype("fp16") == torch.float16
    with pytest.raises(ValueError, match="train.amp must be one of"):
        amp_dtype("int8")


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_restore_close_to_fp32(tiny_pip_experiment, tiny_builtin_root, device):
    exp = tiny_pip_experiment
    img, _ = read_image(os.path.join(tiny_builtin_root, "val", "noise_sigma25",
                                     sorted(os.listdir(os.path.join(tiny_builtin_root, "val", "noise_sigma25")))[0]))
    out = {}
    for precision in ("fp32", "bf16"):
        r = Restorer.from_checkpoint(exp.net_path, opt=exp.opt_path, device=device, precision=precision)
        out[precision] = r.restore_array(img, "noise")[0]
        assert out[precision].dtype == np.float32
    diff = np.abs(out["bf16"] - out["fp32"])
    # bf16 keeps 8 mantissa bits (steps of 2^-8 near 1.0, and the network's last residual add is in bf16):
    # the stated tolerance is 0.02 (5/255) per pixel and 45 dB between the two results
    assert 0 < diff.max() <= 0.02
    assert 10 * np.log10(1 / np.mean(diff ** 2)) >= 45


def test_restore_command_precision_flag(tiny_pip_experiment, tiny_builtin_root, tmp_path, capsys):
    from pip_adapter.cli import main

    exp = tiny_pip_experiment
    src = os.path.join(tiny_builtin_root, "val", "rain")
    outs = {}
    for precision in ("fp32", "bf16"):
        dst = tmp_path / precision
        assert main(["restore", src, "--ckpt", exp.net_path, "--opt", exp.opt_path, "-o", str(dst), "-d", "rain",
                     "--device", "cpu", "--precision", precision, "--no-progress"]) == 0
        outs[precision] = [read_image(str(dst / f))[0] for f in sorted(os.listdir(dst))]
    assert outs["fp32"] and len(outs["fp32"]) == len(outs["bf16"])
    for a, b in zip(outs["fp32"], outs["bf16"]):
        assert np.abs(a - b).max() <= 6 / 255   # 8-bit outputs: the float tolerance (0.02) plus rounding
    capsys.readouterr()


def test_bf16_training_through_basicsr_train(tiny_builtin_root, tmp_path):
    opt = tiny_options("tiny_bf16", data_root=tiny_builtin_root, total_iter=2, builtin=False)
    opt["train"]["amp"] = "bf16"
    opt["val"]["amp"] = "bf16"
    opt["logger"]["save_checkpoint_freq"] = 2
    proc = run_basicsr(["train", "-opt", write_options(str(tmp_path / "bf16.yml"), opt)], cwd=str(tmp_path))
    assert proc.returncode == 0, f"basicsr train failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    exp = tmp_path / "experiments" / "tiny_bf16"
    log = read_train_log(str(exp))
    assert "Mixed precision: autocast to torch.bfloat16 on cpu" in log and "l_ddl" in log
    ckpt = torch.load(exp / "models" / "net_g_latest.pth", map_location="cpu", weights_only=True)
    assert {v.dtype for v in ckpt["params"].values()} == {torch.float32}  # checkpoints stay float32
    res = json.loads((exp / "validation_latest.json").read_text())
    assert all(np.isfinite(v["psnr"]) and v["psnr"] > 5 for v in res["tasks"].values())


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_step_uses_a_gradient_scaler_that_resumes(tmp_path, device):
    from basicsr.models import build_model

    from bench import train_cost
    import pip_adapter.bsr  # noqa: F401

    backbone = train_cost.backbone_option(8, quick=True)

    def build(root):
        opt = train_cost.model_options("PIPModel", backbone, str(root), device)
        opt["train"].update(amp="fp16", grad_clip=0.5)
        torch.manual_seed(0)
        return build_model(opt)

    model = build(tmp_path / "a")
    before = {k: v.clone() for k, v in model.bare_net.state_dict().items()}
    data = train_cost.make_batch(2, 32)
    for i in range(1, 3):
        model.feed_data(data)
        model.optimize_parameters(i)
    assert model.grad_scaler is not None and model.output.dtype == torch.float32
    assert all(np.isfinite(float(v)) for v in model.log_dict.values())
    assert any(not torch.equal(before[k], v) for k, v in model.bare_net.state_dict().items())  # steps were taken
    assert all(p.dtype == torch.float32 for p in model.bare_net.parameters())
    model.save_training_state(0, 2)
    state = torch.load(tmp_path / "a" / "training_states" / "2.state", map_location="cpu", weights_only=True)
    model.grad_scaler.update(123.0)
    fresh = build(tmp_path / "b")
    fresh.resume_training(state)
    assert fresh.grad_scaler.get_scale() == state["grad_scaler"]["scale"] != 123.0
