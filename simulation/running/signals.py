"""Ctrl-C and SIGTERM stop a run within seconds, keeping everything finished so far.

Flower runs the ServerApp in a thread and the simulation engine in the main thread; a
plain KeyboardInterrupt stops neither cleanly (the ServerApp thread runs on to the end),
and unwinding the engine from the main thread while its worker threads still wait on
Ray can crash Ray's shutdown (seen: SIGSEGV). So the handler sets STOP, which the
strategy and the cloud model check, and ends this run's devices so that the engine's
waits end at once: on a local Ray it kills our own `ray::` worker processes, on a
cluster it asks Ray to kill this job's actors (never a process of the cluster itself).
The ServerApp stops, Flower's own stop path joins its threads and shuts Ray down, and the
runner then raises `Interrupted`. Outside the simulation the handler raises `Interrupted`
itself. A watchdog ends the process if stopping takes longer than `GRACE` seconds; a
second signal exits at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

# The one process-wide stop flag: set by a signal, read by every long loop of the run.
STOP = threading.Event()
GRACE = 20.0
_received: list[int] = []  # the signal that set STOP
_in_engine = threading.Event()  # Flower's engine is running in the main thread
_on_cluster = threading.Event()  # ... on a Ray cluster this process joined, not its own Ray
_resume: list[str] = ["rerun the same command"]  # how to resume, for a stop cut short


class Interrupted(BaseException):
    """Raised in the main thread by SIGINT (exit 130) or SIGTERM (exit 143)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def should_stop() -> bool:
    return STOP.is_set()


_handler: list = []  # the active handler, so it can be put back after ray.init


def _make_handler():
    first: list[float] = []

    def handler(signum, frame):
        if first:  # asked again: stop now, unless it is an echo of the first signal
            if time.monotonic() - first[0] > 2.0:
                os._exit(128 + signum)
            return
        first.append(time.monotonic())
        _received[:] = [signum]
        STOP.set()
        if _on_cluster.is_set():  # Ray calls, off the signal handler's thread
            threading.Thread(target=_stop_job_actors, daemon=True).start()
        else:
            _stop_local_workers()
        threading.Thread(target=_watchdog, args=(128 + signum,), daemon=True).start()
        if not _in_engine.is_set():
            raise Interrupted(signum)

    return handler


def set_resume_hint(command: str) -> None:
    """The command that resumes this run: a stop cut short by the watchdog names it too."""
    _resume[:] = [command]


def _watchdog(code: int) -> None:
    time.sleep(GRACE)
    import sys

    print(f"cdcda: still stopping after {GRACE:.0f} s; exiting now (finished users are "
          f"kept).\nresume with: {_resume[0]}", file=sys.stderr, flush=True)
    os._exit(code)


@contextlib.contextmanager
def engine_running(local_ray: bool = True) -> Iterator[None]:
    """Mark Flower's engine as running (a signal lets it stop itself), then raise
    `Interrupted` once it has, if a signal asked for it. `local_ray`: Ray was started by
    this process (not a cluster it joined), so its workers are ours to kill."""
    _in_engine.set()
    if not local_ray:
        _on_cluster.set()
    try:
        yield
    finally:  # whatever the engine raised on the way out was the stop's doing
        _in_engine.clear()
        _on_cluster.clear()
        if STOP.is_set() and _received:
            raise Interrupted(_received[0])  # noqa: B012


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within this block, SIGINT/SIGTERM set STOP and raise Interrupted (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    STOP.clear()
    _received.clear()
    _handler[:] = [_make_handler()]
    previous = {s: signal.signal(s, _handler[0]) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        _handler.clear()
        for s, h in previous.items():
            signal.signal(s, h)


def reinstall() -> None:
    """Put our handlers back: `ray.init` replaces SIGTERM's with `sys.exit(15)`."""
    if _handler and threading.current_thread() is threading.main_thread():
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, _handler[0])


def _stop_local_workers() -> None:
    """Kill this run's local Ray worker processes (our descendants named `ray::...`); only
    on a Ray this process started, whose workers are its own descendants.

    Their in-flight work is lost either way (every finished user is already on disk);
    killing them makes Flower's engine threads, which wait on those workers, return at
    once instead of racing Ray's shutdown (seen: SIGTERM -> abort, exit 134). Ctrl-C in a
    terminal reaches them already; SIGTERM sent to the driver alone does not.
    """
    import psutil

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        with contextlib.suppress(psutil.Error):
            if child.name().startswith("ray::") or any(
                    a.startswith("ray::") for a in child.cmdline()[:1]):
                child.kill()


def _stop_job_actors() -> None:
    """On a cluster: kill this job's live actors (Flower's devices) through Ray, on every
    node. The cluster's own processes, and other jobs' actors, are never touched."""
    import ray

    try:
        from ray._private.state import actors
        from ray._raylet import ActorID

        job = ray.get_runtime_context().get_job_id()
        core = ray._private.worker.global_worker.core_worker
        for actor_id, info in actors(job_id=ray.JobID.from_hex(job)).items():
            if info.get("JobID") == job and info.get("State") == "ALIVE":
                core.kill_actor(ActorID.from_hex(actor_id), True)
    except Exception as err:  # noqa: BLE001 - the watchdog still ends the run within GRACE
        import logging

        logging.getLogger(__name__).warning("could not stop this run's devices on the "
                                            "cluster (%s); waiting for them", err)


def exit_if_stuck(code: int, grace: float = 5.0) -> None:
    """After a signal, end the process even if an engine thread is stuck.

    Flower's simulation workers wait on Ray futures; once Ray is shut down under them a
    wait may never return, and Python would wait for those threads forever at exit.
    Everything worth keeping is on disk by now, so the process exits with `code`.
    """
    import sys

    deadline = time.time() + grace
    for t in threading.enumerate():
        if t is not threading.current_thread() and not t.daemon:
            t.join(max(0.0, deadline - time.time()))
    if any(t.is_alive() and not t.daemon and t is not threading.current_thread()
           for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
