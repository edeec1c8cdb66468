"""Where a device keeps its adapters and predictions: under the run directory, by user."""

from __future__ import annotations

from pathlib import Path

from tasks.files import atomic_dir

MAIN_METHOD = "cdcda"


def adapter_dir(run_dir: Path | str, method: str, user_id: str) -> Path:
    """`adapters/<user>/` for the main method; `adapters-<method>/<user>/` for baselines."""
    root = "adapters" if method == MAIN_METHOD else f"adapters-{method}"
    return Path(run_dir) / root / user_id


def save_adapter(model, path: Path) -> int:
    """Save a peft adapter atomically (peft's format); returns its size in bytes."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
    return sum(f.stat().st_size for f in path.glob("adapter_model.*"))
