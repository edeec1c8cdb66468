"""Runs that fail, are killed or are stopped, end to end on the real Flower engine on Ray.

Each test runs `cdcda run` on the tiny config, in a subprocess where it must be killed or
signalled, and checks what a user relies on: exit codes, nothing finished lost, every
failure counted, and a resumed run ending with the same summary as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulation.cli import main
from simulation.results.summary import without_measurements

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
CDCDA = [sys.executable, "-m", "simulation.cli"]
# slow enough per user that a run can be caught in the middle of a method
SLOW_TRAIN = ["--set", "device.train.steps=8"]


def _start(out: Path, *extra: str) -> subprocess.Popen:
    """`cdcda run` in its own process group (like a shell job); output to out/../cli.log."""
    cmd = [*CDCDA, "run", "--config", "configs/tiny.toml", "--out", str(out), *extra]
    out.parent.mkdir(parents=True, exist_ok=True)
    log = (out.parent / "cli.log").open("w")  # a file, not a pipe nobody reads: no stall
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _output(proc: subprocess.Popen) -> str:
    return Path(proc.args[proc.args.index("--out") + 1]).parent.joinpath("cli.log").read_text()


def _wait_for(check, proc: subprocess.Popen, limit: float = 240.0) -> None:
    deadline = time.time() + limit
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before the point to stop it:\n"
                        f"{_output(proc)[-3000:]}")
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the run never reached the point to stop it")
        time.sleep(0.05)


def _count(folder: Path) -> int:
    return len(list(folder.glob("*.json"))) if folder.exists() else 0


def test_kill_mid_method_then_resume_gives_the_uninterrupted_summary(tmp_path):
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"  # same length: same message bytes
    assert main(["run", "--config", "configs/tiny.toml", "--out", str(a), *SLOW_TRAIN]) == 0
    whole = json.loads((a / "summary.json").read_text())

    proc = _start(b, *SLOW_TRAIN)
    done = b / "results" / "local_real"
    _wait_for(lambda: 1 <= _count(done) < 4, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver, Ray and its workers: a crash
    proc.wait(30)
    survivors = {p.name: p.stat().st_mtime_ns for p in done.glob("*.json")}
    assert 1 <= len(survivors) < 4

    assert main(["run", "--config", "configs/tiny.toml", "--out", str(b), *SLOW_TRAIN]) == 0
    resumed = json.loads((b / "summary.json").read_text())
    for name, stamp in survivors.items():  # finished users were not trained again
        assert (done / name).stat().st_mtime_ns == stamp
    assert resumed["sessions"] == 2
    x, y = without_measurements(whole), without_measurements(resumed)
    for s in (x, y):
        s.pop("data")  # the data folder lies inside each run directory
    for key in x:  # field by field, so a failure names the field
        assert x[key] == y[key], key


@pytest.mark.parametrize("sig, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_signals_stop_within_seconds_keep_results_and_say_how_to_resume(tmp_path, sig,
                                                                       to_group):
    out = tmp_path / "run"
    proc = _start(out, "--set", "device.train.steps=100000")
    _wait_for(lambda: _count(out / "results" / "profile_prompt") == 4, proc)
    kept = sorted(p.name for p in (out / "results").rglob("*.json"))
    start = time.time()
    if to_group:  # Ctrl-C in a terminal signals the whole foreground process group
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = _output(proc)
    assert proc.returncode == 128 + sig, output[-3000:]
    assert time.time() - start < 30
    assert "resume with: cdcda run --out" in output
    assert sorted(p.name for p in (out / "results").rglob("*.json")) == kept
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "incomplete"
    assert summary["methods"]["zero_shot"]["status"] == "ok"
    assert summary["methods"]["local_real"]["missing"]


def test_injected_faults_are_survived_counted_and_resumed(tmp_path):
    out = tmp_path / "run"
    faults = ["--set", "faults.device.crash=0.2", "--set", "faults.device.garbage=0.1",
              "--set", "faults.cloud.outage=0.5", "--set", "faults.cloud.outage_attempts=99",
              "--set", "faults.seed=3", "--set", "runtime.retries=1"]
    code = main(["run", "--config", "configs/tiny.toml", "--out", str(out), *faults])
    summary = json.loads((out / "summary.json").read_text())
    log = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    kinds = {f["kind"] for f in log}
    assert {"device_error", "cloud_error"} <= kinds
    assert kinds & {"bad_reply", "arrays"}  # garbage replies were caught, not stored
    assert summary["failures"]["events"] == len(log)
    assert all("injected crash" in f["detail"] for f in log if f["kind"] == "device_error")
    outage = {f["user"] for f in log if f["kind"] == "cloud_error"}
    assert outage and all(f["causes"] == {"injected_outage": 2} for f in log
                          if f["kind"] == "cloud_error")
    for user in outage:  # not cached as done, not silently trained on real data alone
        assert not (out / "synthetic" / f"{user}.json").exists()
        assert user in summary["methods"]["cdcda"]["failures"]
    outage_requests = sum(f["causes"]["injected_outage"] for f in log
                          if f["kind"] == "cloud_error")  # 2 candidates per user and attempt
    assert summary["augmentation"]["cloud_errors"]["by_cause"] == {
        "injected_outage": outage_requests}
    finished = {}
    for method, res in summary["methods"].items():
        # every user is accounted for: a stored result or a named failure, never neither
        assert set(res["per_user"]) | set(res["failures"]) == set(summary["users"]), method
        assert not set(res["per_user"]) & set(res["failures"])
        for user in res["per_user"]:
            finished[method, user] = (out / "results" / method / f"{user}.json").read_bytes()
        # each failed exchange is charged: its bytes crossed the network
        failed_here = [f for f in log if f["method"] == method and f["kind"] != "cloud_error"]
        comm = summary["communication"][method]["failed_exchanges"]
        assert comm["exchanges"] == len(failed_here), method
    assert code == (1 if summary["status"] == "failed" else 0)
    assert summary["status"] in ("partial", "failed")

    # the cloud is back and devices are healthy: the rerun does only what is missing
    assert main(["run", "--config", "configs/tiny.toml", "--out", str(out)]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["status"] == "ok"
    for (method, user), data in finished.items():  # no finished user lost or redone
        assert (out / "results" / method / f"{user}.json").read_bytes() == data
    for user in outage:
        assert (out / "synthetic" / f"{user}.json").exists()
    assert again["failures"]["events"] == len(log)  # history kept


def test_every_device_failing_exits_nonzero_with_the_reason(tmp_path, capsys):
    code = main(["run", "--config", "configs/tiny.toml", "--out", str(tmp_path / "run"),
                 "--set", "experiment.users=2", "--set", "experiment.methods=['local_real']",
                 "--set", 'device.lora.target_modules=["nope"]', "--set", "runtime.retries=0"])
    assert code == 1
    err = capsys.readouterr().err.replace("\n", " ")
    assert "local_real: no user succeeded" in err and "nope" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["methods"]["local_real"]["metrics"]["failures"] == 2
