"""One way to warn: the ``warnings`` channel (Python callers, pytest) and, when configured, the log; and
:func:`info_once`, which says a thing at INFO the first time and at DEBUG after."""
from __future__ import annotations

import logging
import threading
import warnings

_SAID: set = set()
_SAID_LOCK = threading.Lock()
_SAID_MAX = 4096   # a long-lived process (the demo server) must not grow this without bound


_LOG_ONLY = False   # set by the command line: its console shows log records, and a warning must appear once


def warnings_to_log_only(on: bool = True) -> None:
    """Make :func:`warn` log only (no ``UserWarning`` as well): for a process whose console shows the log, such as
    the ``pip-adapter`` command, where both channels would print the same line twice."""
    global _LOG_ONLY
    _LOG_ONLY = bool(on)


def warn(logger: logging.Logger, message: str, stacklevel: int = 2) -> None:
    """Issue ``message`` as a ``UserWarning`` (attributed ``stacklevel`` frames up from the caller) and, when
    logging has a handler for ``logger`` (a training log, the CLI), as a WARNING record there too (only that,
    after :func:`warnings_to_log_only`)."""
    if not (_LOG_ONLY and logger.hasHandlers()):
        warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)
    if logger.hasHandlers():
        logger.warning(message)


def info_once(logger: logging.Logger, message: str, *args: object) -> None:
    """Log ``message % args`` at INFO the first time this process says it through ``logger``, at DEBUG after:
    building the same network twice (BasicSR's ``net_g`` and its EMA copy) must not repeat the same lines."""
    text = message % args if args else message
    key = (logger.name, text)
    with _SAID_LOCK:
        first = key not in _SAID
        if first:
            if len(_SAID) >= _SAID_MAX:
                _SAID.clear()
            _SAID.add(key)
    logger.log(logging.INFO if first else logging.DEBUG, "%s", text)
