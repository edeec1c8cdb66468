"""`cdcda run --ray-address` on a real two-node Ray cluster started on this machine.

Both nodes come from `ray start` (a head and a worker joining it), each with one CPU, so
the two simulated devices (one CPU each) must run on different nodes. The cluster has its
own temp dir and free ports, and is stopped by killing exactly its own processes (those
with a marker in their environment, and their descendants): never `ray stop`, which would
kill every Ray instance on the machine, other tests' and other users' included.

The main test takes about 80 s on 2 busy cores (30 s to start the cluster, 45 s for the
run); the signal test, another run on the same cluster, is marked slow.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).parent / "ray")
CDCDA = [sys.executable, "-m", "simulation.cli"]
MARK = "CDCDA_TEST_CLUSTER"  # in the environment of every process of the test's cluster


def _free_ports(n: int) -> list[int]:
    """n distinct ports free on loopback now (held together so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


class Cluster:
    """A head and a worker node started with `ray start`; `stop` kills only their processes."""

    def __init__(self) -> None:
        # short: Ray's unix socket paths (temp dir + session + sockets/...) must stay < 108
        self.root = Path(tempfile.mkdtemp(prefix="cdcda-ray-", dir="/tmp"))
        self.temp = self.root / "ray"  # where $RAY_TMPDIR=root makes `auto` look
        self.token = uuid.uuid4().hex
        self.env = {**os.environ, MARK: self.token, "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.port = _free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"

    def _ray_start(self, *args: str) -> None:
        # every port a second node on the same machine would otherwise share by default
        node, objects, agent, agent_grpc, metrics, env_agent = _free_ports(6)
        cmd = [RAY, "start", *args, "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats",
               "--min-worker-port=0", "--max-worker-port=0",  # random, as a local Ray's
               f"--node-manager-port={node}", f"--object-manager-port={objects}",
               f"--dashboard-agent-listen-port={agent}",
               f"--dashboard-agent-grpc-port={agent_grpc}",
               f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={env_agent}"]
        done = subprocess.run(cmd, env=self.env, cwd=self.root, capture_output=True, text=True,
                              timeout=120, start_new_session=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n"
                               f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def start(self) -> Cluster:
        client, dashboard = _free_ports(2)
        self._ray_start("--head", f"--port={self.port}", f"--temp-dir={self.temp}",
                        "--include-dashboard=false", f"--dashboard-port={dashboard}",
                        f"--ray-client-server-port={client}")
        self._ray_start(f"--address={self.address}")
        return self

    def processes(self) -> list[psutil.Process]:
        """This cluster's processes: those whose environment carries our token (what
        `ray start` spawned) and their descendants (Ray's workers and agents, whose
        environment setproctitle hides)."""
        mine: dict[int, psutil.Process] = {}
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if p.environ().get(MARK) == self.token:
                    mine[p.pid] = p
                    mine.update((c.pid, c) for c in p.children(recursive=True))
        return list(mine.values())

    def stop(self) -> list[psutil.Process]:
        """SIGTERM, then SIGKILL after a few seconds, to this cluster's processes only;
        returns those still alive after that (none, normally)."""
        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=3)
        alive += self.processes()  # and any worker started meanwhile
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        _, left = psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
        return left


    def daemons(self) -> dict[int, float]:
        """pid -> start time of the cluster's own processes (GCS, raylets, agents, ...),
        not the workers Ray starts and ends for jobs."""
        found = {}
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                first = (p.cmdline() or [""])[0]
                if not first.startswith("ray::") or first.endswith("Agent"):
                    found[p.pid] = p.create_time()
        return found

    def node_ids(self) -> set[str]:
        """The Ray node ids of this cluster's raylets (from their command lines)."""
        ids = set()
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                ids.update(a.split("=", 1)[1] for a in p.cmdline() if a.startswith("--node_id="))
        return ids


def test_an_address_where_no_cluster_runs_fails_in_one_line(tmp_path, capsys, monkeypatch):
    from simulation.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    out = tmp_path / "run"
    code = main(["run", "--ray-address", f"127.0.0.1:{_free_ports(1)[0]}",
                 "--config", "configs/tiny.toml", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--ray-address / runtime.ray_address" in err and "no Ray cluster answers" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()  # refused before the run directory is claimed


@pytest.fixture(scope="module")
def cluster():
    c = Cluster()
    try:
        yield c.start()
    finally:
        left = c.stop()
        assert not left, f"the test cluster left processes behind: {left}"


def _run(out: Path, address: str, *extra: str, **popen) -> subprocess.Popen:
    """`cdcda run` of the tiny config on the cluster, in its own process group."""
    cmd = [*CDCDA, "run", "--ray-address", address, "--config", "configs/tiny.toml",
           "--out", str(out), "--set", "experiment.users=4", *extra]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(popen.pop("env", {}))
    out.parent.mkdir(parents=True, exist_ok=True)
    log = (out.parent / "cli.log").open("w")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, **popen)


def _finish(proc: subprocess.Popen, out: Path, timeout: float) -> str:
    """Wait for the run (killing it after `timeout` s); its output."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return (out.parent / "cli.log").read_text()


def test_users_spread_over_both_nodes_of_a_ray_cluster(cluster, tmp_path):
    out = tmp_path / "run"
    proc = _run(out, cluster.address, "--set", "experiment.methods=['zero_shot']")
    output = _finish(proc, out, timeout=300)
    assert proc.returncode == 0, output[-3000:]

    summary = json.loads((out / "summary.json").read_text())
    users = summary["users"]
    assert len(users) == 4
    assert set(summary["methods"]["zero_shot"]["per_user"]) == set(users)
    # every user's predictions say which node served it: both nodes did, by their Ray ids
    nodes = {json.loads((out / "predictions" / "zero_shot" / f"{u}.json").read_text())["node"]
             for u in users}
    assert {n.rsplit("/", 1)[-1] for n in nodes} == cluster.node_ids(), nodes


@pytest.mark.slow  # another run on the cluster (about 45 s more): the main test shows the rest
def test_a_signal_on_a_cluster_stops_the_run_and_leaves_the_cluster_up(cluster, tmp_path):
    daemons = cluster.daemons()
    out = tmp_path / "run"
    # 'auto' finds the cluster that `ray start` recorded in $RAY_TMPDIR/ray, as a user's would
    proc = _run(out, "auto", "--set", "experiment.methods=['zero_shot', 'local_real']",
                "--set", "device.train.steps=100000", env={"RAY_TMPDIR": str(cluster.root)})
    deadline = time.time() + 240
    while len(list((out / "results" / "zero_shot").glob("*.json"))) < 4:
        assert proc.poll() is None and time.time() < deadline, _finish(proc, out, 0)[-3000:]
        time.sleep(0.2)
    time.sleep(2)  # local_real's devices are training
    start = time.time()
    proc.send_signal(signal.SIGTERM)
    output = _finish(proc, out, timeout=60)
    assert proc.returncode == 143, output[-3000:]
    assert time.time() - start < 30
    assert "resume with: cdcda run --out" in output
    # the cluster's own processes (GCS, raylets, agents) are all still there
    assert cluster.daemons() == daemons
    assert len(cluster.node_ids()) == 2
