"""Flower's pool of device workers, made to outlive a dead worker.

Flower's simulation engine (flwr 1.41) creates a fixed pool of `ClientAppActor`s and puts
an actor back into the pool after every message, dead or alive: once one worker process
is killed (an OOM kill, a SIGKILL), every later message sent to that actor fails ("The
actor is dead because its worker process has died"), so users that did nothing wrong fail
in every later method. `install()` makes the pool create its actors with Ray's own
`max_restarts`: Ray starts a fresh worker in place of a dead one, the message in flight on
it fails (and is retried by the strategy, `runtime.retries`), and the rest go on.
"""

from __future__ import annotations

import logging
import weakref
from importlib.metadata import version

from flwr.simulation.ray_transport.ray_actor import BasicActorPool

log = logging.getLogger(__name__)

FLOWER = "1.41."  # the version whose actor pool this wraps
MAX_RESTARTS = 1000  # per actor: a worker that dies at every start must not loop forever
# a message sent while its actor restarts waits for it (Ray retries it once); the message
# whose worker died is tried once more too, then fails to the strategy, which retries it
TASK_RETRIES = 1
_flower_init = BasicActorPool.__init__
_POOLS: weakref.WeakSet = weakref.WeakSet()  # this process's engines' pools


_RESERVED: dict[str, dict[str, float]] = {}  # node id -> the cloud replicas' CPU and GPU


def capacity(client_resources: dict, reserved: dict[str, dict[str, float]]) -> int:
    """Device workers that fit the cluster beside what the cloud's replicas reserve, node
    by node, as Flower's `pool_size_from_resources` counts them without the replicas."""
    import ray

    total = 0
    for node in ray.nodes():
        have = node.get("Resources") or {}
        if not have or not node.get("Alive", True):
            continue
        mine = reserved.get(node.get("NodeID", ""), {})
        cpus = have.get("CPU", 0.0) - mine.get("CPU", 0.0)
        fit = int(cpus / client_resources["num_cpus"] + 1e-9)
        if client_resources.get("num_gpus", 0) > 0:
            gpus = have.get("GPU", 0.0) - mine.get("GPU", 0.0)
            fit = min(fit, int(gpus / client_resources["num_gpus"] + 1e-9))
        total += max(fit, 0)
    return total


def _init(self, actor_type, client_resources, actor_kwargs) -> None:
    _flower_init(self, actor_type, client_resources, actor_kwargs)
    _POOLS.add(self)
    if _RESERVED:  # Flower counted the replicas' CPUs as the devices' too
        self.actors_capacity = max(1, capacity(client_resources, _RESERVED))
    kwargs = actor_kwargs or {}
    self.create_actor_fn = lambda: actor_type.options(  # Flower's, plus Ray's restarts
        **client_resources, max_restarts=MAX_RESTARTS,
        max_task_retries=TASK_RETRIES).remote(**kwargs)


def _kill(actor) -> bool:
    """End one actor for good (no restart); False if it was dead already or Ray is down."""
    import ray

    try:
        ray.kill(actor, no_restart=True)
        return True
    except Exception as err:  # noqa: BLE001 - already dead, or Ray shutting down
        log.debug("could not stop a device worker: %s", err)
        return False


def _terminate_all(self) -> None:
    """Flower asks each idle actor to exit itself (`exit_actor()`), which a restartable
    actor's task retry reports as a failure on stdout; end them through Ray instead."""
    for actor in list(self.pool):
        _kill(actor)


def install(reserved: dict[str, dict[str, float]] | None = None) -> bool:
    """Restartable device workers for the pools created from now on (idempotent), sized
    beside what the cloud's replicas `reserved`; False, and Flower's own pool, on a
    Flower version it was not written for."""
    _RESERVED.clear()
    _RESERVED.update(reserved or {})
    have = version("flwr")
    if not have.startswith(FLOWER) or not hasattr(BasicActorPool, "terminate_all_actors"):
        log.debug("flwr %s: keeping Flower's own actor pool", have)
        return False
    BasicActorPool.__init__ = _init
    BasicActorPool.terminate_all_actors = _terminate_all
    return True


def stop_busy() -> int:
    """Kill, for good, the device workers still working on a message: once the experiment
    is over, that is work the strategy gave up on (past `runtime.timeout`), and Flower's
    engine would wait for it before the process can end. Returns how many."""
    stopped = 0
    for pool in list(_POOLS):
        for _ in range(3):  # engine threads add and remove futures as we read
            try:
                busy = list(pool._future_to_actor.values())
                break
            except RuntimeError:
                continue
        else:
            busy = []
        stopped += sum(_kill(actor) for actor in busy)
    return stopped
