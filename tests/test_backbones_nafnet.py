"""NAFNet: block maths, wiring of the U (additive skips), padding, shapes, gradients, validation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pip_adapter.backbones import NAFNet
from pip_adapter.backbones.nafnet import LayerNorm2d, NAFBlock

TINY = dict(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1, 2], dec_blk_nums=[1, 1])


@pytest.fixture(autouse=True)
def _seeded():
    """Fixed inputs: every test sees the same random tensors on every run."""
    torch.manual_seed(1234)


def _perturb(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Move every parameter away from its init (betas/gammas start at 0, norms at 1/0)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model


def test_layernorm2d_normalises_channels_per_pixel():
    ln = _perturb(LayerNorm2d(6))
    x = torch.randn(2, 6, 5, 7) * 3 + 1
    want = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), want, atol=1e-5, rtol=1e-5)


def _nafblock_reference(blk: NAFBlock, inp: torch.Tensor) -> torch.Tensor:
    """The block written out from the paper with functional ops and the block's own weights."""
    def ln(x, m):
        mu = x.mean(1, keepdim=True)
        var = ((x - mu) ** 2).mean(1, keepdim=True)
        return (x - mu) / (var + 1e-6).sqrt() * m.weight[None, :, None, None] + m.bias[None, :, None, None]

    def conv(x, m, groups=1, padding=0):
        return F.conv2d(x, m.weight, m.bias, padding=padding, groups=groups)

    x = conv(ln(inp, blk.norm1), blk.conv1)
    x = conv(x, blk.conv2, groups=x.shape[1], padding=1)
    x1, x2 = x.chunk(2, 1)
    x = x1 * x2
    att = conv(x.mean((2, 3), keepdim=True), blk.sca[1])
    x = conv(x * att, blk.conv3)
    y = inp + blk.beta * x
    z = conv(ln(y, blk.norm2), blk.conv4)
    z1, z2 = z.chunk(2, 1)
    return y + blk.gamma * conv(z1 * z2, blk.conv5)


def test_nafblock_matches_written_out_reference():
    blk = _perturb(NAFBlock(8)).eval()
    x = torch.randn(2, 8, 6, 9)
    torch.testing.assert_close(blk(x), _nafblock_reference(blk, x), atol=1e-5, rtol=1e-5)


def test_fresh_nafblock_is_identity():
    x = torch.randn(1, 8, 5, 5)
    assert torch.equal(NAFBlock(8)(x), x)


def test_zero_scales_and_zero_ending_return_input_exactly():
    net = _perturb(NAFNet(**TINY)).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith((".beta", ".gamma")) or name.startswith("ending."):
                p.zero_()
    x = torch.rand(2, 3, 11, 14)
    with torch.no_grad():
        assert torch.equal(net(x), x)


def test_wiring_with_identity_blocks_is_the_plain_conv_u():
    """With every block the identity (beta = gamma = 0) NAFNet is intro -> downs -> ups + skips -> ending."""
    net = _perturb(NAFNet(**TINY)).eval()
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith((".beta", ".gamma")):
                p.zero_()
    x = torch.rand(1, 3, 12, 20)  # multiple of 4: no padding
    with torch.no_grad():
        feat = net.intro(x)
        skips = []
        for down in net.downs:
            skips.append(feat)
            feat = down(feat)
        for up, skip in zip(net.ups, reversed(skips)):
            feat = F.pixel_shuffle(F.conv2d(feat, up[0].weight), 2) + skip
        want = net.ending(feat) + x
        torch.testing.assert_close(net(x), want, atol=1e-6, rtol=1e-5)


