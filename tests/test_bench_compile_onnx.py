"""bench/compile_onnx.py at toy size: every path runs (or reports why not), ratios and the table add up."""
import importlib.util
import json

import pytest

from bench import compile_onnx as co

pytestmark = pytest.mark.usefixtures("one_thread")

HAVE_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


@pytest.mark.skipif(not HAVE_ONNX, reason='needs onnx, onnxscript, onnxruntime: pip install -e ".[onnx]"')
def test_quick_run_measures_every_path_and_writes_results(tmp_path):
    # backend "eager": dynamo only, no code generation (the suite's one inductor compile lives elsewhere)
    result = co.main(["--quick", "--size", "32", "--repeats", "2", "--pairs", "NAFNet-8", "--backend", "eager",
                      "--out", str(tmp_path)])
    (pair,) = result["pairs"]
    rows = pair["rows"]
    assert set(rows) == {f"{k}/{p}" for k in ("bare", "pip") for p in co.PATHS}
    for key in ("bare/eager", "pip/eager", "bare/compile", "pip/compile", "bare/onnxruntime"):
        assert rows[key]["cpu_s"] > 0 and len(rows[key]["cpu_all_s"]) == 2, key
        assert rows[key]["diff"] < 1e-4, key
    assert rows["bare/compile"]["setup_wall_s"] > 0 and rows["bare/onnxruntime"]["setup_cpu_s"] > 0
    pip_onnx = rows["pip/onnxruntime"]  # a PIP model either exports faithfully or says why it does not
    assert (pip_onnx.get("cpu_s") and pip_onnx["diff"] < 1e-4) or "ONNX export" in pip_onnx["error"]
    r = co.ratios(pair, "compile")
    assert r["pip_over_bare"] == pytest.approx(rows["pip/compile"]["cpu_s"] / rows["bare/compile"]["cpu_s"])
    assert r["bare_speedup"] == pytest.approx(rows["bare/eager"]["cpu_s"] / rows["bare/compile"]["cpu_s"])
    text = (tmp_path / "compile_onnx.md").read_text()
    assert "**NAFNet-8** (2 timed rounds)" in text and "| onnxruntime |" in text and "load average" in text
    assert json.loads((tmp_path / "compile_onnx.json").read_text())["pairs"][0]["name"] == "NAFNet-8"
    assert (tmp_path / "onnx" / "NAFNet-8-bare.onnx").is_file()
