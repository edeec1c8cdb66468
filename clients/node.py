"""Which machine served a device's work: recorded with each user's predictions, so a run on
a Ray cluster shows where every user ran."""

from __future__ import annotations

import socket


def serving_node() -> str:
    """`<hostname>/<Ray node id>` inside a Ray worker (Flower's ClientAppActor), else the
    hostname alone. Not cached: a process outside Ray may join it later, and asking Ray
    is cheap (once per user's predictions)."""
    host = socket.gethostname()
    try:
        import ray

        if ray.is_initialized():
            return f"{host}/{ray.get_runtime_context().get_node_id()}"
    except Exception:  # noqa: BLE001 - outside Ray (tests, benchmarks): the host is enough
        pass
    return host
