"""The command line's first contact: help and argument errors import no torch, one model flag, defaults shown.

Help latency itself is measured by ``bench/cli_help.py`` (docs/BENCHMARKS.md), not timed here.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from pip_adapter.cli import build_parser
from pip_adapter.cli.common import AUTO_MODES, DEFAULT_AUTO_MODE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_COMMANDS = ("restore", "evaluate", "demo", "export", "extend", "inspect")
HEAVY = ("torch", "torchvision", "numpy", "cv2", "basicsr", "gradio", "skimage", "onnx", "onnxruntime")

# run in a fresh interpreter: which modules did parsing load?
_PROBE = r"""
import contextlib, io, json, sys
from pip_adapter.cli import main
from pip_adapter.cli.basicsr_cmd import main as basicsr_main
codes = []
for argv in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            codes.append(basicsr_main(argv[1:]) if argv[:1] == ["basicsr"] else main(argv))
        except SystemExit as exit:
            codes.append(exit.code)
print(json.dumps({"codes": codes, "heavy": sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)}))
"""


def _subcommands() -> dict:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _probe(argvs) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argvs), json.dumps(HEAVY)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_and_argument_errors_import_no_torch():
    cases = [(["--help"], 0), ([], 2)] + [([c, "--help"], 0) for c in sorted(_subcommands())] + [
        (["restore"], 2),                                   # missing inputs and model
        (["restore", "x.png", "-m", "m.safetensors"], 2),   # missing -o
        (["inspect", "--tile", "many", "-m", "m.safetensors"], 2),  # not an integer
        (["export", "-m", "m.pth", "--out", "x.bin"], 2),   # runs: refuses the suffix before loading anything
        (["restore", "x.png", "-m", "m.safetensors", "-o", "out", "--omega", "rain=0.5", "-d", "rain"], 2),
        (["no-such-command"], 2),
        (["basicsr", "--help"], 0), (["basicsr", "fly"], 2),
    ]
    result = _probe([argv for argv, _ in cases])
    assert result["heavy"] == [], f"parsing imported {result['heavy']}"
    assert result["codes"] == [code for _, code in cases]


def test_commands_cover_the_ones_shown():
    assert {"quickstart", "train", "prepare-data"} | set(MODEL_COMMANDS) <= set(_subcommands())


@pytest.mark.parametrize("command", MODEL_COMMANDS)
@pytest.mark.parametrize("flag", ["-m", "--model", "--ckpt"])
def test_every_model_command_takes_the_same_model_flags(command, flag):
    extra = {"restore": ["img.png", "-o", "out"], "export": ["--out", "x.safetensors"],
             "extend": ["--add", "snow", "--out", "x.safetensors"]}.get(command, [])
    args = build_parser().parse_args([command, flag, "m.safetensors", *extra])
    assert args.model == "m.safetensors"


def test_auto_modes_of_the_parser_are_the_restorers():
    from pip_adapter.restore import restorer

    assert AUTO_MODES == restorer.AUTO_MODES and DEFAULT_AUTO_MODE == restorer.DEFAULT_AUTO_MODE


def test_every_option_with_a_default_says_it_in_its_help():
    missing = []
    for name, sub in _subcommands().items():
        for action in sub._actions:
            default = action.default
            if (not action.option_strings or action.required or default is None or default is False
                    or default in ([], argparse.SUPPRESS)
                    or isinstance(action, argparse._HelpAction)):
                continue
            text = action.help or ""
            if "default" not in text or (str(default) not in text and not isinstance(default, bool)):
                missing.append(f"{name} {action.option_strings[-1]} (default {default!r}): {text!r}")
    assert not missing, "help without its default:\n  " + "\n  ".join(missing)


def test_import_pip_adapter_is_light_and_the_basicsr_alias_still_works():
    code = ("import sys, pip_adapter; light = 'torchvision' not in sys.modules and 'torch' not in sys.modules; "
            "from torchvision.transforms.functional_tensor import rgb_to_grayscale; "
            "import torchvision.transforms.functional as F; print(light, rgb_to_grayscale is F.rgb_to_grayscale)")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.parametrize("level,console,root,own", [("WARNING", 30, 30, 20), ("INFO", 20, 30, 20),
                                                     ("DEBUG", 10, 10, 10)])
def test_console_logging_is_quiet_by_default(level, console, root, own):
    import logging

    from pip_adapter.cli import configure_logging
    from pip_adapter.utils import messages

    root_logger, own_logger = logging.getLogger(), logging.getLogger("pip_adapter")
    saved = (list(root_logger.handlers), root_logger.level, own_logger.level)
    root_logger.handlers = []
    try:
        assert configure_logging(level)
        (handler,) = root_logger.handlers
        # other libraries' INFO (onnxscript's optimiser: ~300 lines per ONNX export) stops at the root logger;
        # ours reaches the handlers (a training log file) but the console only from `level` up
        assert (handler.level, root_logger.level, own_logger.level) == (console, root, own)
        assert not configure_logging("DEBUG")   # configured already: left alone
        assert messages._LOG_ONLY   # a library warning is then printed once, as a log line
    finally:
        root_logger.handlers, root_logger.level = saved[0], saved[1]
        own_logger.setLevel(saved[2])
        messages.warnings_to_log_only(False)
