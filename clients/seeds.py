"""Which of a user's profile items leave the device as seeds for the cloud, and how many."""

from __future__ import annotations

import random
from collections.abc import Sequence

from clients.settings import SeedSettings
from tasks.catalog import Task


def select_seeds(task: Task, profile: Sequence[dict], settings: SeedSettings,
                 seed: int) -> list[dict]:
    """Up to k items, reduced to the task's fields (no ids, dates or other metadata)."""
    k = min(settings.k, len(profile))
    if k == 0:
        return []
    if settings.policy == "recent":
        chosen = list(profile)[-k:]  # profiles are date-sorted by the loader
    else:
        chosen = random.Random(seed).sample(list(profile), k)
    return [{f: str(it[f]) for f in task.item_fields} for it in chosen]
