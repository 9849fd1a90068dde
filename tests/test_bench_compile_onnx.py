"""bench/compile_onnx.py at toy size: every path runs, ratios and the table add up.

The pair is the tiny Restormer and the release's PIP_Restormer: this is also the suite's check that PIP-Restormer
runs through ONNX Runtime within 1e-4 of PyTorch (PIP-NAFNet's is in test_restore_export_onnx.py).
"""
import importlib.util
import json

import pytest

from bench import compile_onnx as co

pytestmark = pytest.mark.usefixtures("one_thread")

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


@pytest.mark.skipif(not HAVE_ONNX, reason='needs onnx, onnxscript, onnxruntime: pip install -e ".[onnx]"')
def test_quick_run_measures_every_path_and_writes_results(tmp_path):
    # backend "eager": dynamo only, no code generation (the suite's one inductor compile lives elsewhere)
    result = co.main(["--quick", "--size", "32", "--repeats", "2", "--slow-repeats", "2", "--pairs", "Restormer-8",
                      "--backend", "eager", "--out", str(tmp_path)])
    (pair,) = result["pairs"]
    rows = pair["rows"]
    assert set(rows) == {f"{k}/{p}" for k in ("bare", "pip") for p in co.PATHS}
    for key, row in rows.items():
        assert row["error"] is None and row["cpu_s"] > 0 and len(row["cpu_all_s"]) == 2, key
        assert row["diff"] < 1e-4, key  # compiled and ONNX outputs equal eager
    assert rows["pip/compile"]["setup_wall_s"] > 0 and rows["pip/onnxruntime"]["setup_cpu_s"] > 0
    r = co.ratios(pair, "compile")
    assert r["pip_over_bare"] == pytest.approx(rows["pip/compile"]["cpu_s"] / rows["bare/compile"]["cpu_s"])
    assert r["bare_speedup"] == pytest.approx(rows["bare/eager"]["cpu_s"] / rows["bare/compile"]["cpu_s"])
    text = (tmp_path / "compile_onnx.md").read_text()
    assert "**Restormer-8** (2 timed rounds)" in text and "| onnxruntime |" in text and "load average" in text
    assert json.loads((tmp_path / "compile_onnx.json").read_text())["pairs"][0]["name"] == "Restormer-8"
    assert (tmp_path / "onnx" / "Restormer-8-pip.onnx").is_file()
    doc = tmp_path / "BENCH.md"
    doc.write_text("# Benchmarks\n\nkept\n")
    assert co.main(["--publish", str(tmp_path), "--doc", str(doc)])["pairs"][0]["name"] == "Restormer-8"
    published = doc.read_text()
    assert "kept" in published and "<!-- compile_onnx:begin -->" in published and text.strip() in published
