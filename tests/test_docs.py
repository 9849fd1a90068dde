"""The documentation runs: every fenced ```bash / ```python block of README.md and docs/*.md is executed.

* Each Markdown file runs in a temporary folder of its own, its blocks in order, sharing the folder (and one
  namespace for its python blocks), so later blocks use what earlier ones wrote.  The folder links the
  repository's ``basicsr_options/``, ``plugins/`` and ``bench/`` and holds the sample inputs of ``INPUTS``
  (``photos/``, ``big.png``, ...); files listed in ``SEEDED`` also get the tiny trained quickstart model.
* A block that cannot run here carries the line ``<!-- doc-test: skip <reason> -->`` directly before its
  opening fence (other ``<!-- ... -->`` lines may sit between): a GPU, several machines, the paper's data
  sets, hours of CPU, the test suite itself.
* The tables below are the only liberties taken: placeholders filled (``SUBSTITUTIONS``,
  ``PY_PLACEHOLDERS``, ``INPUTS``) and training/data preparation shortened (``SHORT_TRAIN``,
  ``SHORT_BUILTIN``, ``SHORT_ARGS``).  Extend them when a new block needs it.
* ``pip-adapter``, ``basicsr``, ``python -m ...``, ``python -c ...`` and ``python script.py`` run in this
  process (a fresh interpreter costs seconds of imports per command); any other line, or a line with pipes
  or redirections, runs in ``bash``.  A failure names the file, the line and the command, with its output.
"""
from __future__ import annotations

import contextlib
import glob
import io
import logging
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = ["README.md"] + sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))
SKIP_RE = re.compile(r"<!--\s*doc-test:\s*skip\b\s*(.*?)\s*-->")
FENCE_RE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")

# ---------------------------------------------------------------------------------------------- tables
# Placeholders in commands: (text in the docs, what the test runs instead, why).
SUBSTITUTIONS: List[Tuple[str, str, str]] = [
    ("/data/PromptIR", "standard_sample", "your PromptIR-style data: a tiny standard layout made by the test"),
]

# Names a python block uses without defining them ("your network", "an image"), per file.
PY_PLACEHOLDERS: Dict[str, Dict[str, Callable[[], Any]]] = {
    "docs/WRAP.md": {
        "my_unet": lambda: _tiny_nafnet(),
        "x": lambda: torch.rand(2, 3, 32, 32),
    },
    "docs/RESTORE.md": {
        "image": lambda: _image(40, 56, seed=1),
        "big": lambda: _image(72, 88, seed=2),
    },
    "docs/EXTEND.md": {
        "model": lambda: _wrapped_tiny_nafnet(),
        "x": lambda: torch.rand(2, 3, 32, 32),
    },
}

# Sample inputs written into every file's folder: relative path -> (height, width).
INPUTS: Dict[str, Tuple[int, int]] = {
    "photos/a.png": (72, 96), "photos/b.png": (80, 64),
    "extra/c.jpg": (48, 56), "one.tif": (40, 40), "big.png": (96, 120), "photo.png": (48, 64),
    "photo.jpg": (48, 64),
    "in.png": (40, 48), "gt.png": (40, 48),
    "lq/x.png": (40, 48), "gt/x.png": (40, 48),
    "snowy/s.png": (48, 64), "my_snowy_photos/s.png": (48, 64),
}

# Files whose folder starts with the session's tiny quickstart run (its data and experiment), because they
# use a trained model without training one themselves.
SEEDED: Dict[str, List[str]] = {
    "docs/RESTORE.md": ["datasets/builtin", "experiments/quickstart_pip_nafnet"],
}

# Training runs (`pip-adapter quickstart`, `basicsr train -opt X.yml`): these --force_yml overrides are
# appended where the option file has the parent key.  The warm-up is left alone: a warm-up longer than
# the shortened schedule must be handled by LinearWarmupCosine itself (issue 18).
SHORT_TRAIN: Dict[str, Any] = {
    "train:total_iter": 2,
    "train:scheduler:total_iter": 2,
    "logger:print_freq": 1,
    "datasets:train:num_worker_per_gpu": 0,
}
# The built-in data, when a run or `prepare-data --builtin` makes it: two photos, one 64-px crop each.
SHORT_BUILTIN: Dict[str, Any] = {"image_size": 64, "crop_size": 64, "crops_per_image": 1, "val_size": 64,
                                 "max_train_images": 2, "max_val_images": 1}
