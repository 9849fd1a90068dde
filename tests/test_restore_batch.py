"""restore/batch.py from Python: outputs stay in their folder, failures are listed, scores average, nothing printed."""
import logging
import os

import numpy as np
import pytest

from pip_adapter.restore.batch import BatchResult, expand_inputs, find_gt, output_paths, restore_batch
from pip_adapter.restore.restorer import Restorer
from tests.helpers_restore import rand_image, write_png

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["noise", "rain", "haze", "blur", "low_light"]


def test_restore_batch_restores_scores_and_lists_failures(toy_net, photos, tmp_path, capsys, caplog):
    (photos / "broken.png").write_text("not an image")
    gt = tmp_path / "gt"
    write_png(gt / "a.jpg", rand_image(12, 16, seed=1))  # same stem, another extension
    files, problems = expand_inputs([str(photos), str(tmp_path / "nowhere.png")])
    assert [os.path.basename(f) for f in files] == ["a.png", "b.png", "broken.png"]
    assert problems == [(str(tmp_path / "nowhere.png"), "no such file or folder")]
    seen = []
    r = Restorer(toy_net, NAMES, multiple=2, device="cpu")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="pip_adapter.restore.batch"):
        result = restore_batch(r, files, str(out), omega="rain=0.7,noise=0.3", gt_dir=str(gt), progress=False,
                               on_image=lambda src, row, why: seen.append((os.path.basename(src), why is None)))
    assert isinstance(result, BatchResult)
    assert [os.path.basename(row.input) for row in result.restored] == ["a.png", "b.png"]
    assert [os.path.basename(src) for src, _ in result.failures] == ["broken.png"]
    assert seen == [("a.png", True), ("b.png", True), ("broken.png", False)]
    assert sorted(os.listdir(out)) == ["a.png", "b.png"]
    a, b = result.restored
    assert a.psnr is not None and a.input_psnr is not None and b.unscored.startswith("no ground truth named b.*")
    assert result.unscored == [b]
    avg = result.averages()
    assert avg["count"] == 1 and avg["psnr"] == pytest.approx(a.psnr) and avg["ssim"] == pytest.approx(a.ssim)
    assert avg["seconds"] == pytest.approx((a.seconds + b.seconds) / 2)
    assert "broken.png: failed" in caplog.text
    assert capsys.readouterr().out == ""  # a library logs; the command prints


def test_restore_batch_checks_omega_before_any_image(toy_net, photos, tmp_path):
    r = Restorer(toy_net, NAMES, multiple=2, device="cpu")
    files, _ = expand_inputs([str(photos)])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="snow.*knows: noise"):
        restore_batch(r, files, str(out), degradation="snow", progress=False)
    with pytest.raises(ValueError, match="needs a degradation classifier"):
        restore_batch(r, files, str(out), degradation="auto", progress=False)
    assert not out.exists()  # refused before the output folder was made


def test_outputs_never_collide_and_ground_truths_are_found(tmp_path):
    files = [str(tmp_path / "x" / "a.png"), str(tmp_path / "y" / "a.png"), str(tmp_path / "y" / "b")]
    assert output_paths(files, "o", "_r") == [os.path.join("o", "x", "a_r.png"), os.path.join("o", "y", "a_r.png"),
                                              os.path.join("o", "b_r.png")]
    with pytest.raises(ValueError, match="outputs stay inside the output folder"):
        output_paths(files, "o", "/../")
    write_png(tmp_path / "gt" / "a.PNG", np.zeros((4, 4, 3), np.uint8))
    assert find_gt(str(tmp_path / "gt"), "in/a.jpg") == str(tmp_path / "gt" / "a.PNG")
    assert find_gt(str(tmp_path / "gt"), "in/c.png") is None
