"""Where a device keeps its adapters and predictions: under the run directory, by user."""

from __future__ import annotations

from pathlib import Path

from tasks.files import atomic_dir


def adapter_dir(run_dir: Path | str, folder: str, user_id: str) -> Path:
    """`<folder>/<user>/` in the run directory: each method names its folder
    (`adapters/` for cdcda, `adapters-<method>/` for the baselines)."""
    return Path(run_dir) / folder / user_id


def save_adapter(model, path: Path) -> int:
    """Save a peft adapter atomically (peft's format); returns its size in bytes."""
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
    return sum(f.stat().st_size for f in path.glob("adapter_model.*"))