# Other commands: (argv prefix, arguments appended unless the command gives that option itself).
SHORT_ARGS: List[Tuple[Tuple[str, ...], List[str]]] = [
    (("pip-adapter", "prepare-data", "--builtin"),
     [f"--{k.replace('_', '-')}={v}" for k, v in SHORT_BUILTIN.items()] + ["--no-progress"]),
]
# Docs whose every code block carries a skip marker, and why none can run; any other doc with code blocks must
# run at least one of them (a doc whose blocks are all skipped is otherwise untested).
RUNS_NOTHING: Dict[str, str] = {
    "docs/ARCHITECTURE.md": "its one block lists signatures",
    "docs/MODELS.md": "the zoo's recipes train for hours; tests/test_bench_model_card.py runs the script small",
}
RUNNABLE = ("bash", "sh", "shell", "python", "py")
# Commands that cannot run in a test: their block must carry the skip marker.
NOT_HERE = {"pip", "pip3", "torchrun", "sudo", "apt-get", "apt", "conda", "nvidia-smi"}


# ---------------------------------------------------------------------------------------------- helpers
def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB uint8 test image (gradients + a little noise), so restorers and classifiers see texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, (xx + yy) / (h + w)], axis=-1) * 200 + 20
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def _tiny_nafnet() -> torch.nn.Module:
    from pip_adapter import NAFNet

    return NAFNet(width=8, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])


def _wrapped_tiny_nafnet() -> torch.nn.Module:
    from pip_adapter import wrap_with_pip

    return wrap_with_pip(_tiny_nafnet())


@dataclass
class Block:
    """One fenced block of a Markdown file."""

    file: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: Optional[str]  # the reason of a doc-test skip marker, else None


