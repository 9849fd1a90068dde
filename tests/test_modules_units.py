"""Building blocks and PIPLevel behaviour: LayerNorm2d, top-m masks, FFNs, API, extension, ablations, errors."""
import pytest
import torch
import torch.nn.functional as F

from pip_adapter.modules.resize import resize_bilinear_hwc
from pip_adapter.modules.tokens import depthwise_tokens, linear_tokens, weight_matrix
from pip_adapter.modules import (DualGateFFN, GDFN, LayerNorm2d, PIPLevel, TransposedCrossAttention, record_dispatch,
                                 topm_ks, topm_masks, unfused)
from pip_adapter.omega import to_omega


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---- LayerNorm2d ---------------------------------------------------------------------------------
def test_layernorm_with_bias_matches_per_pixel_layer_norm():
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(6, generator=_gen(1)))
        ln.bias.copy_(torch.randn(6, generator=_gen(2)))
    x = torch.randn(2, 6, 5, 7, generator=_gen(3)) * 3 + 1
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, 1e-5).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), ref, rtol=1e-5, atol=1e-5)


def test_layernorm_bias_free_keeps_the_mean():
    ln = LayerNorm2d(4, with_bias=False)
    assert ln.bias is None
    x = torch.randn(1, 4, 3, 3, generator=_gen(4)) + 5
    var = x.var(dim=1, keepdim=True, unbiased=False)
    torch.testing.assert_close(ln(x), x / torch.sqrt(var + 1e-5))
    with pytest.raises(ValueError, match="B×4×H×W"):
        ln(torch.zeros(1, 3, 2, 2))


# ---- top-m masks ---------------------------------------------------------------------------------
def test_topm_ks():
    assert topm_ks(16) == (8, 10, 12, 12)
    assert topm_ks(4) == (2, 2, 3, 3)
    assert topm_ks(32) == (16, 21, 24, 25)


@pytest.mark.parametrize("c", [4, 5, 16, 32])
def test_one_sort_masks_equal_four_topk(c):
    attn = torch.randn(3, 4, c, c, generator=_gen(c))
    ks = topm_ks(c)
    masks = topm_masks(attn, ks)
    assert masks.shape == (4, 3, 4, c, c) and masks.dtype == torch.bool
    for i, k in enumerate(ks):
        ref = torch.zeros_like(attn).scatter_(-1, torch.topk(attn, k, dim=-1, largest=True)[1], 1.0) > 0
        assert torch.equal(masks[i], ref), k


def test_masks_keep_exactly_k_with_ties():
    attn = torch.zeros(2, 1, 8, 8)  # all tied
    masks = topm_masks(attn, topm_ks(8))
    for i, k in enumerate(topm_ks(8)):
        assert (masks[i].sum(-1) == k).all()
        # nested: a larger k keeps everything a smaller one keeps
        if i:
            assert (masks[i] >= masks[i - 1]).all()
    with pytest.raises(ValueError, match="top-k sizes"):
        topm_masks(attn, (0, 3))


def test_topm_attention_equals_four_separate_softmax_products():
    attn_mod = TransposedCrossAttention(8, 2, topm=True)
    with torch.no_grad():
        for i, v in enumerate((0.1, 0.3, -0.2, 0.7), 1):
            getattr(attn_mod, f"attn{i}").fill_(v)
    a = torch.randn(2, 2, 4, 4, generator=_gen(5))
    v = torch.randn(2, 2, 4, 9, generator=_gen(6))
    ref = 0
    for i, k in enumerate(topm_ks(4), 1):
        mask = torch.zeros_like(a).scatter_(-1, torch.topk(a, k, dim=-1)[1], 1.0) > 0
        p = a.masked_fill(~mask, float("-inf")).softmax(-1)
        ref = ref + (p @ v) * getattr(attn_mod, f"attn{i}")
    torch.testing.assert_close(attn_mod.mix_weights(a) @ v, ref, rtol=1e-5, atol=1e-6)


