"""Size-bounded fuzzing of ``pip-adapter restore`` (issue 24): mutated model metadata (safetensors, the bundled
classifier's, ONNX) and mutated image headers, run in one child process under a memory limit.

Every case must end with exit 0, 1 or 2, no traceback, one line on stderr when it fails as a whole, and nothing
written outside its ``-o``; all of it within a CPU-time bound.  The mutations are seeded: the same cases every run.
"""
import importlib.util
import json
import os
import random
import resource
import subprocess
import sys

import numpy as np
import pytest
import torch

from pip_adapter.restore import make_meta, save_checkpoint
from pip_adapter.restore.classifier import DegradationClassifier
from tests.helpers_extend import TINY_NET, tiny_pipnet
from tests.helpers_fuzz import flip_bytes, mutate_doc, png_with_ihdr
from tests.helpers_restore import rand_image, write_png
from tests.helpers_train import REPO_ROOT

HAVE_ORT = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
NAMES = TINY_NET["degradations"]
# torch, onnxruntime and timm imported take about 0.9 GB of data segment: 2.5 GB leaves room for tiny images and
# none for a decoded image bomb (a 30000² PNG is 2.7 GB)
DATA_LIMIT = 2_500 * 2 ** 20
CPU_BOUND_S = 60  # the child's CPU time for every case together (7 s measured: 4 s of it importing torch)


def _limit_memory():  # runs in the child before it execs Python
    resource.setrlimit(resource.RLIMIT_DATA, (DATA_LIMIT, DATA_LIMIT))


def _safetensors_doc(path):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as fh:
        return json.loads(fh.metadata()["pip_adapter"]), {k: fh.get_tensor(k) for k in fh.keys()}


def _write_safetensors(path, doc, tensors):
    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata={"pip_adapter": json.dumps(doc)})


