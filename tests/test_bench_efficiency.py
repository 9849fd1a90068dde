"""bench/efficiency.py on its --quick model set at toy sizes: rows, counts, ratios, memory, profile."""
import pytest

from bench import efficiency as eff

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rows():
    specs = [s for s in eff.quick_specs() if s.group == "nafnet8"]
    return eff.measure(specs, size=32, repeats=2, warmup=1, memory=False)


def test_measure_rows_counts_and_ratio(rows):
    by = {r.name: r for r in rows}
    assert list(by) == ["NAFNet-8", "PIP-NAFNet-8"]
    bare, pip = by["NAFNet-8"], by["PIP-NAFNet-8"]
    assert pip.params > bare.params > 0
    assert pip.macs > bare.macs > 0 and pip.all_macs > bare.all_macs > 0
    assert bare.thop_params <= bare.params
    assert len(pip.latency_all_s) == 2 and pip.latency_s > 0 and pip.cpu_time_s > 0
    (rr,) = eff.ratio_rows(rows)
    assert rr["macs"] == pytest.approx(pip.macs / bare.macs)
    assert rr["latency"] == pytest.approx(pip.latency_s / bare.latency_s)
    text = eff.render(rows, 32, 2, 1, {"cpu": "t"}, "python bench/efficiency.py --quick")
    assert "| PIP-NAFNet-8 | NAFNet-8 |" in text and "### CPU" in text


def test_cpu_peak_memory_in_a_fresh_process():
    peak = eff._cpu_peak_subprocess("quick", "NAFNet-8", 128)
    # one 8×128×128 float map alone is 0.5 MiB; a forward keeps several alive
    assert peak is not None and peak > 2 ** 20


def test_profile_pip_splits_time_by_level_and_submodule():
    spec = next(s for s in eff.quick_specs() if s.name == "PIP-NAFNet-8")
    import torch

    prof = eff.profile_pip(spec.build().eval(), torch.rand(1, 3, 32, 32), repeats=1)
    assert set(prof["levels"]) == {"L1", "L2"}
    assert 0 < prof["pip_s"] <= prof["total_s"] * 1.05
    assert "p2f_attn" in prof["by_kind"] and "out_conv" in prof["by_kind"]
    assert "Name" in prof["top_ops"]
    assert "per PIP sub-module" in eff.render_profile(prof)
