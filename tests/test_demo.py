"""The demo page's logic without a browser: DemoSession (read, classify, restore, examples), the Gradio Blocks
it builds, and the ``pip-adapter demo`` arguments."""
import os

import numpy as np
import pytest
import torch

from pip_adapter.cli import main
from pip_adapter.demo import DemoInputError, DemoSession
from pip_adapter.restore import Restorer, image_metrics, read_image
from pip_adapter.image_io import read_image_raw, split_array
from tests.helpers_demo import save_demo_model
from tests.helpers_restore import TOY_NETWORK, rand_image, write_png

NAMES = TOY_NETWORK["degradations"]


def _files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("name,arr,desc", [
    ("rgba16.png", rand_image(20, 26, 4, np.uint16, seed=1), "26×20, RGBA, 16-bit"),
    ("gray16.tif", rand_image(18, 22, 1, np.uint16, seed=2), "22×18, gray, 16-bit"),
    ("rgb8.jpg", rand_image(16, 16, 3, np.uint8, seed=3), "16×16, RGB, 8-bit"),
])
def test_restore_keeps_format_depth_channels_and_uses_the_sliders(demo_session, tmp_path, name, arr, desc,
                                                                  one_thread):
    src = write_png(tmp_path / "in" / name, arr)
    loaded = demo_session.load(src)
    assert loaded.description == f"{name}: {desc}"
    assert loaded.preview.dtype == np.uint8 and loaded.preview.shape == arr.shape[:2] + (3,)
    omega = {"noise": 0.0, "rain": 0.7, "haze": 0.3, "blur": 0.0, "low_light": 0.0}
    res = demo_session.restore(src, omega, tile=0)
    assert res.omega == pytest.approx(omega)
    assert os.path.splitext(res.output)[1] == os.path.splitext(name)[1]
    assert res.output.startswith(demo_session.workdir + os.sep)
    out, info = read_image_raw(res.output)
    assert out.dtype == (np.uint16 if "16" in name else np.uint8) and out.shape[:2] == arr.shape[:2]
    assert info.gray == (name == "gray16.tif") and (info.alpha is not None) == (name == "rgba16.png")
    # the file holds what the Restorer itself gives for this ω (the same code path as `pip-adapter restore`)
    direct = demo_session.restorer(src, omega=omega)
    assert direct.shape == (arr.shape if name != "gray16.tif" else arr.shape[:2])
    if name.endswith(".jpg"):  # JPEG is lossy: compare with the same array encoded the same way
        direct = read_image_raw(write_png(tmp_path / "direct.jpg", direct))[0]
    np.testing.assert_array_equal(split_array(direct)[0], out)
    assert "rain 0.70" in res.summary() and "haze 0.30" in res.summary() and "PSNR" not in res.summary()


def test_tiles_report_progress_and_match_the_restorer(demo_session, tmp_path, one_thread):
    src = write_png(tmp_path / "big.png", rand_image(80, 72, 3, seed=4))
    seen = []
    res = demo_session.restore(src, demo_session.pure("noise"), progress=lambda d, t: seen.append((d, t)))
    assert res.tiles > 1 and seen == [(i, res.tiles) for i in range(1, res.tiles + 1)]
    expected = demo_session.restorer(src, degradation="noise", tile=32, tile_overlap=8)
    np.testing.assert_array_equal(read_image_raw(res.output)[0], expected)
    assert f"({res.tiles} tiles)" in res.summary()


def test_ground_truth_gives_psnr_ssim_and_a_wrong_size_is_named(demo_session, tmp_path, one_thread):
    src = write_png(tmp_path / "lq.png", rand_image(24, 24, 3, seed=5))
    gt = write_png(tmp_path / "gt.png", rand_image(24, 24, 3, seed=6))
    res = demo_session.restore(src, {"rain": 1.0}, gt=gt)
    psnr, ssim = image_metrics(read_image(res.output)[0], read_image(gt)[0])
    assert res.psnr == pytest.approx(psnr) and res.ssim == pytest.approx(ssim)
    assert f"{psnr:.2f} dB" in res.summary() and "gt.png" in res.summary()
    # the input's own scores against the same ground truth, and the gain, as restore and evaluate print them
    in_psnr, in_ssim = image_metrics(read_image(src)[0], read_image(gt)[0])
    assert res.input_psnr == pytest.approx(in_psnr) and res.input_ssim == pytest.approx(in_ssim)
    assert (f"input {in_psnr:.2f} dB → restored {psnr:.2f} dB ({psnr - in_psnr:+.2f} dB)" in res.summary()
            and f"input {in_ssim:.4f} → restored {ssim:.4f}" in res.summary())
    small = write_png(tmp_path / "small.png", rand_image(10, 12, 3, seed=7))
    with pytest.raises(DemoInputError, match="small.png.*differ in size"):
        demo_session.restore(src, {"rain": 1.0}, gt=small)


