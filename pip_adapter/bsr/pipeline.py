"""``basicsr train|test``: BasicSR's own pipelines with the pieces that break replaced.

:func:`train_pipeline` and :func:`test_pipeline` run ``basicsr.train.train_pipeline`` /
``basicsr.test.test_pipeline`` (same loop, same log format, same ``experiments/<name>/`` layout under
``root_path``) while three of their module-level helpers are swapped for ours, and put back afterwards:

* ``parse_options``: the option file is read with a safe YAML loader (a ``!!python/...`` tag is refused),
  ``--force_yml`` values are parsed as YAML scalars instead of ``eval``/``exec``, ``plugins:`` are loaded,
  ``num_gpu: auto`` means "the GPUs there are, else CPU", and ``--launcher pytorch`` initialises
  ``torch.distributed`` from torchrun's environment with NCCL on CUDA and Gloo on CPU (BasicSR's
  ``init_dist`` divides by the GPU count and always picks NCCL);
* ``load_resume_state``: reads ``training_states/<iter>.state`` onto the CPU with ``weights_only=True`` and,
  with ``--auto_resume``, picks the newest state whose network checkpoints exist;
* the ``basicsr`` root logger is reset per run, so several runs in one process each get their log file.

Checkpoints are written atomically by :class:`~pip_adapter.bsr.model.PIPModel`.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import re
from os import path as osp
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
import torch.distributed as dist

from basicsr.utils import get_time_str, set_random_seed
from basicsr.utils import misc as bsr_misc
from basicsr.utils import logger as bsr_logger
from basicsr.utils.dist_util import get_dist_info

from pip_adapter.data import MixedDegradationDataset
from pip_adapter.data.builtin import ensure_builtin
from pip_adapter.plugins import load_plugins_from_options
from pip_adapter.utils.io import OptionFileError
from pip_adapter.utils.options import apply_force_yml, read_option_file  # noqa: F401 - also used from here

from . import register_all
from .checks import check_datasets, check_run_options, check_whole_numbers
from .resume import load_resume_state

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- arguments
def build_arg_parser(prog: str = "basicsr train") -> argparse.ArgumentParser:
    """BasicSR's command-line flags (``-opt``, ``--launcher``, ``--auto_resume``, ``--debug``, ...)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("-opt", "--opt", dest="opt", type=str, required=True, help="path to the option YAML file")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none",
                        help="none: one process; pytorch: one process per device started by torchrun")
    parser.add_argument("--auto_resume", "--auto-resume", dest="auto_resume", action="store_true",
                        help="continue from the newest complete training state of this experiment")
    parser.add_argument("--debug", action="store_true", help="prefix the name with debug_ (frequent logs)")
    parser.add_argument("--local_rank", "--local-rank", dest="local_rank", type=int, default=None,
                        help="set by torch.distributed.launch; torchrun uses LOCAL_RANK instead")
    parser.add_argument("--force_yml", "--force-yml", dest="force_yml", nargs="+", default=None,
                        help="override options, e.g. train:total_iter=100 logger:print_freq=1")
    return parser


# ---------------------------------------------------------------------------- distributed
def init_dist_from_env(num_gpu: Any = "auto", backend: Optional[str] = None, local_rank: Optional[int] = None,
                       **kwargs: Any) -> Tuple[int, int]:
    """Join the process group described by torchrun's environment; returns ``(rank, world_size)``.

    RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT come from torchrun (also across nodes); LOCAL_RANK picks
    the GPU.  The backend defaults to NCCL when this process uses a GPU, Gloo on CPU.
    """
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ValueError(f"--launcher pytorch needs torchrun's environment, missing {', '.join(missing)}: "
                         "start with 'torchrun --nproc_per_node=N -m pip_adapter.cli.basicsr_cmd train "
                         "-opt X.yml --launcher pytorch' (or use --launcher none for one process)")
    if local_rank is not None and "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(local_rank)
    local = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available() and num_gpu != 0
    if use_cuda:
        torch.cuda.set_device(local % torch.cuda.device_count())
    if backend == "nccl" and not use_cuda:
        logger.warning("dist_params asks for nccl but this process runs on the CPU: using gloo")
        backend = "gloo"
    backend = backend or ("nccl" if use_cuda else "gloo")
    dist.init_process_group(backend=backend, init_method="env://", **kwargs)
    logger.info("joined process group: rank %d of %d, backend %s", dist.get_rank(), dist.get_world_size(), backend)
    return dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# ---------------------------------------------------------------------------- options
