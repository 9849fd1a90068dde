"""The ``basicsr`` console command: ``basicsr train -opt X.yml`` and ``basicsr test -opt X.yml``.

basicsr 1.4.2 installs no console command; this one registers pip_adapter's archs, models, datasets,
losses and metrics, then runs BasicSR's own pipelines (with the fixes of :mod:`pip_adapter.bsr.pipeline`)
in the current directory: experiments land in ``./experiments/<name>/``, TensorBoard logs in
``./tb_logger/<name>/`` and test results in ``./results/<name>/``.

Flags are BasicSR's: ``--launcher none|pytorch``, ``--auto_resume``, ``--debug``, ``--force_yml``,
``--local_rank``/``--local-rank``.  Several processes: ``torchrun --nproc_per_node=N -m
pip_adapter.cli.basicsr_cmd train -opt X.yml --launcher pytorch`` (NCCL on GPUs, Gloo on CPU).
"""
from __future__ import annotations

import logging
import os
import sys
from typing import List, Optional

from pip_adapter.cli.common import bsr_pipeline
from pip_adapter.utils.io import OptionFileError, UnreadableFileError, os_error_line

_USAGE = """usage: basicsr {train,test} -opt OPTIONS.yml [--launcher {none,pytorch}] [--auto_resume] [--debug]
                              [--force_yml KEY:SUB=VALUE ...] [--local_rank N]

  train   train the model described by the option file (experiments/<name>/ in the current directory)
  test    evaluate it on the option file's test sets (results/<name>/ in the current directory)
"""

_DATA_HINT = ("Nothing is downloaded: paths in the option file are relative to the current directory. The paper's "
              "data sets go in the standard all-in-one layout under datasets/allinone (docs/TRAINING.md, "
              "'Data for the paper option files'); the built-in data needs none: "
              "basicsr train -opt basicsr_options/quickstart.yml")


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``basicsr`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if argv else 2
    mode, rest = argv[0], argv[1:]
    if mode not in ("train", "test"):
        print(f"basicsr: unknown command {mode!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")

    pipeline = bsr_pipeline()
    run = pipeline.train_pipeline if mode == "train" else pipeline.test_pipeline
    try:
        out = run(os.getcwd(), rest)
    except OptionFileError as err:
        print(f"basicsr {mode}: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        msg = os_error_line(err) if err.errno is not None else err
        print(f"basicsr {mode}: error: {msg}\n{_DATA_HINT}", file=sys.stderr)
        return 2
    except UnreadableFileError as err:
        print(f"basicsr {mode}: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        if os.environ.get("PIP_ADAPTER_TRACEBACK"):
            raise
        print(f"basicsr {mode}: error: {err}\n(set PIP_ADAPTER_TRACEBACK=1 for the traceback)", file=sys.stderr)
        return 2
    except OSError as err:  # permission denied, read-only file system, no space left on device, ...
        if os.environ.get("PIP_ADAPTER_TRACEBACK"):
            raise
        print(f"basicsr {mode}: error: {os_error_line(err)}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":  # one line per run, not one per torchrun process
        print(f"basicsr {mode}: done, results in {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