def test_bad_inputs_give_messages_for_the_page(demo_session, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but not really an image")
    with pytest.raises(DemoInputError, match=r"cannot read the image broken.png: not a readable image.*PNG, JPEG or TIFF"):
        demo_session.load(str(broken))
    with pytest.raises(DemoInputError, match="no image"):
        demo_session.restore(None, {"rain": 1.0})
    good = write_png(tmp_path / "ok.png", rand_image(8, 8, 3))
    with pytest.raises(DemoInputError, match="every ω weight is 0"):
        demo_session.restore(good, {n: 0.0 for n in NAMES})
    with pytest.raises(DemoInputError, match="finite and >= 0"):
        demo_session.restore(good, {"rain": -0.5, "noise": 1.0})
    with pytest.raises(DemoInputError, match="cannot read the ground truth broken.png"):
        demo_session.restore(good, {"rain": 1.0}, gt=str(broken))
    # a broken upload is named first, whatever the sliders say (it complained about ω)
    with pytest.raises(DemoInputError, match="cannot read the image broken.png"):
        demo_session.restore(str(broken), {n: 0.0 for n in NAMES})
    with pytest.raises(DemoInputError, match="no image"):
        demo_session.restore(None, {n: 0.0 for n in NAMES})
    with pytest.raises(DemoInputError, match="unknown degradation 'snow'"):
        demo_session.pure("snow")
    assert demo_session.pure("low-light") == {n: float(n == "low_light") for n in NAMES}


def test_auto_is_the_bundled_classifier_and_off_without_one(demo_session, tmp_path):
    src = write_png(tmp_path / "a.png", rand_image(40, 40, 3, seed=8))
    probs = demo_session.classify(src)
    assert list(probs) == NAMES and sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    x = torch.from_numpy(read_image(src)[0]).permute(2, 0, 1)
    expected = demo_session.restorer.classifier.predict_proba(x).tolist()
    assert list(probs.values()) == pytest.approx(expected, abs=1e-6)
    plain = DemoSession(Restorer.from_checkpoint(save_demo_model(tmp_path / "plain.safetensors", False),
                                                 device="cpu"), workdir=str(tmp_path / "w2"))
    assert not plain.has_classifier
    with pytest.raises(DemoInputError, match="no degradation classifier"):
        plain.classify(src)


def test_builtin_examples_are_the_builtin_validation_images(demo_session, tmp_path):
    from pip_adapter.data.builtin import prepare_builtin

    examples = demo_session.examples()
    labels = [e.label for e in examples]
    # both validation photos, every type of the model (noise once per σ)
    for stem in ("chelsea", "rocket"):
        for folder in ("noise_sigma15", "noise_sigma25", "noise_sigma50", "rain", "haze", "blur", "low_light"):
            assert f"{stem} · {folder}" in labels
    assert all(e.path.startswith(demo_session.workdir) and e.gt.startswith(demo_session.workdir) for e in examples)
    data = prepare_builtin(str(tmp_path / "builtin"), degradations=["rain", "noise"], max_train_images=1,
                           crops_per_image=1, progress=False)
    rain = demo_session.example("chelsea · rain")
    np.testing.assert_array_equal(read_image_raw(rain.path)[0],
                                  read_image_raw(os.path.join(data, "val", "rain", "chelsea.png"))[0])
    np.testing.assert_array_equal(read_image_raw(rain.gt)[0],
                                  read_image_raw(os.path.join(data, "val", "gt", "chelsea.png"))[0])
    assert demo_session.examples() is examples  # made once
    with pytest.raises(DemoInputError, match="no built-in example"):
        demo_session.example("nothing")


def test_session_writes_only_in_its_folder_and_removes_it(demo_model, tmp_path, monkeypatch, one_thread):
    monkeypatch.chdir(tmp_path)
    session = DemoSession(Restorer.from_checkpoint(demo_model, device="cpu"), tile=0)
    src = write_png(tmp_path / "in" / "a.png", rand_image(12, 12, 3))
    before = _files_under(str(tmp_path))
    session.examples()
    session.restore(src, {"haze": 1.0})
    assert _files_under(str(tmp_path)) == before
    assert os.path.isdir(session.workdir) and _files_under(session.workdir)
    session.close()
    assert not os.path.exists(session.workdir)


def test_page_is_built_from_the_model_file(demo_session, tmp_path, monkeypatch):
    gr = pytest.importorskip("gradio", reason="the demo page needs Gradio: pip install -e '.[demo]'")
    from pip_adapter.demo.app import build_app, offline_environment

    for key in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_OFFLINE", "GRADIO_TEMP_DIR",
                "GRADIO_RUN_HISTORY", "GRADIO_SSR_MODE", "GRADIO_MCP_SERVER"):
        monkeypatch.setenv(key, "unset by the test")  # monkeypatch puts the previous values back afterwards
    env = offline_environment(demo_session.workdir)
    assert all(os.environ[k] == v for k, v in env.items()) and "unset by the test" not in os.environ.values()
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and env["GRADIO_TEMP_DIR"].startswith(
        demo_session.workdir)

    def by_id(app):
        return {b.elem_id: b for b in app.blocks.values() if getattr(b, "elem_id", None)}

    app = build_app(demo_session)
    blocks = by_id(app)
    # the events that run the model share one queue of concurrency 1: users wait in turn
    model_fns = [f for f in app.fns.values() if f.name in ("on_restore", "on_auto")]
    assert len(model_fns) == 2 and all(f.concurrency_id == "model" and f.concurrency_limit == 1 for f in model_fns)
    assert [blocks[f"demo-omega-{i}"].label for i in range(len(NAMES))] == [f"ω {n}" for n in NAMES]
    assert blocks["demo-pure"].choices == [(n, n) for n in NAMES]
    assert blocks["demo-auto"].interactive is not False and "demo-probs" in blocks
    assert len(blocks["demo-example"].choices) == len(demo_session.examples())
    plain = DemoSession(Restorer.from_checkpoint(save_demo_model(tmp_path / "p.safetensors", False),
                                                 device="cpu"), workdir=str(tmp_path / "w3"))
    blocks = by_id(build_app(plain))
    assert blocks["demo-auto"].interactive is False and "demo-probs" not in blocks
    assert "no degradation classifier" in blocks["demo-auto-note"].value
    assert isinstance(blocks["demo-compare"], gr.ImageSlider)


