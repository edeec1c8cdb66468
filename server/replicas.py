"""The embedded cloud as Ray actors: `cloud.replicas` copies of the model, placed by Ray.

Each replica holds its own copy of the cloud model and answers whole groups of prompts
(a group is the prompts that share a batch key: a SuperNode's users' candidates, or one
user's). A group goes to whichever
replica is free first, and a group's completions depend on the group alone (see
`CloudLLM.complete`), so the synthetic data are the same with any number of replicas, or
none. The actors are named (`cdcda-cloud-<i>`): `cdcda run` starts them before Flower
sizes its pool of device workers, so their CPUs are not handed to devices as well
(simulation/running/actors.py), and the ServerApp finds them by name.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from server.backends import STOP_POLL, CloudError, Completion, Seeds, groups, per_prompt
from server.engines import make_backend
from server.settings import CloudSettings

log = logging.getLogger(__name__)

NAME = "cdcda-cloud-{}"
PLACE_SECONDS = 120.0  # how long replicas may wait for Ray to place them before we say why
MAX_RESTARTS = 3  # a replica whose process died is started again (its group is retried)


class CloudReplica:
    """One copy of the cloud model in a Ray actor; it loads on first use (or `load`)."""

    def __init__(self, settings: CloudSettings):
        import torch

        self.settings = settings  # its engine runs here: engines.make_backend, no replicas
        # Ray sets no thread count for an actor: one per reserved CPU, as a device gets
        torch.set_num_threads(settings.threads or max(1, int(settings.num_cpus)))
        self.llm = None

    def where(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def load(self) -> float:
        if self.llm is None:
            self.llm = make_backend(self.settings)
        return float(getattr(self.llm, "load_seconds", 0.0))

    def complete(self, prompts: list[str], seed: Seeds, greedy: bool,
                 max_new_tokens: int | None, batch: int | None = None
                 ) -> tuple[list[Completion], int]:
        self.load()
        before = getattr(self.llm, "generated_tokens", 0)
        out = self.llm.complete(prompts, seed, greedy, max_new_tokens, batch)
        return out, getattr(self.llm, "generated_tokens", 0) - before


def start(settings: CloudSettings) -> list:
    """The run's replicas: found by name, or started (each with cloud.num_cpus and
    cloud.num_gpus, restarted by Ray if its process dies). Models load in the background."""
    import ray

    remote = ray.remote(CloudReplica)
    handles = [remote.options(name=NAME.format(i), get_if_exists=True,
                              num_cpus=settings.num_cpus, num_gpus=settings.num_gpus,
                              max_restarts=MAX_RESTARTS, max_task_retries=1,
                              ).remote(settings)
               for i in range(settings.replicas)]
    for h in handles:
        h.load.remote()  # fire and forget: loading overlaps whatever runs before the cloud
    return handles


def placed(handles: Sequence, settings: CloudSettings,
           timeout: float = PLACE_SECONDS) -> dict[str, dict[str, float]]:
    """Wait until Ray has placed every replica; what they reserve on each node (node id ->
    {"CPU": .., "GPU": ..}). Raises ValueError naming the options if they do not fit."""
    import ray

    refs = [h.where.remote() for h in handles]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    if len(ready) < len(refs):
        raise ValueError(
            f"cloud.replicas = {settings.replicas}: only {len(ready)} of them could be "
            f"placed within {timeout:.0f} s, each needing cloud.num_cpus = "
            f"{settings.num_cpus:g} and cloud.num_gpus = {settings.num_gpus:g} on one Ray "
            f"node; lower them, add nodes, or (under `flwr run`, where Flower's device pool "
            f"holds every CPU first) set cloud.num_cpus = 0")
    reserved: dict[str, dict[str, float]] = {}
    for node in ray.get(refs):
        mine = reserved.setdefault(node, {"CPU": 0.0, "GPU": 0.0})
        mine["CPU"] += settings.num_cpus
        mine["GPU"] += settings.num_gpus
    return reserved


def loaded(handles: Sequence) -> float:
    """Wait for every replica's model; a replica that cannot load it (vLLM missing, no
    GPU, an unknown model) raises its own error here, not as a failed request per user."""
    import ray

    try:
        return max(ray.get([h.load.remote() for h in handles]), default=0.0)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, ValueError | ImportError | OSError):
            raise ValueError(f"a cloud replica could not load its model: {cause}") from None
        raise


def stop(handles: Sequence) -> None:
    """End the replicas for good (Ray would otherwise restart them)."""
    import ray

    for h in handles:
        try:
            ray.kill(h, no_restart=True)
        except Exception as err:  # noqa: BLE001 - already gone, or Ray shutting down
            log.debug("could not stop a cloud replica: %s", err)


class ReplicatedLLM:
    """The CloudLLM interface over the replicas: each group of prompts to the first free
    replica, so a user's completions are what one in-process model would write."""

    def __init__(self, settings: CloudSettings, should_stop: Callable[[], bool] = lambda: False):
        self.settings = settings
        self.should_stop = should_stop
        self.handles = start(settings)
        try:
            placed(self.handles, settings)
            self.load_seconds = loaded(self.handles)
        except BaseException:  # nothing half-started is left behind
            stop(self.handles)
            raise
        self.name = f"replicas:{settings.replicas}x{settings.backend}:{settings.model}"
        self.idle: queue.Queue = queue.Queue()  # shared by every thread that asks
        for h in self.handles:
            self.idle.put(h)
        self.generated_tokens = 0
        self.counting = threading.Lock()

    def complete(self, prompts: Sequence[str], seed: Seeds, greedy: bool = False,
                 max_new_tokens: int | None = None, batch: Seeds | None = None
                 ) -> list[Completion]:
        import ray

        out: list[Completion] = [CloudError("stopped")] * len(prompts)
        seeds = per_prompt(seed, len(prompts))
        todo = groups(prompts, seed, batch)
        running: dict = {}  # ref -> (replica, members)
        while (todo or running) and not self.should_stop():
            while todo:  # hand groups to free replicas; never wait while groups are out
                try:
                    h = self.idle.get(timeout=STOP_POLL if not running else 0.001)
                except queue.Empty:
                    break
                key, members = todo.pop(0)
                ref = h.complete.remote([prompts[i] for i in members],
                                        [seeds[i] for i in members], greedy, max_new_tokens,
                                        key)
                running[ref] = (h, members)
            if not running:
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=STOP_POLL)
            for ref in done:
                h, members = running.pop(ref)
                self.idle.put(h)
                try:
                    texts, tokens = ray.get(ref)
                    with self.counting:  # the pipeline's threads share this object
                        self.generated_tokens += tokens
                except Exception as err:  # noqa: BLE001 - a replica died mid-group
                    log.warning("cloud replica failed a group of %d prompts: %s",
                                len(members), type(err).__name__)
                    texts = [CloudError("replica_failed")] * len(members)
                for i, text in zip(members, texts):
                    out[i] = text
        for ref, (h, _) in running.items():  # stopped: the rest stay CloudError("stopped")
            try:
                ray.cancel(ref)
            except Exception as err:  # noqa: BLE001 - a running sync actor task may refuse
                log.debug("could not cancel a cloud request: %s", err)
            self.idle.put(h)
        return out


def wait_placed(settings: CloudSettings, timeout: float = PLACE_SECONDS
                ) -> dict[str, dict[str, float]]:
    """Start the replicas ahead of the run and return what they reserve, per node."""
    t0 = time.perf_counter()
    reserved = placed(start(settings), settings, timeout)
    log.info("%d cloud replica(s) placed in %.1f s on %d node(s)", settings.replicas,
             time.perf_counter() - t0, len(reserved))
    return reserved
