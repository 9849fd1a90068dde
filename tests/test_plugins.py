"""Plugin loading (pip_adapter.plugins) and the two example plugins in plugins/."""
import os
import textwrap

import numpy as np
import pytest
import torch

from pip_adapter import plugins as pl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.usefixtures("one_thread")


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(textwrap.dedent(text))


def test_py_file_loaded_once_however_named(tmp_path, monkeypatch):
    _write(str(tmp_path / "counter_plugin.py"), """
        import builtins
        builtins._pip_plugin_runs = getattr(builtins, "_pip_plugin_runs", 0) + 1
        VALUE = 42
    """)
    import builtins
    before = getattr(builtins, "_pip_plugin_runs", 0)
    monkeypatch.chdir(tmp_path)
    (m1,) = pl.load_plugins(str(tmp_path / "counter_plugin.py"))
    (m2,) = pl.load_plugins(["./counter_plugin.py"])
    m3 = pl.load_plugin("counter_plugin.py", base_dir=str(tmp_path))
    assert m1 is m2 is m3 and m1.VALUE == 42
    assert builtins._pip_plugin_runs == before + 1


def test_package_folder_with_relative_import_and_yaml_base_dir(tmp_path, monkeypatch):
    _write(str(tmp_path / "opts" / "my_plugins" / "hazy2" / "__init__.py"), """
        from .impl import NAME
    """)
    _write(str(tmp_path / "opts" / "my_plugins" / "hazy2" / "impl.py"), "NAME = 'hazy2'\n")
    _write(str(tmp_path / "opts" / "train.yml"), "name: x\nplugins:\n  - my_plugins/hazy2\n")
    monkeypatch.chdir(tmp_path)  # the path is relative to the option file, not to the current directory
    (mod,) = pl.load_plugins_from_option_file(str(tmp_path / "opts" / "train.yml"))
    assert mod.NAME == "hazy2"
    assert any(name.startswith("pip_adapter_plugin_hazy2") for name in pl.loaded_plugins())


def test_dotted_module_and_same_file_by_path_is_not_reimported(tmp_path, monkeypatch):
    _write(str(tmp_path / "pkg_dotted_x" / "__init__.py"), "")
    _write(str(tmp_path / "pkg_dotted_x" / "mod.py"), "import builtins\nbuiltins._pip_dotted = getattr(builtins, '_pip_dotted', 0) + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins
    (a,) = pl.load_plugins("pkg_dotted_x.mod")
    (b,) = pl.load_plugins(str(tmp_path / "pkg_dotted_x" / "mod.py"))
    assert a is b and builtins._pip_dotted == 1


def test_bad_plugin_specs_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        pl.load_plugins(["does/not/exist.py"], base_dir=str(tmp_path))
    with pytest.raises(ValueError, match="neither a file"):
        pl.load_plugins("no_such_plugin_module_xyz")
    with pytest.raises(ValueError, match="list of module paths"):
        pl.load_plugins({"a": 1})
    assert pl.load_plugins(None) == [] and pl.load_plugins_from_options({"name": "x"}) == []


def test_snow_plugin_registers_a_working_synthesiser():
    pl.load_plugins([os.path.join(ROOT, "plugins", "snow")])
    from pip_adapter.degradations import get_synthesizer, list_synthesizers

    assert "snow" in list_synthesizers()
    synth = get_synthesizer("snow")
    assert synth.online and len(synth.variants) == 2
    img = np.full((32, 48, 3), 90, np.uint8)
    light = synth(img, np.random.default_rng(3), **synth.variants[0])
    heavy = synth(img, np.random.default_rng(3), **synth.variants[1])
    again = synth(img, np.random.default_rng(3), **synth.variants[0])
    assert light.shape == img.shape and light.dtype == np.uint8
    assert np.array_equal(light, again)                      # randomness only from rng
    assert (light.astype(int) >= img).all()                  # snow only brightens
    assert heavy.astype(float).mean() > light.astype(float).mean() > img.mean()
    assert (light.astype(int) - img > 80).any()              # some flakes are near white


def test_attention_unet_plugin_is_a_registered_backbone():
    pl.load_plugins([os.path.join(ROOT, "plugins", "attention_unet")])
    from pip_adapter.backbones import BACKBONES, build_backbone

    net = build_backbone({"type": "AttentionUNet", "width": 8, "mults": [1, 2, 4]})
    assert BACKBONES["AttentionUNet"] is type(net)
    x = torch.rand(1, 3, 24, 40)  # not a multiple of 8: padded inside, cropped back
    y = net(x)
    assert y.shape == x.shape
    y.mean().backward()
    assert net.decoders[0].gate.psi.weight.grad is not None
