"""summary.json, derived from what the run directory stores and from nothing else.

Per-user results, the message ledger, the failure log, the cached augmentation and the
discovered users are the source of truth; this rebuilds the summary from them, so a run
that was killed and resumed ends with the same summary as one that was not (timings
aside), and `cdcda summary DIR` rebuilds it without running anything.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from server.filters import total_counts
from simulation.config import Config
from strategies.accounting import LEDGER_FILE, disclosure, projection, read_jsonl, summarise
from strategies.failures import FAILURES_FILE
from strategies.methods import get_method
from strategies.methods.cdcda import PIPELINE_FILE
from tasks.files import load_stored
from tasks.structured import to_mapping

USERS_FILE = "users.json"
TIMINGS_FILE = "timings.json"
CUTS_FILE = "input_cuts.json"  # texts cut to tasks.lamp.MAX_TEXT_BYTES at load, named
DISCOVERY_KEY = "discovery"  # timings.json: seconds and rounds of the no-work discovery
MEMORY_KEY = "peak_memory"  # timings.json: sampled peak RSS (simulation.running.measure.FIELDS)
# Per-user fields that measure the machine, not the experiment: they differ between runs.
MEASURED = ("seconds", "per-second", "peak-memory", "ttft")
# Whole blocks that measure the machine (time, memory): left out of comparisons too.
MEASURED_BLOCKS = ("sessions", "scale")


def aggregate(per_user: Mapping[str, Mapping[str, float]], names: Iterable[str]
              ) -> dict[str, float]:
    """Mean over users of every metric, plus median/min/max of the task metrics."""
    out: dict[str, float] = {}
    if not per_user:
        return out
    for k in sorted({k for m in per_user.values() for k in m}):
        vals = [m[k] for m in per_user.values() if k in m]
        out[k] = sum(vals) / len(vals)
    for k in names:
        vals = sorted(m[k] for m in per_user.values() if k in m)
        if vals:
            out[f"{k}_median"] = statistics.median(vals)
            out[f"{k}_min"], out[f"{k}_max"] = vals[0], vals[-1]
    out["users"] = len(per_user)
    return out


def _method(run_dir: Path, method: str, users: list[str], failures: list[dict],
            names: Iterable[str]) -> dict:
    per_user: dict[str, dict] = {}
    for u in users:
        stored = load_stored(run_dir / "results" / method / f"{u}.json")
        if stored is not None:
            per_user[u] = stored
    latest: dict[str, str] = {}
    for f in failures:
        if f["method"] == method and f["user"] not in per_user:
            latest[f["user"]] = f"{f['kind']}: {f['detail']}"
    # cdcda's seed round counts under cdcda too; discovery failures under "setup"
    missing = [u for u in users if u not in per_user and u not in latest]
    if len(per_user) == len(users):
        status = "ok"
    elif missing:
        status = "incomplete"
    elif per_user:
        status = "partial"
    else:
        status = "failed"
    metrics = aggregate(per_user, names)
    metrics["failures"] = len(latest)
    return {"status": status, "metrics": metrics, "per_user": per_user,
            "failures": dict(sorted(latest.items())), "missing": missing,
            "fallback_users": sorted(u for u, m in per_user.items()
                                     if m.get("augment-fallback"))}


def _augmentation(run_dir: Path, users: list[str], failures: list[dict],
                  augmenting: Iterable[str]) -> dict:
    """The first augmenting method's filter counts (cdcda's where it ran), and the cloud
    errors of every augmenting method."""
    augmenting = list(augmenting)
    counts = get_method(augmenting[0]).counts
    per_user = {}
    for u in users:
        mine = counts(run_dir, u) if counts else None
        if mine is not None:
            per_user[u] = mine
    errors: dict[str, Counter] = defaultdict(Counter)
    for f in failures:
        if f["kind"] == "cloud_error" and f["method"] in augmenting:
            errors[f["user"]].update(f.get("causes", {}))
    error_total: Counter = Counter()
    for c in errors.values():
        error_total.update(c)
    return {
        "method": augmenting[0],
        "total": {**total_counts(per_user), "cloud_errors": sum(error_total.values())},
        "cloud_errors": {"by_cause": dict(sorted(error_total.items())),
                         "per_user": {u: dict(c) for u, c in sorted(errors.items())}},
        "users_augmented": len(per_user),
        "per_user": per_user,
    }


def _data_info(data_dir: str, run_dir: Path) -> dict:
    """What the bundled benchmark says of itself (benchmark.json): its heterogeneity and
    the single-answer ceiling, how much the task rewards personalization; and how many
    texts over tasks.lamp.MAX_TEXT_BYTES were cut at load (CUTS_FILE, when any were)."""
    meta = (load_stored(Path(data_dir) / "benchmark.json") if data_dir else None) or {}
    info = {k: meta[k] for k in ("generator", "heterogeneity", "single_answer_ceiling")
            if k in meta}
    cuts = load_stored(run_dir / CUTS_FILE)
    if cuts:
        info["texts_cut"] = int(cuts.get("texts_cut", 0))
    return info


def _failure_log(failures: list[dict]) -> dict:
    by_kind: Counter = Counter(f["kind"] for f in failures)
    by_method: dict[str, Counter] = defaultdict(Counter)
    by_user: dict[str, list] = defaultdict(list)
    for f in failures:
        by_method[f["method"]][f["kind"]] += 1
        by_user[f["user"]].append({k: f[k] for k in ("method", "kind", "detail", "attempt")})
    return {"events": len(failures), "by_kind": dict(sorted(by_kind.items())),
            "by_method": {m: dict(c) for m, c in sorted(by_method.items())},
            "by_user": dict(sorted(by_user.items()))}


def build_summary(run_dir: Path, cfg: Config, task_name: str, metric_names: Iterable[str],
                  data_dir: str = "", statistics: bool = True) -> dict:
    """The whole summary of the run in `run_dir`, from its stored state.

    `statistics` adds `comparisons`: bootstrap CIs per method and cdcda's paired
    differences, Wilcoxon tests and win/tie/loss counts against every other method
    (seeded; left out of the quick rebuilds between methods).
    """
    run_dir = Path(run_dir)
    names = list(metric_names)
    users = list((load_stored(run_dir / USERS_FILE) or {}).get("users", []))
    failures = read_jsonl(run_dir / FAILURES_FILE, "failure log")
    ledger = read_jsonl(run_dir / LEDGER_FILE, "ledger")
    timings = load_stored(run_dir / TIMINGS_FILE) or {}
    methods = {m: _method(run_dir, m, users, failures, names) for m in cfg.experiment.methods}
    for m, res in methods.items():
        res["seconds"] = timings.get("methods", {}).get(m, 0.0)
    communication = {}
    for m in [*cfg.experiment.methods, "setup"]:
        comm = summarise(ledger, m, users)
        if m != "setup":
            comm["projection"] = _projections(comm, get_method(m), cfg)
        communication[m] = comm
    summary = {
        "experiment": cfg.experiment.name, "task": task_name, "data": data_dir,
        "data_info": _data_info(data_dir, run_dir), "users": users, "methods": methods,
        "communication": communication,
        "failures": _failure_log(failures),
        "privacy": disclosure(ledger, users),
        "seconds": timings.get("seconds", 0.0), "sessions": timings.get("sessions", 0),
        "scale": scale(timings, len(users), cfg.runtime.cohort,
                       load_stored(run_dir / PIPELINE_FILE)),
    }
    augmenting = [m for m in methods if get_method(m).augments]
    if augmenting:
        summary["augmentation"] = _augmentation(run_dir, users, failures, augmenting)
        if len(augmenting) > 1:  # each method's own counts (and again, every error)
            summary["augmentation_by_method"] = {
                m: _augmentation(run_dir, users, failures, [m]) for m in augmenting}
    if statistics:
        from simulation.results.stats import comparisons

        summary["comparisons"] = comparisons(
            {m: r["per_user"] for m, r in methods.items()}, names,
            seed=cfg.experiment.seed)
    summary["status"], summary["problems"], summary["warnings"] = _verdict(summary)
    summary["config"] = to_mapping(cfg)
    return summary


def _projections(comm: Mapping, method, cfg: Config) -> list[dict]:
    """Bytes at 1,000 and 10,000 users; a method with rounds (its `round_kinds` recur
    each round) also at its rounds and ten times as many."""
    if not method.round_kinds:
        return [projection(comm, n) for n in (1000, 10000)]
    r = method.projected_rounds(cfg)
    return [projection(comm, n, rr, method.round_kinds, r)
            for n in (1000, 10000) for rr in (r, 10 * r)]


def scale(timings: Mapping, users: int, cohort: int = 1,
          pipeline: Mapping | None = None) -> dict:
    """What the run cost the machine, from timings.json: wall time (the experiment's own:
    discovery and methods, all sessions; not Ray's start-up nor the final statistics and
    report), time per user, each method's time per user, sampled peak memory (MiB) of
    the driver and of the Ray workers (the devices; their sum and the largest), and the
    orchestration overhead per user as the run sees it: discovery, one message per
    SuperNode that does no work. Discovery also pays for starting Ray's workers (seconds,
    once per session), so with few messages (few users, or a large cohort) it overstates
    the steady overhead per user per round that `cdcda bench sim` measures. `pipeline`
    (pipeline.json) adds, per augmenting method, how long the cloud and the devices each
    worked and both at once."""
    n = max(users, 1)
    wall = float(timings.get("seconds", 0.0))
    disc = timings.get(DISCOVERY_KEY, {})
    rounds = max(int(disc.get("rounds", 0)), 1)
    mem = timings.get(MEMORY_KEY, {})
    out = {
        "users": users, "cohort": cohort, "nodes": disc.get("nodes", 0),
        "wall_seconds": wall, "seconds_per_user": wall / n,
        "discovery_seconds": float(disc.get("seconds", 0.0)),
        "discovery_ms_per_user": 1000 * float(disc.get("seconds", 0.0)) / rounds / n,
        "method_ms_per_user": {m: 1000 * float(t) / n
                               for m, t in timings.get("methods", {}).items()},
        "peak_memory_mb": {"driver": mem.get("driver_mb", 0.0),
                           "workers": mem.get("workers_mb", 0.0),
                           "worker_max": mem.get("worker_max_mb", 0.0),
                           "all": mem.get("total_mb", 0.0),
                           "worker_processes": int(mem.get("workers", 0))},
    }
    if pipeline:
        out["pipeline"] = {m: dict(f) for m, f in sorted(pipeline.items())}
    return out


def _verdict(summary: Mapping) -> tuple[str, list[str], list[str]]:
    """ok | partial | incomplete | failed, the problems that make it so, and warnings."""
    problems, warnings = [], []
    statuses = set()
    if not summary["users"]:
        problems.append("no user took part (discovery found no device)")
        statuses.add("failed")
    for m, res in summary["methods"].items():
        statuses.add(res["status"])
        n, f = len(res["per_user"]), len(res["failures"])
        if res["status"] == "failed":
            first = next(iter(res["failures"].values()), "")
            problems.append(f"{m}: no user succeeded ({f} failed; first: {first})")
        elif f:
            warnings.append(f"{m}: {f} of {n + f + len(res['missing'])} users failed")
        if res["missing"]:
            problems.append(f"{m}: {len(res['missing'])} users not run yet (resume the run)")
        if res["fallback_users"]:
            warnings.append(f"{m}: {len(res['fallback_users'])} users trained on real data "
                            "only because their augmentation failed")
    aug = summary.get("augmentation")
    if aug is not None:
        t = aug["total"]
        if t["cloud_errors"] and not t["generated"]:
            problems.append(f"the cloud produced nothing: {t['cloud_errors']} requests failed "
                            f"({aug['cloud_errors']['by_cause']})")
            statuses.add("failed")
        elif t["generated"] and not t["kept"]:
            warnings.append(f"the cloud wrote {t['generated']} candidates and the filters "
                            "kept none: cdcda trained on real data only")
    for status in ("failed", "incomplete", "partial"):
        if status in statuses:
            return status, problems, warnings
    return "ok", problems, warnings


def without_measurements(summary: Mapping) -> dict:
    """The summary minus what measures the machine (seconds, speeds, memory, sessions,
    the scale block): what two runs of the same experiment must agree on."""

    def walk(x):
        if isinstance(x, Mapping):
            return {k: walk(v) for k, v in x.items()
                    if k not in MEASURED_BLOCKS and not any(m in k for m in MEASURED)}
        return x

    return walk(summary)
