"""Degradation-Mix on a collated batch."""
import pytest
import torch

from pip_adapter.data import degradation_mix


def _batch(b=6, h=8, w=10):
    # every sample is constant = its index, so the source of each pixel is readable
    lq = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, h, w).clone()
    return lq, lq + 100, torch.arange(b) % 5


def test_halves_are_swapped_consistently_and_labels_are_area_weighted():
    lq, gt, labels = _batch()
    saw_axes = set()
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        lq2, gt2, omega = degradation_mix(lq, gt, labels, generator=g, num_types=5)
        assert omega.shape == (6, 5)
        assert torch.allclose(omega.sum(1), torch.ones(6))
        assert torch.equal(gt2 - 100, lq2)  # lq and gt get the same halves
        for i in range(6):
            top_left = int(lq2[i, 0, 0, 0])
            assert top_left == i  # the first half is kept
            other = int(lq2[i, 0, -1, -1])
            rows_mixed = bool((lq2[i, 0, :, 0] != i).any())
            cols_mixed = bool((lq2[i, 0, 0, :] != i).any())
            if other != i:
                saw_axes.add("H" if rows_mixed else "W")
                frac = 4 / 8 if rows_mixed else 5 / 10
                expect = torch.zeros(5)
                expect[i % 5] += frac
                expect[other % 5] += 1 - frac
                assert torch.allclose(omega[i], expect)
                assert not (rows_mixed and cols_mixed)
        # the same generator seed reproduces the same mix
        again = degradation_mix(lq, gt, labels, generator=torch.Generator().manual_seed(seed), num_types=5)
        assert torch.equal(again[0], lq2) and torch.equal(again[2], omega)
    assert saw_axes == {"H", "W"}
    assert torch.equal(lq, _batch()[0])  # inputs untouched


def test_odd_sizes_and_soft_inputs():
    lq, gt, _ = _batch(b=4, h=7, w=7)
    soft = torch.tensor([[2.0, 0, 0], [0, 1, 1], [0, 0, 3], [1, 1, 1]])
    _, _, omega = degradation_mix(lq, gt, soft, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(omega.sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="rows but the batch has"):
        degradation_mix(lq, gt, soft[:3])
    with pytest.raises(ValueError, match="non-negative"):
        degradation_mix(lq, gt, -soft)
    with pytest.raises(ValueError, match="B×C×H×W"):
        degradation_mix(lq[0], gt[0], soft)
