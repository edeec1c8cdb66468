"""Joining an existing Ray cluster: which address, is a cluster there, do all nodes see the run."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

SHARED = ("the run directory and the data folder must be on a filesystem every node mounts "
          "at the same path (NFS or similar): devices read their data there and write "
          "their predictions and adapters")
_START = ("start one with `ray start --head` (and `ray start --address=HEAD:6379` on the "
          "other machines), or leave it empty to run on a local Ray")


def option(configured: str) -> str:
    """How the user gave the address, for error messages."""
    return ("--ray-address / runtime.ray_address" if configured else "RAY_ADDRESS")


def resolve_address(configured: str) -> str | None:
    """The cluster's GCS address (`host:port`, or a `ray://` client address) for
    `runtime.ray_address` or else $RAY_ADDRESS; None means a local Ray of our own.

    'auto' is the cluster `ray start` recorded on this machine ($RAY_TMPDIR/ray, default
    /tmp/ray), never just any Ray process found running here (Ray's legacy fallback,
    which on a shared machine joins someone else's). Checks that a cluster answers:
    `ray.init` would retry a dead address for about 12 minutes before failing.
    """
    given = configured or os.environ.get("RAY_ADDRESS", "")
    if given in ("", "local"):
        return None
    name = f"{option(configured)} = '{given}'"
    if given.startswith("ray://"):
        return given  # Ray Client: ray.init connects and reports
    from ray._common.utils import get_ray_address_file
    from ray._private.services import canonicalize_bootstrap_address, parse_address

    if given == "auto":
        given = os.environ.get("RAY_ADDRESS", "auto")  # Ray's rule: it overrides 'auto'
    if given == "auto":
        recorded = Path(get_ray_address_file(None))
        given = recorded.read_text().strip() if recorded.is_file() else ""
        if not given:
            raise ValueError(f"{name}: no Ray cluster was started on this machine (no "
                             f"{recorded}); {_START}")
    try:
        address = canonicalize_bootstrap_address(given)
        host, port = parse_address(address)
    except (ValueError, TypeError):
        host, port = "", ""
    if not port.isdigit():
        raise ValueError(f"{name}: expected HOST:PORT (the head's address, port 6379 by "
                         "default) or 'auto' (the cluster `ray start` started here)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise ValueError(f"{name}: no Ray cluster answers at {address} "
                         f"({err.strerror or err}); {_START}") from None
    _check_gcs(address, name)
    return address


def _check_gcs(address: str, name: str) -> None:
    """Something listens at `address`: is it a Ray cluster's GCS? (fails in about 35 s)"""
    try:
        from ray._raylet import GcsClient
    except ImportError:  # a Ray without it: ray.init will tell
        return
    try:
        GcsClient(address=address, cluster_id=None)
    except Exception as err:  # noqa: BLE001 - any failure here means "not a GCS"
        raise ValueError(f"{name}: {address} answers but is not a Ray cluster's GCS "
                         f"({str(err).rstrip('.')}); {_START}") from None


def joined(err: Exception, address: str, configured: str) -> ValueError:
    """`ray.init` failed to join `address`: one line naming the option and Ray's reason."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return ValueError(f"{option(configured)}: could not join the Ray cluster at {address}: "
                      f"{reason}")


def check_nodes(run_dir: Path, data_dir: Path, client_cpus: float, client_gpus: float,
                timeout: float = 120.0) -> list[str]:
    """Run a probe on every node that can host a device: it must import our code, read a
    token written into `run_dir` here, and find `data_dir`. Raises ValueError naming the
    nodes that cannot; returns the node ids checked."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")
             and n["Resources"].get("CPU", 0) >= client_cpus
             and n["Resources"].get("GPU", 0) >= client_gpus]
    if not nodes:
        raise ValueError(f"no node of the Ray cluster has runtime.client_cpus = {client_cpus} "
                         f"CPUs and runtime.client_gpus = {client_gpus} GPUs for a device; "
                         "lower them, or start nodes with more (`ray start --num-cpus/"
                         "--num-gpus`)")
    token = uuid.uuid4().hex
    path = run_dir / f".node-check-{token[:8]}"
    path.write_text(token)
    probe = ray.remote(num_cpus=0, max_retries=0)(_sees)
    blind, broken = [], []
    try:
        refs = {node: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            node, soft=False)).remote(str(path), token, str(data_dir)) for node in nodes}
        for node, ref in refs.items():
            try:
                host, missing = ray.get(ref, timeout=timeout)
                blind += [f"{folder} from {host}/{node}" for folder in missing]
            except ray.exceptions.GetTimeoutError:
                log.warning("node %s did not answer the shared-folder check within %.0f s; "
                            "going on", node, timeout)
            except ray.exceptions.RayError as err:
                broken.append(f"{node}: {str(err).strip().splitlines()[-1]}")
    finally:
        path.unlink(missing_ok=True)
    if broken:
        raise ValueError("Ray nodes could not run cdcda's code (install the same Python "
                         f"environment, cdcda included, on every node): {'; '.join(broken)}")
    if blind:
        raise ValueError(f"not visible: {'; '.join(blind)}: {SHARED}; use such paths for "
                         "--out and data.dir")
    return nodes


def _sees(path: str, token: str, data_dir: str) -> tuple[str, list[str]]:
    """On a node: this host's name, and which of the run directory (holding `token` at
    `path`, writable) and the data folder it cannot see."""
    run_dir = Path(path).parent
    try:
        ok = Path(path).read_text() == token and os.access(run_dir, os.W_OK)
    except OSError:
        ok = False
    missing = [] if ok else [str(run_dir)]
    if not Path(data_dir).is_dir():
        missing.append(data_dir)
    return socket.gethostname(), missing
