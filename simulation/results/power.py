"""Power of a paired comparison over users: the smallest gap it could see, users it needs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05  # two-sided
TARGET_POWER = 0.8
TARGET_DIFF = 0.02  # the gap in a metric that `users_for_0.02` is sized for
USERS_KEY = "users_for_0.02"
NORMAL_ABOVE = 1_000_000  # users: past this the t and the normal test agree to ~1e-6
TEST = "paired t-test, two-sided, noncentral t (scipy.stats.nct)"


def t_power(effect: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t-test on n pairs when the true mean difference is
    `effect` standard deviations of the differences."""
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = effect * math.sqrt(n)
    wrong_side = float(stats.nct.cdf(-crit, df, nc))  # <= alpha/2; NaN once it underflows
    return float(stats.nct.sf(crit, df, nc)) + (wrong_side if math.isfinite(wrong_side) else 0.0)


def mde(sd: float, n: int, power: float = TARGET_POWER, alpha: float = ALPHA) -> float:
    """Smallest true mean difference the test detects with `power` on n pairs whose
    differences have standard deviation sd (solved numerically; n >= 2, sd > 0)."""
    hi = 1.0
    while t_power(hi, n, alpha) < power:  # power rises with the effect: bracket the root
        hi *= 2
    effect = optimize.brentq(lambda e: t_power(e, n, alpha) - power, 0.0, hi, xtol=1e-12)
    return float(effect * sd)


def _normal_users(effect: float, power: float, alpha: float) -> int:
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return max(2, math.ceil(round((z / effect) ** 2, 9)))


def users_needed(diff: float, sd: float, power: float = TARGET_POWER,
                 alpha: float = ALPHA) -> int:
    """Fewest pairs (>= 2) whose paired t-test detects a true difference `diff` with
    `power`, given differences with standard deviation sd: bisection on n, which the
    normal approximation brackets; past NORMAL_ABOVE users the normal answer itself."""
    effect = abs(diff) / sd
    guess = _normal_users(effect, power, alpha)
    if guess > NORMAL_ABOVE:
        return guess
    lo, hi = 1, max(guess, 2)  # t needs a few more users than the normal test
    while t_power(effect, hi, alpha) < power:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:  # invariant: power(lo) < target <= power(hi) (lo = 1: no test)
        mid = (lo + hi) // 2
        if t_power(effect, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def paired_power(diffs: Sequence[float] | np.ndarray) -> dict:
    """What n users with these paired differences could detect: {n, sd, mde_80,
    users_for_0.02, alpha, target_power, test, note}. sd is the sample SD (ddof 1); with
    fewer than two users or no spread there is no answer (None) and `note` says why."""
    d = np.asarray(diffs, dtype=np.float64)
    n = len(d)
    out = {"n": n, "sd": None, "mde_80": None, USERS_KEY: None, "alpha": ALPHA,
           "target_power": TARGET_POWER, "test": TEST, "note": None}
    if n < 2:
        out["note"] = f"{n} user(s): no SD of the differences, no power"
        return out
    sd = float(d.std(ddof=1))
    out["sd"] = sd
    if sd <= 1e-12 * max(1.0, float(np.abs(d).max())):
        out["note"] = "no spread in the differences: the t-test's power is undefined"
        return out
    out["mde_80"] = mde(sd, n)
    out[USERS_KEY] = users_needed(TARGET_DIFF, sd)
    return out
