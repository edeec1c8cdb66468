"""One plain sentence per metric saying whom the reference beats, ties and loses to."""

from __future__ import annotations

from collections.abc import Mapping


def _and(items: list[str]) -> str:
    if not items:
        return "none"
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _holm(p: Mapping) -> str:
    v = p.get("p_holm")
    if v is None:
        return f"{p['other']} (Holm p —)"
    return f"{p['other']} (Holm p {v:.3g})" if v > 0 else f"{p['other']} (Holm p < 1e-300)"


def outcome(p: Mapping) -> str:
    """'beats' | 'ties' | 'loses' | 'none' for one paired result: a claim only when the
    paired bootstrap interval excludes zero, in the metric's direction."""
    if p["n"] < 2:
        return "none"
    if not p["significant"]:
        return "ties"
    return "beats" if (p["mean_diff"] > 0) == p["higher_is_better"] else "loses"


def verdict_sentence(comp: Mapping, metric: str) -> str:
    """The reference against every other method on `metric`, in one sentence that follows
    the paired bootstrap intervals (Holm-adjusted Wilcoxon p beside each claim)."""
    ref = comp["reference"]
    paired = comp.get("paired", {})
    if not paired:
        return f"{metric}: no paired comparison ({comp.get('note') or 'no other method'})."
    groups: dict[str, list[str]] = {"beats": [], "ties": [], "loses": [], "none": []}
    for other, per_metric in paired.items():
        p = per_metric.get(metric)
        if p is None:
            groups["none"].append(other)
            continue
        kind = outcome(p)
        groups[kind].append(_holm({**p, "other": other}) if kind in ("beats", "loses")
                            else other)
    level = f"{100 * comp.get('confidence', 0.95):g}%"
    text = (f"{metric}: {ref} beats {_and(groups['beats'])}, ties {_and(groups['ties'])}, "
            f"and loses to {_and(groups['loses'])}")
    if groups["none"]:
        text += f"; fewer than two shared users with {_and(groups['none'])}, so no claim"
    return text + (f" ({level} paired bootstrap intervals; Holm-adjusted Wilcoxon p beside "
                   "each claim).")
