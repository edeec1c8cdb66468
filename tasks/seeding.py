"""Stable seeds derived from a run's seed and a name (a user id, a method)."""

from __future__ import annotations

import hashlib


def user_seed(run_seed: int, user_id: str) -> int:
    """A stable per-user seed (Python's hash() is salted per process), in [0, 2**32)."""
    return int.from_bytes(hashlib.sha256(f"{run_seed}/{user_id}".encode()).digest()[:4], "big")