def test_attention_rejects_bad_heads_and_sizes():
    with pytest.raises(ValueError, match="divisible"):
        TransposedCrossAttention(10, 4)
    with pytest.raises(ValueError, match="head width"):
        TransposedCrossAttention(4, 4, topm=True)
    m = TransposedCrossAttention(8, 2)
    with pytest.raises(ValueError, match="share batch and size"):
        m(torch.zeros(1, 8, 4, 4), torch.zeros(1, 8, 4, 5))


# ---- FFNs ----------------------------------------------------------------------------------------
def test_ffn_widths_and_gates():
    g, d = GDFN(48), DualGateFFN(48)
    assert g.hidden == 127 and g.project_in.weight.shape == (254, 48, 1, 1)
    assert d.project_out.weight.shape == (48, 127, 1, 1)
    x = torch.randn(1, 48, 4, 4, generator=_gen(7))
    x1, x2 = d.dwconv(d.project_in(x)).chunk(2, dim=1)
    torch.testing.assert_close(d(x), d.project_out(F.gelu(x2) * x1 + F.gelu(x1) * x2))
    x1, x2 = g.dwconv(g.project_in(x)).chunk(2, dim=1)
    torch.testing.assert_close(g(x), g.project_out(F.gelu(x1) * x2))
    assert all(m.bias is None for m in list(g.modules()) + list(d.modules()) if isinstance(m, torch.nn.Conv2d))


# ---- PIPLevel ------------------------------------------------------------------------------------
def _small(c=6, **kw):
    torch.manual_seed(0)
    return PIPLevel(c, 8, 4, 3, **kw).eval()


@pytest.mark.parametrize("c", [5, 8, 11])
def test_level_shapes_and_init(c):
    level = _small(c)
    z = torch.randn(2, c, 9, 7, generator=_gen(8))
    assert level(z, torch.tensor([0, 2])).shape == z.shape
    assert level.universal_prompt(z, torch.tensor([0, 2])).shape == (2, 8, 9, 7)
    assert level.degradation_prompt.shape == (3, 8) and level.basic_prompt.shape == (8, 4, 4)
    assert level.p2f_attn.attn1.item() == pytest.approx(0.2)
    assert torch.equal(level.p2p_attn.temperature, torch.ones(2, 1, 1))
    assert (level.reduce_channel is not None) == (c < 8)
    assert level.num_types == 3


def test_prompt_reduce_mean_vs_sum():
    mean, s = _small(), _small(prompt_reduce="sum")
    s.load_state_dict(mean.state_dict())
    omega = torch.tensor([[0.5, 0.0, 2.0]])
    torch.testing.assert_close(mean.degradation_vector(omega) * 3, s.degradation_vector(omega))
    with pytest.raises(ValueError, match="prompt_reduce"):
        PIPLevel(4, 8, 4, 3, prompt_reduce="max")


def test_extension_keeps_old_outputs_bit_identical_and_rebuilds():
    level = _small()
    z = torch.randn(2, 6, 8, 8, generator=_gen(9))
    with torch.no_grad():
        before = level(z, torch.tensor([0, 2]))
        before_mix = level(z, torch.tensor([[0.3, 0.7, 0.2], [1.0, 0.0, 0.5]]))
        level.add_degradation_prompts(torch.randn(2, 8, generator=_gen(10)))
        assert level.num_types == 5 and level.all_degradation_prompts().shape == (5, 8)
        assert level.prompt_divisor == 3
        after = level(z, torch.tensor([0, 2]))
        after_mix = level(z, torch.tensor([[0.3, 0.7, 0.2, 0.0, 0.0], [1.0, 0.0, 0.5, 0.0, 0.0]]))
        new = level(z, torch.tensor([3, 4]))
    assert torch.equal(before, after) and torch.equal(before_mix, after_mix)
    assert not torch.allclose(new, before)
    rebuilt = PIPLevel(**level.config())
    rebuilt.load_state_dict(level.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(z, torch.tensor([3, 4])), new, rtol=0, atol=0)
    with pytest.raises(ValueError, match="k×8"):
        level.add_degradation_prompts(torch.zeros(1, 7))


