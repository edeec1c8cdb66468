"""cdcda: seeds up, the cloud's synthetic examples down, each device trains its own LoRA on
real + synthetic data and replies with metrics only.

Augmentation is cached per user (`synthetic/<user>.json`) so a resumed run reuses it; only
complete augmentation is cached. A user whose cloud requests failed is retried, or with
`augment.fallback = "real_only"` trained on real data alone on the last attempt, and
marked so (`augment-fallback`).
"""

from __future__ import annotations

import json

from flwr.app import ConfigRecord
from flwr.serverapp import Grid

from strategies.exchange import RunStopped
from strategies.methods.base import Coordinator, Method, MethodResult, metrics_of
from strategies.replies import Items, View, parse_items
from tasks.files import load_stored, write_json


def run(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int, last: bool,
        result: MethodResult) -> dict[str, str]:
    failed: dict[str, str] = {}
    synthetic, fallback = synthesise(s, grid, method, users, attempt, last, failed)
    users = [u for u in users if u in synthetic]

    def own(user: str) -> dict:
        return {"synthetic": ConfigRecord({"items": json.dumps(synthetic[user])})}

    def commit(view: View, metrics: dict[str, float]) -> None:
        if view.user in fallback:
            metrics["augment-fallback"] = 1.0  # trained real-only: the cloud failed
        s.store(method, view.user, metrics, result)

    msgs = s.messages(users, "train", method, attempt, own)
    if msgs:
        failed.update(s.exchange(grid, msgs, method, attempt, metrics_of, commit))
    return failed


def synthesise(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int,
               last: bool, failed: dict[str, str]) -> tuple[dict[str, list[dict]], set[str]]:
    """Seed round + cloud augmentation for the users not cached yet; returns each user's
    synthetic items and the users that fall back to real data only."""
    synthetic: dict[str, list[dict]] = {}
    missing = []
    for user in users:
        cached = load_stored(s.run_dir / "synthetic" / f"{user}.json")
        if cached is not None and isinstance(cached.get("items"), list):
            synthetic[user] = cached["items"]
        else:
            missing.append(user)
    if not missing:
        return synthetic, set()
    seeds: dict[str, list[dict]] = {}

    def commit(view: View, got: Items) -> None:
        seeds[view.user] = got.items

    msgs = s.messages(missing, "query.seeds", method, attempt)
    failed.update(s.exchange(grid, msgs, method, attempt, parse_items, commit))
    if s.should_stop():
        raise RunStopped("stopped before augmentation")
    items, counts, errors = s.augmenter(seeds, attempt) if seeds else ({}, {}, {})
    for user, kept in items.items():
        write_json(s.run_dir / "synthetic" / f"{user}.json",
                   {"seeds": seeds[user], "items": kept, "counts": counts[user]})
        synthetic[user] = kept
    if s.should_stop():  # requests the stop cut short are not the cloud's failures
        raise RunStopped(f"stopped during augmentation ({len(items)} users augmented)")
    fallback = set()
    for user, causes in errors.items():
        s.cloud_failed(method, user, "augmentation", causes, attempt, failed)
        if last and s.settings.fallback == "real_only":
            synthetic[user] = []
            fallback.add(user)
            del failed[user]
    return synthetic, fallback


METHOD = Method(
    name="cdcda", run=run, kinds=("query.seeds", "train"),
    traffic="seeds up, synthetic down", trains="own", trainer="cohort", uses_cloud=True,
    augments=True)
