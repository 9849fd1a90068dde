"""Restormer and the release variant: block maths, U wiring (concat skips), padding, shapes, gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pip_adapter.backbones import Restormer, RestormerPIPRelease
from pip_adapter.backbones.restormer import GDFN, RestormerLayerNorm, TransposedAttention, pad_to_multiple

TINY = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 2, 4])
CONV_ONLY = dict(dim=8, num_blocks=[0, 0, 0, 0], num_refinement_blocks=0, heads=[1, 1, 1, 1])
CLASSES = [Restormer, RestormerPIPRelease]


@pytest.fixture(autouse=True)
def _seeded():
    """Fixed inputs: every test sees the same random tensors on every run."""
    torch.manual_seed(1234)


def _perturb(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model


def test_layernorm_withbias_and_biasfree():
    x = torch.randn(2, 6, 4, 5) * 2 + 0.5
    mu = x.mean(1, keepdim=True)
    var = x.var(1, keepdim=True, unbiased=False)
    ln = _perturb(RestormerLayerNorm(6, "WithBias"))
    w, b = ln.body.weight[None, :, None, None], ln.body.bias[None, :, None, None]
    torch.testing.assert_close(ln(x), (x - mu) / (var + 1e-5).sqrt() * w + b, atol=1e-5, rtol=1e-5)
    ln = _perturb(RestormerLayerNorm(6, "BiasFree"))
    assert not hasattr(ln.body, "bias")
    w = ln.body.weight[None, :, None, None]
    torch.testing.assert_close(ln(x), x / (var + 1e-5).sqrt() * w, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="LayerNorm_type"):
        RestormerLayerNorm(6, "Batch")


def test_transposed_attention_matches_per_head_reference():
    att = _perturb(TransposedAttention(8, 2, bias=True)).eval()
    x = torch.randn(2, 8, 5, 6)
    qkv = F.conv2d(F.conv2d(x, att.qkv.weight, att.qkv.bias), att.qkv_dwconv.weight, att.qkv_dwconv.bias,
                   padding=1, groups=24)
    q, k, v = qkv[:, :8], qkv[:, 8:16], qkv[:, 16:]
    outs = []
    for h in range(2):  # channel-wise attention, one 4x4 map per head
        sl = slice(4 * h, 4 * h + 4)
        qh, kh, vh = (t[:, sl].flatten(2) for t in (q, k, v))
        qh = qh / qh.norm(dim=-1, keepdim=True)
        kh = kh / kh.norm(dim=-1, keepdim=True)
        a = torch.softmax(torch.einsum("bcn,bdn->bcd", qh, kh) * att.temperature[h], dim=-1)
        outs.append(torch.einsum("bcd,bdn->bcn", a, vh))
    want = F.conv2d(torch.cat(outs, 1).reshape(2, 8, 5, 6), att.project_out.weight, att.project_out.bias)
    torch.testing.assert_close(att(x), want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        TransposedAttention(6, 4, bias=False)


def test_gdfn_matches_reference_and_hidden_width():
    ffn = _perturb(GDFN(48, 2.66, bias=False))
    assert ffn.project_in.out_channels == 2 * 127 and ffn.project_out.in_channels == 127  # int(48*2.66)
    x = torch.randn(1, 48, 4, 4)
    h = F.conv2d(F.conv2d(x, ffn.project_in.weight), ffn.dwconv.weight, padding=1, groups=254)
    want = F.conv2d(F.gelu(h[:, :127]) * h[:, 127:], ffn.project_out.weight)
    torch.testing.assert_close(ffn(x), want, atol=1e-5, rtol=1e-5)


def _conv_only_reference(net: Restormer, x: torch.Tensor) -> torch.Tensor:
    """The U with no transformer blocks, written out; cat order is [upsampled, skip]."""
    e1 = net.patch_embed.proj(x)
    e2 = F.pixel_unshuffle(F.conv2d(e1, net.down1_2.body[0].weight, padding=1), 2)
    e3 = F.pixel_unshuffle(F.conv2d(e2, net.down2_3.body[0].weight, padding=1), 2)
    z = F.pixel_unshuffle(F.conv2d(e3, net.down3_4.body[0].weight, padding=1), 2)
    if isinstance(net, RestormerPIPRelease):
        z = F.conv2d(z, net.chnl_reduce3.weight)  # the release shrinks the latent before upsampling
    up = lambda t, m: F.pixel_shuffle(F.conv2d(t, m.body[0].weight, padding=1), 2)  # noqa: E731
    d3 = F.conv2d(torch.cat([up(z, net.up4_3), e3], 1), net.reduce_chan_level3.weight)
    d2 = F.conv2d(torch.cat([up(d3, net.up3_2), e2], 1), net.reduce_chan_level2.weight)
    d1 = torch.cat([up(d2, net.up2_1), e1], 1)
    return F.conv2d(d1, net.output.weight, padding=1) + x


@pytest.mark.parametrize("cls", CLASSES)
def test_wiring_of_the_u(cls):
    net = _perturb(cls(**CONV_ONLY)).eval()
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(net(x), _conv_only_reference(net, x), atol=1e-5, rtol=1e-5)


def test_release_level3_channel_path():
    net = RestormerPIPRelease(**TINY)
    assert (net.chnl_reduce3.in_channels, net.chnl_reduce3.out_channels) == (64, 32)
    assert net.up4_3.body[0].in_channels == 32
    assert net.reduce_chan_level3.in_channels == 16 + 32
    assert not hasattr(Restormer(**TINY), "chnl_reduce3")


@pytest.mark.parametrize("cls", CLASSES)
def test_skips_come_from_encoder_levels_and_merge_by_concat(cls):
    """Hook contract for PIP: the merge module's input is cat([up output, encoder_level output])."""
    net = _perturb(cls(**TINY)).eval()
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name in ("encoder_level1", "encoder_level2", "encoder_level3", "up4_3", "up3_2", "up2_1"):
        hooks.append(getattr(net, name).register_forward_hook(
            lambda _m, _i, out, name=name: seen.__setitem__(name, out)))
    for name in ("reduce_chan_level3", "reduce_chan_level2", "decoder_level1"):
        hooks.append(getattr(net, name).register_forward_pre_hook(
            lambda _m, args, name=name: seen.__setitem__(name, args[0])))
    with torch.no_grad():
        net(torch.rand(1, 3, 16, 16))
    for h in hooks:
        h.remove()
    assert [seen[f"encoder_level{i}"].shape[1] for i in (1, 2, 3)] == [8, 16, 32]
    torch.testing.assert_close(seen["reduce_chan_level3"], torch.cat([seen["up4_3"], seen["encoder_level3"]], 1))
    torch.testing.assert_close(seen["reduce_chan_level2"], torch.cat([seen["up3_2"], seen["encoder_level2"]], 1))
    torch.testing.assert_close(seen["decoder_level1"], torch.cat([seen["up2_1"], seen["encoder_level1"]], 1))


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize("hw", [(13, 21), (3, 5), (1, 1), (16, 8)])
def test_any_size_returns_input_shape(cls, hw):
    net = _perturb(cls(**TINY)).eval()
    x = torch.rand(1, 3, *hw)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_padding_is_reflect_when_possible_else_replicate_and_a_noop_on_multiples():
    x = torch.rand(1, 3, 13, 21)
    p = pad_to_multiple(x, 8)
    assert p.shape[-2:] == (16, 24)
    torch.testing.assert_close(p, F.pad(x, (0, 3, 0, 3), mode="reflect"))
    small = torch.rand(1, 3, 3, 20)
    torch.testing.assert_close(pad_to_multiple(small, 8), F.pad(small, (0, 4, 0, 5), mode="replicate"))
    m = torch.rand(1, 3, 8, 16)
    assert pad_to_multiple(m, 8) is m


