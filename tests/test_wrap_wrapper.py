"""PIPWrappedModel behaviour: ω forms, default ω, repeated calls, no state across forwards, state dicts,
deepcopy/pickle, eval/no_grad, DataParallel/DDP, gradients, PEFT-like helpers, adapter I/O, sizing."""
import copy
import gc
import json
import pickle
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pip_adapter.backbones import NAFNet, Restormer
from pip_adapter.wrap import PIPWrappedModel, wrap_with_pip
from pip_adapter.wrap.adapter_io import load_pip_adapter, read_pip_adapter, save_pip_adapter
from pip_adapter.wrap.protocol import bare_model, degradation_names, is_pip_model, pip_levels_of, strip_parallel_prefix
from pip_adapter.wrap.sizing import level_sizes, rule_prompt_dim, rule_prompt_size
from tests.helpers_wrap import FunctionalUNet, TinyNAF

SMALL = dict(prompt_dims=8, prompt_sizes=4)


def make(cls=TinyNAF, seed=0, **kw):
    torch.manual_seed(seed)
    net = cls()
    return net, wrap_with_pip(net, **{**SMALL, **kw})


def test_omega_forms_agree():
    _, model = make()
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        by_label = model(x, torch.tensor([1, 1]))
        assert torch.equal(by_label, model(x, torch.tensor([[0., 1, 0, 0, 0]] * 2)))
        assert torch.equal(by_label, model(x, ["rain", "rain"]))
        assert torch.equal(by_label, model(x, {"rain": 1.0}))
        assert torch.equal(by_label, model(x, "derain"))
        mixed = model(x, {"rain": 0.5, "haze": 0.5})
        assert not torch.allclose(mixed, by_label)
        per_sample = model(x, torch.tensor([0, 4]))
        assert torch.allclose(per_sample[1:], model(x[1:], [4]), atol=1e-5)   # batch-independent
    with pytest.raises(ValueError, match="omega is required"):
        model(x)
    with pytest.raises(ValueError):
        model(x, torch.tensor([0, 7]))
    with pytest.raises(ValueError):
        model(x, "snow")
    # a per-sample form must give one entry per image; one type for all is a single name
    for short in (["rain"], torch.tensor([1]), [1], [{"rain": 1.0}], ["rain", "rain", "rain"]):
        with pytest.raises(ValueError, match="per-sample entries .* the batch has 2 samples"):
            model(x, short)
    with pytest.raises(ValueError, match=r"give a single name \(a string, e.g. 'rain'\), not a list"):
        model(x, ["rain"])
    with torch.no_grad():
        assert torch.equal(model(x, torch.tensor(1)), by_label)   # a 0-d label: batch-wide like a name


def test_set_omega_plain_and_context():
    _, model = make()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        want_rain, want_haze = model(x, "rain"), model(x, "haze")
        model.set_omega("rain")
        assert torch.equal(model(x), want_rain)
        with model.set_omega("haze"):
            assert torch.equal(model(x), want_haze)
        assert torch.equal(model(x), want_rain)
        assert torch.equal(model(x, "haze"), want_haze)   # an explicit ω wins
    with pytest.raises(ValueError):
        model.set_omega("nonsense")


def test_repeated_sizes_and_no_state_survives_forward():
    net, model = make()
    seen = []
    net.encoders[0].register_forward_hook(lambda m, a, o: seen.append(weakref.ref(o)))
    hooks_before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules())
    for shape in [(1, 3, 16, 16), (3, 3, 8, 24), (2, 3, 13, 9)]:
        out = model(torch.rand(*shape), torch.zeros(shape[0], dtype=torch.long))
        assert out.shape == shape
        out.sum().backward()
        del out
    gc.collect()
    assert seen and all(r() is None for r in seen)          # no skip tensor kept alive
    assert model._run is None
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in net.modules()) == hooks_before
    # an error inside the backbone leaves nothing behind either
    with pytest.raises(RuntimeError):
        model(torch.rand(1, 4, 16, 16), [0])
    assert model._run is None


def test_intercept_levels_keep_nothing():
    net, model = make(FunctionalUNet)
    assert {i["strategy"] for i in model.skip_info} == {"intercept"}
    seen = []
    net.inc.register_forward_hook(lambda m, a, o: seen.append(weakref.ref(o)))
    for shape in [(1, 3, 16, 16), (2, 3, 32, 24)]:
        model(torch.rand(*shape), [1] * shape[0]).sum().backward()
    gc.collect()
    assert all(r() is None for r in seen)


