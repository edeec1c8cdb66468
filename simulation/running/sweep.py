"""`cdcda sweep`: one experiment per point of a grid of config values, each point its own
resumable run directory under DIR/points/, run one after another in this process.

A point whose summary says "ok" is skipped; any other is run again, which resumes it. A
point that fails is named and the others are kept; the sweep's own files (sweep.json,
then sweep.md, sweep.csv and plots from simulation/results/sweep.py) say which.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from simulation.config import Config, config_changes, load_config, parse_value
from tasks.files import load_stored, write_json

log = logging.getLogger(__name__)
SWEEP_FILE = "sweep.json"
POINTS_DIR = "points"


@dataclass
class Point:
    values: dict[str, object]  # grid key -> value, in the grid's order
    cfg: Config
    dir: Path

    @property
    def name(self) -> str:
        return self.dir.name


def parse_grid(items: list[str]) -> dict[str, list]:
    """`KEY=V1,V2,...` items -> {key: [values]}; a later item for the same key replaces
    the earlier one (so --grid overrides the config's [sweep] grid)."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ValueError(f"--grid '{item}' must look like section.key=v1,v2,...")
        parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if len(set(map(repr, parsed))) != len(parsed):
            raise ValueError(f"--grid {key}: a value is listed twice ({values})")
        grid[key] = parsed
    if not grid:
        raise ValueError("no grid: give --grid KEY=V1,V2,... or [sweep] grid in the config")
    return grid


def _label(value) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


def plan(config: Path | None, overrides: list[str], grid_items: list[str], out: Path
         ) -> tuple[dict[str, list], list[Point]]:
    """Every point's validated config and folder; a bad key or value fails here, before
    anything runs, naming the point."""
    base = load_config(config, overrides)
    grid = parse_grid([*base.sweep.grid, *grid_items])
    points = []
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        sets = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in values.items()]
        try:
            cfg = load_config(config, [*overrides, *sets])
        except ValueError as err:
            raise ValueError(f"grid point {', '.join(sets)}: {err}") from None
        name = "__".join(f"{k}={_label(v)}" for k, v in values.items())
        points.append(Point(values, cfg, out / POINTS_DIR / name))
    return grid, points


def done(point: Point) -> bool:
    """A point whose stored summary is complete and clean (status "ok") and whose stored
    config is the point's is not run again (any other is run: it resumes, or refuses a
    changed config with the runner's own message)."""
    summary = load_stored(point.dir / "summary.json") or {}
    stored = point.dir / "config.toml"
    return summary.get("status") == "ok" and stored.is_file() and \
        not config_changes(load_config(stored), point.cfg)


def write_plan(out: Path, config: Path | None, overrides: list[str],
               grid: dict[str, list], points: list[Point]) -> None:
    """DIR/sweep.json: what the sweep is (for `cdcda report DIR` and for a resume)."""
    write_json(out / SWEEP_FILE, {
        "config": str(config) if config else None, "overrides": overrides,
        "grid": {k: [v if not (isinstance(v, float) and math.isnan(v)) else None
                     for v in vs] for k, vs in grid.items()},
        "points": [{"dir": f"{POINTS_DIR}/{p.name}", "values": p.values} for p in points],
    })


def run_sweep(config: Path | None, overrides: list[str], grid_items: list[str], out: Path,
              console=None, verbose: bool = False) -> dict[str, str]:
    """Run every point not done yet, in order; returns each point's status (or why it
    failed). Raises `Interrupted` on SIGINT/SIGTERM once the current point is stored."""
    from simulation.running.guards import only_run

    grid, points = plan(config, overrides, grid_items, out)
    previous = load_stored(out / SWEEP_FILE)
    if previous is not None and previous.get("grid") != json.loads(json.dumps(grid)):
        log.warning("%s had another grid (%s): points outside the new one are kept but not "
                    "reported", out, previous.get("grid"))
    out.mkdir(parents=True, exist_ok=True)
    with only_run(out, "sweep"):
        write_plan(out, config, overrides, grid, points)
        return _run_points(points, console, verbose)


def _run_points(points: list[Point], console, verbose: bool) -> dict[str, str]:
    from simulation.results.report import write_report
    from simulation.running.runner import run

    statuses: dict[str, str] = {}
    for i, point in enumerate(points, 1):
        shown = ", ".join(f"{k} = {v}" for k, v in point.values.items())
        if done(point):
            statuses[point.name] = "ok"
            log.info("point %d/%d (%s): done already", i, len(points), shown,
                     extra={"console": True})
            continue
        log.info("point %d/%d (%s): running in %s", i, len(points), shown, point.dir,
                 extra={"console": True})
        try:
            summary = run(point.cfg, point.dir, console=console, verbose=verbose)
        except (ValueError, OSError, RuntimeError) as err:  # this point only
            statuses[point.name] = f"error: {err}"
            log.error("point %d/%d (%s) failed: %s", i, len(points), shown, err)
            continue
        statuses[point.name] = summary["status"]
        if summary.get("users"):
            try:
                write_report(point.dir)
            except (ValueError, OSError) as err:
                log.warning("point %s: the report could not be written: %s", point.name, err)
        log.info("point %d/%d (%s): %s", i, len(points), shown, summary["status"],
                 extra={"console": True})
    return statuses