def _onnx_identity(path, doc):
    """A minimal graph with the export's interface (image, omega → restored = image) and ``doc`` as metadata."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["restored"])], "fuzz",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"]),
         helper.make_tensor_value_info("omega", TensorProto.FLOAT, ["n", len(NAMES)])],
        [helper.make_tensor_value_info("restored", TensorProto.FLOAT, ["n", 3, "h", "w"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.metadata_props.add(key="pip_adapter", value=json.dumps(doc))
    onnx.save(model, str(path))


def _snapshot(root, skip):
    return {os.path.relpath(os.path.join(d, f), root): os.stat(os.path.join(d, f)).st_size
            for d, dirs, files in os.walk(root) if not os.path.basename(d).startswith(skip)
            for f in files} | {"dirs": sorted(d for d in os.listdir(root) if not d.startswith(skip))}


def test_fuzzed_model_files_and_image_headers_in_a_memory_limited_child(tmp_path):
    rng = random.Random(24)
    work = tmp_path / "work"  # models, images and every case's -o; the cases and results lie beside it
    models, images = work / "models", work / "images"
    models.mkdir(parents=True)
    # the bases: a PIP model bundling a timm classifier, and (with onnxruntime) a graph with the same interface
    torch.manual_seed(0)
    net = tiny_pipnet(seed=1).eval()
    cls = DegradationClassifier("test_resnet", NAMES, crop_size=16, num_crops=1).eval()
    base = str(models / "base.safetensors")
    save_checkpoint(base, net, make_meta(net, dict(TINY_NET)), classifier=cls)
    doc, tensors = _safetensors_doc(base)
    photo = images / "photo.png"
    write_png(photo, rand_image(12, 16, seed=1))

    cases = []

    def restore(name, model, image, *extra):
        out = work / f"out_{len(cases):02d}"
        cases.append({"name": name, "out": str(out),
                      "args": ["--log-level", "ERROR", "restore", str(image), "-m", str(model), "-o", str(out),
                               "--no-progress", "--device", "cpu", *extra]})

    restore("base file (control)", base, photo, "-d", "rain")
    # restorer metadata: a few chosen edits of the issue, then seeded random ones
    chosen = [("middle_blk_num 20000", lambda d: d["pip_config"]["backbone"].update(middle_blk_num=20000)),
              ("multiple 4096", lambda d: d.update(multiple=4096)),
              ("40 levels", lambda d: d["pip_config"]["backbone"].update(enc_blk_nums=[1] * 40,
                                                                         dec_blk_nums=[1] * 40))]
    for i, (name, edit) in enumerate(chosen):
        crafted = json.loads(json.dumps(doc))
        edit(crafted)
        _write_safetensors(models / f"chosen{i}.safetensors", crafted, tensors)
        restore(name, models / f"chosen{i}.safetensors", photo, "-d", "rain")
    for i in range(4):
        _write_safetensors(models / f"meta{i}.safetensors", mutate_doc(doc, rng), tensors)
        restore(f"restorer metadata mutation {i}", models / f"meta{i}.safetensors", photo, "-d", "rain")
    # the bundled classifier's document, through --degradation auto
    crafted = json.loads(json.dumps(doc))
    crafted["classifier"]["network"]["checkpoint_path"] = "/dev/zero"
    _write_safetensors(models / "cls_path.safetensors", crafted, tensors)
    restore("classifier checkpoint_path", models / "cls_path.safetensors", photo, "-d", "auto")
    for i in range(3):
        crafted = json.loads(json.dumps(doc))
        crafted["classifier"] = mutate_doc(crafted["classifier"], rng)
        _write_safetensors(models / f"cls{i}.safetensors", crafted, tensors)
        restore(f"classifier metadata mutation {i}", models / f"cls{i}.safetensors", photo, "-d", "auto")
    # ONNX metadata
    if HAVE_ORT:
        onnx_doc = {k: v for k, v in doc.items() if k != "classifier"}
        onnx_doc["onnx"] = {"uses_omega": True, "inputs": ["image", "omega"], "output": "restored"}
        _onnx_identity(models / "base.onnx", onnx_doc)
        restore("onnx base (control)", models / "base.onnx", photo, "-d", "rain")
        _onnx_identity(models / "huge_multiple.onnx", dict(onnx_doc, multiple=10 ** 6))
        restore("onnx multiple 1e6", models / "huge_multiple.onnx", photo, "-d", "rain")
        for i in range(3):
            _onnx_identity(models / f"onnx{i}.onnx", mutate_doc(onnx_doc, rng))
            restore(f"onnx metadata mutation {i}", models / f"onnx{i}.onnx", photo, "-d", "rain")
    # image headers: declared sizes, depths, flipped header bytes, truncation (one good image beside each)
    png = photo.read_bytes()
    import tifffile

    tif_path = images / "tiff_src.tif"
    tifffile.imwrite(tif_path, rand_image(12, 16, seed=2), photometric="rgb")
    tif = tif_path.read_bytes()
    import cv2

    jpg = cv2.imencode(".jpg", rand_image(12, 16, seed=3))[1].tobytes()
    headers = {"bomb.png": png_with_ihdr(png, 65535, 65535), "depth3.png": png_with_ihdr(png, 16, 12, depth=3),
               "truncated.png": png[:45], "tiff_flipped.tif": flip_bytes(tif, rng, 8, 200, count=4),
               "tiff_flipped2.tif": flip_bytes(tif, rng, 8, 200, count=4),
               "jpeg_flipped.jpg": flip_bytes(jpg, rng, 2, 200, count=4)}
    for name, data in headers.items():
        folder = images / f"set_{os.path.splitext(name)[0]}"
        folder.mkdir()
        (folder / name).write_bytes(data)
        (folder / "good.png").write_bytes(png)
        restore(f"image header: {name}", base, folder, "-d", "rain")

    with open(tmp_path / "cases.json", "w") as fh:
        json.dump(cases, fh)
    before = _snapshot(work, "out_")
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "tests.helpers_fuzz", str(tmp_path / "cases.json"),
                           str(tmp_path / "results.json")], cwd=REPO_ROOT, env=env, preexec_fn=_limit_memory,
                          capture_output=True, text=True, timeout=600)
    after_usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cpu = (after_usage.ru_utime + after_usage.ru_stime) - (usage.ru_utime + usage.ru_stime)
    assert cpu < CPU_BOUND_S, f"the fuzz child took {cpu:.0f} s of CPU"
    with open(tmp_path / "results.json") as fh:
        report = json.load(fh)
    assert report["rlimit_data"] == DATA_LIMIT  # it really ran under the limit
    results = report["results"]
    assert [r["name"] for r in results] == [c["name"] for c in cases]
    for case, r in zip(cases, results):
        where = f"{r['name']}: code {r['code']}\n{r['stderr']}\n{r['stdout']}\n{r['escaped']}"
        assert r["escaped"] is None and r["code"] in (0, 1, 2), where
        assert "Traceback" not in r["stderr"] + r["stdout"], where
        if r["code"] == 2:  # the command as a whole failed: one line saying why
            assert len(r["stderr"].strip().splitlines()) == 1 and "error:" in r["stderr"], where
        if r["code"] == 1:  # some images failed: each named, the good one beside it restored
            assert "FAILED" in r["stdout"], where
    by_name = {r["name"]: r for r in results}
    assert by_name["base file (control)"]["code"] == 0
    assert by_name["image header: bomb.png"]["code"] == 1 and "megapixels" in by_name["image header: bomb.png"]["stdout"]
    for name in ("middle_blk_num 20000", "multiple 4096", "40 levels", "classifier checkpoint_path"):
        assert by_name[name]["code"] == 2, by_name[name]
    if HAVE_ORT:
        assert by_name["onnx base (control)"]["code"] == 0, by_name["onnx base (control)"]
        assert by_name["onnx multiple 1e6"]["code"] == 2
    for case in cases:
        if os.path.isdir(case["out"]):
            for d, _, files in os.walk(case["out"]):
                for f in files:
                    assert not f.endswith(".tmp"), os.path.join(d, f)
    assert _snapshot(work, "out_") == before  # nothing written outside the cases' -o folders
    np.testing.assert_array_equal(np.frombuffer(photo.read_bytes(), np.uint8), np.frombuffer(png, np.uint8))
