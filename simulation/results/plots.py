"""The report's plots (matplotlib, no pyplot): metrics with CIs, per-user gains, bytes."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no display, no global backend state
from matplotlib.ticker import NullFormatter

DPI = 120
MAX_BARS = 200  # more users than this: the gain plot draws a sorted curve, not bars


def human_bytes(v) -> str:
    if v is None:
        return "—"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if v >= size:
            return f"{v / size:.1f} {unit}"
    return f"{v:.0f} B"


MARKERS = "osD^vPX*"


def save_png(fig: Figure, folder: Path, name: str) -> str:
    fig.savefig(folder / name, dpi=DPI, metadata={"Software": None})
    return name


def style_of(methods) -> dict[str, dict]:
    """One colour and marker per method, the same in every plot (markers tell apart
    methods whose points coincide)."""
    return {m: {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)]}
            for i, m in enumerate(methods)}


def _direction(comp: Mapping, k: str) -> str:
    return "higher is better" if comp["higher_is_better"][k] else "lower is better"


def _point(ax, x: float, c: Mapping, style: Mapping, label: str | None = None) -> None:
    # open markers: methods whose points coincide stay visible through each other
    ax.errorbar([x], [c["mean"]], yerr=[[c["mean"] - c["low"]], [c["high"] - c["mean"]]],
                capsize=5, ms=8, mfc="none", mew=1.8, ls="none", label=label, **style)


def plot_metrics(folder: Path, comp: Mapping, names: list[str]) -> tuple[str, str]:
    methods = list(comp["mean_ci"])
    style = style_of(methods)
    fig = Figure(figsize=(1.2 + 0.8 * len(methods) * len(names), 4.2), layout="constrained")
    for ax, k in zip(fig.subplots(1, len(names), squeeze=False)[0], names):
        for x, m in enumerate(methods):
            if comp["mean_ci"][m][k]["mean"] is not None:
                _point(ax, x, comp["mean_ci"][m][k], style[m])
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_title(f"{k} ({_direction(comp, k)})")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Task metrics by method: mean over users, 95% bootstrap CI")
    return "task metrics by method", save_png(fig, folder, "metrics.png")


def _gain_panel(ax, gains: list[tuple[float, str]], p: Mapping, sign: float, title: str,
                ylabel: str) -> None:
    """One comparison's per-user gains, sorted, with a zero line; ties drawn as dots."""
    y = [g for g, _ in gains]
    x = range(len(y))
    if len(y) <= MAX_BARS:
        ax.bar(x, y, color=["C2" if g > 0 else "C3" if g < 0 else "0.6" for g in y])
        ax.plot([i for i in x if y[i] == 0], [0] * y.count(0), "o", color="0.5", ms=3)
    else:
        ax.fill_between(x, y, color="C0", alpha=0.5, step="mid")
    if 0 < len(y) <= 30:
        ax.set_xticks(x, [u for _, u in gains], rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(y)} users, sorted by gain")
    ax.axhline(0, color="k", lw=0.8)
    mean = "—"
    if p["mean_diff"] is not None:
        lo, hi = sorted((sign * p["low"], sign * p["high"]))
        mean = f"{sign * p['mean_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}]"
    ax.set_title(f"{title}\nmean gain {mean}", fontsize=9)  # two lines: never clipped
    ax.text(0.01, 0.97, f"W/T/L {p['wins']}/{p['ties']}/{p['losses']}", fontsize=8,
            transform=ax.transAxes, va="top")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def plot_gain(folder: Path, per_user: Mapping, comp: Mapping, names: list[str]
               ) -> tuple[str, str]:
    ref = comp["reference"]
    others = list(comp["paired"])  # every method: none is singled out
    if not others:
        return f"per-user gain: not drawn ({ref} and another method are needed)", ""
    fig = Figure(figsize=(5.5 * len(names), 3.4 * len(others)), layout="constrained")
    axes = fig.subplots(len(others), len(names), squeeze=False)
    for row, other in zip(axes, others):
        for ax, k in zip(row, names):
            sign = 1.0 if comp["higher_is_better"][k] else -1.0
            a, b = per_user.get(ref, {}), per_user.get(other, {})
            gains = sorted((sign * (a[u][k] - b[u][k]), u) for u in a.keys() & b.keys()
                           if k in a[u] and k in b[u])
            _gain_panel(ax, gains, comp["paired"][other][k], sign, f"{ref} over {other}, {k}",
                        f"gain in {k}\n(> 0: {ref} better)")
    return f"per-user gain of {ref}", save_png(fig, folder, "gain.png")


def plot_bytes(folder: Path, s: Mapping, comp: Mapping, k: str) -> tuple[str, str]:
    methods = [m for m, c in comp["mean_ci"].items() if c[k]["mean"] is not None]
    style = style_of(comp["mean_ci"])
    comm = s.get("communication", {})
    sent = {m: sum(comm.get(m, {}).get("per_user_mean", {}).get(d, 0) for d in ("up", "down"))
            for m in methods}
    positive = [v for v in sent.values() if v > 0]
    floor = min(positive) / 10 if positive else 1.0  # log(0) is undefined: zero sits here
    xs = {m: v if v > 0 else floor for m, v in sent.items()}
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.subplots()
    for m in methods:
        _point(ax, xs[m], comp["mean_ci"][m][k], style[m],
               f"{m} ({human_bytes(sent[m])})" if sent[m] > 0 else f"{m} (0 B, drawn at floor)")
    if len(positive) < len(methods):
        ax.axvline(floor, color="0.5", ls=":", lw=1)
        ax.text(floor, 0.99, " 0 bytes", transform=ax.get_xaxis_transform(), fontsize=7,
                va="top", color="0.4")
    ax.set_xscale("log")
    if xs:  # at least three decades, so that the axis has labelled powers of ten
        lo, hi = min(xs.values()) / 3, max(xs.values()) * 3
        widen = max(1.0, (1e3 * lo / hi) ** 0.5)
        ax.set_xlim(lo / widen, hi * widen)
    ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short ranges
    ax.set_xlabel("bytes per user, up + down (log scale)")
    ax.set_ylabel(f"{k} ({_direction(comp, k)})")
    ax.set_title(f"{k} (mean, 95% CI) against communication per user")
    ax.grid(alpha=0.3)
    if methods:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return f"{k} against bytes per user", save_png(fig, folder, "bytes.png")
