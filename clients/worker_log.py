"""A device's log lines and Python warnings go to the run's `run.log`, not the terminal."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tasks.files import LOG_FILE

OUR_PACKAGES = ("tasks", "models", "clients", "server", "strategies", "simulation")


class RunLogHandler(logging.FileHandler):
    """run.log's handler: a write that fails (a full disk) is said once on stderr and the
    handler goes quiet, instead of logging's traceback for every record that follows."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if getattr(self, "_failed", False):
            return
        self._failed = True
        import sys

        err = sys.exc_info()[1]
        print(f"warning: {self.baseFilename} cannot be written ({err}); its log lines are "
              "lost from here on", file=sys.stderr)


def log_to_run_dir(run_dir: str | Path) -> None:
    """In a Ray worker of `cdcda run` (a device): append this process's log records and
    warnings to run.log. Elsewhere (tests calling the ClientApp, `flwr run`) do nothing."""
    if not os.environ.get("CDCDA_RUN_DIR"):
        return
    path = Path(run_dir) / LOG_FILE
    root = logging.getLogger()
    if any(getattr(h, "baseFilename", None) == str(path) for h in root.handlers):
        return
    handler = RunLogHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [device %(process)d] "
                                           "%(name)s: %(message)s"))
    root.addHandler(handler)
    for name in OUR_PACKAGES:
        logging.getLogger(name).setLevel(logging.INFO)
    logging.captureWarnings(True)