def parse_blocks(text: str, file: str) -> List[Block]:
    """Every fenced block of ``text`` with its language, code (dedented to the fence) and skip marker."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = len(m.group(1)), m.group(2).lower(), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"{file}:{start + 1}: fence never closed")
        skip = None
        j = start - 1
        while j >= 0 and lines[j].strip().startswith("<!--"):
            s = SKIP_RE.search(lines[j])
            if s:
                skip = s.group(1) or ""
            j -= 1
        blocks.append(Block(file, start + 1, lang, "\n".join(body) + "\n", skip))
        i += 1
    return blocks


def orphan_skip_markers(text: str) -> List[int]:
    """Lines of skip markers that do not sit right before a fence (only other comments between)."""
    lines = text.splitlines()
    bad = []
    for n, line in enumerate(lines):
        if line.strip().startswith("<!--") and SKIP_RE.search(line):  # a marker line, not prose quoting one
            k = n + 1
            while k < len(lines) and lines[k].strip().startswith("<!--"):
                k += 1
            if k >= len(lines) or not FENCE_RE.match(lines[k]):
                bad.append(n + 1)
    return bad


def shell_commands(code: str) -> List[Tuple[int, str]]:
    """The command lines of a bash block (continuations joined, comment lines dropped), with line offsets."""
    out, buf, first = [], "", 0
    for n, line in enumerate(code.splitlines()):
        if not buf:
            first = n
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        if buf.strip() and not buf.strip().startswith("#"):
            out.append((first, buf.strip()))
        buf = ""
    if buf.strip():
        out.append((first, buf.strip()))
    return out


def _is_shell_syntax(cmd: str) -> bool:
    lex = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    lex.commenters = "#"
    try:
        return any(tok and set(tok) <= set("();<>|&") for tok in lex)
    except ValueError:
        return True


def _force_yml_entries(opt_path: str) -> List[str]:
    """SHORT_TRAIN (and SHORT_BUILTIN under ``builtin_data``) entries whose parent exists in the option file."""
    with open(opt_path, encoding="utf-8") as fh:
        opt = yaml.safe_load(fh) or {}
    entries = []
    items = dict(SHORT_TRAIN)
    if isinstance(opt.get("builtin_data"), dict):
        items.update({f"builtin_data:{k}": v for k, v in SHORT_BUILTIN.items()})
    for key, value in items.items():
        node = opt
        parts = key.split(":")
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and parts[-1] in node:
            entries.append(f"{key}={value}")
        elif isinstance(node, dict) and parts[0] == "builtin_data":
            entries.append(f"+{key}={value}")  # a new key: '+' adds it (a typo of an existing key is refused)
    return entries


def shorten(argv: List[str]) -> List[str]:
    """argv with the SHORT_* tables applied (training runs and data preparation made tiny)."""
    argv = list(argv)
    training = argv[:2] == ["pip-adapter", "quickstart"] or argv[:2] == ["basicsr", "train"]
    if training:
        opt = None
        for flag in ("-opt", "--opt"):
            if flag in argv:
                opt = argv[argv.index(flag) + 1]
        opt = opt or os.path.join("basicsr_options", "quickstart.yml")
        entries = _force_yml_entries(opt)
        flags = [k for k, a in enumerate(argv) if a in ("--force_yml", "--force-yml")]
        if flags:  # argparse keeps only the last --force_yml list: add ours at its end (later entries win)
            end = flags[-1] + 1
            while end < len(argv) and not argv[end].startswith("-"):
                end += 1
            argv[end:end] = entries
        else:
            argv += ["--force_yml", *entries]
    for prefix, extra in SHORT_ARGS:
        if tuple(argv[:2]) == prefix[:2] and all(p in argv for p in prefix[2:]):
            given = {a.split("=")[0] for a in argv}
            argv += [e for e in extra if e.split("=")[0] not in given]
    return argv


class BlockFailed(Exception):
    """A documented command failed; the message says where and shows its output."""


class DocRunner:
    """Runs the blocks of one Markdown file in ``folder`` (the current directory during the test)."""

    def __init__(self, file: str, folder: Path) -> None:
        self.file, self.folder = file, folder
        self.namespace: Dict[str, Any] = {"__name__": "__doc_test__"}
        for name, factory in PY_PLACEHOLDERS.get(file, {}).items():
            self.namespace[name] = factory()

    # ------------------------------------------------------------------ blocks
    def run(self, block: Block) -> int:
        """Execute one block; return how many commands (a python block: one) it ran; raise BlockFailed with
        the place, the command and its output."""
        if block.lang == "python":
            rc, out = self._in_process(lambda: exec(compile(block.code, f"{block.file}:{block.line}", "exec"),
                                                    self.namespace))
            if rc != 0:
                raise BlockFailed(self._report(block, block.line, "(python block)", rc, out))
            return 1
        executed = 0
        for offset, cmd in shell_commands(block.code):
            line = block.line + 1 + offset
            for old, new, _why in SUBSTITUTIONS:
                cmd = cmd.replace(old, new)
            rc, out, shown = self._command(cmd)
            if rc != 0:
                raise BlockFailed(self._report(block, line, shown, rc, out))
            executed += shown is not None
        return executed

    def _report(self, block: Block, line: int, cmd: str, rc: int, out: str) -> str:
        tail = out[-4000:]
        return (f"{block.file}:{line}: documented command failed (exit status {rc})\n"
                f"  command as run: {cmd}\n  folder: {self.folder}\n"
                f"---- output (last {len(tail)} characters) ----\n{tail}\n"
                f"---- block ({block.lang}, {block.file}:{block.line}) ----\n{block.code}")

    # ------------------------------------------------------------------ one command
    def _command(self, cmd: str) -> Tuple[int, str, Optional[str]]:
        if _is_shell_syntax(cmd):
            return (*self._bash(cmd), cmd)
        argv = shlex.split(cmd, comments=True)
        env: Dict[str, str] = {}
        while argv and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]):
            key, value = argv.pop(0).split("=", 1)
            env[key] = value
        if not argv:  # only variable assignments: nothing ran
            return 0, "", None
        if argv[0] in NOT_HERE:
            return 1, (f"'{argv[0]}' cannot run in a test: put <!-- doc-test: skip <reason> --> on the line "
                       "before this block's fence"), cmd
        argv = [argv[0]] + [a for arg in argv[1:] for a in self._glob(arg, cmd)]
        if argv[0] in ("python", "python3") and argv[1:3] == ["-m", "pip_adapter.cli.basicsr_cmd"]:
            argv = ["basicsr"] + argv[3:]
        elif argv[0] in ("python", "python3") and argv[1:3] == ["-m", "pip_adapter.cli"]:
            argv = ["pip-adapter"] + argv[3:]
        argv = shorten(argv)
        shown = shlex.join(argv)
        if argv[0] == "pip-adapter":
            from pip_adapter.cli import main as cli_main

            return (*self._in_process(lambda: cli_main(argv[1:]), env), shown)
        if argv[0] == "basicsr":
            from pip_adapter.cli.basicsr_cmd import main as basicsr_main

            return (*self._in_process(lambda: basicsr_main(argv[1:]), env), shown)
        if argv[0] in ("python", "python3") and len(argv) > 1:
            if argv[1] == "-c":
                code = argv[2]
                return (*self._in_process(lambda: exec(compile(code, "<python -c>", "exec"), {"__name__": "__main__"}),
                                          env), shown)
            if argv[1] == "-m" and argv[2] == "pytest":
                return 1, "the test suite cannot run inside itself: mark this block with doc-test: skip", shown
            if argv[1] == "-m":
                return (*self._in_process(lambda: self._run_main(argv[2], argv[3:], module=True), env), shown)
            if argv[1].endswith(".py"):
                return (*self._in_process(lambda: self._run_main(argv[1], argv[2:], module=False), env), shown)
        return (*self._bash(cmd, env), cmd)

    def _glob(self, arg: str, cmd: str) -> List[str]:
        """Expand an unquoted glob pattern as bash would (no match: the pattern itself)."""
        if not any(c in arg for c in "*?[") or f"'{arg}'" in cmd or f'"{arg}"' in cmd:
            return [arg]
        found = sorted(glob.glob(arg))
        return found or [arg]

    @staticmethod
    def _run_main(target: str, args: List[str], module: bool) -> None:
        saved = sys.argv
        sys.argv = [target] + list(args)
        try:
            if module:
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                runpy.run_path(target, run_name="__main__")
        finally:
            sys.argv = saved

    def _in_process(self, fn: Callable[[], Any], env: Optional[Dict[str, str]] = None) -> Tuple[int, str]:
        buf = io.StringIO()
        handler = logging.StreamHandler(buf)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        loggers = [logging.getLogger(), logging.getLogger("basicsr")]
        saved_env = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        for lg in loggers:
            lg.addHandler(handler)
        # what a command may change for the rest of this process: put back afterwards
        root_level, threads, cwd = logging.getLogger().level, torch.get_num_threads(), os.getcwd()
        logging.getLogger().setLevel(logging.INFO)  # as the console scripts do: INFO lines in failure reports
        rc = 0
        try:
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                result = fn()
            if isinstance(result, int) and not isinstance(result, bool):
                rc = result
        except SystemExit as err:
            rc = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
            if err.code not in (None, 0) and not isinstance(err.code, int):
                buf.write(str(err.code))
        except Exception:  # noqa: BLE001 - any error of a documented command is the report
            buf.write(traceback.format_exc())
            rc = 1
        finally:
            logging.getLogger().setLevel(root_level)
            torch.set_num_threads(threads)
            os.chdir(cwd)
            for lg in loggers:
                lg.removeHandler(handler)
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return rc, buf.getvalue()

    def _bash(self, cmd: str, env: Optional[Dict[str, str]] = None) -> Tuple[int, str]:
        full = dict(os.environ)
        full.update(env or {})
        full["PYTHONPATH"] = str(REPO) + (os.pathsep + full["PYTHONPATH"] if full.get("PYTHONPATH") else "")
        full["PATH"] = os.path.dirname(sys.executable) + os.pathsep + full.get("PATH", "")
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=self.folder, env=full,
                              capture_output=True, text=True, timeout=300)
        return proc.returncode, proc.stdout + proc.stderr


def _write_inputs(folder: Path) -> None:
    from pip_adapter.image_io import write_image

    for k, (rel, (h, w)) in enumerate(sorted(INPUTS.items())):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(str(path), _image(h, w, seed=k), overwrite=True)


def _link_repo(folder: Path) -> None:
    for name in ("basicsr_options", "plugins", "bench"):
        os.symlink(REPO / name, folder / name, target_is_directory=True)


def _run_file(file: str, folder: Path) -> Tuple[int, int]:
    """Run every runnable block of ``file`` in ``folder``; return (blocks that ran a command, blocks skipped)."""
    text = (REPO / file).read_text(encoding="utf-8")
    runner = DocRunner(file, folder)
    ran = skipped = 0
    for block in parse_blocks(text, file):
        if block.lang not in RUNNABLE:
            continue
        if block.skip is not None:
            skipped += 1
            continue
        failure = executed = None
        try:
            executed = runner.run(block)
        except BlockFailed as err:
            failure = str(err)
        if failure is not None:  # outside the except: one report, not a chained traceback
            pytest.fail(failure, pytrace=False)
        ran += bool(executed)
    return ran, skipped


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def docs_seed(tmp_path_factory) -> Path:
    """The tiny quickstart run (its data and experiment) that SEEDED files start from, made once."""
    folder = tmp_path_factory.mktemp("docs_seed")
    _link_repo(folder)
    old = os.getcwd()
    os.chdir(folder)
    try:
        rc, out, shown = DocRunner("seed", folder)._command("pip-adapter quickstart")
    finally:
        os.chdir(old)
    assert rc == 0, f"seed run failed: {shown}\n{out[-4000:]}"
    return folder


@pytest.fixture
def doc_folder(tmp_path: Path, monkeypatch) -> Path:
    """An empty folder with the repository's option files, plugins and bench scripts linked and sample inputs."""
    from tests.helpers_data import make_standard_layout

    _link_repo(tmp_path)
    _write_inputs(tmp_path)
    make_standard_layout(str(tmp_path / "standard_sample"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


# ---------------------------------------------------------------------------------------------- tests
def test_parser_finds_blocks_markers_and_indented_fences():
    text = ("intro\n```bash\necho a \\\n  b  # comment\n# only a comment\n\n```\n"
            "<!-- doc-test: skip needs a GPU -->\n<!-- ci-test -->\n```python\nprint(1)\n```\n"
            "1. step\n\n   ```bash\n   ls\n   ```\n```yaml\na: 1\n```\n")
    blocks = parse_blocks(text, "X.md")
    assert [(b.line, b.lang, b.skip) for b in blocks] == [(2, "bash", None), (10, "python", "needs a GPU"),
                                                          (15, "bash", None), (18, "yaml", None)]
    assert shell_commands(blocks[0].code) == [(0, "echo a    b  # comment")]
    assert blocks[2].code == "ls\n"
    assert orphan_skip_markers(text) == []
    assert orphan_skip_markers("<!-- doc-test: skip x -->\ntext\n```bash\nls\n```\n") == [1]


def test_shorten_adds_overrides_and_keeps_the_documented_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _link_repo(tmp_path)
    argv = shorten(["pip-adapter", "quickstart", "--force_yml", "train:total_iter=500", "--auto_resume"])
    i = argv.index("--force_yml")
    assert argv[i + 1] == "train:total_iter=500" and "train:total_iter=2" in argv[i + 2:argv.index("--auto_resume")]
    assert "+builtin_data:max_train_images=2" in argv and argv.count("--force_yml") == 1
    argv = shorten(["pip-adapter", "prepare-data", "--builtin", "out", "--val-size", "32"])
    assert "--max-train-images=2" in argv and "--val-size=64" not in argv and "--no-progress" in argv
    assert shorten(["pip-adapter", "restore", "x"]) == ["pip-adapter", "restore", "x"]
    assert _is_shell_syntax("a | grep b") and _is_shell_syntax("a 2>&1") and not _is_shell_syntax("a --x 'b|c'")


@pytest.mark.parametrize("file", DOC_FILES)
def test_every_skip_marker_sits_on_a_block_and_says_why(file):
    text = (REPO / file).read_text(encoding="utf-8")
    assert orphan_skip_markers(text) == [], f"{file}: doc-test skip markers not directly before a fence"
    for block in parse_blocks(text, file):
        assert block.skip is None or block.skip.strip(), f"{file}:{block.line}: a skip marker needs a reason"


@pytest.mark.timeout(600)  # pytest-timeout: a block that waits forever (a server) fails instead of hanging CI
@pytest.mark.parametrize("file", DOC_FILES)
def test_documented_commands_run(file, doc_folder, request):
    for rel in SEEDED.get(file, []):
        seed = request.getfixturevalue("docs_seed")
        shutil.copytree(seed / rel, doc_folder / rel, symlinks=True)
    ran, skipped = _run_file(file, doc_folder)
    blocks = [b for b in parse_blocks((REPO / file).read_text(encoding="utf-8"), file) if b.lang in RUNNABLE]
    unmarked = [b.line for b in blocks if b.skip is None]
    # every block without a skip marker ran at least one command (not one of comments or assignments only)
    assert ran == len(unmarked), (f"{file}: {len(unmarked) - ran} of the blocks at lines {unmarked} ran no "
                                  "command; give them one or a skip marker with its reason")
    if file in RUNS_NOTHING:
        assert ran == 0, f"{file} runs {ran} block(s) now: remove it from RUNS_NOTHING"
    elif blocks:
        assert ran >= 1, (f"{file}: all {skipped} code blocks are skipped, so nothing of it is tested; make one "
                          "runnable (shorten it through the tables above) or list the file in RUNS_NOTHING "
                          "with the reason")


def test_test_option_file_matches_the_quickstart():
    from pip_adapter.utils.io import safe_load_yaml

    train = safe_load_yaml(str(REPO / "basicsr_options" / "quickstart.yml"))
    test = safe_load_yaml(str(REPO / "basicsr_options" / "test_quickstart.yml"))
    assert "train" not in test and test["network_g"] == train["network_g"]
    vals = [v for k, v in sorted(train["datasets"].items()) if k.startswith("val_")]
    tests = [v for k, v in sorted(test["datasets"].items()) if k.startswith("test_")]
    assert tests == vals  # the same sets, tasks and ω order
    assert test["path"]["pretrain_network_g"] == f"experiments/{train['name']}/models/net_g_latest.pth"


def test_basicsr_test_reproduces_the_quickstart_validation(docs_seed, tmp_path, monkeypatch):
    """`basicsr test -opt basicsr_options/test_quickstart.yml` on a trained (tiny) quickstart model gives the
    numbers of the quickstart's own final validation (same EMA weights, same images)."""
    import json

    for rel in ("datasets/builtin", "experiments/quickstart_pip_nafnet"):
        shutil.copytree(docs_seed / rel, tmp_path / rel, symlinks=True)
    _link_repo(tmp_path)
    monkeypatch.chdir(tmp_path)
    rc, out, shown = DocRunner("test", tmp_path)._command("basicsr test -opt basicsr_options/test_quickstart.yml")
    assert rc == 0, f"{shown}\n{out[-4000:]}"
    with open(tmp_path / "experiments/quickstart_pip_nafnet/validation_latest.json", encoding="utf-8") as fh:
        trained = json.load(fh)["tasks"]
    with open(tmp_path / "results/quickstart_pip_nafnet_test/validation_latest.json", encoding="utf-8") as fh:
        tested = json.load(fh)["tasks"]
    assert list(tested) == list(trained) and len(tested) == 7
    for task, metrics in trained.items():
        for key in ("psnr", "ssim", "input_psnr"):
            assert tested[task][key] == pytest.approx(metrics[key], abs=1e-6), (task, key)


def test_a_failing_block_is_reported_with_its_place_command_and_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = "# Doc\n\n```bash\necho fine\npip-adapter export --ckpt missing.pth --out m.safetensors\n```\n"
    block = parse_blocks(text, "docs/X.md")[0]
    with pytest.raises(BlockFailed) as err:
        DocRunner("docs/X.md", tmp_path).run(block)
    report = str(err.value)
    assert report.startswith("docs/X.md:5: documented command failed (exit status 2)")
    assert "pip-adapter export --ckpt missing.pth --out m.safetensors" in report and "missing.pth" in report
    with pytest.raises(BlockFailed, match="doc-test: skip"):
        DocRunner("docs/X.md", tmp_path).run(parse_blocks("```bash\npip install foo\n```\n", "docs/X.md")[0])