def test_ablation_switches():
    z = torch.randn(2, 6, 8, 8, generator=_gen(11))
    no_d = _small(use_degradation_prompt=False)
    assert no_d.degradation_prompt is None and no_d.all_degradation_prompts().shape == (0, 8)
    with torch.no_grad():
        # ω has no effect without degradation prompts
        torch.testing.assert_close(no_d(z, torch.tensor([0, 1])), no_d(z, torch.tensor([2, 2])), rtol=0, atol=0)
    no_b = _small(use_basic_prompt=False)
    assert no_b.basic_prompt is None
    plain = _small(selective=False)
    assert not hasattr(plain.p2f_attn, "attn1")
    for level in (no_d, no_b, plain):
        assert level(z, torch.tensor([0, 1])).shape == z.shape
        assert PIPLevel(**level.config()).load_state_dict(level.state_dict(), strict=True)


def test_value_errors_name_expected_and_given():
    level = _small()
    z = torch.zeros(2, 6, 8, 8)
    with pytest.raises(ValueError, match=r"C=6.*\(2, 5, 8, 8\)"):
        level(torch.zeros(2, 5, 8, 8), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"T=3.*\(2, 4\)"):
        level(z, torch.ones(2, 4))
    with pytest.raises(ValueError, match=r"2-D.*\(2, 3, 1\)"):
        level(z, torch.ones(2, 3, 1))
    with pytest.raises(ValueError, match="3 rows but the feature batch has 2"):
        level(z, torch.ones(3, 3))
    # values are omega.py's to check (once per call, upstream); a level still refuses a label it has no row for
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        to_omega(torch.tensor([0, 3]), ["a", "b", "c"])
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        level(z, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="positive int"):
        PIPLevel(0, 8, 4, 3)
    # one ω row is broadcast to the batch
    with torch.no_grad():
        torch.testing.assert_close(level(z + 1, torch.tensor([[0.0, 1.0, 0.0]])), level(z + 1, torch.tensor([1, 1])))


# ---- fast paths compute the same function ---------------------------------------------------------
CL = torch.channels_last


