"""Two channels: a terminal a person can read, and `DIR/run.log` with everything.

The terminal shows progress bars, our own warnings and one line per finished method;
Flower's banners and engine DEBUG lines, Ray's messages, Python warnings from libraries
and every per-user detail go to `run.log` (with `-v` the terminal shows them too).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from clients.worker_log import OUR_PACKAGES, RunLogHandler
from tasks.files import LOG_FILE

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ConsoleFilter(logging.Filter):
    """Pass our warnings and records marked `extra={"console": True}`; with -v, all."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose or getattr(record, "console", False):
            return True
        ours = record.name.split(".")[0] in OUR_PACKAGES
        return ours and record.levelno >= logging.WARNING


@contextlib.contextmanager
def run_log(run_dir: Path, verbose: bool = False) -> Iterator[Path]:
    """Send every log record and Python warning of this process to `run_dir/run.log`.

    Flower's own console handler is detached for the duration (its banners and DEBUG
    lines would otherwise reach the terminal around our filter) and put back after.
    """
    path = Path(run_dir) / LOG_FILE
    handler = RunLogHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    flwr = logging.getLogger("flwr")
    detached = [] if verbose else [h for h in flwr.handlers
                                   if not isinstance(h, logging.FileHandler)]
    for h in detached:
        flwr.removeHandler(h)
    flwr.propagate = True
    logging.captureWarnings(True)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        for h in detached:
            flwr.addHandler(h)
        root.removeHandler(handler)
        handler.close()