def test_gradients_match_reference_and_down_path_gets_raw_skip():
    net, model = make()
    x = torch.rand(2, 3, 16, 24)
    w = F.one_hot(torch.tensor([0, 3]), 5).float()
    model(x, w).square().mean().backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    net.reference(x, model.pip_levels, w).square().mean().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(got[n], p.grad, atol=1e-6), n
    # the downsampling conv received the unmodified encoder output (the inner block's output object)
    grabbed = {}
    net.encoders[0][0].register_forward_hook(lambda m, a, o: grabbed.setdefault("z", o))
    net.decoders[-1].register_forward_pre_hook(lambda m, a: grabbed.setdefault("dec_in", a[0]))
    net.downs[0].register_forward_pre_hook(lambda m, a: grabbed.setdefault("down_in", a[0]))
    with torch.no_grad():
        model(x, w)
    assert grabbed["down_in"] is grabbed["z"]


def test_state_dict_deepcopy_pickle_eval_no_grad():
    _, model = make()
    _, other = make(seed=1)
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        want = model(x, [0, 2])
        other.load_state_dict(model.state_dict())
        assert torch.equal(other(x, [0, 2]), want)
        twin = copy.deepcopy(model)
        assert torch.equal(twin(x, [0, 2]), want)
        twin.pip_levels[0].out_conv.weight.add_(1.0)      # the copy's hooks use the copy's levels
        assert not torch.allclose(twin(x, [0, 2]), want)
        assert torch.equal(model(x, [0, 2]), want)
        loaded = pickle.loads(pickle.dumps(model))          # hooks are plain picklable objects
        assert torch.equal(loaded(x, [0, 2]), want)
    model.eval()
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        assert not model(x, [0, 2]).requires_grad
    assert all(k.startswith(("backbone.", "pip_levels.")) for k in model.state_dict())


def test_data_parallel_and_ddp(tmp_path):
    import torch.distributed as dist
    _, model = make()
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        want = model(x, [1, 2])
        assert torch.equal(nn.DataParallel(model)(x, [1, 2]), want)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        out = ddp(x, torch.tensor([1, 2]))
        assert torch.allclose(out, want, atol=1e-6)
        out.mean().backward()
        assert all(p.grad is not None for p in model.pip_levels.parameters())
    finally:
        if owns_group:
            dist.destroy_process_group()


def test_peft_helpers(capsys):
    net, model = make()
    x = torch.rand(1, 3, 16, 16)
    model.freeze_backbone()
    n_pip = sum(p.numel() for p in model.pip_levels.parameters())
    n_all = sum(p.numel() for p in model.parameters())
    assert model.get_nb_trainable_parameters() == (n_pip, n_all)   # PEFT: the numbers, nothing printed
    assert capsys.readouterr().out == ""
    stats = model.print_trainable_parameters()                       # PEFT: prints the line
    assert capsys.readouterr().out == stats["summary"] + "\n"
    assert stats["trainable"] == n_pip and stats["all"] == n_all
    assert abs(stats["trainable_percent"] - 100 * n_pip / n_all) < 1e-9
    assert stats["summary"] == (f"trainable params: {n_pip:,d} || all params: {n_all:,d} || "
                                f"trainable%: {100 * n_pip / n_all:.4f}")
    model(x, [0]).sum().backward()
    assert all(p.grad is None for p in net.parameters())
    with torch.no_grad():
        base = net(x)
        with model.disable_pip():
            assert torch.equal(model(x, [0]), base)
        assert not torch.equal(model(x, [0]), base)
        assert torch.equal(model.backbone(x), base)        # a bare backbone call has no PIP
        back = model.unwrap()
        assert back is net
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
        assert torch.equal(back(x), base)
    with pytest.raises(RuntimeError, match="unwrapped"):
        model(x, [0])
    text = model.describe()
    assert "encoders.0" in text and "add" in text
    json.dumps(model.skip_info)


def test_adapter_state_and_files(tmp_path):
    _, model = make()
    _, fresh = make(seed=3)
    sd = model.pip_state_dict()
    assert sd and all(k.startswith("pip_levels.") for k in sd)
    assert set(sd) < set(model.state_dict())
    x = torch.rand(1, 3, 16, 16)
    fresh.backbone.load_state_dict(model.backbone.state_dict())
    fresh.load_pip_state_dict({k[len("pip_levels."):]: v for k, v in sd.items()})   # prefix optional
    with torch.no_grad():
        assert torch.equal(fresh(x, [2]), model(x, [2]))
    broken = dict(sd)
    broken.pop(next(iter(broken)))
    with pytest.raises(ValueError, match="missing"):
        fresh.load_pip_state_dict(broken)
    _, six = make(degradations=6)
    with pytest.raises(ValueError, match="T=6"):
        model.load_pip_state_dict(six.pip_state_dict())
    path = tmp_path / "adapter.safetensors"
    save_pip_adapter(model, str(path))
    data = read_pip_adapter(str(path))
    assert data["pip_config"]["levels"] == ["encoders.0", "encoders.1"]
    _, again = make(seed=4)
    again.backbone.load_state_dict(model.backbone.state_dict())
    load_pip_adapter(again, str(path))
    with torch.no_grad():
        assert torch.equal(again(x, [2]), model(x, [2]))
    with pytest.raises(FileNotFoundError):
        load_pip_adapter(again, str(tmp_path / "nope.safetensors"))


