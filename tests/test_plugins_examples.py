"""The AttentionUNet example plugin end to end: ``basicsr train`` with its option file (shrunk), PIP on 3 skips."""
import os

import torch
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN = os.path.join(ROOT, "plugins", "attention_unet")


def test_attention_unet_example_trains_through_basicsr(tiny_pip_experiment, tmp_path):
    from tests.helpers_train import run_basicsr

    root = os.path.dirname(os.path.dirname(tiny_pip_experiment.exp_dir))
    with open(tiny_pip_experiment.opt_path) as fh:
        tiny = yaml.safe_load(fh)
    with open(os.path.join(PLUGIN, "train_attention_unet.yml")) as fh:
        opt = yaml.safe_load(fh)
    assert opt["network_g"]["backbone"]["type"] == "AttentionUNet" and opt["plugins"] == ["plugins/attention_unet"]
    # the example file on the tiny experiment's data, at width 8; the plugin named by absolute path
    # (the run's directory is a temporary folder, not the repository)
    opt.update(name="tiny_attention_unet", num_gpu=0, plugins=[PLUGIN])
    opt.pop("builtin_data")
    opt["datasets"] = {k: v for k, v in tiny["datasets"].items() if k in ("train", "val_1")}
    opt["network_g"]["backbone"]["width"] = 8
    opt["network_g"].update(prompt_dims=[16, 16, 16], prompt_sizes=[8, 4, 4])
    opt["train"].update(total_iter=3)
    opt["train"]["scheduler"].update(warmup_iter=1, total_iter=3)
    opt["val"]["pad_multiple"] = 8
    opt["logger"].update(print_freq=1, save_checkpoint_freq=3)
    opt_path = str(tmp_path / "attention_unet_tiny.yml")
    with open(opt_path, "w") as fh:
        yaml.safe_dump(opt, fh, sort_keys=False)
    proc = run_basicsr(["train", "-opt", opt_path], cwd=root)
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    exp_dir = os.path.join(root, "experiments", "tiny_attention_unet")
    state = torch.load(os.path.join(exp_dir, "models", "net_g_latest.pth"), weights_only=True)
    assert state["meta"]["network_g"]["backbone"]["type"] == "AttentionUNet"
    levels = {k.split(".")[1] for k in state["params"] if k.startswith("pip_levels.")}
    assert levels == {"0", "1", "2"}                       # one PIP level per attention-gated skip
    assert any(k.startswith("backbone.decoders.0.gate.") for k in state["params"])
