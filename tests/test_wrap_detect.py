"""Skip detection and insertion across U-Net shapes: the wrapper equals a hand-written forward with PIP on
the skip branch (NAFNet, Restormer, the release's Restormer, a concat U-Net, a functional U-Net with cropped
skips, an encoder returning a feature list, gated skips), and a network without skips is refused."""
import pytest
import torch
import torch.nn.functional as F

from pip_adapter.backbones import NAFNet, Restormer, RestormerPIPRelease
from pip_adapter.testing import nafnet_reference, restormer_reference
from pip_adapter.wrap import probe_skips, wrap_with_pip
from pip_adapter.wrap.detect import parse_level_spec
from tests.helpers_wrap import FunctionalUNet, GatedUNet, ListUNet, PlainNet, SharedPoolUNet, TinyCatUNet, TinyNAF

SMALL = dict(prompt_dims=8, prompt_sizes=4)


def tiny_nafnet():
    torch.manual_seed(0)
    return NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 1, 1], dec_blk_nums=[1, 1, 1])


def tiny_restormer(cls=Restormer):
    torch.manual_seed(0)
    return cls(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 2, 2])


def _check(model, wrapped, reference, sizes=((2, 3, 16, 24), (3, 3, 24, 8))):
    for shape in sizes:
        x = torch.rand(*shape)
        labels = torch.arange(shape[0]) % 5
        w = F.one_hot(labels, 5).float()
        with torch.no_grad():
            got = wrapped(x, labels)
            ref = reference(x, wrapped.pip_levels, w)
            base = model(x)
        assert (got - ref).abs().max().item() <= 1e-6, shape
        assert (got - base).abs().max().item() > 1e-4   # PIP really changed something


def test_nafnet_matches_hand_written_forward():
    net = tiny_nafnet().eval()
    wrapped = wrap_with_pip(net, **SMALL).eval()
    assert [i["module"] for i in wrapped.skip_info] == ["encoders.0", "encoders.1", "encoders.2"]
    assert [i["merge"] for i in wrapped.skip_info] == ["add"] * 3
    assert [i["channels"] for i in wrapped.skip_info] == [8, 16, 32]
    assert [i["reduction"] for i in wrapped.skip_info] == [1, 2, 4]
    # odd sizes go through NAFNet's padding and cropping
    _check(net, wrapped, lambda x, p, w: nafnet_reference(net, x, p, w),
           sizes=((2, 3, 16, 24), (1, 3, 15, 21), (3, 3, 24, 8)))


@pytest.mark.parametrize("cls", [Restormer, RestormerPIPRelease])
def test_restormer_matches_hand_written_forward(cls):
    net = tiny_restormer(cls).eval()
    wrapped = wrap_with_pip(net, **SMALL).eval()
    info = wrapped.skip_info
    assert [i["module"] for i in info] == ["encoder_level1", "encoder_level2", "encoder_level3"]
    assert [i["merge"] for i in info] == ["concat"] * 3
    assert [i["reduction"] for i in info] == [1, 2, 4]
    assert all(i["other_consumers"] == [n] for i, n in zip(info, ["down1_2", "down2_3", "down3_4"]))
    _check(net, wrapped, lambda x, p, w: restormer_reference(net, x, p, w),
           sizes=((2, 3, 16, 24), (1, 3, 12, 20)))


@pytest.mark.parametrize("cls,merge,strategy", [
    (TinyNAF, "add", "producer"),
    (TinyCatUNet, "concat", "producer"),
    (FunctionalUNet, "concat", "intercept"),
    (ListUNet, "concat", "consumer"),
    (GatedUNet, "other", "consumer"),
    (SharedPoolUNet, "concat", "producer"),
])
def test_unet_matrix(cls, merge, strategy):
    torch.manual_seed(0)
    net = cls().eval()
    wrapped = wrap_with_pip(net, **SMALL).eval()
    info = wrapped.skip_info
    assert len(info) >= 2 and len(wrapped.pip_levels) == len(info)
    assert {i["merge"] for i in info} == {merge}
    assert {i["strategy"] for i in info} == {strategy}
    assert [i["reduction"] for i in info] == sorted(i["reduction"] for i in info)   # shallowest first
    ref = net.reference if cls is TinyNAF else (lambda x, p, w: net(x, p, w))
    _check(net, wrapped, ref)


def test_list_encoder_levels_are_list_elements():
    wrapped = wrap_with_pip(ListUNet(), **SMALL)
    assert [i["module"] for i in wrapped.skip_info] == ["encoder[0]", "encoder[1]"]
    assert [i["channels"] for i in wrapped.skip_info] == [4, 8]


