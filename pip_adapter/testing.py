"""Hand-written forwards of NAFNet and Restormer with PIP on each skip: the ground truth that the wrapper's
automatic insertion is checked against (the wrap tests) and timed against (bench/wrap_overhead.py)."""
import torch
from torch import Tensor, nn

from pip_adapter.utils.tensor import pad_to_multiple


def nafnet_reference(net: nn.Module, inp: Tensor, pips, w: Tensor) -> Tensor:
    """NAFNet's forward with PIP applied to the skip right before ``up(x) + skip``."""
    h, wd = inp.shape[-2:]
    inp = net.check_image_size(inp)
    x = net.intro(inp)
    skips = []
    for enc, down in zip(net.encoders, net.downs):
        x = enc(x)
        skips.append(x)
        x = down(x)
    x = net.middle_blks(x)
    n = len(skips)
    for j, (dec, up, skip) in enumerate(zip(net.decoders, net.ups, skips[::-1])):
        x = up(x) + pips[n - 1 - j](skip, w)
        x = dec(x)
    x = net.ending(x) + inp
    return x[:, :, :h, :wd]


def restormer_reference(net: nn.Module, img: Tensor, pips, w: Tensor) -> Tensor:
    """Restormer's (or the release variant's) forward with PIP applied to each skip right before the concat."""
    h, wd = img.shape[-2:]
    img = pad_to_multiple(img, net.pad_multiple)
    e1 = net.encoder_level1(net.patch_embed(img))
    e2 = net.encoder_level2(net.down1_2(e1))
    e3 = net.encoder_level3(net.down2_3(e2))
    lat = net.latent(net.down3_4(e3))
    if hasattr(net, "chnl_reduce3"):
        lat = net.chnl_reduce3(lat)
    x = net.decoder_level3(net.reduce_chan_level3(torch.cat([net.up4_3(lat), pips[2](e3, w)], 1)))
    x = net.decoder_level2(net.reduce_chan_level2(torch.cat([net.up3_2(x), pips[1](e2, w)], 1)))
    x = net.refinement(net.decoder_level1(torch.cat([net.up2_1(x), pips[0](e1, w)], 1)))
    return (net.output(x) + img)[:, :, :h, :wd]
