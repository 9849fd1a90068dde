"""`pip-adapter inspect` end to end on a tiny exported PIPNet and a tiny validation folder."""
import os
import sys

import numpy as np
import pytest
import torch

from pip_adapter.cli import main
from pip_adapter.restore.checkpoint import make_meta, save_checkpoint
from pip_adapter.wrap.pipnet import PIPNet

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES = ["noise", "rain", "haze"]
BACKBONE = {"type": "NAFNet", "img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1],
            "dec_blk_nums": [1, 1]}


def _viz_available():
    try:
        import matplotlib  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    torch.manual_seed(0)
    network = {"type": "PIPNet", "backbone": dict(BACKBONE), "degradations": NAMES, "prompt_dims": 8,
               "prompt_sizes": 8}
    model = PIPNet(dict(BACKBONE), degradations=NAMES, prompt_dims=8, prompt_sizes=8).eval()
    ckpt = str(root / "tiny.safetensors")
    save_checkpoint(ckpt, model, make_meta(model, network))
    import cv2
    rng = np.random.default_rng(0)
    val = root / "val"
    clean = {n: (rng.random((64, 64, 3)) * 255).astype(np.uint8) for n in ("a.png", "b.png")}
    for folder in ("gt", "noise_sigma25", "rain", "haze", "unrelated"):
        os.makedirs(val / folder)
        for name, img in clean.items():
            out = img if folder == "gt" else np.clip(img.astype(int) + rng.integers(-40, 40, img.shape), 0, 255)
            cv2.imwrite(str(val / folder / name), out.astype(np.uint8))
    return model, ckpt, str(val), root


def test_inspect_prints_levels_split_angles_and_writes_figures(exported, capsys):
    model, ckpt, val, root = exported
    out_dir = str(root / "figs")
    rc = main(["inspect", "--ckpt", ckpt, "--out", out_dir, "--images", val, "--crop", "48", "--tile", "16"])
    text = capsys.readouterr().out
    assert rc == 0
    levels = list(model.pip_levels)
    assert len(levels) == 2
    pip = sum(p.numel() for p in model.pip_levels.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert f"total {total:,} = backbone {total - pip:,} + PIP {pip:,}" in text
    assert text.count("angles between degradation prompts, level") == 2
    # the angle printed for (noise, rain) at level 1 is the true angle of those prompts
    d = levels[0].all_degradation_prompts().detach().double()
    ang = torch.rad2deg(torch.arccos(torch.nn.functional.cosine_similarity(d[0], d[1], dim=0))).item()
    assert f"| noise | 0.0 | {ang:.1f} |" in text
    assert "wrong-prompt matrix" in text and "| noise_sigma25 |" in text and "unrelated" not in text
    if _viz_available():
        for name in ("prompt_angles.png", "tsne_universal_prompts.png", "wrong_prompt_grid.png"):
            path = os.path.join(out_dir, name)
            assert os.path.getsize(path) > 1000
            with open(path, "rb") as fh:
                assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    else:
        assert 'pip install -e ".[viz]"' in text


def test_inspect_without_plotting_libraries_still_prints_text(exported, capsys, monkeypatch):
    _, ckpt, val, root = exported
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    out_dir = str(root / "no_viz")
    rc = main(["inspect", "--ckpt", ckpt, "--out", out_dir, "--images", val, "--crop", "48", "--tile", "16"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "angles between degradation prompts, level 1" in text
    assert 'pip install -e ".[viz]"' in text
    assert not os.path.exists(os.path.join(out_dir, "tsne_universal_prompts.png"))


def test_inspect_refuses_a_network_without_pip(tmp_path, capsys):
    from pip_adapter.backbones import build_backbone

    net = build_backbone(dict(BACKBONE))
    ckpt = str(tmp_path / "bare.safetensors")
    save_checkpoint(ckpt, net, make_meta(net, dict(BACKBONE)))
    rc = main(["inspect", "--ckpt", ckpt, "--no-figures"])
    assert rc == 2
    assert "without PIP levels" in capsys.readouterr().err
