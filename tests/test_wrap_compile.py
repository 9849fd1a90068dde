"""Compile- and export-clean wrapper: ``torch.compile(fullgraph=True)`` of every insertion kind, no recompile
for new ω values, at most one for a new H×W, ``torch.export`` with dynamic batch/H/W, skips made by a plain
function (BasicSR's ``UNetDiscriminatorSN``).  Small models and the cheap backends keep this file fast; one
inductor compile checks the default backend."""
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounter
from torch.export import Dim, export

import pip_adapter.bsr as bsr
from pip_adapter.utils.io import safe_load_yaml
from pip_adapter.wrap import PIPNet, build_pipnet, wrap_with_pip
from tests.helpers_wrap import MixedUNet, TinyNAF

SMALL = dict(prompt_dims=8, prompt_sizes=4)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _mixed(seed=0):
    torch.manual_seed(seed)
    net = MixedUNet()
    return net, wrap_with_pip(net, **SMALL).eval()


def test_fullgraph_aot_eager_every_insertion_kind_and_no_recompile_for_new_omega():
    net, model = _mixed()
    assert [i["strategy"] for i in model.skip_info] == ["intercept", "consumer", "producer"]
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=False)
    x = torch.rand(2, 3, 16, 16)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        w = torch.rand(2, 5, generator=gen)
        out = compiled(x, w)
        torch.testing.assert_close(out, model(x, w), rtol=0, atol=1e-5)
        torch.testing.assert_close(out, net(x, model.pip_levels, w), rtol=0, atol=1e-5)
        with torch._dynamo.config.patch(error_on_recompile=True):
            for _ in range(2):   # new ω values, labels and a one-row ω: the same graph
                w = torch.rand(2, 5, generator=gen)
                torch.testing.assert_close(compiled(x, w), model(x, w), rtol=0, atol=1e-5)
    assert model._run is None                       # nothing of the compiled call stays on the wrapper
    assert torch.equal(model.backbone(x), net(x))   # the bare network is untouched


def test_new_image_size_recompiles_at_most_once_and_pip_stays_disabled_when_asked():
    torch.manual_seed(0)
    model = wrap_with_pip(TinyNAF(depth=1), **SMALL).eval()
    counter = CompileCounter()
    compiled = torch.compile(model, fullgraph=True, backend=counter)
    w = torch.tensor([[0.0, 1.0, 0.0, 0.5, 0.0]])
    with torch.no_grad():
        for hw in [(16, 16), (24, 32), (32, 24), (20, 44), (16, 16)]:
            x = torch.rand(1, 3, *hw)
            torch.testing.assert_close(compiled(x, w), model(x, w), rtol=0, atol=1e-5)
        assert counter.frame_count == 2             # one static graph, then one dynamic-shape graph
        with model.disable_pip():                   # a guard on the flag: the bare backbone, compiled
            x = torch.rand(1, 3, 16, 16)
            torch.testing.assert_close(compiled(x, w), model.backbone(x), rtol=0, atol=1e-5)


def test_one_inductor_compile_of_a_tiny_model():
    torch.manual_seed(0)
    model = wrap_with_pip(TinyNAF(depth=1), selective=False, **SMALL).eval()   # fewer kernels to build
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    x, w = torch.rand(1, 3, 16, 16), torch.tensor([[0.2, 0.0, 1.0, 0.0, 0.0]])
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, w), model(x, w), rtol=0, atol=1e-5)


@pytest.mark.parametrize("backbone, multiple", [
    ({"type": "NAFNet", "width": 8, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1], "middle_blk_num": 1}, 4),
    ({"type": "Restormer", "dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1,
      "heads": [1, 1, 1, 1]}, 8),
])
def test_torch_export_dynamic_batch_and_size(backbone, multiple):
    torch.manual_seed(0)
    # s=8: the example's deepest level is 8×8 too, which must not pin H×W to the example's size
    model = PIPNet(backbone, prompt_dims=8, prompt_sizes=8).eval()
    batch = Dim("batch", min=1, max=64)
    h, w = multiple * Dim("h", min=1, max=512), multiple * Dim("w", min=1, max=512)
    example = (torch.rand(2, 3, 4 * multiple, 4 * multiple), torch.rand(2, 5))
    program = export(model, example, dynamic_shapes=({0: batch, 2: h, 3: w}, {0: batch}))
    run = program.module()
    for shape in [(1, 3, 3 * multiple, 5 * multiple), (3, 3, 6 * multiple, 4 * multiple)]:
        x, omega = torch.rand(*shape), torch.rand(shape[0], 5)
        with torch.no_grad():
            torch.testing.assert_close(run(x, omega), model(x, omega), rtol=0, atol=1e-5)


