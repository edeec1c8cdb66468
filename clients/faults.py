"""Injected device faults (`[faults.device]`): crashes, hangs, garbage replies and dead
worker processes, seeded.

Each decision is a pure function of (seed, method, message kind, user, attempt), so a run
is reproducible and a retry draws again: a device that crashed may succeed next attempt.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Literal

from tasks.structured import check

Fault = Literal["crash", "hang", "garbage", "die"]
GARBAGE = ("no_meta", "nan_metric", "arrays", "wrong_user", "bad_seeds")


class InjectedCrash(RuntimeError):
    """The device 'crashed' (faults.device.crash): Flower turns it into an error reply."""


@dataclass
class DeviceFaults:
    crash: float = field(default=0.0, metadata={"help": "share of device tasks that crash"})
    hang: float = field(default=0.0, metadata={
        "help": "share that hang for hang_seconds (past runtime.timeout) before working"})
    garbage: float = field(default=0.0, metadata={
        "help": "share that reply with malformed content (no meta, NaN metric, arrays, "
                "another user's id, unreadable seeds)"})
    hang_seconds: float = field(default=0.0, metadata={
        "help": "how long a hung device sleeps; 0 = 1.5 x runtime.timeout"})
    die: float = field(default=0.0, metadata={
        "help": "share whose worker process dies outright, as an OOM kill does (in a Ray "
                "worker only)"})

    def __post_init__(self) -> None:
        for name in ("crash", "hang", "garbage", "die"):
            v = getattr(self, name)
            check(0 <= v <= 1, name, f"must be a share in [0, 1], got {v}")
        check(self.crash + self.hang + self.garbage + self.die <= 1, "crash",
              "crash + hang + garbage + die must be <= 1")
        check(self.hang_seconds >= 0, "hang_seconds", "must be >= 0")

    @property
    def active(self) -> bool:
        return self.crash + self.hang + self.garbage + self.die > 0


def _rng(seed: int, *key: object) -> random.Random:
    digest = hashlib.sha256("/".join(map(str, (seed, *key))).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def draw(faults: DeviceFaults, seed: int, method: str, kind: str, user: str,
         attempt: int) -> tuple[Fault | None, str]:
    """Which fault (if any) this task suffers, and for garbage which variant."""
    if not faults.active:
        return None, ""
    rng = _rng(seed, method, kind, user, attempt)
    u = rng.random()
    if u < faults.crash:
        return "crash", ""
    if u < faults.crash + faults.hang:
        return "hang", ""
    if u < faults.crash + faults.hang + faults.garbage:
        variants = [g for g in GARBAGE if g != "bad_seeds" or kind == "query.seeds"]
        return "garbage", rng.choice(variants)
    if u < faults.crash + faults.hang + faults.garbage + faults.die:
        return "die", ""
    return None, ""
