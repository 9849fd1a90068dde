"""The one copy of padding, PSNR and the DataParallel prefix strip that backbones, inference, training metrics and the analysis share."""
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pip_adapter.analysis.wrong_prompt import psnr as batch_psnr
from pip_adapter.bsr.metrics import calculate_psnr_aio
from pip_adapter.restore.restorer import image_metrics
from pip_adapter.utils.messages import warn
from pip_adapter.utils.metrics import psnr, psnr_from_mse
from pip_adapter.utils.tensor import center_crop_to_multiple
from pip_adapter.utils.state_dict import state_dict_fit, strip_parallel_prefix
from pip_adapter.utils.tensor import pad_bottom_right, pad_to_multiple


def test_padding_reflects_replicates_or_returns_the_input():
    x = torch.rand(1, 3, 10, 12)
    assert pad_bottom_right(x, 0, 0) is x and pad_to_multiple(x, 1) is x and pad_to_multiple(x, 2) is x
    torch.testing.assert_close(pad_bottom_right(x, 3, 2), F.pad(x, (0, 2, 0, 3), mode="reflect"))
    torch.testing.assert_close(pad_bottom_right(x, 10, 2), F.pad(x, (0, 2, 0, 10), mode="replicate"))
    assert pad_to_multiple(x, 8).shape[-2:] == (16, 16)


def test_psnr_is_one_formula_for_numpy_torch_and_the_registered_metric():
    rng = np.random.default_rng(0)
    a = rng.random((8, 9, 3))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    want = 10 * np.log10(1 / np.mean((a - b) ** 2))
    assert psnr(a, b) == pytest.approx(want, rel=1e-12)
    assert psnr(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(want, rel=1e-12)
    assert image_metrics(a, b)[0] == pytest.approx(want, rel=1e-12)
    assert calculate_psnr_aio(a * 255, b * 255) == pytest.approx(want, rel=1e-12)
    ta, tb = (torch.from_numpy(v).permute(2, 0, 1)[None] for v in (a, b))
    assert batch_psnr(ta, tb) == pytest.approx(want, rel=1e-12)
    assert psnr(a, a) == float("inf") and psnr_from_mse(0.01) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, b[:4])


def test_parallel_prefix_is_stripped_key_by_key_in_order():
    wrapped = {"module.conv.weight": 1, "module.conv.bias": 2, "head.weight": 3}
    assert list(strip_parallel_prefix(wrapped).items()) == [("conv.weight", 1), ("conv.bias", 2), ("head.weight", 3)]
    assert strip_parallel_prefix({}) == {} and strip_parallel_prefix({"net.a": 1}, prefix="net.") == {"a": 1}


def test_state_dict_fit_is_one_report_for_every_loader():
    own = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4), "c.bias": torch.zeros(1)}
    given = {"a.weight": torch.zeros(3, 3), "b.weight": torch.zeros(4), "x.weight": torch.zeros(1)}
    fit = state_dict_fit(own, given, "adapter")
    assert (fit.missing, fit.unexpected) == (["c.bias"], ["x.weight"])
    assert fit.mismatched == ["a.weight: adapter (3, 3) vs model (2, 3)"]
    assert not fit.ok and not fit.fits(strict=False) and not fit.fits(strict=True)
    assert fit.describe() == ("missing keys (1): c.bias; unexpected keys (1): x.weight; shape mismatches (1): "
                              "a.weight: adapter (3, 3) vs model (2, 3)")
    assert fit.describe(strict=False) == "shape mismatches (1): a.weight: adapter (3, 3) vs model (2, 3)"
    keys_only = state_dict_fit(own, {"b.weight": torch.zeros(4)})
    assert keys_only.fits(strict=False) and not keys_only.fits(strict=True)
    many = state_dict_fit({f"k{i}": torch.zeros(1) for i in range(11)}, {})
    assert many.describe().endswith("k7 ... and 3 more") and state_dict_fit(own, own).ok


def test_warn_reaches_python_warnings_and_a_configured_log(caplog):
    logger = logging.getLogger("pip_adapter.test_warn")
    with caplog.at_level(logging.WARNING, logger=logger.name), pytest.warns(UserWarning, match="drift"):
        warn(logger, "outputs may drift")
    assert caplog.text.count("outputs may drift") == 1
    silent = logging.getLogger("pip_adapter.test_warn_unconfigured")
    silent.propagate = False  # no handler anywhere: the warnings channel alone reports it
    try:
        with pytest.warns(UserWarning, match="alone"):
            warn(silent, "alone")
    finally:
        silent.propagate = True


def test_warn_logs_only_once_the_command_line_asks(caplog, recwarn):
    from pip_adapter.utils import messages

    logger = logging.getLogger("pip_adapter.test_warn_cli")
    messages.warnings_to_log_only()
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            warn(logger, "said once")
    finally:
        messages.warnings_to_log_only(False)
    assert caplog.text.count("said once") == 1
    assert not [w for w in recwarn if "said once" in str(w.message)]


def test_center_crop_to_multiple_numpy_and_torch():
    img = np.arange(10 * 7 * 3).reshape(10, 7, 3)
    out = center_crop_to_multiple(img, 4)
    assert out.shape == (8, 4, 3) and (out == img[1:9, 1:5]).all()
    assert tuple(center_crop_to_multiple(torch.zeros(17, 33), 16).shape) == (16, 32)
    with pytest.raises(ValueError, match="smaller than the crop multiple 16"):
        center_crop_to_multiple(img, 16)


def test_inference_and_training_read_one_precision_table():
    from pip_adapter.bsr.model import AMP_DTYPES, amp_dtype
    from pip_adapter.restore.restorer import PRECISIONS as RESTORER_PRECISIONS, resolve_precision
    from pip_adapter.utils.precision import PRECISION_ALIASES, PRECISIONS, precision_name

    assert AMP_DTYPES is PRECISIONS and RESTORER_PRECISIONS is PRECISIONS
    cpu = torch.device("cpu")
    for spelling in list(PRECISIONS) + list(PRECISION_ALIASES) + ["BF16", " Half "]:
        if precision_name(spelling) == "fp16":
            assert amp_dtype(spelling) is torch.float16  # fp16 autocast on a CPU depends on the torch build
            continue
        assert resolve_precision(spelling, cpu) is amp_dtype(spelling) is PRECISIONS[precision_name(spelling)]
    assert precision_name(None) == precision_name(False) == "fp32" and precision_name("int8") is None


@pytest.mark.parametrize("size", [(24, 20), (6, 9), (5, 5), (4, 12), (2, 8)])
@pytest.mark.parametrize("channels", [3, 1])
def test_restore_and_basicsr_metrics_agree_small_images_included(size, channels):
    from pip_adapter.bsr.metrics import calculate_ssim_aio
    from pip_adapter.utils.metrics import ssim

    rng = np.random.default_rng(sum(size) + channels)
    gt = rng.random((*size, channels))
    noisy = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
    value_psnr, value_ssim = image_metrics(noisy, gt)  # what restore --gt and evaluate report
    assert calculate_psnr_aio(noisy * 255, gt * 255) == pytest.approx(value_psnr, rel=1e-12)
    trained = calculate_ssim_aio(noisy * 255, gt * 255)  # what a BasicSR validation reports
    if min(size) < 3:
        assert np.isnan(value_ssim) and np.isnan(trained)  # undefined, never an error that stops a validation
    else:
        assert 0 < value_ssim < 1 and trained == pytest.approx(value_ssim, rel=1e-12)
        assert ssim(noisy[..., 0], gt[..., 0]) == pytest.approx(ssim(noisy[..., :1], gt[..., :1]))