def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def prepare_builtin_if_missing(opt: Dict[str, Any], rank: int) -> None:
    """Create the built-in data set named by the option key ``builtin_data`` when its folder is missing.

    ``builtin_data: {root: datasets/builtin, ...}``: ``root`` is relative to the current directory; the
    other keys go to :func:`pip_adapter.data.builtin.ensure_builtin` (``prepare_builtin``'s arguments).
    Rank 0 prepares, the others wait.
    """
    spec = opt.get("builtin_data")
    if not spec:
        return
    if not isinstance(spec, dict) or not spec.get("root"):
        raise OptionFileError("builtin_data must be a mapping with a 'root' folder, e.g. {root: datasets/builtin}")
    kwargs = dict(spec)
    root = osp.expanduser(kwargs.pop("root"))
    if rank == 0:
        ensure_builtin(root, **kwargs)  # reuses a complete folder, builds a missing one
    barrier()


def parse_options(root_path: str, is_train: bool = True,
                  argv: Optional[List[str]] = None) -> Tuple[Dict[str, Any], argparse.Namespace]:
    """Our ``basicsr.utils.options.parse_options``: same result dict, safe parsing, CPU-aware DDP."""
    args = build_arg_parser("basicsr train" if is_train else "basicsr test").parse_args(argv)
    opt = read_option_file(args.opt)
    if args.force_yml:
        apply_force_yml(opt, args.force_yml)

    check_whole_numbers(opt, args.opt)
    load_plugins_from_options(opt, args.opt)
    register_all()  # plugins may have added backbones

    num_gpu = opt.get("num_gpu", "auto")
    if num_gpu == "auto":
        num_gpu = torch.cuda.device_count()
    num_gpu = int(num_gpu)
    if num_gpu > 0 and not torch.cuda.is_available():
        logger.warning("num_gpu is %d but CUDA is not available: running on the CPU", num_gpu)
        num_gpu = 0
    launcher = args.launcher
    if launcher == "none" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logger.warning("started by torchrun with WORLD_SIZE=%s: using --launcher pytorch", os.environ["WORLD_SIZE"])
        launcher = "pytorch"
    if launcher == "none":
        opt["dist"] = False
    else:
        opt["dist"] = True
        dist_params = dict(opt.get("dist_params") or {})
        dist_params.pop("port", None)  # BasicSR's slurm setting; torchrun provides MASTER_PORT
        init_dist_from_env(num_gpu=num_gpu, local_rank=args.local_rank, backend=dist_params.pop("backend", None),
                           **dist_params)
        if num_gpu > 0:
            num_gpu = 1  # one device per process
    opt["num_gpu"] = num_gpu
    opt["rank"], opt["world_size"] = get_dist_info()

    seed = opt.get("manual_seed")
    if seed is None:
        seed = random.randint(1, 10000)
        opt["manual_seed"] = seed
    set_random_seed(int(seed) + opt["rank"])

    opt["auto_resume"] = args.auto_resume
    opt["is_train"] = is_train
    if args.debug and not str(opt["name"]).startswith("debug"):
        opt["name"] = "debug_" + str(opt["name"])
    if not re.fullmatch(r"[\w.+-]+", str(opt["name"])):
        raise OptionFileError(f"name {opt['name']!r} must be a plain folder name (letters, digits, _ . + -)")

    for phase, dataset in opt["datasets"].items():
        if not isinstance(dataset, dict):
            raise OptionFileError(f"datasets.{phase} must be a mapping")
        dataset["phase"] = phase.split("_")[0]
        if "scale" in opt:
            dataset["scale"] = opt["scale"]
        for key in ("dataroot_gt", "dataroot_lq"):
            if dataset.get(key) is not None:
                dataset[key] = osp.expanduser(dataset[key])

    opt["path"] = dict(opt.get("path") or {})
    for key, val in opt["path"].items():
        if val is not None and ("resume_state" in key or "pretrain_network" in key):
            opt["path"][key] = osp.expanduser(val)
    opt["path"].setdefault("resume_state", None)

    log_opt = opt.setdefault("logger", {})
    log_opt.setdefault("print_freq", 100)
    log_opt.setdefault("save_checkpoint_freq", 5000)
    log_opt.setdefault("use_tb_logger", False)
    if log_opt["use_tb_logger"] and not _tensorboard_available():
        logger.warning("logger.use_tb_logger is set but the tensorboard package is not installed "
                       "(pip install tensorboard): TensorBoard logging is off for this run")
        log_opt["use_tb_logger"] = False

    if opt.get("val") is not None:
        opt["val"].setdefault("save_img", False)
    if is_train:
        if "train" not in opt or "total_iter" not in opt["train"]:
            raise OptionFileError(f"{args.opt}: training needs train.total_iter")
        experiments_root = osp.join(root_path, "experiments", opt["name"])
        opt["path"]["experiments_root"] = experiments_root
        opt["path"]["models"] = osp.join(experiments_root, "models")
        opt["path"]["training_states"] = osp.join(experiments_root, "training_states")
        opt["path"]["log"] = experiments_root
        opt["path"]["visualization"] = osp.join(experiments_root, "visualization")
        if "debug" in opt["name"]:
            if "val" in opt:
                opt["val"]["val_freq"] = 8
            log_opt["print_freq"] = 1
            log_opt["save_checkpoint_freq"] = 8
    else:
        results_root = osp.join(root_path, "results", opt["name"])
        opt["path"]["results_root"] = results_root
        opt["path"]["log"] = results_root
        opt["path"]["visualization"] = osp.join(results_root, "visualization")
        opt.setdefault("val", {}).setdefault("save_img", False)
        opt["val"].setdefault("suffix", None)
        opt["val"].setdefault("metrics", {})

    prepare_builtin_if_missing(opt, opt["rank"])
    return opt, args


