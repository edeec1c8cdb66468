"""Markdown pieces of a run's report (verdicts, power, fairness, projections), reusable."""

from __future__ import annotations

from collections.abc import Mapping

from simulation.results.plots import human_bytes
from simulation.results.power import ALPHA, TARGET_DIFF, TARGET_POWER, USERS_KEY
from simulation.results.stats import comparisons

REFERENCE = "cdcda"
NEEDED = ("verdicts", "fairness")  # comparisons stored before these existed are recomputed


# --- formatting ---------------------------------------------------------------------------
def num(v, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def pval(p: float | None) -> str:
    if p is None:
        return "—"
    return f"{p:.3g}" if p > 0 else "< 1e-300"  # the normal approximation underflows


def ci(c: Mapping, signed: bool = False) -> str:
    mean = c.get("mean", c.get("mean_diff"))
    if mean is None:
        return "—"
    sign = "+" if signed else ""
    return f"{mean:{sign}.4f} [{c['low']:{sign}.4f}, {c['high']:{sign}.4f}]"


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [f"| {' | '.join(head)} |", f"|{'|'.join('---' for _ in head)}|",
            *(f"| {' | '.join(r)} |" for r in rows), ""]


# --- the statistics of one summary --------------------------------------------------------
def summary_comparisons(summary: Mapping, names: list[str] | None = None,
                        reference: str = REFERENCE) -> dict:
    """The summary's stored comparisons when they are current (same metrics and methods,
    every key this version writes), else recomputed from its per-user results with the
    run's seed, so that an older summary.json still gets verdicts, power and fairness."""
    if names is None:
        from tasks import get_task

        names = list(get_task(summary["task"]).metric_names)
    per_user = {m: res.get("per_user", {}) for m, res in summary.get("methods", {}).items()}
    comp = summary.get("comparisons")
    if (isinstance(comp, Mapping) and comp.get("metrics") == names
            and set(comp.get("mean_ci", {})) == set(per_user) and all(k in comp for k in NEEDED)):
        return dict(comp)
    seed = comp.get("seed") if isinstance(comp, Mapping) else None
    if not isinstance(seed, int):
        seed = summary.get("config", {}).get("experiment", {}).get("seed", 0)
    return comparisons(per_user, names, reference=reference, seed=int(seed or 0))


def verdict_lines(comp: Mapping) -> list[str]:
    """One bullet per metric: the verdict sentence stored in the comparisons."""
    verdicts = comp.get("verdicts", {})
    return [*(f"- {verdicts[k]}" for k in comp["metrics"] if k in verdicts), ""]


def power_table(comp: Mapping) -> list[str]:
    """Per paired comparison: users, SD of the differences, the smallest difference it
    could detect, and the users a difference of TARGET_DIFF would need."""
    ref = comp["reference"]
    rows, notes = [], []
    for other, per_metric in comp.get("paired", {}).items():
        for k, p in per_metric.items():
            pw = p.get("power") or {}
            rows.append([other, k, str(pw.get("n", p["n"])), num(pw.get("sd")),
                         num(pw.get("mde_80")), str(pw.get(USERS_KEY) or "—")])
            if pw.get("note"):
                notes.append(f"- {other} {k}: {pw['note']}")
    if not rows:
        return []
    head = [f"{ref} vs", "metric", "users", "SD of differences",
            f"MDE at {100 * TARGET_POWER:g}% power", f"users for {TARGET_DIFF:g}"]
    return [f"How large a difference each comparison could see: the smallest true mean "
            f"difference (MDE) a two-sided paired t-test at alpha {ALPHA:g} detects with "
            f"{100 * TARGET_POWER:g}% power on these users, given the SD of their paired "
            f"differences (noncentral t, solved numerically), and the users needed to detect "
            f"{TARGET_DIFF:g} with the same SD. An interval that contains zero while the MDE "
            "is large says too few users, not no effect.", "", *table(head, rows),
            *notes, *([""] if notes else [])]


def fairness_table(comp: Mapping) -> list[str]:
    """Per method: the worst decile of users' mean and the SD over users, per metric."""
    names = comp["metrics"]
    rows = []
    for m, per_metric in comp.get("fairness", {}).items():
        cells = []
        for k in names:
            f = per_metric.get(k, {})
            cells += [num(f.get("worst10_mean")), num(f.get("std"))]
        users = {str(per_metric[k].get("users", 0)) for k in names if k in per_metric}
        rows.append([m, *cells, "/".join(sorted(users)) or "0"])
    if not rows:
        return []
    head = ["method", *(h for k in names for h in (f"{k} worst-10% mean", f"{k} SD")),
            "users"]
    lower = [k for k in names if not comp["higher_is_better"].get(k, True)]
    return ["How the worst-off users fare (pFL-Bench's fairness view): the mean of the "
            "worst 10% of users (at least one user; rounded up) and the standard deviation "
            "over users (population SD)"
            + (f"; for {', '.join(lower)} worst means highest" if lower else "") + ".", "",
            *table(head, rows)]


def projection_table(summary: Mapping) -> list[str]:
    """Bytes each method would move for 1,000 and 10,000 users (and, with rounds, at its
    rounds and ten times as many), from summary.json's communication projections."""
    by_row: dict[tuple[str, int], dict[int, Mapping]] = {}
    for m, comm in summary.get("communication", {}).items():
        for p in (comm or {}).get("projection") or []:
            by_row.setdefault((m, int(p.get("rounds", 1))), {})[int(p["users"])] = p
    if not by_row:
        return []
    sizes = sorted({n for row in by_row.values() for n in row})
    rows = []
    for (m, rounds), row in by_row.items():
        per_user = {human_bytes(p.get("bytes_per_user")) for p in row.values()}
        rows.append([m, str(rounds), *(human_bytes(row[n]["bytes"]) if n in row else "—"
                                       for n in sizes), " / ".join(sorted(per_user))])
    head = ["method", "rounds", *(f"{n:,} users" for n in sizes), "per user"]
    return ["Communication projected from this run's measured bytes (up + down, every "
            "message); methods with rounds at their rounds and at ten times as many.", "",
            *table(head, rows)]


def ceiling_lines(summary: Mapping) -> list[str]:
    """'Best single answer for everyone scores X of the oracle's Y', per metric, from the
    single-answer ceiling (tasks/ceiling.py) the bundled benchmark stores; nothing for
    data that has none (LaMP). Input texts cut at load are said here too."""
    info = summary.get("data_info")
    cut = info.get("texts_cut") if isinstance(info, Mapping) else None
    cut_line = [f"- {cut} input text(s) over 1 MB were cut to 1 MB at load (named in "
                "input_cuts.json): their users answered and trained on the cut text.", ""] \
        if cut else []
    ceil = info.get("single_answer_ceiling") if isinstance(info, Mapping) else None
    if not isinstance(ceil, Mapping) or not isinstance(ceil.get("single_answer"), Mapping):
        return cut_line
    context = f"{ceil.get('users')} simulated users, heterogeneity {ceil.get('heterogeneity')}"
    return [*(f"- Best single answer for everyone scores {best:.4f} of the oracle's "
              f"{ceil['oracle'][metric]:.4f} on {metric} ({context})."
              for metric, best in ceil["single_answer"].items()), "", *cut_line]


def statistics_lines(summary: Mapping, comp: Mapping | None = None) -> list[str]:
    """The verdicts, ceiling, power and fairness of one summary as markdown (for a sweep)."""
    comp = summary_comparisons(summary) if comp is None else comp
    return [*verdict_lines(comp), *ceiling_lines(summary), *power_table(comp),
            *fairness_table(comp)]
