"""A sweep's plots: each metric's mean with its 95% CI against the swept value (one line per
method), the reference method's paired differences against it, and each metric against
bytes per user."""

from __future__ import annotations

import itertools
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no display, no global backend state

from simulation.results.plots import save_png, style_of


def metric_names(rows: list[dict]) -> list[str]:
    """Every metric some row has, in order of first appearance (a sweep over tasks mixes
    ROUGE points with accuracy points)."""
    out: list[str] = []
    for r in rows:
        out += [k for k in r if f"{k}_low" in r and k not in out]
    return out


def _numeric(values: list) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def plot_against_value(folder: Path, rows: list[dict], keys: list[str],
                       paired: bool = False) -> list[tuple]:
    """Per metric: x = the first grid key, one panel per combination of the others.

    `paired`: rows are the reference method minus each other one (the paired per-user
    difference and its interval; `method` names the pair), drawn against a zero line.
    """
    if not rows:
        return [] if paired else [("no point has results yet", "")]
    x_key, rest = keys[0], keys[1:]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    style = style_of(methods)
    xs = list(dict.fromkeys(r[x_key] for r in rows))
    numeric = _numeric(xs)
    panels = list(itertools.product(*[list(dict.fromkeys(r[k] for r in rows)) for k in rest]))
    out = []
    for k in metric_names(rows):
        fig = Figure(figsize=(2.8 + 4.2 * len(panels), 4.2), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, panel in zip(axes, panels):
            where = dict(zip(rest, panel))
            spread = 0.012 * ((max(xs) - min(xs)) if numeric and len(xs) > 1 else 1)
            for i, m in enumerate(methods):
                pts = [r for r in rows if r["method"] == m and r.get(k) is not None
                       and all(r[q] == v for q, v in where.items())]
                pts.sort(key=lambda r: xs.index(r[x_key]))
                # methods side by side around each x: overlapping intervals stay readable
                shift = (i - (len(methods) - 1) / 2) * spread
                x = [(r[x_key] if numeric else xs.index(r[x_key])) + shift for r in pts]
                y = [r[k] for r in pts]
                err = [[r[k] - r[f"{k}_low"] for r in pts], [r[f"{k}_high"] - r[k] for r in pts]]
                ax.errorbar(x, y, yerr=err, capsize=3, mfc="none", label=m, **style[m])
            if not numeric:
                ax.set_xticks(range(len(xs)), [str(v) for v in xs])
            if paired:
                ax.axhline(0.0, color="0.4", lw=0.8)
            ax.set_xlabel(x_key)
            ax.set_ylabel(f"{k}: paired difference per user (95% CI)" if paired
                          else f"{k} (mean over users, 95% CI)")
            ax.set_title(", ".join(f"{q} = {v}" for q, v in where.items()) or k)
            ax.grid(alpha=0.3)
        fig.legend(*axes[-1].get_legend_handles_labels(), fontsize=8,
                   loc="outside right upper")  # beside the panels, never over a line
        what, name = (f"{k} paired differences", "paired") if paired else (k, "by-value")
        out.append((f"{what} against {x_key}", save_png(fig, folder, f"{_safe(k)}-{name}.png")))
    return out


def plot_against_bytes(folder: Path, rows: list[dict], keys: list[str]) -> list[tuple]:
    """Per metric: each point x method at its bytes per user (log scale)."""
    if not rows:
        return []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    style = style_of(methods)
    out = []
    for k in metric_names(rows):
        fig = Figure(figsize=(7.6, 4.4), layout="constrained")
        ax = fig.subplots()
        for m in methods:
            pts = [r for r in rows if r["method"] == m and r.get(k) is not None]
            x = [max(r["bytes_per_user"], 1.0) for r in pts]
            err = [[r[k] - r[f"{k}_low"] for r in pts], [r[f"{k}_high"] - r[k] for r in pts]]
            ax.errorbar(x, [r[k] for r in pts], yerr=err, ls="none", capsize=3, mfc="none",
                        label=m, **style[m])
        ax.set_xscale("log")
        ax.set_xlabel("bytes per user, up + down (log scale)")
        ax.set_ylabel(f"{k} (mean, 95% CI)")
        ax.set_title(f"{k} against communication, every point of {', '.join(keys)}")
        ax.grid(alpha=0.3, which="both")
        fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside right upper")
        out.append((f"{k} against bytes per user", save_png(fig, folder, f"{_safe(k)}-bytes.png")))
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


