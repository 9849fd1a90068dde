"""bench/common.py and the table/ratio logic of bench/efficiency.py (no model needed)."""
import json
import os

import pytest
import torch

from bench import common
from bench.efficiency import Row, ratio, ratio_rows, render


def test_time_interleaved_rotates_and_counts():
    calls = []
    fns = {n: (lambda n=n: calls.append(n)) for n in ("a", "b", "c")}
    times = common.time_interleaved(fns, repeats=3, warmup=1)
    assert set(times) == {"a", "b", "c"} and all(len(v) == 3 for v in times.values())
    assert calls[:3] == ["a", "b", "c"]  # warm-up round
    assert calls[3:6] == ["a", "b", "c"] and calls[6:9] == ["b", "c", "a"] and calls[9:12] == ["c", "a", "b"]
    assert all(t >= 0 for v in times.values() for t in v)
    with pytest.raises(ValueError):
        common.time_interleaved(fns, repeats=0)


def test_median_and_formatting():
    assert common.median([3.0, 1.0, 2.0]) == 2.0
    assert common.median([1.0, 2.0, 3.0, 10.0]) == 2.5
    assert common.fmt_int(1234567.4) == "1,234,567" and common.fmt_int(None) == "—"
    assert common.fmt_float(1.23456, 3) == "1.235"


def test_markdown_table_shape():
    t = common.markdown_table(["a", "b"], [[1, 2], ["x", "y"]])
    lines = t.splitlines()
    assert lines[0] == "| a | b |" and lines[1] == "|---|---:|" and lines[3] == "| x | y |"
    with pytest.raises(ValueError):
        common.markdown_table(["a", "b"], [[1]])


def test_update_doc_section_replaces_only_its_block(tmp_path):
    path = str(tmp_path / "B.md")
    common.update_doc_section("one", "first", path=path, title="One")
    common.update_doc_section("two", "second", path=path, title="Two")
    text = common.update_doc_section("one", "first again", path=path, title="One")
    assert "first again" in text and "second" in text and "first\n" not in text
    assert text.count("## One") == 1 and text.count("<!-- one:begin -->") == 1
    assert open(path, encoding="utf-8").read() == text


def test_machine_info_and_subprocess():
    info = common.machine_info()
    assert "cpu" in info and info["torch"] == torch.__version__
    out = common.run_json_subprocess("import json; print('noise'); print(json.dumps({'x': 2}))")
    assert out == {"x": 2}
    with pytest.raises(RuntimeError, match="failed"):
        common.run_json_subprocess("raise SystemExit(3)")


def test_rss_readings_are_positive():
    assert common.current_rss_bytes() > 0 and common.peak_rss_bytes() >= common.current_rss_bytes() // 2


def _rows():
    return [Row("bare", None, "cpu", params=100, thop_params=90, macs=1000, latency_s=0.010, peak_mem_bytes=2 ** 20),
            Row("pip", "bare", "cpu", params=125, thop_params=99, macs=1100, latency_s=0.0108,
                peak_mem_bytes=3 * 2 ** 19),
            Row("other", None, "cpu", params=7)]


def test_ratio_rows_values():
    rr = ratio_rows(_rows())
    assert len(rr) == 1 and rr[0]["name"] == "pip" and rr[0]["baseline"] == "bare"
    assert rr[0]["params"] == pytest.approx(1.25) and rr[0]["thop_params"] == pytest.approx(1.1)
    assert rr[0]["macs"] == pytest.approx(1.1) and rr[0]["latency"] == pytest.approx(1.08)
    assert rr[0]["peak_mem"] == pytest.approx(1.5) and rr[0]["all_macs"] is None
    assert ratio(1.0, 0) is None and ratio(None, 2.0) is None
    with pytest.raises(ValueError, match="baseline"):
        ratio_rows([Row("pip", "missing", "cpu", params=1)])


def test_render_has_every_model_and_the_ratio():
    text = render(_rows(), 64, 3, 1, {"cpu": "test"}, "python bench/efficiency.py --quick", ["a note"])
    assert "python bench/efficiency.py --quick" in text and "- a note" in text
    for name in ("| bare |", "| pip |", "| other |"):
        assert name in text
    assert "| pip | bare | 1.250 | 1.100 | 1.100 | — | 1.080 | — | 1.500 |" in text
    assert "10.8" in text  # latency in ms


def test_cpu_times_are_recorded_beside_wall_times():
    cpu = {}
    wall = common.time_interleaved({"spin": lambda: sum(range(20000))}, repeats=2, warmup=0, cpu_out=cpu)
    assert len(cpu["spin"]) == 2 and all(c > 0 for c in cpu["spin"])
    assert all(c <= w * 1.5 + 0.01 for c, w in zip(cpu["spin"], wall["spin"]))


def test_peak_rss_reset_and_growth():
    import gc
    import mmap

    import numpy as np

    # Cyclic garbage of earlier tests freed by a collection during the reading would lower the RSS: collect it
    # first and keep the collector off; the 64 MiB are fresh pages of an anonymous mapping, since malloc may
    # reuse memory that earlier tests freed but the process kept (already counted in the RSS)
    gc.collect()
    gc.disable()
    try:
        common.reset_peak_rss()
        before = common.current_rss_bytes()
        block = mmap.mmap(-1, 64 * 2 ** 20)
        np.frombuffer(block, dtype=np.uint8)[:] = 1
        grown = common.peak_rss_bytes() - before
        block.close()
    finally:
        gc.enable()
    assert grown >= 48 * 2 ** 20


def test_bench_sections_go_to_an_output_folder_unless_docs_are_asked_for(tmp_path, monkeypatch, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    common.add_output_args(parser)
    assert common.section_path(parser.parse_args([])) == os.path.join("bench_results", "BENCHMARKS.md")
    assert common.section_path(parser.parse_args(["--update-docs"])) == common.BENCH_DOC
    assert common.section_path(parser.parse_args(["--out", "x.md", "--update-docs"])) == "x.md"
    assert common.section_path(parser.parse_args(["--no-doc"])) is None
    monkeypatch.chdir(tmp_path)
    path = common.write_section(parser.parse_args([]), "demo", "numbers", title="Demo")
    assert path == os.path.join("bench_results", "BENCHMARKS.md")
    assert "<!-- demo:begin -->\nnumbers\n<!-- demo:end -->" in (tmp_path / path).read_text(encoding="utf-8")
    assert "numbers" in capsys.readouterr().out
