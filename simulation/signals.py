"""Ctrl-C and SIGTERM stop a run within seconds, keeping everything finished so far.

Flower runs the ServerApp in a thread and the simulation engine in the main thread; a
plain KeyboardInterrupt stops neither cleanly (the ServerApp thread runs on to the end),
and unwinding the engine from the main thread while its worker threads still wait on
Ray can crash Ray's shutdown (seen: SIGSEGV). So the handler sets STOP, which the
strategy and the cloud model check, and kills this run's local Ray workers so that the
engine's waits end at once: the ServerApp stops, Flower's own stop path joins its threads
and shuts Ray down, and the runner then raises `Interrupted`. Outside the simulation the
handler raises `Interrupted` itself. A watchdog ends the process if stopping takes longer
than `GRACE` seconds; a second signal exits at once.
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
        _stop_local_workers()
        threading.Thread(target=_watchdog, args=(128 + signum,), daemon=True).start()
        if not _in_engine.is_set():
            raise Interrupted(signum)

    return handler


def _watchdog(code: int) -> None:
    time.sleep(GRACE)
    import sys

    print(f"cdcda: still stopping after {GRACE:.0f} s; exiting now (finished users are "
          "kept; rerun the same command to resume)", file=sys.stderr, flush=True)
    os._exit(code)


@contextlib.contextmanager
def engine_running() -> Iterator[None]:
    """Mark Flower's engine as running (a signal lets it stop itself), then raise
    `Interrupted` once it has, if a signal asked for it."""
    _in_engine.set()
    try:
        yield
    finally:  # whatever the engine raised on the way out was the stop's doing
        _in_engine.clear()
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
    """Kill this run's local Ray worker processes (our descendants named `ray::...`).

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
