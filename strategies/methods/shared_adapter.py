"""One adapter for every user (shared_lora's, FedAvg's global one): kept as .npz in
`DIR/shared/<method>/` so a resumed run reuses it, and sent down for each device to
evaluate on its own queries."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord
from flwr.serverapp import Grid

from strategies.methods.base import Coordinator, MethodResult, metrics_of

log = logging.getLogger(__name__)


def folder(s: Coordinator, method: str) -> Path:
    return s.run_dir / "shared" / method


def save_arrays(path: Path, record: ArrayRecord) -> None:
    """An ArrayRecord as .npz, written atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        np.savez(f, **{k: v.numpy() for k, v in record.items()})
    tmp.replace(path)


def load_arrays(path: Path) -> ArrayRecord | None:
    if not path.exists():
        return None
    try:
        with np.load(path) as data:
            return ArrayRecord({k: Array(np.asarray(data[k])) for k in data.files})
    except (OSError, ValueError) as err:  # corrupt: recompute, keep the file for a look
        log.warning("stored adapter %s is unreadable (%s): moved aside, recomputed", path, err)
        path.replace(path.with_name(path.name + ".corrupt"))
        return None


def evaluate_with(s: Coordinator, grid: Grid, method: str, users: list[str], attempt: int,
                  adapter: ArrayRecord, result: MethodResult) -> dict[str, str]:
    """Send the shared adapter down to each device, which evaluates it on its queries
    (one copy per SuperNode, shared by its users; each user is charged a copy)."""
    msgs = s.messages(users, "evaluate", method, attempt, records={"arrays": adapter})
    return s.exchange(grid, msgs, method, attempt, metrics_of,
                      lambda view, m: s.store(method, view.user, m, result))
