"""A sweep's results, rebuilt from its points' summary.json files alone: sweep.csv (one row
per point x method), sweep.md (each point's means, intervals and verdicts, and the winner
along the swept values) and plots (simulation/results/sweep_plots.py)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path

from simulation.results.sweep_plots import metric_names, plot_against_bytes, plot_against_value
from simulation.results.tables import projection_table, statistics_lines, summary_comparisons
from tasks.files import atomic_dir, load_stored, write_text

SWEEP_FILE = "sweep.json"
SWEEP_MD = "sweep.md"
SWEEP_CSV = "sweep.csv"
PLOT_DIR = "sweep"


def load_points(out: Path) -> tuple[dict, list[dict]]:
    """The sweep's plan and, per point, its values, status, summary and comparisons (None
    if absent)."""
    plan = load_stored(out / SWEEP_FILE)
    if plan is None:
        raise ValueError(f"{out} holds no sweep ({SWEEP_FILE} is missing or unreadable)")
    points = []
    for p in plan["points"]:
        summary = load_stored(out / p["dir"] / "summary.json")
        status = summary.get("status", "?") if summary else "not run"
        points.append({"dir": p["dir"], "values": p["values"], "status": status,
                       "summary": summary,  # and its statistics, computed once
                       "comp": summary_comparisons(summary) if summary else None})
    return plan, points


def rows(plan: Mapping, points: list[dict]) -> list[dict]:
    """One row per point x method: the swept values, status, users, each metric's mean
    and 95% CI, and bytes per user (up + down)."""
    out = []
    for p in points:
        s = p["summary"]
        if not s:
            continue
        comp = p["comp"]
        for method, res in s["methods"].items():
            comm = s["communication"].get(method, {}).get("per_user_mean", {})
            row = {**p["values"], "method": method, "status": res["status"],
                   "users": len(res["per_user"])}
            for k in comp["metrics"]:
                ci = comp["mean_ci"].get(method, {}).get(k, {})
                row[k] = ci.get("mean")
                row[f"{k}_low"], row[f"{k}_high"] = ci.get("low"), ci.get("high")
            row["bytes_per_user"] = comm.get("up", 0.0) + comm.get("down", 0.0)
            out.append(row)
    return out


def paired_rows(points: list[dict]) -> list[dict]:
    """One row per point x other method: the reference minus it, per user (each metric's
    mean difference and its paired interval), as `rows` holds means."""
    out = []
    for p in points:
        comp = p["comp"]
        if not comp:
            continue
        for other, by_metric in comp["paired"].items():
            row = {**p["values"], "method": f"{comp['reference']} - {other}"}
            for k, d in by_metric.items():
                if d and d.get("mean_diff") is not None:
                    row[k], row[f"{k}_low"], row[f"{k}_high"] = \
                        d["mean_diff"], d["low"], d["high"]
            out.append(row)
    return out


def _csv(rows_: list[dict]) -> str:
    columns: list[str] = []
    for r in rows_:
        columns += [c for c in r if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    for r in rows_:
        writer.writerow({c: _cell(r.get(c)) for c in columns})
    return buf.getvalue()


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _num(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def _markdown(plan: Mapping, points: list[dict], rows_: list[dict], plots: list) -> list[str]:
    keys = list(plan["grid"])
    lines = ["# Sweep", "", f"Config: `{plan.get('config') or 'default'}`"
             + (f", with {', '.join(f'`{o}`' for o in plan['overrides'])}"
                if plan.get("overrides") else ""), "",
             "Grid: " + "; ".join(f"`{k}` in {json.dumps(v)}" for k, v in plan["grid"].items()),
             "", "| point | status | users | methods |", "|---|---|---|---|"]
    for p in points:
        s = p["summary"] or {}
        lines.append(f"| {_point(p, keys)} | {p['status']} | {len(s.get('users', []))} | "
                     f"{len(s.get('methods', {}))} |")
    lines.append("")
    metrics = metric_names(rows_)
    methods = list(dict.fromkeys(r["method"] for r in rows_))
    for k in metrics:
        lines += [f"## {k}: mean [95% CI] per point", "",
                  "| method | " + " | ".join(_point(p, keys) for p in points if p["summary"])
                  + " |", "|---|" + "---|" * sum(1 for p in points if p["summary"])]
        for m in methods:
            cells = []
            for p in points:
                if not p["summary"]:
                    continue
                r = next((r for r in rows_ if r["method"] == m and
                          all(r.get(key) == p["values"][key] for key in keys)), None)
                cells.append("—" if r is None or r.get(k) is None else
                             f"{_num(r[k])} [{_num(r[f'{k}_low'])}, {_num(r[f'{k}_high'])}]")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
        lines += _winners(points, rows_, keys, k) + [""]
        lines += _paired(points, keys, k)
    lines += _verdicts(points, keys)
    lines += ["## Plots", ""] + [f"![{t}]({PLOT_DIR}/{f})" if f else f"- {t}" for t, f in plots]
    return lines


def _point(p: Mapping, keys: list[str]) -> str:
    return ", ".join(f"{k.split('.')[-1]} = {p['values'][k]}" for k in keys)


def _winners(points: list[dict], rows_: list[dict], keys: list[str], k: str) -> list[str]:
    """Per point, the best method by mean, and the methods whose CI overlaps its own."""
    out = []
    for p in points:
        here = [r for r in rows_ if all(r.get(key) == p["values"][key] for key in keys)
                and r.get(k) is not None]
        if not here:
            continue
        higher = p["comp"]["higher_is_better"][k]
        best = (max if higher else min)(here, key=lambda r: r[k])
        close = [r["method"] for r in here if r is not best and
                 r[f"{k}_high"] >= best[f"{k}_low"] and r[f"{k}_low"] <= best[f"{k}_high"]]
        out.append(f"- {_point(p, keys)}: best mean {best['method']} ({_num(best[k])}); "
                   + (f"its interval overlaps {', '.join(close)}'s" if close else
                      "no other method's interval overlaps it"))
    return out


def _paired(points: list[dict], keys: list[str], k: str) -> list[str]:
    """The reference method minus each other method, per user, at each point: the mean
    difference and its 95% paired bootstrap interval (simulation/results/stats)."""
    done = [p for p in points if p["summary"]]
    comps = [p["comp"] for p in done]
    if not comps:
        return []
    ref = comps[0]["reference"]
    others = list(dict.fromkeys(o for c in comps for o in c["paired"]))
    lines = [f"{ref} minus each method, per user ({k}): mean difference [95% paired "
             "bootstrap CI]", "", "| vs | " + " | ".join(_point(p, keys) for p in done) + " |",
             "|---|" + "---|" * len(done)]
    for other in others:
        cells = []
        for c in comps:
            d = c["paired"].get(other, {}).get(k)
            cells.append("—" if not d or d.get("mean_diff") is None else
                         f"{d['mean_diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")
        lines.append(f"| {other} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _verdicts(points: list[dict], keys: list[str]) -> list[str]:
    """Each point's verdicts, single-answer ceiling, power, fairness and bytes at scale, as
    in its own report."""
    lines = ["## Each point's statistics", ""]
    for p in points:
        if p["summary"]:
            lines += [f"### {_point(p, keys)}", "", *statistics_lines(p["summary"], p["comp"]),
                      *projection_table(p["summary"]), ""]
    return lines


def write_sweep_report(out: Path | str) -> Path:
    """DIR/sweep.md, DIR/sweep.csv and DIR/sweep/*.png from the points' summaries."""
    out = Path(out)
    plan, points = load_points(out)
    rows_ = rows(plan, points)
    keys = list(plan["grid"])
    with atomic_dir(out / PLOT_DIR) as tmp:
        plots = plot_against_value(tmp, rows_, keys) + \
            plot_against_value(tmp, paired_rows(points), keys, paired=True) + \
            plot_against_bytes(tmp, rows_, keys)
    write_text(out / SWEEP_CSV, _csv(rows_))
    return write_text(out / SWEEP_MD, "\n".join(_markdown(plan, points, rows_, plots)) + "\n")
