"""PIPNet (pure builder), build_pipnet(pip_config()) round trips, and the authors' release layout."""
import json

import pytest
import torch

from pip_adapter.backbones import NAFNet
from pip_adapter.testing import restormer_reference
from pip_adapter.wrap import PIPConfig, PIPNet, build_pipnet, load_release_state_dict, release_state_dict
from tests.paths import load_manifests

NAF = {"type": "NAFNet", "img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1],
       "dec_blk_nums": [1, 1]}


@pytest.fixture(scope="module")
def release_model_and_state():
    torch.manual_seed(0)
    model = PIPNet({"type": "RestormerPIPRelease"}, example_input_size=(16, 24)).eval()
    shapes = load_manifests()["pip_restormer_official"]["state_dict"]
    gen = torch.Generator().manual_seed(1)
    state = {k: torch.randn(v, generator=gen) * 0.1 for k, v in shapes.items()}
    return model, state


def test_pipnet_from_dict_builds_with_build_network():
    model = PIPNet(dict(NAF), degradations=["noise", "rain", "snow"], prompt_dims=8, prompt_sizes=4, type="PIPNet")
    assert type(model.backbone) is NAFNet and model.backbone.intro.out_channels == NAF["width"]
    assert model.degradations == ["noise", "rain", "snow"]
    assert [i["module"] for i in model.skip_info] == ["encoders.0", "encoders.1"]
    out = model(torch.rand(1, 3, 16, 16), "snow")
    assert out.shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match="type"):
        PIPNet({"width": 8})
    with pytest.raises(ValueError, match="dict"):
        PIPNet("NAFNet")


def test_build_pipnet_rebuilds_identical_model():
    torch.manual_seed(0)
    model = PIPNet(dict(NAF), prompt_dims=[8, 16], prompt_sizes=[6, 4], prompt_reduce="sum").eval()
    cfg = json.loads(json.dumps(model.pip_config()))
    assert cfg["backbone"] == NAF
    twin = build_pipnet(cfg).eval()
    assert set(twin.state_dict()) == set(model.state_dict())
    twin.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(twin(x, [0, 3]), model(x, [0, 3]))
    assert twin.pip_config() == cfg
    with pytest.raises(ValueError, match="lacks"):
        build_pipnet({"backbone": NAF})
    # the config as data: PIPConfig round trip, build_pipnet takes it too, today's format tag is read
    obj = model.pip_config_object()
    assert isinstance(obj, PIPConfig) and PIPConfig.from_dict(cfg) == obj and obj.to_dict() == cfg
    assert cfg["format"] == "pip_adapter.pipnet/1"
    assert build_pipnet(obj).pip_config() == cfg
    untagged = {k: v for k, v in cfg.items() if k != "format"}
    assert PIPConfig.from_dict(untagged) == obj
    with pytest.raises(ValueError, match="unknown PIP config format"):
        build_pipnet(dict(cfg, format="pip_adapter.pipnet/9"))


def test_build_pipnet_after_extension_and_from_module():
    from pip_adapter.wrap.extend import extend_degradations

    torch.manual_seed(0)
    model = PIPNet(dict(NAF), prompt_dims=8, prompt_sizes=4).eval()
    extend_degradations(model, ["snow"])
    cfg = model.pip_config()
    assert cfg["degradations"][-1] == "snow" and cfg["pip_levels"][0]["num_added_types"] == 1
    twin = build_pipnet(cfg)
    twin.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(twin(x, "snow"), model(x, "snow"))
    # a model wrapped from a module: the config needs the network back
    from pip_adapter.wrap import wrap_with_pip
    torch.manual_seed(0)
    plain = wrap_with_pip(NAFNet(width=8, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]), prompt_dims=8, prompt_sizes=4)
    with pytest.raises(ValueError, match="backbone="):
        build_pipnet(plain.pip_config())
    again = build_pipnet(plain.pip_config(), backbone=NAFNet(width=8, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]))
    assert [i["prompt_dim"] for i in again.skip_info] == [8, 8]


def test_release_layout_loads_strict_and_round_trips(release_model_and_state, caplog):
    model, state = release_model_and_state
    assert [i["prompt_dim"] for i in model.skip_info] == [64, 128, 256]
    assert [i["prompt_size"] for i in model.skip_info] == [64, 32, 16]
    total = sum(p.numel() for p in model.parameters())
    unused = sum(v.numel() for k, v in state.items() if k.startswith("reduce_noise_channel_"))
    assert total + unused == sum(v.numel() for v in state.values()) == 27_429_510
    with caplog.at_level("INFO", logger="pip_adapter.modules.release_keys"):
        report = load_release_state_dict(model, state, strict=True)
    assert report["discarded"] == [f"reduce_noise_channel_{i}.weight" for i in (1, 2, 3)]
    assert "discarded" in caplog.text
    assert torch.equal(model.pip_levels[0].basic_prompt, state["prompt1.low_prompt_param"][0])
    assert torch.equal(model.pip_levels[2].degradation_prompt, state["prompt3.detask_prompt_param"].reshape(5, 256))
    assert torch.equal(model.backbone.chnl_reduce3.weight, state["chnl_reduce3.weight"])
    back = release_state_dict(model)
    assert set(back) == set(state)
    for k, v in state.items():
        if not k.startswith("reduce_noise_channel_"):
            assert torch.equal(back[k], v), k
    # the loaded model computes the release's function: PIP on the skips right before each concat
    x = torch.rand(1, 3, 16, 24)
    w = torch.nn.functional.one_hot(torch.tensor([2]), 5).float()
    with torch.no_grad():
        assert (model(x, [2]) - restormer_reference(model.backbone, x, model.pip_levels, w)).abs().max() <= 1e-5
    # a wrapped checkpoint with a key prefix is accepted too
    load_release_state_dict(model, {"state_dict": {"net." + k: v for k, v in state.items()}})


def test_release_layout_mismatches_fail_clearly(release_model_and_state):
    model, state = release_model_and_state
    before = {k: v.clone() for k, v in model.state_dict().items()}
    missing = dict(state)
    missing.pop("prompt2.outconv.weight")
    with pytest.raises(ValueError, match="missing"):
        load_release_state_dict(model, missing)
    extra = dict(state, **{"prompt1.extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="extra"):
        load_release_state_dict(model, extra)
    extra_bb = dict(state, **{"encoder_level9.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected.*encoder_level9"):
        load_release_state_dict(model, extra_bb)
    no_unused = {k: v for k, v in state.items() if not k.startswith("reduce_noise_channel_1")}
    with pytest.raises(ValueError, match="reduce_noise_channel_1"):
        load_release_state_dict(model, no_unused)
    bad_unused = dict(state, **{"reduce_noise_channel_2.weight": torch.zeros(96, 200, 1, 1)})
    with pytest.raises(ValueError, match="unused conv"):
        load_release_state_dict(model, bad_unused)
    for k, v in model.state_dict().items():       # failed loads changed nothing
        assert torch.equal(v, before[k]), k