# ---------------------------------------------------------------------------- running
@contextlib.contextmanager
def _swapped(module: Any, **attrs: Any) -> Iterator[None]:
    """Set module attributes for the duration of the block, then restore them."""
    saved = {name: getattr(module, name) for name in attrs}
    for name, value in attrs.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def mkdir_and_rename(path: str) -> None:
    """Create ``path``; an existing one is first renamed to ``<path>_archived_<time>`` (``_2``, ``_3``... when two
    runs of one second both archive: BasicSR's own rename then fails with "directory not empty")."""
    if osp.exists(path):
        base = f"{path}_archived_{get_time_str()}"
        new_name, n = base, 1
        while osp.exists(new_name):
            n += 1
            new_name = f"{base}_{n}"
        logger.info("%s exists: renamed to %s", path, new_name)
        os.rename(path, new_name)
    os.makedirs(path, exist_ok=True)


class _DropSRModelOnlyWarning(logging.Filter):
    """BasicSR warns that several val sets work only with SRModel; PIPModel handles them (one per task)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "only* supported by SRModel" not in record.getMessage()


@contextlib.contextmanager
def _fresh_run_logger() -> Iterator[None]:
    """Give each run a fresh ``basicsr`` logger (BasicSR configures it once per process)."""
    log = logging.getLogger("basicsr")
    drop = _DropSRModelOnlyWarning()

    def reset() -> None:
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
        bsr_logger.initialized_logger.pop("basicsr", None)

    reset()
    log.addFilter(drop)
    try:
        yield
    finally:
        log.removeFilter(drop)
        reset()


def _finish_dist() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _run_pipeline(module: Any, root_path: Optional[str], argv: Optional[List[str]], is_train: bool,
                  result_key: str, **swaps: Any) -> str:
    """Run ``module``'s BasicSR pipeline with our option parsing (and ``swaps``); return ``path[result_key]``."""
    root_path = osp.abspath(root_path or os.getcwd())
    seen: Dict[str, Any] = {}
    built: Dict[int, MixedDegradationDataset] = {}
    bsr_build_dataset = module.build_dataset

    def _parse(root: str, is_train: bool = is_train):
        opt, args = parse_options(root, is_train=is_train, argv=argv)
        seen["opt"] = opt
        check_run_options(opt, is_train)  # all before BasicSR creates or archives experiments/<name> (results/<name>)
        built.update(check_datasets(opt))
        return opt, args

    def _build_dataset(dataset_opt: Dict[str, Any]) -> Any:
        # the datasets check_datasets built for these very option dicts: built once, not twice
        dataset = built.pop(id(dataset_opt), None)
        return dataset if dataset is not None else bsr_build_dataset(dataset_opt)

    pipeline = module.train_pipeline if is_train else module.test_pipeline
    try:
        with _fresh_run_logger(), _swapped(module, parse_options=_parse, build_dataset=_build_dataset, **swaps), \
                _swapped(bsr_misc, mkdir_and_rename=mkdir_and_rename):
            pipeline(root_path)
    finally:
        _finish_dist()
    return seen["opt"]["path"][result_key]


