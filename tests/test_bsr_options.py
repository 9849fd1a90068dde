"""The shipped option files: safe to parse, and every type they name exists with matching arguments."""
import glob
import inspect
import os

import pytest
import torch

from pip_adapter import bsr
from pip_adapter.bsr import pipeline
from pip_adapter.bsr.model import PIPModel
from tests.helpers_train import REPO_ROOT

ALL_FILES = sorted(glob.glob(os.path.join(REPO_ROOT, "basicsr_options", "*.yml")))
ZOO_FILES = sorted(glob.glob(os.path.join(REPO_ROOT, "basicsr_options", "zoo", "*.yml")))  # shipped models' recipes
PAPER = {"pip_nafnet.yml", "pip_restormer_3task.yml", "pip_restormer_5task.yml", "pip_restormer_3task_release.yml"}
BASELINES = {"nafnet_5task_baseline.yml", "restormer_3task_baseline.yml", "restormer_5task_baseline.yml"}
RESTORERS = sorted(os.path.join(REPO_ROOT, "basicsr_options", n) for n in PAPER | BASELINES | {"quickstart.yml"})
# the zoo's restorers (its classifier recipe, classifier_photo.yml, is checked in tests/test_classifier_compact.py)
RESTORERS += [p for p in ZOO_FILES if not os.path.basename(p).startswith("classifier")]


def test_expected_files_present():
    names = {os.path.basename(p) for p in ALL_FILES}
    assert PAPER | BASELINES | {"quickstart.yml"} <= names
    assert "pip_nafnet_photo.yml" in {os.path.basename(p) for p in ZOO_FILES}


@pytest.mark.parametrize("path", ALL_FILES + ZOO_FILES, ids=os.path.basename)
def test_every_option_file_names_registered_types(path):
    opt = pipeline.read_option_file(path)
    assert opt["model_type"] in bsr.MODEL_REGISTRY
    assert opt["network_g"]["type"] in bsr.ARCH_REGISTRY
    for phase, ds in opt["datasets"].items():
        assert ds["type"] in bsr.DATASET_REGISTRY, phase


def _bind(cls, kwargs):
    inspect.signature(cls).bind(**kwargs)


@pytest.mark.parametrize("path", RESTORERS, ids=os.path.basename)
def test_restoration_option_file_is_consistent(path):
    opt = pipeline.read_option_file(path)
    assert opt["model_type"] in bsr.MODEL_REGISTRY
    for phase, ds in opt["datasets"].items():
        assert ds["type"] in bsr.DATASET_REGISTRY, phase
    net = dict(opt["network_g"])
    net_type = net.pop("type")
    assert net_type in bsr.ARCH_REGISTRY
    if net_type == "PIPNet":
        backbone = dict(net["backbone"])
        _bind(bsr.ARCH_REGISTRY.get(backbone.pop("type")), backbone)
        assert net["degradations"] == opt["datasets"]["train"].get("degradations", net["degradations"])
    else:
        _bind(bsr.ARCH_REGISTRY.get(net_type), net)
    optim = dict(opt["train"]["optim_g"])
    PIPModel.get_optimizer(None, optim.pop("type"), [torch.nn.Parameter(torch.zeros(1))], **optim)
    sched = opt["train"]["scheduler"]
    assert sched["type"] == "LinearWarmupCosine" and sched["total_iter"] <= opt["train"]["total_iter"]
    for metric in opt["val"]["metrics"].values():
        assert metric["type"] in bsr.METRIC_REGISTRY
    if "pixel_opt" in opt["train"]:
        assert opt["train"]["pixel_opt"]["type"] in bsr.LOSS_REGISTRY


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_settings(name):
    opt = pipeline.read_option_file(os.path.join(REPO_ROOT, "basicsr_options", name))
    train = opt["train"]
    assert opt["datasets"]["train"]["gt_size"] == 128
    repeats = {t["degradation"]: t.get("repeat", 1) for t in opt["datasets"]["train"]["tasks"]}
    expected = {"noise": 3, "rain": 120, "haze": 1, "blur": 5, "low_light": 20}
    assert repeats == {k: expected[k] for k in repeats}
    if name.endswith("_release.yml"):
        assert train["optim_g"] == {"type": "AdamW", "lr": 3.6e-4, "weight_decay": 0.01, "betas": [0.9, 0.999]}
        assert opt["datasets"]["train"]["batch_size_per_gpu"] == 48
        assert train["pixel_opt"]["type"] == "SmoothL1Loss" and train["ddl_opt"]["form"] == "release"
        assert train["scheduler"]["warmup_start_factor"] == 0.1
    else:
        assert train["optim_g"] == {"type": "Adam", "lr": 5e-4, "weight_decay": 0, "betas": [0.9, 0.99]}
        assert opt["datasets"]["train"]["batch_size_per_gpu"] == 32
        assert train["pixel_opt"]["type"] == "L1Loss" and train["ddl_opt"] == {
            "form": "paper", "theta_thre": 90, "loss_weight": 0.002}
        assert train["scheduler"]["warmup_start_factor"] == 0.0
    if "nafnet" in name:
        bb = opt["network_g"]["backbone"]
        assert (bb["width"], bb["enc_blk_nums"], bb["middle_blk_num"], bb["dec_blk_nums"]) == (
            64, [2, 2, 4, 8], 12, [2, 2, 2, 2])


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baseline_matches_its_pip_counterpart(name):
    base = pipeline.read_option_file(os.path.join(REPO_ROOT, "basicsr_options", name))
    twin = {"nafnet_5task_baseline.yml": "pip_nafnet.yml", "restormer_3task_baseline.yml": "pip_restormer_3task.yml",
            "restormer_5task_baseline.yml": "pip_restormer_5task.yml"}[name]
    pip = pipeline.read_option_file(os.path.join(REPO_ROOT, "basicsr_options", twin))
    backbone = dict(pip["network_g"]["backbone"])
    assert base["network_g"] == backbone
    assert base["datasets"] == pip["datasets"]
    assert "ddl_opt" not in base["train"]
    assert {k: v for k, v in base["train"].items()} == {k: v for k, v in pip["train"].items() if k != "ddl_opt"}


def test_quickstart_network_builds_and_runs():
    opt = pipeline.read_option_file(os.path.join(REPO_ROOT, "basicsr_options", "quickstart.yml"))
    from basicsr.archs import build_network

    net = build_network(opt["network_g"])
    y = net(torch.rand(1, 3, 48, 48), torch.tensor([2]))
    assert y.shape == (1, 3, 48, 48) and len(net.pip_levels) == 3
    assert opt["builtin_data"]["root"] == "datasets/builtin"