def test_gated_skip_goes_through_the_gate():
    info = wrap_with_pip(GatedUNet(), **SMALL).skip_info
    assert [i["merge_module"] for i in info] == ["gate1", "gate2"]
    assert [i["skip_consumers"] for i in info] == [["gate1"], ["gate2"]]


def test_plain_network_is_refused_with_advice():
    with pytest.raises(ValueError) as err:
        wrap_with_pip(PlainNet())
    msg = str(err.value)
    assert "no U-Net skip" in msg and "levels=" in msg and "global residual" in msg


def test_levels_override_and_bad_names():
    net = tiny_nafnet()
    wrapped = wrap_with_pip(net, levels=["encoders.1"], **SMALL)
    assert [i["module"] for i in wrapped.skip_info] == ["encoders.1"]
    x = torch.rand(1, 3, 16, 24)
    ident = [lambda z, w: z, wrapped.pip_levels[0], lambda z, w: z]
    with torch.no_grad():
        ref = nafnet_reference(net, x, ident, F.one_hot(torch.tensor([2]), 5).float())
        assert (wrapped(x, [2]) - ref).abs().max().item() <= 1e-6
    with pytest.raises(ValueError, match="not a sub-module"):
        wrap_with_pip(tiny_nafnet(), levels=["encoders.9"])
    # a typo suggests the closest name first; a wild guess suggests the modules whose output feeds a skip
    with pytest.raises(ValueError, match=r"did you mean 'encoders\.1', "):
        wrap_with_pip(tiny_nafnet(), levels=["encoder.1"])
    with pytest.raises(ValueError) as err:
        wrap_with_pip(tiny_nafnet(), levels=["xyz"])
    first = str(err.value).split("did you mean ")[1].split(", ")[:3]
    assert [n.strip("'") for n in first] == ["encoders.0", "encoders.0.0", "encoders.1"]
    # forcing a level on a plain network: PIP replaces that module's output
    forced = wrap_with_pip(PlainNet(), levels=["body.0"], **SMALL)
    assert forced.skip_info[0]["channels"] == 4
    assert parse_level_spec("encoder[1]") == ("encoder", (1,))
    assert parse_level_spec("a.b['x'][0]") == ("a.b", ("x", 0))


def test_probe_restores_training_mode_and_keeps_no_tensors():
    net = tiny_nafnet().train()
    res = probe_skips(net)
    assert all(m.training for m in net.modules())
    assert len(res.levels) == 3 and res.input_shape == (1, 3, 64, 96)


def test_probe_failure_is_explained():
    with pytest.raises(ValueError, match="example_input"):
        wrap_with_pip(tiny_nafnet(), example_input=torch.rand(1, 5, 32, 32))


def test_square_and_padded_probe_inputs_give_the_same_levels():
    # square inputs make channel×channel attention maps look like feature maps by size alone
    for shape in [(1, 3, 32, 32), (1, 3, 16, 16)]:
        info = wrap_with_pip(tiny_restormer(), example_input=torch.rand(*shape), **SMALL).skip_info
        assert [(i["module"], i["reduction"]) for i in info] == [
            ("encoder_level1", 1), ("encoder_level2", 2), ("encoder_level3", 4)], shape
    # NAFNet pads 30×45 to 32×48 inside forward: reductions are still whole powers of two
    info = wrap_with_pip(tiny_nafnet(), example_input=torch.rand(1, 3, 30, 45), **SMALL).skip_info
    assert [(i["module"], i["reduction"]) for i in info] == [("encoders.0", 1), ("encoders.1", 2), ("encoders.2", 4)]


def test_square_probe_does_not_take_channel_attention_for_a_skip():
    # on a square input NAFNet's global-pooled 1×1 attention vector looks like a (very coarse) feature map;
    # being broadcast back onto the block's feature is no U-Net path, so block inputs are not skips
    for example in [torch.zeros(1, 3, 32, 32), torch.rand(1, 3, 16, 16)]:
        info = wrap_with_pip(tiny_nafnet(), example_input=example, **SMALL).skip_info
        assert [(i["module"], i["reduction"]) for i in info] == [
            ("encoders.0", 1), ("encoders.1", 2), ("encoders.2", 4)]
    # too small a probe: the 1×1 bottleneck is not a level, and the notes say why
    small = wrap_with_pip(tiny_nafnet(), example_input=torch.rand(1, 3, 8, 8), **SMALL)
    assert len(small.skip_info) == 2 and "larger example_input" in small.describe()
