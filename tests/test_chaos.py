"""The chaos soak: 1,000 tiny users through device crashes, hangs, garbage replies, a worker
SIGKILLed every minute and one SIGKILL of the whole run, then a resume. It must end as an
undisturbed run does: status ok, every user with a result, the same summary.

Slow (about 15 minutes on 2 cores): `pytest -m slow tests/test_chaos.py -s`. Its figures
(wall time, failures by kind, retries, workers killed) are printed and kept in
`<tmp>/chaos.json`. CDCDA_CHAOS_USERS sets the number of users (default 1000).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from simulation.results.summary import without_measurements

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
USERS = int(os.environ.get("CDCDA_CHAOS_USERS", "1000"))
KILL_EVERY = 60.0  # seconds between SIGKILLs of one device worker
COMMON = ["--config", "configs/tiny.toml", "--set", f"experiment.users={USERS}",
          "--set", "experiment.methods=['zero_shot','local_real','cdcda']",
          # four device workers on two cores: a hung one (sleeping) blocks only a quarter
          "--set", "runtime.client_cpus=0.5", "--set", "runtime.retries=5",
          "--set", "runtime.timeout=6"]
CHAOS = ["--set", "faults.seed=3", "--set", "faults.device.crash=0.05",
         "--set", "faults.device.hang=0.05", "--set", "faults.device.garbage=0.05",
         "--set", "faults.device.hang_seconds=8"]
# what a disturbed run may differ in: its failures and the traffic of its retries
DISTURBED = ("communication", "failures", "privacy", "config", "data", "warnings")


def _run(out: Path, *extra: str) -> subprocess.Popen:
    log = (out.parent / f"{out.name}.log").open("a")
    return subprocess.Popen([sys.executable, "-m", "simulation.cli", "run", "--out", str(out),
                             *COMMON, *extra], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


class WorkerKiller(threading.Thread):
    """SIGKILLs one of a run's device workers (`ray::ClientAppActor`) every KILL_EVERY s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.proc: subprocess.Popen | None = None
        self.killed = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(KILL_EVERY):
            proc = self.proc
            if proc is None or proc.poll() is not None:
                continue
            try:
                workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                           if p.cmdline()[:1] and p.cmdline()[0].startswith("ray::ClientApp")]
            except psutil.Error:
                continue
            if workers:
                try:
                    workers[self.killed % len(workers)].kill()
                    self.killed += 1
                except psutil.Error:
                    pass


def _wait(proc: subprocess.Popen, until=lambda: False, limit: float = 3600) -> bool:
    """Wait for the run to end (False) or for `until()` (True)."""
    deadline = time.time() + limit
    while proc.poll() is None:
        if until():
            return True
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the run did not end in time")
        time.sleep(0.5)
    return False


def test_a_thousand_users_through_chaos_end_as_an_undisturbed_run(tmp_path):
    calm, chaos = tmp_path / "calm", tmp_path / "chaos"
    start = time.time()
    proc = _run(calm)
    _wait(proc)
    assert proc.returncode == 0, (tmp_path / "calm.log").read_text()[-3000:]
    calm_seconds = time.time() - start

    killer = WorkerKiller()
    killer.start()
    start = time.time()
    proc = killer.proc = _run(chaos, *CHAOS)
    half = chaos / "results" / "local_real"
    caught = _wait(proc, lambda: half.exists() and len(list(half.glob("*.json"))) >= USERS // 2)
    assert caught, "the run ended before the point to kill it"
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, Ray and every worker: a crash
    proc.wait(60)
    killed_at = len(list(half.glob("*.json")))
    proc = killer.proc = _run(chaos, *CHAOS)  # the resume
    _wait(proc)
    killer.done.set()
    chaos_seconds = time.time() - start
    log = (tmp_path / "chaos.log").read_text()
    assert proc.returncode == 0, log[-3000:]

    a = json.loads((calm / "summary.json").read_text())
    b = json.loads((chaos / "summary.json").read_text())
    failures = [json.loads(x) for x in (chaos / "failures.jsonl").read_text().splitlines()]
    ledger = [json.loads(x) for x in (chaos / "ledger.jsonl").read_text().splitlines()]
    figures = {
        "users": USERS, "methods": list(a["methods"]),
        "undisturbed_seconds": round(calm_seconds, 1),
        "chaos_seconds": round(chaos_seconds, 1), "sessions": b["sessions"],
        "killed_run_at_local_real_users": killed_at,
        "workers_killed": killer.killed,
        "failures": len(failures), "failures_by_kind": dict(Counter(f["kind"] for f in failures)),
        "retried_exchanges": sum(1 for e in ledger if e.get("attempt", 0) > 0),
        "failed_exchanges": sum(1 for e in ledger if e.get("outcome", "ok") != "ok"),
        "status": b["status"],
    }
    (tmp_path / "chaos.json").write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures))

    assert b["status"] == "ok" and b["sessions"] == 2
    assert killer.killed >= 1 and figures["failures"] > 0
    for method, m in b["methods"].items():
        assert len(m["per_user"]) == USERS and not m["failures"], method
    x, y = without_measurements(a), without_measurements(b)
    for s in (x, y):
        for key in DISTURBED:
            s.pop(key, None)
    for key in x:  # field by field, so a failure names the field
        assert x[key] == y[key], key