def test_skips_come_from_encoders_and_merge_with_plain_addition():
    """Hook contract the PIP wrapper relies on: decoder j input == ups[j] output + encoders[L-1-j] output."""
    net = _perturb(NAFNet(**TINY)).eval()
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for i, m in enumerate(net.encoders):
        handles.append(m.register_forward_hook(lambda _m, _i, out, i=i: seen.__setitem__(f"enc{i}", out)))
    for j, m in enumerate(net.ups):
        handles.append(m.register_forward_hook(lambda _m, _i, out, j=j: seen.__setitem__(f"up{j}", out)))
    for j, m in enumerate(net.decoders):
        handles.append(m.register_forward_pre_hook(lambda _m, args, j=j: seen.__setitem__(f"dec{j}", args[0])))
    x = torch.rand(1, 3, 13, 21)
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    n = len(net.encoders)
    for i in range(n):  # padded to 16x24, halved at each level
        assert seen[f"enc{i}"].shape == (1, 8 * 2 ** i, 16 // 2 ** i, 24 // 2 ** i)
    for j in range(n):
        torch.testing.assert_close(seen[f"dec{j}"], seen[f"up{j}"] + seen[f"enc{n - 1 - j}"])


def test_any_size_is_zero_padded_right_bottom_and_cropped_back():
    net = _perturb(NAFNet(**TINY)).eval()
    x = torch.rand(2, 3, 13, 22)
    with torch.no_grad():
        y = net(x)
        padded = F.pad(x, (0, 2, 0, 3))  # to 16x24
        y_ref = net(padded)[:, :, :13, :22]
    assert y.shape == x.shape
    torch.testing.assert_close(y, y_ref, atol=1e-6, rtol=1e-5)
    assert net.check_image_size(padded) is padded


@pytest.mark.parametrize("hw", [(1, 1), (7, 5), (32, 9)])
def test_shapes_for_odd_sizes(hw):
    net = _perturb(NAFNet(**TINY)).eval()
    x = torch.rand(1, 3, *hw)
    with torch.no_grad():
        y = net(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_batch_elements_are_independent():
    net = _perturb(NAFNet(**TINY)).double().eval()
    x = torch.rand(3, 3, 10, 12, dtype=torch.float64)
    with torch.no_grad():
        both = net(x)
        single = torch.cat([net(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(both, single, atol=1e-10, rtol=1e-10)


def test_gradients_reach_every_parameter():
    net = _perturb(NAFNet(**TINY))
    x = torch.rand(2, 3, 12, 10, requires_grad=True)
    net(x).square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_fresh_net_trains_its_scales():
    """At init only beta/gamma and intro/ending/ups/downs matter; their gradients must be non-zero."""
    net = NAFNet(**TINY)
    net(torch.rand(1, 3, 8, 8)).sum().backward()
    assert net.encoders[0][0].beta.grad.abs().sum() > 0
    assert net.ending.weight.grad.abs().sum() > 0


def test_default_constructor_has_no_levels():
    net = NAFNet()
    assert len(net.encoders) == 0 and net.padder_size == 1
    x = torch.rand(1, 3, 5, 6)
    assert net(x).shape == x.shape


def test_grayscale_and_width_config():
    net = NAFNet(img_channel=1, width=4, middle_blk_num=0, enc_blk_nums=[0, 1, 0], dec_blk_nums=[1, 0, 0])
    assert net.padder_size == 8
    assert net.downs[2].out_channels == 32 and net.ups[0][0].out_channels == 64
    assert net(torch.rand(1, 1, 9, 9)).shape == (1, 1, 9, 9)


def test_invalid_configs_and_inputs_raise_valueerror():
    with pytest.raises(ValueError, match="same length"):
        NAFNet(enc_blk_nums=[1, 1], dec_blk_nums=[1])
    with pytest.raises(ValueError, match="enc_blk_nums"):
        NAFNet(enc_blk_nums=[1, -1], dec_blk_nums=[1, 1])
    with pytest.raises(ValueError, match="width"):
        NAFNet(width=0)
    net = NAFNet(**TINY)
    with pytest.raises(ValueError, match=r"B×3×H×W"):
        net(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"B×3×H×W"):
        net(torch.rand(3, 8, 8))
