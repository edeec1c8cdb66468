"""shared_lora: every user's real examples go up; one LoRA is trained on the pool
(centralised, not private) and sent down to every device, which evaluates it."""

from __future__ import annotations

import logging

from flwr.serverapp import Grid

from strategies.exchange import RunStopped
from strategies.methods.base import Coordinator, Method, MethodResult
from strategies.methods.shared_adapter import evaluate_with, folder, load_arrays, save_arrays
from strategies.replies import parse_items
from tasks.files import write_json

log = logging.getLogger(__name__)


def run(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int, last: bool,
        result: MethodResult) -> dict[str, str]:
    path = folder(s, method) / "adapter.npz"
    adapter = load_arrays(path)
    failed: dict[str, str] = {}
    if adapter is None:
        pooled: dict[str, list[dict]] = {}
        everyone = s.users  # the pool is every user's data, done or not
        msgs = s.messages(everyone, "query.data", method, attempt)
        failed.update(s.exchange(grid, msgs, method, attempt, parse_items,
                                 lambda view, got: pooled.__setitem__(view.user, got.items)))
        if not pooled:
            return failed
        if s.should_stop():
            raise RunStopped("stopped before training the shared adapter")
        log.info("%s: training one adapter on %d examples of %d users", method,
                 sum(map(len, pooled.values())), len(pooled))
        adapter = s.services.train_pooled(method, pooled)
        save_arrays(path, adapter)
        write_json(folder(s, method) / "pool.json",
                   {"users": sorted(pooled), "examples": sum(map(len, pooled.values()))})
    failed.update(evaluate_with(s, grid, method, users, attempt, adapter, result))
    return failed


METHOD = Method(
    name="shared_lora", run=run, kinds=("query.data", "evaluate"),
    traffic="all real examples up, the adapter down", trains="pooled", trainer="cohort")