def test_page_takes_uploaded_files_not_urls(demo_session, monkeypatch):
    """Issue 24: a client's API call with a URL as a file ``path`` made the server fetch it (any host but
    127.0.0.1); the file inputs now refuse it before anything is fetched."""
    pytest.importorskip("gradio", reason="the demo page needs Gradio: pip install -e '.[demo]'")
    import asyncio

    from gradio import processing_utils

    from pip_adapter.demo.app import UploadOnlyError, build_app

    fetched = []

    async def recording_download(url, cache_dir):
        fetched.append(url)
        raise ConnectionError("the test allows no download")

    monkeypatch.setattr(processing_utils, "async_ssrf_protected_download", recording_download)
    blocks = {b.elem_id: b for b in build_app(demo_session).blocks.values() if getattr(b, "elem_id", None)}
    for elem in ("demo-upload", "demo-gt"):
        payload = {"path": "http://192.0.2.7/photo.png", "meta": {"_type": "gradio.FileData"}}
        with pytest.raises(UploadOnlyError, match="uploaded files only"):
            asyncio.run(processing_utils.async_move_files_to_cache(payload, blocks[elem],
                                                                   check_in_upload_folder=True))
    assert fetched == []
    # the session's own files (built-in examples) still reach the inputs
    example = demo_session.examples()[0].path
    moved = asyncio.run(blocks["demo-upload"].async_move_resource_to_block_cache(example))
    assert os.path.isfile(moved)


def test_cli_registers_demo_and_checks_arguments_before_loading(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "--port" in out and "127.0.0.1" in out and "--device" in out
    from pip_adapter.cli import build_parser
    args = build_parser().parse_args(["demo", "-m", "m.safetensors"])
    assert (args.host, args.port, args.device, args.tile) == ("127.0.0.1", 7860, "auto", 512)
    assert main(["demo", "-m", str(tmp_path / "none.safetensors"), "--tile", "64", "--tile-overlap", "64"]) == 2
    assert "--tile-overlap (64) must be smaller than --tile (64)" in capsys.readouterr().err
    assert main(["demo", "-m", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