@pytest.mark.parametrize("cls", CLASSES)
def test_forward_equals_cropped_forward_on_reflect_padded_input(cls):
    net = _perturb(cls(**TINY)).eval()
    x = torch.rand(1, 3, 13, 21)
    with torch.no_grad():
        y = net(x)
        y_ref = net(F.pad(x, (0, 3, 0, 3), mode="reflect"))[:, :, :13, :21]
    torch.testing.assert_close(y, y_ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cls", CLASSES)
def test_batch_independent_and_gradients_reach_every_parameter(cls):
    net = _perturb(cls(**TINY)).double()  # float64: the perturbed net has large activations
    x = torch.rand(2, 3, 10, 12, dtype=torch.float64)
    with torch.no_grad():
        both = net.eval()(x)
        single = torch.cat([net(x[i:i + 1]) for i in range(2)])
    torch.testing.assert_close(both, single, atol=1e-9, rtol=1e-9)
    net.train()
    xr = x.clone().requires_grad_(True)
    net(xr).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert xr.grad.abs().sum() > 0


def test_zero_output_conv_returns_input():
    net = _perturb(Restormer(**TINY)).eval()
    with torch.no_grad():
        net.output.weight.zero_()
        x = torch.rand(1, 3, 9, 11)
        assert torch.equal(net(x), x)


def test_dual_pixel_task_and_bias_options():
    net = _perturb(Restormer(inp_channels=6, out_channels=3, dual_pixel_task=True, bias=True,
                             LayerNorm_type="BiasFree", **TINY)).eval()
    keys = set(net.state_dict())
    assert {"skip_conv.weight", "skip_conv.bias", "output.bias", "encoder_level1.0.attn.qkv.bias"} <= keys
    assert "encoder_level1.0.norm1.body.bias" not in keys
    x = torch.rand(1, 6, 16, 8)
    with torch.no_grad():
        y = net(x)
        # the residual comes from skip_conv on the embedding, not from the image
        e1 = net.patch_embed(x)
        s1 = net.encoder_level1(e1)
        s2 = net.encoder_level2(net.down1_2(s1))
        s3 = net.encoder_level3(net.down2_3(s2))
        z = net.latent(net.down3_4(s3))
        d = net.decoder_level3(net.reduce_chan_level3(torch.cat([net.up4_3(z), s3], 1)))
        d = net.decoder_level2(net.reduce_chan_level2(torch.cat([net.up3_2(d), s2], 1)))
        d1 = net.refinement(net.decoder_level1(torch.cat([net.up2_1(d), s1], 1)))
        want = net.output(d1 + net.skip_conv(e1))
    assert y.shape == (1, 3, 16, 8)
    torch.testing.assert_close(y, want, atol=1e-5, rtol=1e-5)


def test_invalid_configs_and_inputs_raise_valueerror():
    with pytest.raises(ValueError, match="num_blocks"):
        Restormer(dim=8, num_blocks=[1, 1, 1])
    with pytest.raises(ValueError, match="heads"):
        Restormer(dim=8, heads=[1, 0, 1, 1])
    with pytest.raises(ValueError, match="divisible"):
        Restormer(dim=6, num_blocks=[1, 1, 1, 1], heads=[4, 1, 1, 1])
    with pytest.raises(ValueError, match="LayerNorm_type"):
        Restormer(dim=8, LayerNorm_type="withbias")
    with pytest.raises(ValueError, match="dual_pixel_task"):
        Restormer(inp_channels=6, out_channels=3, dim=8)
    net = RestormerPIPRelease(**TINY)
    with pytest.raises(ValueError, match=r"B×3×H×W"):
        net(torch.rand(1, 1, 8, 8))