def test_sizing_tables_rule_and_overrides():
    naf = wrap_with_pip(NAFNet(width=8, enc_blk_nums=[1, 1, 1, 1], dec_blk_nums=[1, 1, 1, 1]))
    assert [i["prompt_dim"] for i in naf.skip_info] == [64, 96, 128, 128]
    assert [i["prompt_size"] for i in naf.skip_info] == [64, 32, 16, 16]
    res = wrap_with_pip(Restormer(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1]))
    assert [i["prompt_dim"] for i in res.skip_info] == [64, 128, 256]
    assert [i["prompt_size"] for i in res.skip_info] == [64, 32, 16]
    generic = wrap_with_pip(FunctionalUNet(), patch_size=64)
    assert [i["prompt_dim"] for i in generic.skip_info] == [16, 16]
    assert [i["prompt_size"] for i in generic.skip_info] == [32, 16]
    over = wrap_with_pip(FunctionalUNet(), prompt_dims=[8, 24], prompt_sizes=6)
    assert [(i["prompt_dim"], i["prompt_size"]) for i in over.skip_info] == [(8, 6), (24, 6)]
    assert rule_prompt_dim(48) == 48 and rule_prompt_dim(500) == 128 and rule_prompt_dim(3) == 16
    assert rule_prompt_size(1) == 64 and rule_prompt_size(2) == 32 and rule_prompt_size(64) == 4
    with pytest.raises(ValueError, match="entries"):
        level_sizes("X", [8, 16], [1, 2], prompt_dims=[8])
    with pytest.raises(ValueError, match="unknown PIP option"):
        wrap_with_pip(FunctionalUNet(), bogus=1)


def test_pip_config_is_json_and_wrapper_refuses_double_wrap():
    _, model = make()
    cfg = json.loads(json.dumps(model.pip_config()))
    assert cfg["levels"] == ["encoders.0", "encoders.1"] and cfg["backbone"] is None
    assert cfg["degradations"] == ["noise", "rain", "haze", "blur", "low_light"]
    assert len(cfg["pip_levels"]) == 2 and cfg["pip_levels"][0]["channels"] == 4
    with pytest.raises(ValueError, match="already wrapped"):
        wrap_with_pip(model)
    sized = wrap_with_pip(TinyNAF(), example_input_size=(3, 32, 40), **SMALL)
    assert sized.pip_config()["example_input_size"] == [3, 32, 40]
    assert [i["probe_shape"][2:] for i in sized.skip_info] == [[32, 40], [16, 20]]
    assert isinstance(model, PIPWrappedModel)


def test_wrapper_takes_the_backbone_mode():
    net = TinyNAF().eval()
    model = wrap_with_pip(net, **SMALL)
    assert not model.training and not any(m.training for m in model.modules())
    trained = wrap_with_pip(TinyNAF(), **SMALL)
    assert trained.training and all(m.training for m in trained.pip_levels.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_one_protocol_for_a_pip_model():
    net, model = make()
    for wrapped in (model, nn.DataParallel(model), torch.compile(model, backend="eager")):
        assert bare_model(wrapped) is model and is_pip_model(wrapped)
        assert pip_levels_of(wrapped) == list(model.pip_levels)
        assert degradation_names(wrapped) == ["noise", "rain", "haze", "blur", "low_light"]
    assert not is_pip_model(net) and degradation_names(net) == []
    with pytest.raises(ValueError, match="TinyNAF holds no PIP levels"):
        pip_levels_of(nn.DataParallel(net))
    assert strip_parallel_prefix({"module.a": 1, "b": 2}) == {"a": 1, "b": 2}


def test_wrapping_is_said_once_and_a_rebuild_quietly(caplog):
    import logging

    from pip_adapter.wrap.pipnet import build_pipnet

    class SaidOnceNAF(TinyNAF):   # a name no other test wraps: the first wrap in this process is this test's
        pass

    with caplog.at_level(logging.DEBUG, logger="pip_adapter"):
        first = wrap_with_pip(SaidOnceNAF(), **SMALL)
        wrap_with_pip(SaidOnceNAF(), **SMALL)                # e.g. BasicSR's net_g_ema: the same lines again
        build_pipnet(first.pip_config(), backbone=SaidOnceNAF())   # from a checkpoint's configuration
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "wrapped SaidOnceNAF" in r.getMessage()]
    assert [lvl for lvl, _ in said] == ["INFO", "DEBUG", "DEBUG"]
    assert said[0][1] == said[1][1] and "skip levels" in said[0][1]
    assert not [r for r in caplog.records if r.levelno >= logging.INFO and r.getMessage().startswith("skip detection")]
