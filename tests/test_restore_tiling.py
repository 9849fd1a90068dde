"""Tiling: tiles agree with the whole-image result away from seams, seams are blended, padding crops back."""
import pytest
import torch
import torch.nn as nn

from pip_adapter.restore.tiling import (count_tiles, pad_to_multiple, ramp_window, run_padded, tile_spans,
                                        tile_starts, tiled_forward)

pytestmark = pytest.mark.usefixtures("one_thread")


def _local_net(seed=0):
    torch.manual_seed(seed)
    # receptive field radius 3: a pixel further than 3 from a tile border sees no padding
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 3, 3, padding=1)).eval()


def test_tile_starts_cover_the_image():
    for length, tile, overlap in [(100, 32, 8), (64, 64, 8), (10, 32, 4), (97, 30, 10)]:
        starts = tile_starts(length, tile, overlap)
        covered = set()
        for s in starts:
            covered.update(range(s, min(length, s + tile)))
        assert covered == set(range(length))
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
        assert starts[0] == 0 and starts[-1] == max(0, length - tile)
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(100, 16, 16)


def test_tile_spans_aligned_to_the_network_multiple():
    for length in (100, 97, 64, 33):
        spans = tile_spans(length, 32, 8, align=8)
        assert all(s % 8 == 0 for s, _ in spans)
        assert spans[-1][0] + spans[-1][1] == length and all(size >= min(32, length) for _, size in spans)
        assert all(size < 32 + 8 for _, size in spans)
        for (a, sa), (b, _) in zip(spans, spans[1:]):
            assert a + sa - b >= 8  # requested overlap kept


def test_ramp_window_positive_and_flat_inside():
    w = ramp_window(32, 8, 8)
    assert torch.all(w[8:24] == 1) and torch.all(w[:2] == 0) and torch.all(w[-2:] == 0)
    assert torch.all(w[:8][1:] >= w[:8][:-1])
    # the two sides of an overlap add up to a positive weight everywhere
    a, b = ramp_window(32, 0, 8), ramp_window(32, 8, 0)
    assert torch.all(a[-8:] + b[:8] > 0.99)


@torch.no_grad()
def test_tiles_match_whole_image_away_from_seams():
    net = _local_net()
    x = torch.rand(1, 3, 70, 90)
    whole = net(x)
    tiled = tiled_forward(net, x, tile=32, overlap=12)
    assert tiled.shape == whole.shape
    # overlap 12 = 4·(receptive radius 3): the blended pixels come only from tile parts that saw no padding
    assert torch.allclose(tiled, whole, atol=1e-5), (tiled - whole).abs().max()


@torch.no_grad()
def test_tiles_close_with_small_overlap_except_near_seams():
    net = _local_net(1)
    x = torch.rand(1, 3, 64, 64)
    whole = net(x)
    tiled = tiled_forward(net, x, tile=32, overlap=4)
    diff = (tiled - whole).abs()[0].amax(0)
    starts = tile_starts(64, 32, 4)
    far = torch.ones(64, dtype=torch.bool)
    for s in starts[1:]:
        far[max(0, s - 4):s + 8] = False
    assert diff[far][:, far].max() < 1e-5
    assert diff.max() < 0.5  # near seams: a small blending error, not garbage


@torch.no_grad()
def test_seams_are_blended():
    # a "network" whose output is the tile's own mean brightness: a hard seam if tiles were pasted
    def tile_mean(t):
        return t.mean(dim=(2, 3), keepdim=True).expand_as(t).clone()

    x = torch.zeros(1, 3, 16, 96)
    x[..., 48:] = 1.0
    out = tiled_forward(tile_mean, x, tile=32, overlap=16)[0, 0, 0]
    steps = (out[1:] - out[:-1]).abs()
    jump = out.max() - out.min()
    assert jump > 0.5
    # blended: the change is spread over the overlap, no single step carries more than a fraction of it
    assert steps.max() < 0.25 * jump
    assert torch.all(out[1:] >= out[:-1] - 1e-6)  # monotone transition, no ringing


def test_padding_to_multiple_crops_back():
    calls = []

    def net(t):
        calls.append(tuple(t.shape[-2:]))
        return t * 2

    x = torch.rand(1, 3, 21, 35)
    out = run_padded(net, x, 16)
    assert calls == [(32, 48)] and out.shape == x.shape
    assert torch.allclose(out, x * 2)
    xp, size = pad_to_multiple(torch.rand(1, 3, 3, 5), 16)  # too small to reflect: replicate
    assert xp.shape[-2:] == (16, 16) and size == (3, 5)


def test_tiled_with_multiple_and_progress():
    seen, ticks = [], []

    def net(t):
        seen.append(tuple(t.shape[-2:]))
        return t + 0.5

    x = torch.rand(1, 3, 50, 41)
    out = tiled_forward(net, x, tile=20, overlap=6, multiple=8, progress=ticks.append)
    assert all(h % 8 == 0 and w % 8 == 0 for h, w in seen)
    assert max(max(hw) for hw in seen) <= 24 + 8  # the network never sees more than one (padded) tile
    assert len(ticks) == count_tiles(50, 41, 24, 6, 8) == len(seen)
    assert torch.allclose(out, x + 0.5, atol=1e-6)
