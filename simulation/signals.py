"""Ctrl-C and SIGTERM stop a run within seconds, keeping everything finished so far.

Flower runs the ServerApp in a thread and the simulation engine in the main thread; a
plain KeyboardInterrupt stops neither cleanly (the ServerApp thread runs on to the end).
The handler sets STOP, which the strategy, the cloud model and the engine's loops check,
and raises `Interrupted` in the main thread, which unwinds the engine: Flower's backend
terminates its actors and Ray shuts down. A second signal exits at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

# The one process-wide stop flag: set by a signal, read by every long loop of the run.
STOP = threading.Event()


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


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within this block, SIGINT/SIGTERM set STOP and raise Interrupted (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    STOP.clear()

    def handler(signum, frame):
        if STOP.is_set():  # asked twice: stop now
            os._exit(128 + signum)
        STOP.set()
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
