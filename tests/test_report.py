"""Intervals and paired tests (simulation.results.stats) and the report rebuilt from summary."""

from __future__ import annotations

import json
import random

import pytest
from scipy import stats as sps

from simulation.results.stats import comparisons, mean_ci, paired

pytestmark = pytest.mark.filterwarnings("error")  # degenerate data must not warn
PNG = b"\x89PNG\r\n\x1a\n"


# --- stats --------------------------------------------------------------------------------
def test_constant_gain_gives_a_point_interval_and_all_wins():
    b = {f"u{i}": i / 40 for i in range(20)}
    a = {u: v + 0.1 for u, v in b.items()}
    r = paired(a, b, higher_is_better=True)
    assert r["n"] == 20 and r["mean_diff"] == pytest.approx(0.1)
    assert r["low"] == pytest.approx(0.1) and r["high"] == pytest.approx(0.1)
    assert (r["wins"], r["ties"], r["losses"]) == (20, 0, 0)
    assert r["contains_zero"] is False and r["significant"] is True


def test_lower_is_better_flips_wins():
    b = {f"u{i}": 2.0 for i in range(6)}
    a = {"u0": 1.0, "u1": 1.5, "u2": 2.0, "u3": 3.0, "u4": 1.0, "u5": 1.0}
    up, down = paired(a, b, True), paired(a, b, False)
    assert (up["wins"], up["ties"], up["losses"]) == (1, 1, 4)
    assert (down["wins"], down["ties"], down["losses"]) == (4, 1, 1)
    assert up["mean_diff"] == down["mean_diff"] == pytest.approx(-0.5 / 6 * 5)


def test_mixed_signs_contain_zero_and_p_matches_scipy():
    rng = random.Random(1)
    users = [f"u{i}" for i in range(15)]
    b = {u: rng.random() for u in users}
    a = {u: b[u] + rng.uniform(-0.2, 0.21) for u in users}
    r = paired(a, b, True, seed=3)
    assert r["contains_zero"] is True and r["significant"] is False
    assert r["low"] < r["mean_diff"] < r["high"]
    assert r["p"] == pytest.approx(sps.wilcoxon([a[u] - b[u] for u in users]).pvalue)
    assert paired(a, b, True, seed=3) == r  # seeded


def test_degenerate_inputs_give_notes_not_nans():
    assert mean_ci([0.5] * 4)["low"] == mean_ci([0.5] * 4)["high"] == 0.5
    one = mean_ci([0.7])
    assert (one["mean"], one["low"], one["high"], one["n"]) == (0.7, 0.7, 0.7, 1) and one["note"]
    assert mean_ci([])["mean"] is None
    same = paired({"a": 1.0, "b": 0.0}, {"a": 1.0, "b": 0.0}, True)
    assert same["p"] is None and "zero" in same["note"] and same["ties"] == 2
    assert paired({"a": 1.0}, {"b": 1.0}, True)["n"] == 0


def test_comparisons_schema_and_missing_reference():
    per_user = {m: {f"u{i}": {"mae": i * s, "rmse": i * s + 1} for i in range(8)}
                for m, s in (("cdcda", 0.1), ("local_real", 0.2), ("zero_shot", 0.3))}
    c = comparisons(per_user, ["mae", "rmse"])
    json.dumps(c, allow_nan=False)
    assert set(c["paired"]) == {"local_real", "zero_shot"}
    assert c["higher_is_better"] == {"mae": False, "rmse": False}
    assert c["paired"]["local_real"]["mae"]["wins"] == 7  # lower mae for u1..u7, tie at u0
    assert c["mean_ci"]["cdcda"]["mae"] == mean_ci([i * 0.1 for i in range(8)])
    assert set(c["fairness"]) == set(per_user) and set(c["verdicts"]) == {"mae", "rmse"}
    assert {"p_holm", "power"} <= set(c["paired"]["zero_shot"]["rmse"])
    del per_user["cdcda"]
    c = comparisons(per_user, ["mae", "rmse"])
    assert c["paired"] == {} and c["note"] and set(c["mean_ci"]) == {"local_real", "zero_shot"}


