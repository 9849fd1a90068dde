"""One way to warn: the ``warnings`` channel (Python callers, pytest) and, when configured, the log."""
from __future__ import annotations

import logging
import warnings


def warn(logger: logging.Logger, message: str, stacklevel: int = 2) -> None:
    """Issue ``message`` as a ``UserWarning`` (attributed ``stacklevel`` frames up from the caller) and, when
    logging has a handler for ``logger`` (a training log, the CLI), as a WARNING record there too."""
    warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)
    if logger.hasHandlers():
        logger.warning(message)