@pytest.mark.parametrize("topm", [False, True])
def test_attention_layouts_agree(topm):
    torch.manual_seed(3)
    m = TransposedCrossAttention(8, 2, topm=topm)
    x = torch.randn(3, 8, 5, 6, generator=_gen(12))
    y = torch.randn(3, 8, 5, 6, generator=_gen(13))
    with torch.no_grad():
        ref = m(x, y)
        torch.testing.assert_close(m(x.contiguous(memory_format=CL), y.contiguous(memory_format=CL)), ref,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(m(x.contiguous(memory_format=CL), y.contiguous(memory_format=CL),
                                     per_sample_gram=True), ref, rtol=1e-5, atol=1e-5)
        # a shared query (batch 1) broadcasts in both layouts
        shared = m(x[:1], y)
        torch.testing.assert_close(shared[1], m(x[:1], y[1:2])[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(m(x[:1].contiguous(memory_format=CL), y.contiguous(memory_format=CL)), shared,
                                   rtol=1e-5, atol=1e-5)
        # fewer query channels = zero padding, without building the padded map
        padded = F.pad(x[:, :5], (0, 0, 0, 0, 0, 3))
        torch.testing.assert_close(m(x[:, :5], y), m(padded, y), rtol=1e-5, atol=1e-5)
        # fused=False calls project_out as a module (hooks see it) instead of folding it: same numbers
        seen = []
        h = m.project_out.register_forward_hook(lambda *a: seen.append(1))
        try:
            m(x.contiguous(memory_format=CL), y.contiguous(memory_format=CL))
            assert not seen                      # an attached hook does not change the path taken
            with unfused(m):
                torch.testing.assert_close(m(x.contiguous(memory_format=CL), y.contiguous(memory_format=CL)),
                                           ref, rtol=1e-5, atol=1e-5)
            assert m.fused
        finally:
            h.remove()
        assert seen


def test_ffn_layouts_agree():
    torch.manual_seed(4)
    for ffn in (GDFN(12), DualGateFFN(12)):
        x = torch.randn(2, 12, 6, 5, generator=_gen(14))
        with torch.no_grad():
            ref = ffn(x)
            torch.testing.assert_close(ffn(x.contiguous(memory_format=CL)), ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ffn(x.contiguous(memory_format=CL)), ref, rtol=1e-5, atol=1e-6)  # grad mode


@pytest.mark.parametrize("c", [5, 8, 11])
def test_level_layouts_and_modes_agree(c):
    level = _small(c)
    z = torch.randn(2, c, 9, 7, generator=_gen(15))
    omega = torch.tensor([[0.2, 0.0, 1.0], [0.0, 3.0, 0.5]])
    with torch.no_grad(), record_dispatch() as seen:
        level.path = "reference"                 # the modules on NCHW maps (head-major attention)
        ref = level(z, omega)
        level.path = "auto"                      # eager: the channels-last path, whatever the caller's layout
        out = level(z, omega)
        out_cl = level(z.contiguous(memory_format=CL), omega)
    assert [d.path for _, d in seen] == ["reference", "channels_last", "channels_last"]
    assert ref.is_contiguous() and out.is_contiguous() and out_cl.is_contiguous(memory_format=CL)  # layout back
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_cl, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(level(z, omega), ref, rtol=1e-5, atol=1e-5)  # autograd path (no in-place)
    with torch.no_grad(), unfused(level):
        torch.testing.assert_close(level(z, omega), ref, rtol=1e-5, atol=1e-5)  # module-by-module path


@pytest.mark.parametrize("size, out", [((5, 7), (16, 9)), ((16, 12), (4, 5)), ((6, 6), (6, 6))])
def test_token_resize_equals_interpolate(size, out):
    x = torch.randn(2, 3, *size, generator=_gen(17))
    ref = F.interpolate(x, size=out, mode="bilinear", align_corners=False, antialias=False)
    got = resize_bilinear_hwc(x.permute(0, 2, 3, 1), out).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)   # the source positions round differently


def test_token_blocks_equal_their_modules():
    torch.manual_seed(6)
    x = torch.randn(2, 8, 5, 6, generator=_gen(18))
    tokens = x.permute(0, 2, 3, 1).reshape(2, 30, 8)
    with torch.no_grad():
        for norm in (LayerNorm2d(8), LayerNorm2d(8, with_bias=False)):
            norm.weight.add_(torch.randn(8))
            ref = norm(x).permute(0, 2, 3, 1).reshape(2, 30, 8)
            torch.testing.assert_close(norm.forward_tokens(tokens), ref, rtol=1e-5, atol=1e-6)
        with pytest.raises(ValueError, match="channels last"):
            LayerNorm2d(8).forward_tokens(tokens[..., :5])
        for ffn in (GDFN(8), DualGateFFN(8)):
            ref = ffn(x).permute(0, 2, 3, 1).reshape(2, 30, 8)
            hidden = ffn.hidden_tokens(tokens, (5, 6))
            torch.testing.assert_close(linear_tokens(hidden, weight_matrix(ffn.project_out.weight)), ref,
                                       rtol=1e-5, atol=1e-5)
        attn = TransposedCrossAttention(8, 2, topm=True)
        y = torch.randn(2, 8, 5, 6, generator=_gen(19))
        m, v = attn.mix_tokens(tokens[:1, :, :5], y.permute(0, 2, 3, 1).reshape(2, 30, 8), (5, 6))
        ref = attn(x[:1, :5], y).permute(0, 2, 3, 1).reshape(2, 30, 8)   # shared query, fewer channels
        torch.testing.assert_close(linear_tokens(v, m), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(depthwise_tokens(tokens, attn.q_dwconv.weight, (5, 6)),
                                   attn.q_dwconv(x).permute(0, 2, 3, 1).reshape(2, 30, 8), rtol=1e-5, atol=1e-6)
