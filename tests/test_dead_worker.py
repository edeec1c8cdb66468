"""A device worker process that dies (an OOM kill) costs only the users in flight on it:
Ray restarts it, the strategy retries them, and no later user fails for it."""

from __future__ import annotations

import json

import pytest

from clients.faults import DeviceFaults, draw
from simulation.cli import main

pytestmark = pytest.mark.e2e

KINDS = {"setup": "query.user", "zero_shot": "evaluate", "local_real": "train"}


def test_dead_workers_are_replaced_and_cost_only_their_own_users(tmp_path):
    out = tmp_path / "run"
    code = main(["run", "--config", "configs/tiny.toml", "--out", str(out),
                 "--set", "experiment.methods=['zero_shot','local_real']",
                 "--set", "runtime.retries=2", "--set", "faults.seed=5",
                 "--set", "faults.device.die=0.25"])
    summary = json.loads((out / "summary.json").read_text())
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    faults = DeviceFaults(die=0.25)

    def dies(method: str, user: str, attempt: int) -> bool:
        return draw(faults, 5, method, KINDS[method], user, attempt)[0] == "die"

    users = ["u0", "u1", "u2", "u3"]
    drawn = [f for f in failures if f["user"] in users
             and dies(f["method"], f["user"], f["attempt"])]
    assert drawn, "the seed must kill some workers for this test to mean anything"
    # discovery fails a node as a whole: as many as the users drawn to die there, at most
    setup = [f for f in failures if f["user"].startswith("node-")]
    for attempt in {f["attempt"] for f in setup}:
        assert sum(f["attempt"] == attempt for f in setup) <= sum(
            dies("setup", u, attempt) for u in users)
    # every other failure is a worker the fault killed: none a user sent to a dead actor
    assert [f for f in failures if f not in drawn and f not in setup] == []
    assert code == 0 and summary["status"] == "ok"
    assert all(len(m["per_user"]) == 4 for m in summary["methods"].values())


def test_a_run_ends_though_a_device_works_on_past_its_timeout(tmp_path):
    """A device hangs for 300 s, far past runtime.timeout: the strategy gives up on it, and
    the run ends instead of waiting for it (a liveness bound, not a speed goal)."""
    import subprocess
    import sys

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "simulation.cli", "run", "--config", "configs/tiny.toml",
           "--out", str(out), "--set", "experiment.methods=['zero_shot']",
           "--set", "runtime.timeout=30", "--set", "runtime.retries=0",
           "--set", "faults.seed=7", "--set", "faults.device.hang=0.3",
           "--set", "faults.device.hang_seconds=300"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "partial"
    assert summary["methods"]["zero_shot"]["failures"]["u1"].startswith("timeout")
    assert "still working past runtime.timeout were stopped" in (out / "run.log").read_text()