def _run_logger(bsr_get_root_logger: Callable[..., logging.Logger], quiet_console: bool,
                attached: List[logging.Handler]) -> Callable[..., logging.Logger]:
    """BasicSR's ``get_root_logger`` that also sends pip_adapter's records to the run's log file and, with
    ``quiet_console``, keeps the console to warnings (the option dump, the network and the per-100-iteration
    lines go to the log file only)."""

    def get_root_logger(*args: Any, **kwargs: Any) -> logging.Logger:
        log = bsr_get_root_logger(*args, **kwargs)
        files = [h for h in log.handlers if isinstance(h, logging.FileHandler)]
        if quiet_console:
            for handler in log.handlers:
                if not isinstance(handler, logging.FileHandler):
                    handler.setLevel(logging.WARNING)
        own = logging.getLogger("pip_adapter")
        for handler in files:
            if handler not in own.handlers and handler not in attached:
                own.addHandler(handler)
                attached.append(handler)
        return log

    return get_root_logger


def _counting_build_model(bsr_build_model: Callable[[Dict[str, Any]], Any],
                          on_iter: Callable[[int], None]) -> Callable[[Dict[str, Any]], Any]:
    """BasicSR's ``build_model`` whose model reports each training iteration to ``on_iter(current_iter)``."""

    def build_model(opt: Dict[str, Any]) -> Any:
        model = bsr_build_model(opt)
        step = model.optimize_parameters

        def optimize_parameters(current_iter: int) -> None:
            step(current_iter)
            on_iter(current_iter)

        model.optimize_parameters = optimize_parameters
        return model

    return build_model


def train_pipeline(root_path: Optional[str] = None, argv: Optional[List[str]] = None, quiet_console: bool = False,
                   on_iter: Optional[Callable[[int], None]] = None) -> str:
    """Run BasicSR's training pipeline with our fixes; returns the experiment folder.

    ``root_path`` (default: the current directory) receives ``experiments/<name>/`` and ``tb_logger/``.
    ``argv`` are the BasicSR flags (``["-opt", "x.yml", "--auto_resume"]``).  pip_adapter's own log records go
    to the run's log file too.  ``quiet_console``: BasicSR's log reaches the console from WARNING up only (the
    file keeps everything); ``on_iter(current_iter)`` is called after every training iteration (a progress bar).
    """
    import basicsr.train as bsr_train

    attached: List[logging.Handler] = []
    swaps: Dict[str, Any] = {"get_root_logger": _run_logger(bsr_train.get_root_logger, quiet_console, attached)}
    if on_iter is not None:
        swaps["build_model"] = _counting_build_model(bsr_train.build_model, on_iter)
    try:
        return _run_pipeline(bsr_train, root_path, argv, True, "experiments_root",
                             load_resume_state=load_resume_state, mkdir_and_rename=mkdir_and_rename, **swaps)
    finally:
        for handler in attached:
            logging.getLogger("pip_adapter").removeHandler(handler)


def test_pipeline(root_path: Optional[str] = None, argv: Optional[List[str]] = None) -> str:
    """Run BasicSR's test pipeline with our fixes; returns the results folder (``results/<name>``)."""
    import basicsr.test as bsr_test

    return _run_pipeline(bsr_test, root_path, argv, False, "results_root")
