"""Seeded bootstrap CIs, paired tests, power and fairness over users, as plain JSON."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats

from simulation.results.power import paired_power
from simulation.results.verdicts import verdict_sentence

N_RESAMPLES = 4999  # Monte Carlo error of a 95% endpoint is ~1-2% of the interval's width
BCA_MAX_N = 2000  # BCa's jackknife costs O(n^2); above this its correction is negligible
BATCH_VALUES = 2_000_000  # values resampled per batch (bounds memory: ~32 MB)
LOWER_IS_BETTER = frozenset({"mae", "rmse"})
WORST_SHARE = 0.1  # pFL-Bench's bottom decile of users


def higher_is_better(metric: str) -> bool:
    """Direction of a task metric: errors (mae, rmse) go down, scores go up."""
    return metric not in LOWER_IS_BETTER


def _finite(values: Iterable[float]) -> tuple[np.ndarray, int]:
    x = np.asarray([float(v) for v in values], dtype=np.float64)
    keep = np.isfinite(x)
    return x[keep], int((~keep).sum())


def _interval(x: np.ndarray, seed: int, confidence: float, n_resamples: int
              ) -> tuple[float, float, str | None, str | None]:
    """(low, high, method, note) of the bootstrap CI of x's mean; x holds finite values."""
    n, mean = len(x), float(x.mean()) if len(x) else math.nan
    if n < 2:
        return mean, mean, None, f"{n} user(s): no interval (low = high = mean)"
    if np.ptp(x) <= 1e-12 * max(1.0, abs(mean)):
        return mean, mean, None, "no spread: every value is the same (low = high = mean)"
    method = "BCa" if n <= BCA_MAX_N else "percentile"
    res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, method=method,
                          confidence_level=confidence, vectorized=True,
                          batch=max(1, BATCH_VALUES // n), rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high, method, None


def _none_if_nan(v: float) -> float | None:
    return None if math.isnan(v) else v


def mean_ci(values: Iterable[float], seed: int = 0, confidence: float = 0.95,
            n_resamples: int = N_RESAMPLES) -> dict:
    """Mean over users with its bootstrap CI: {mean, low, high, n, method, note}.

    BCa up to BCA_MAX_N users, percentile above. With fewer than two users or no spread
    there is no interval: low = high = mean and `note` says why. Non-finite values are
    dropped (and counted in `note`); with no value at all mean/low/high are None.
    """
    x, dropped = _finite(values)
    low, high, method, note = _interval(x, seed, confidence, n_resamples)
    if dropped:
        note = "; ".join(filter(None, [note, f"{dropped} non-finite value(s) dropped"]))
    return {"mean": _none_if_nan(float(x.mean())) if len(x) else None,
            "low": _none_if_nan(low), "high": _none_if_nan(high), "n": len(x),
            "method": method, "note": note}


def paired(a: Mapping[str, float], b: Mapping[str, float], higher_is_better: bool,
           seed: int = 0, confidence: float = 0.95, n_resamples: int = N_RESAMPLES) -> dict:
    """a against b on the users both have (finite values only); differences are a - b.

    {n, mean_diff, low, high, contains_zero, significant, wins, ties, losses, p, method,
    higher_is_better, note}: wins/losses are from a's side in the metric's direction, ties
    are exact equality; `p` is the two-sided Wilcoxon signed-rank p-value (None when fewer
    than two users or every difference is zero); `significant` means the CI excludes zero
    (never with fewer than two users).
    """
    users = sorted(u for u in a.keys() & b.keys()
                   if math.isfinite(float(a[u])) and math.isfinite(float(b[u])))
    d = np.asarray([float(a[u]) - float(b[u]) for u in users], dtype=np.float64)
    n = len(d)
    low, high, method, note = _interval(d, seed, confidence, n_resamples)
    better = d > 0 if higher_is_better else d < 0
    worse = d < 0 if higher_is_better else d > 0
    notes = [note] if note else []
    p = None
    if n < 2:
        notes.append("Wilcoxon: fewer than two paired users")
    elif not d.any():
        notes.append("Wilcoxon: every difference is zero")
    else:
        p = float(stats.wilcoxon(d).pvalue)
    contains_zero = None if n == 0 else bool(low <= 0.0 <= high)
    return {"n": n, "mean_diff": float(d.mean()) if n else None,
            "low": _none_if_nan(low), "high": _none_if_nan(high),
            "contains_zero": contains_zero,
            "significant": bool(n >= 2 and not contains_zero),
            "wins": int(better.sum()), "ties": int((d == 0).sum()),
            "losses": int(worse.sum()), "p": p, "method": method,
            "higher_is_better": bool(higher_is_better), "note": "; ".join(notes) or None,
            "power": paired_power(d)}


def holm(ps: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values, in their order: the i-th
    smallest of m is multiplied by m - i + 1, kept monotone and capped at 1. None (no
    test) stays None and is not counted in the family."""
    ranked = sorted((p, i) for i, p in enumerate(ps) if p is not None)
    m = len(ranked)
    out: list[float | None] = [None] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (m - rank) * float(p)))
        out[i] = running
    return out


def fairness(values: Iterable[float], higher_is_better: bool, share: float = WORST_SHARE
             ) -> dict:
    """How the worst-off users fare, as pFL-Bench reports it: {worst10_mean, std, users,
    worst_users}: the mean of the worst `share` of users (at least one; worst in the
    metric's direction) and the population SD (ddof 0) over users."""
    x, _ = _finite(values)
    n = len(x)
    if not n:
        return {"worst10_mean": None, "std": None, "users": 0, "worst_users": 0}
    k = max(1, math.ceil(round(share * n, 9)))
    ordered = np.sort(x) if higher_is_better else np.sort(x)[::-1]
    return {"worst10_mean": float(ordered[:k].mean()), "std": float(x.std()), "users": n,
            "worst_users": k}


def _column(per_user: Mapping[str, Mapping[str, float]], metric: str) -> dict[str, float]:
    return {u: float(m[metric]) for u, m in per_user.items()
            if isinstance(m.get(metric), int | float) and not isinstance(m[metric], bool)}


def comparisons(per_user_by_method: Mapping[str, Mapping[str, Mapping[str, float]]],
                metric_names: Iterable[str], reference: str = "cdcda", seed: int = 0,
                confidence: float = 0.95, n_resamples: int = N_RESAMPLES) -> dict:
    """Every method's mean CIs and `reference` against every other method, per metric.

    {reference, metrics, higher_is_better: {metric: bool}, confidence, n_resamples, seed,
     mean_ci: {method: {metric: mean_ci(...)}}, paired: {other: {metric: paired(ref, other)
     plus p_holm}}, fairness: {method: {metric: fairness(...)}}, verdicts: {metric: str},
     note}. `p_holm` adjusts the Wilcoxon p over the family of the reference's comparisons
    on that metric (every other method). Without the reference method `paired` is empty
    and `note` says so.
    """
    names = list(metric_names)
    columns = {m: {k: _column(pu, k) for k in names} for m, pu in per_user_by_method.items()}
    out = {"reference": reference, "metrics": names,
           "higher_is_better": {k: higher_is_better(k) for k in names},
           "confidence": confidence, "n_resamples": n_resamples, "seed": seed,
           "mean_ci": {m: {k: mean_ci(col[k].values(), seed, confidence, n_resamples)
                           for k in names} for m, col in columns.items()},
           "paired": {},
           "fairness": {m: {k: fairness(col[k].values(), higher_is_better(k)) for k in names}
                        for m, col in columns.items()},
           "verdicts": {}, "note": None}
    if reference not in columns:
        out["note"] = f"reference method '{reference}' is not in this run: no paired comparison"
    else:
        ref = columns[reference]
        for other, col in columns.items():
            if other != reference:
                out["paired"][other] = {
                    k: paired(ref[k], col[k], higher_is_better(k), seed, confidence, n_resamples)
                    for k in names}
        for k in names:
            family = [per_metric[k] for per_metric in out["paired"].values()]
            for p, adjusted in zip(family, holm([p["p"] for p in family])):
                p["p_holm"] = adjusted
    out["verdicts"] = {k: verdict_sentence(out, k) for k in names}
    return out
