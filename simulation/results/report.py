"""report.md and its plots from a run's summary.json alone; seeded: same summary, same report."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from simulation.results.plots import human_bytes, plot_bytes, plot_gain, plot_metrics
from simulation.results.tables import (
    REFERENCE,
    ceiling_lines,
    ci,
    fairness_table,
    num,
    power_table,
    projection_table,
    pval,
    summary_comparisons,
    table,
    verdict_lines,
)
from simulation.results.verdicts import outcome
from tasks import get_task
from tasks.files import atomic_dir, write_text

SHORT = {"beats": "better", "loses": "worse", "ties": "interval contains zero",
         "none": "too few users"}
REPORT_FILE = "report.md"
PLOT_DIR = "report"


def write_report(run_dir: Path | str) -> Path:
    """Write DIR/report.md and DIR/report/*.png from DIR/summary.json; returns report.md."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not path.is_file():
        raise ValueError(f"{run_dir} holds no summary.json (rebuild it: cdcda summary {run_dir})")
    try:
        summary = json.loads(path.read_text())
        names = list(get_task(summary["task"]).metric_names)
    except (ValueError, KeyError) as err:  # bad JSON, no task, an unknown task
        raise ValueError(f"{path}: not a run summary ({type(err).__name__}: {err})") from err
    per_user = {m: res.get("per_user", {}) for m, res in summary.get("methods", {}).items()}
    comp = summary_comparisons(summary, names, REFERENCE)
    with atomic_dir(run_dir / PLOT_DIR) as tmp:
        plots = [plot_metrics(tmp, comp, names), plot_gain(tmp, per_user, comp, names),
                 plot_bytes(tmp, summary, comp, names[0])]
    lines = [*_header(summary), *_verdicts(summary, comp), *_methods(summary, comp, names),
             *_section("Fairness over users", fairness_table(comp)), *_compare(comp),
             *_section("Power", power_table(comp)),
             *_section("Communication at scale", projection_table(summary)),
             *_augmentation(summary), "## Plots", ""]
    lines += [f"![{title}]({PLOT_DIR}/{file})" if file else f"- {title}" for title, file in plots]
    return write_text(run_dir / REPORT_FILE, "\n".join(lines) + "\n")


# --- formatting ---------------------------------------------------------------------------
def _verdict(p: Mapping, ref: str) -> str:
    if not p["n"]:
        return "no user has results for both"
    if p["n"] < 2:
        return "one user: no interval, no claim"
    if p["contains_zero"]:
        return "not significant: the interval contains zero"
    better = (p["mean_diff"] > 0) == p["higher_is_better"]
    return f"{ref} {'better' if better else 'worse'}: the interval excludes zero"


def _notes(notes: list[tuple[str, str]]) -> list[str]:
    """(where, note) pairs as one line per distinct note, naming where it applies."""
    by_note: dict[str, list[str]] = {}
    for where, note in notes:
        for part in note.split("; "):
            by_note.setdefault(part, []).append(where)
    return [*(f"- {n}: {', '.join(w)}" for n, w in by_note.items()), *([""] if notes else [])]


# --- sections -----------------------------------------------------------------------------
def _section(title: str, body: list[str]) -> list[str]:
    return [f"## {title}", "", *body] if body else []


def _verdicts(s: Mapping, comp: Mapping) -> list[str]:
    """The verdict sentence per metric, near the top, with the data's single-answer line."""
    return ["## Verdict", "", *verdict_lines(comp), *ceiling_lines(s)]


def _header(s: Mapping) -> list[str]:
    lines = [f"# {s.get('experiment') or 'run'}: {s['task']}, {len(s.get('users', []))} users",
             "", f"Run status: **{s.get('status', 'unknown')}**. Built from summary.json alone: "
             "`cdcda report DIR` rebuilds it without running anything.", ""]
    for title, items in (("Problems", s.get("problems", [])), ("Warnings", s.get("warnings", []))):
        lines += [f"{title}:", *(f"- {i}" for i in items or ["none"]), ""]
    return lines + _scale(s.get("scale"))


def _scale(sc: Mapping | None) -> list[str]:
    """What the run cost the machine (all sessions; measured, so it differs between runs)."""
    if not sc:
        return []
    mem = sc.get("peak_memory_mb", {})
    return [f"Scale: {sc['users']} users on {sc.get('nodes', 0)} SuperNodes "
            f"({sc.get('cohort', 1)} per node), {sc['wall_seconds']:.0f} s "
            f"({sc['seconds_per_user']:.2f} s per user); discovery (a message that does no "
            f"work, plus starting Ray's workers) {sc['discovery_ms_per_user']:.1f} ms per "
            f"user; peak "
            f"memory (sampled RSS): driver {mem.get('driver', 0):.0f} MiB, devices "
            f"{mem.get('workers', 0):.0f} MiB over {mem.get('worker_processes', 0)} Ray "
            f"workers (largest {mem.get('worker_max', 0):.0f}), all processes "
            f"{mem.get('all', 0):.0f} MiB.", "",
            *(line for p in pipeline_lines(sc) for line in (p, ""))]


def pipeline_lines(sc: Mapping) -> list[str]:
    """Per augmenting method, how long the cloud and the devices each worked, and both at
    once (pipeline.json via the scale block, all sessions): what pipelining overlapped."""
    return [f"Pipeline, {m}: the cloud worked {f['cloud_seconds']:.1f} s, the devices "
            f"{f['devices_seconds']:.1f} s, both at once {f['both_seconds']:.1f} s of "
            f"{f['seconds']:.1f} s ({100 * f['overlap_share']:.0f}%)."
            for m, f in (sc.get("pipeline") or {}).items()]


def _per_query_gen(per_user: Mapping) -> float | None:
    vals = [m["gen-seconds"] / m["num-queries"] for m in per_user.values()
            if m.get("gen-seconds") is not None and m.get("num-queries")]
    return sum(vals) / len(vals) if vals else None


def _methods(s: Mapping, comp: Mapping, names: list[str]) -> list[str]:
    head = ["method", "status", *(f"{k} mean [95% CI]" for k in names), "users ok/failed",
            "up/user", "down/user", "adapter", "train s", "peak MB", "gen s/query", "TTFT s"]
    rows, notes = [], []
    for m, res in s.get("methods", {}).items():
        met, comm = res.get("metrics", {}), s.get("communication", {}).get(m, {})
        per_user_mean = comm.get("per_user_mean", {})
        cis = comp["mean_ci"].get(m, {})
        notes += [(f"{m} {k}", cis[k]["note"]) for k in names if cis.get(k, {}).get("note")]
        rows.append([m, res.get("status", "?"), *(ci(cis.get(k, {})) for k in names),
                     f"{len(res.get('per_user', {}))}/{len(res.get('failures', {}))}",
                     human_bytes(per_user_mean.get("up")), human_bytes(per_user_mean.get("down")),
                     human_bytes(met.get("adapter-bytes")), num(met.get("train-seconds"), 2),
                     num(met.get("peak-memory-mb"), 0),
                     num(_per_query_gen(res.get("per_user", {})), 3),
                     num(met.get("ttft-seconds"), 3)])
    return ["## Methods", "", "Means over users with 95% bootstrap intervals (seed "
            f"{comp['seed']}, {comp['n_resamples']} resamples); bytes are per user and "
            "include every message; device costs are per-user means (— = not measured).",
            "", *table(head, rows), *_notes(notes)]


def _highlight(ref: str, other: str, per_metric: Mapping) -> str:
    """One bullet for one method: every metric's difference, W/T/L, Holm p and verdict."""
    n = max((p["n"] for p in per_metric.values()), default=0)
    parts = [f"{k} {ci(p, signed=True)}, W/T/L {p['wins']}/{p['ties']}/{p['losses']}, Holm "
             f"p {pval(p.get('p_holm'))} ({SHORT[outcome(p)]})" for k, p in per_metric.items()]
    return f"- {ref} vs {other} over {n} users: {'; '.join(parts)}."


def _compare(comp: Mapping) -> list[str]:
    ref = comp["reference"]
    lines = [f"## {ref} against each method", ""]
    if not comp["paired"]:
        return [*lines, comp.get("note") or "nothing to compare", ""]
    lower = [k for k, up in comp["higher_is_better"].items() if not up]
    lines += [f"Paired over the users both methods have: difference = {ref} minus the other "
              "method, with its 95% bootstrap interval"
              + (f" ({', '.join(lower)}: lower is better, so a negative difference favours "
                 f"{ref})" if lower else "") + f". W/T/L counts users where {ref} is better / "
              "equal / worse; Wilcoxon p is the two-sided signed-rank test, Holm p the same "
              f"adjusted (Holm's step-down) over {ref}'s comparisons on that metric.", ""]
    rows, notes = [], []
    for other, per_metric in comp["paired"].items():
        for k, p in per_metric.items():
            rows.append([other, k, str(p["n"]), ci(p, signed=True),
                         f"{p['wins']}/{p['ties']}/{p['losses']}",
                         pval(p["p"]), pval(p.get("p_holm")), _verdict(p, ref)])
            if p["note"]:
                notes.append((f"{other} {k}", p["note"]))
    highlight = [_highlight(ref, o, pm) for o, pm in comp["paired"].items()]
    head = [f"{ref} vs", "metric", "users", "mean difference [95% CI]", "W/T/L",
            "Wilcoxon p", "Holm p", "verdict"]
    return [*lines, *highlight, "", *table(head, rows), *_notes(notes)]


def _augmentation(s: Mapping) -> list[str]:
    """One filter table per augmenting method (cdcda, cdcda_active, ...)."""
    by_method = s.get("augmentation_by_method") or {}
    if by_method:
        return [line for m, aug in by_method.items() for line in _filter_table(m, aug)]
    aug = s.get("augmentation")
    return _filter_table(aug.get("method", "cdcda"), aug) if aug else []


def _filter_table(method: str, aug: Mapping) -> list[str]:
    total = dict(aug.get("total", {}))
    errors = total.pop("cloud_errors", 0)
    generated = total.get("generated", 0)
    rows = [[k.replace("rejected_", "rejected: ").replace("_", " "), str(v),
             f"{100 * v / generated:.1f}%" if generated else "—"] for k, v in total.items()]
    causes = aug.get("cloud_errors", {}).get("by_cause", {})
    return [f"## Augmentation ({method})", "",
            f"{aug.get('users_augmented', 0)} users augmented.", "",
            *table(["candidates", "number", "share of generated"], rows),
            f"Cloud errors: {errors} failed requests"
            + (": " + ", ".join(f"{c} {n}" for c, n in causes.items()) if causes else "") + ".",
            ""]


# --- plots --------------------------------------------------------------------------------
