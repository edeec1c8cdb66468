"""The cloud as a Flower ServerApp: resolves the run, then runs the experiment on the Grid."""

from __future__ import annotations

import logging
import os

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from simulation.running import actors
from simulation.running.experiment import resolve_run, run_experiment
from simulation.running.signals import should_stop

log = logging.getLogger(__name__)
app = ServerApp()

RUN_DIR_ENV = "CDCDA_RUN_DIR"


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg, run_dir = resolve_run(dict(context.run_config), os.environ.get(RUN_DIR_ENV))
    run_experiment(grid, cfg, run_dir, should_stop)
    log.info("summary: %s", run_dir / "summary.json")
    stopped = actors.stop_busy()  # work timed out and given up on: the run must end
    if stopped:
        log.warning("%d device worker(s) still working past runtime.timeout were stopped "
                    "so that the run can end", stopped)
