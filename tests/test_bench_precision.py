"""bench/precision.py on tiny models: variants, ratios, training rows, results folder vs. --update-doc."""
import json

import pytest

from bench import precision as pr

pytestmark = pytest.mark.usefixtures("one_thread")


def test_quick_run_writes_results_folder_and_doc_only_with_flag(tmp_path):
    out, doc = tmp_path / "out", tmp_path / "BENCH.md"
    args = ["--quick", "--device", "cpu", "--no-memory", "--repeats", "1", "--size", "32", "--models", "PIP-NAFNet-8",
            "--out-dir", str(out), "--doc", str(doc)]
    assert pr.main(args) == 0
    assert not doc.exists()  # docs change only with --update-doc
    raw = json.loads((out / "precision.json").read_text())
    settings = {(r["spec"], r["precision"], r["chunk"]) for r in raw["inference"]}
    assert settings == {("NAFNet-8", "fp32", 0), ("NAFNet-8", "bf16", 0), ("PIP-NAFNet-8", "fp32", 0),
                        ("PIP-NAFNet-8", "bf16", 0), ("PIP-NAFNet-8", "fp32", pr.P2F_CHUNK_PIXELS),
                        ("PIP-NAFNet-8", "bf16", pr.P2F_CHUNK_PIXELS)}
    assert all(r["latency_s"] > 0 and r["cpu_time_s"] > 0 for r in raw["inference"])
    rows = raw["training"]["rows"]
    assert [(r["kind"], r["pip"], r["precision"]) for r in rows] == [
        ("SRModel", False, "fp32"), ("PIPModel", False, "fp32"), ("PIPModel", True, "fp32"),
        ("PIPModel", False, "bf16"), ("PIPModel", True, "bf16")]
    assert rows[0]["params"] == rows[1]["params"] < rows[2]["params"]
    assert all(r["step_s"] > 0 and 0 < r["loss"]["l_pix"] < 1 for r in rows)
    md = (out / "precision.md").read_text()
    assert "| PIP-NAFNet-8 | bf16, P2F in bands |" in md and "| PIPModel, bare NAFNet | bf16 |" in md
    assert pr.main(args + ["--no-train", "--update-doc"]) == 0
    text = doc.read_text()
    assert "<!-- precision:begin -->" in text and "precision_train" not in text


def test_banded_bf16_peak_memory_in_a_fresh_process():
    v = pr.Variant("PIP-NAFNet-8", "nafnet8", "NAFNet-8", "bf16", chunk=512)
    peak = pr._cpu_peak("quick", v, 64)
    assert peak is not None and peak > 0


def test_ratios_pair_rows_by_precision_and_compile_state():
    mk = lambda spec, base, prec, t, m, chunk=0: pr.InferenceRow(  # noqa: E731
        pr.Variant(spec, "g", base, prec, chunk=chunk), latency_s=t, cpu_time_s=t, peak_mem_bytes=m)
    rows = [mk("A", None, "fp32", 1.0, 100), mk("A", None, "bf16", 0.5, 60), mk("P", "A", "fp32", 1.5, 200),
            mk("P", "A", "bf16", 1.0, 90), mk("P", "A", "fp32", 1.6, 110, chunk=64)]
    text = pr.render_inference(rows, 32, 1, 1, pr.torch.device("cpu"), {"cpu": "x"}, "cmd")
    assert "| P | bf16 | 1000.0 | 1000.0 | 0 | 2.000 | 1.500 | 0.667 | 0.450 |" in text
    assert "| P | fp32, P2F in bands | 1600.0 | 1600.0 | 0 | 1.600 | 1.100 | — | — |" in text