# --- report -------------------------------------------------------------------------------
# method: (accuracy level, 0 untrained / 1 real data / 2 real + synthetic, bytes up, down)
METHODS = {"zero_shot": (0.30, 0, 0, 0), "local_real": (0.45, 1, 900, 750),
           "cdcda": (0.55, 2, 2000, 1500), "cloud": (0.56, 0, 5e4, 2e4)}


def fake_summary(n_users: int = 12, seed: int = 0) -> dict:
    """A summary.json as simulation.results.summary writes it, with varied per-user results."""
    rng = random.Random(seed)
    users = [f"u{i}" for i in range(n_users)]
    skill = {u: rng.uniform(-0.15, 0.15) for u in users}
    methods, comm = {}, {}
    for m, (level, trained, up, down) in METHODS.items():
        per_user = {}
        for u in users:
            acc = min(1.0, max(0.0, level + skill[u] + rng.uniform(-0.1, 0.1)))
            per_user[u] = {"accuracy": round(acc, 4), "f1": round(acc * 0.8, 4),
                           "gen-seconds": 0.2, "num-queries": 2.0, "ttft-seconds": 0.01}
            if trained:
                per_user[u] |= {"adapter-bytes": 15368.0, "train-seconds": 0.6 * trained,
                                "peak-memory-mb": 860.0, "num-synthetic": 8.0 * (trained - 1)}
        failed = {"u11": "device_error: timeout"} if m == "local_real" else {}
        per_user = {u: v for u, v in per_user.items() if u not in failed}
        means = {k: sum(v[k] for v in per_user.values() if k in v) / len(per_user)
                 for k in per_user["u0"]}
        methods[m] = {"status": "partial" if failed else "ok", "metrics": means,
                      "per_user": per_user, "failures": failed, "missing": []}
        comm[m] = {"bytes_up": up * n_users, "bytes_down": down * n_users,
                   "per_user_mean": {"up": up, "down": down}}
    aug = {"total": {"generated": 96, "kept": 60, "rejected_unparsable": 20,
                     "rejected_duplicate": 16, "cloud_errors": 2},
           "cloud_errors": {"by_cause": {"timeout": 2}}, "users_augmented": n_users}
    return {"experiment": "synthetic", "task": "LaMP-2", "users": users, "status": "partial",
            "problems": [], "warnings": ["local_real: 1 of 12 users failed"],
            "methods": methods, "communication": comm, "augmentation": aug}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A run directory holding the fake summary, and the report built from it once."""
    from simulation.results.report import write_report

    run_dir = tmp_path_factory.mktemp("run")
    (run_dir / "summary.json").write_text(json.dumps(fake_summary()))
    return run_dir, write_report(run_dir).read_text()


def test_report_has_every_method_interval_and_plot(built):
    run_dir, text = built
    for m in METHODS:
        assert f"| {m} | " in text
    assert "not significant: the interval contains zero" in text  # cdcda ~ cloud
    assert "cdcda better: the interval excludes zero" in text
    assert "| 11/1 |" in text and "rejected: unparsable | 20 | 20.8%" in text
    assert "Cloud errors: 2 failed requests: timeout 2." in text
    assert "local_real: 1 of 12 users failed" in text
    for name in ("metrics.png", "gain.png", "bytes.png"):
        png = (run_dir / "report" / name).read_bytes()
        assert png.startswith(PNG) and len(png) > 10_000, name
        assert f"(report/{name})" in text


def test_cli_report_rebuilds_the_same_report(built, tmp_path):
    from simulation.cli import main

    run_dir, text = built
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.md").read_text() == text
    assert main(["report", str(tmp_path)]) == 2  # no summary.json


def test_stored_comparisons_are_used_as_they_are(built, tmp_path):
    from simulation.results.report import write_report

    summary = json.loads((built[0] / "summary.json").read_text())
    per_user = {m: r["per_user"] for m, r in summary["methods"].items()}
    summary["comparisons"] = comparisons(per_user, ["accuracy", "f1"])
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert write_report(tmp_path).read_text() == built[1]


def test_report_without_the_reference_still_gives_intervals(tmp_path):
    from simulation.results.report import write_report

    summary = fake_summary(n_users=5)
    del summary["methods"]["cdcda"], summary["augmentation"]
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    text = write_report(tmp_path).read_text()
    assert "reference method 'cdcda' is not in this run" in text
    assert "per-user gain: not drawn" in text and "| cloud | ok | " in text
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["bytes.png", "metrics.png"]