def test_eager_omega_checks_stay_clear():
    _, model = _mixed()
    x = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="non-negative"):
        model(x, torch.tensor([[1.0, -1, 0, 0, 0]] * 2))
    with pytest.raises(ValueError, match="all zero"):
        model(x, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="NaN"):
        model(x, torch.full((2, 5), float("nan")))


# ------------------------------------------------------------------ a skip that a plain function makes
def _discriminator_reference(net, x, pips, omega):
    """BasicSR's UNetDiscriminatorSN forward, written out, with PIP on the three skips before the adds."""
    def act(t):
        return F.leaky_relu(t, negative_slope=0.2)

    def up(t):
        return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

    x0 = act(net.conv0(x))
    x1 = act(net.conv1(x0))
    x2 = act(net.conv2(x1))
    x3 = act(net.conv3(x2))
    x4 = act(net.conv4(up(x3))) + pips[2](x2, omega)
    x5 = act(net.conv5(up(x4))) + pips[1](x1, omega)
    x6 = act(net.conv6(up(x5))) + pips[0](x0, omega)
    return net.conv9(act(net.conv8(act(net.conv7(x6)))))


def test_function_made_skips_of_basicsr_unet_discriminator():
    torch.manual_seed(0)
    net = bsr.build_arch({"type": "UNetDiscriminatorSN", "num_in_ch": 3, "num_feat": 8}).eval()
    model = wrap_with_pip(net, **SMALL).eval()
    info = model.skip_info
    assert [i["module"] for i in info] == ["leaky_relu#0", "leaky_relu#1", "leaky_relu#2"]
    assert {i["strategy"] for i in info} == {"intercept"} and [i["channels"] for i in info] == [8, 16, 32]
    x, w = torch.rand(2, 3, 32, 32), torch.tensor([[0.0, 1.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0, 0.5]])
    with torch.no_grad():
        want = _discriminator_reference(net, x, model.pip_levels, w)
        torch.testing.assert_close(model(x, w), want, rtol=0, atol=1e-5)
        assert not torch.allclose(want, net(x))
        twin = pickle.loads(pickle.dumps(model))
        torch.testing.assert_close(twin(x, w), want, rtol=0, atol=1e-5)
        rebuilt = build_pipnet(model.pip_config(), backbone=net)   # levels=["leaky_relu#0", ...] again
        rebuilt.load_state_dict(model.state_dict())
        torch.testing.assert_close(rebuilt.eval()(x, w), want, rtol=0, atol=1e-5)
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=False)
        scale = want.abs().max()   # a random discriminator's outputs are large: compare relative to them
        torch.testing.assert_close(compiled(x, w) / scale, want / scale, rtol=0, atol=1e-5)


def test_unet_discriminator_from_yaml_through_the_basicsr_arch():
    opt = safe_load_yaml(is_text=True, path_or_text="""
network_g:
  type: PIPNet
  backbone: {type: UNetDiscriminatorSN, num_in_ch: 3, num_feat: 8}
  degradations: [rain, haze]
  prompt_dims: 8
  prompt_sizes: 4
""")["network_g"]
    model = bsr.ARCH_REGISTRY.get(opt.pop("type"))(**opt)
    assert len(model.pip_levels) == 3 and model.degradations == ["rain", "haze"]
    assert model.pip_config()["backbone"]["type"] == "UNetDiscriminatorSN"
    with torch.no_grad():
        assert model.eval()(torch.rand(1, 3, 32, 32), "haze").shape == (1, 1, 32, 32)
    with pytest.raises(ValueError, match="called leaky_relu"):
        wrap_with_pip(model.backbone, levels=["leaky_relu#9"], **SMALL)
