"""`cdcda sweep` end to end on tiny models: points as resumable runs, a failed point named
and the others kept, sweep.md / sweep.csv rebuilt byte for byte from the points."""

from __future__ import annotations

import csv
import json
import statistics

import pytest

from simulation.cli import main
from simulation.running.sweep import parse_grid

SETS = ["--set", "experiment.methods=['zero_shot','local_real']", "--set", "experiment.users=3",
        "--set", "runtime.retries=0"]


def test_grid_items_parse_to_values_and_bad_ones_name_the_item():
    assert parse_grid(["data.heterogeneity=0,0.5,1", "data.benchmark=tags,rating"]) == {
        "data.heterogeneity": [0, 0.5, 1], "data.benchmark": ["tags", "rating"]}
    assert parse_grid(["a.b=1,2", "a.b=3"]) == {"a.b": [3]}  # a later item replaces
    for bad in ("data.heterogeneity", "=1,2", "data.queries="):
        with pytest.raises(ValueError, match="must look like"):
            parse_grid([bad])
    with pytest.raises(ValueError, match="listed twice"):
        parse_grid(["data.queries=1,1"])


def test_a_bad_grid_value_fails_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = main(["sweep", "--config", "configs/tiny.toml", "--grid", "data.queries=2,0",
                 "--out", str(out), *SETS])
    assert code == 2
    err = capsys.readouterr().err
    assert "grid point data.queries=0" in err and "queries" in err
    assert not (out / "points").exists()


@pytest.mark.e2e
def test_sweep_runs_each_point_keeps_the_good_ones_and_rebuilds_its_report(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--config", "configs/tiny.toml", "--grid", "faults.device.crash=0,1",
            "--out", str(out), *SETS]
    assert main(args) == 1  # the point where every device crashes fails; it is named
    err = capsys.readouterr().err
    assert "point faults.device.crash=1:" in err
    good, bad = out / "points" / "faults.device.crash=0", out / "points" / "faults.device.crash=1"
    assert json.loads((good / "summary.json").read_text())["status"] == "ok"
    assert json.loads((bad / "summary.json").read_text())["status"] == "failed"
    assert (good / "report.md").is_file()

    # sweep.csv: one row per point x method, each mean the mean of the stored results
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [(r["faults.device.crash"], r["method"]) for r in rows] == [
        ("0", "zero_shot"), ("0", "local_real"), ("1", "zero_shot"), ("1", "local_real")]
    for r in rows[:2]:
        accs = [json.loads(f.read_text())["accuracy"]
                for f in sorted((good / "results" / r["method"]).glob("*.json"))]
        assert float(r["accuracy"]) == pytest.approx(statistics.mean(accs), abs=1e-5)
        assert float(r["accuracy_low"]) <= float(r["accuracy"]) <= float(r["accuracy_high"])
        assert float(r["bytes_per_user"]) > 0 and r["users"] == "3"
    md = (out / "sweep.md").read_text()
    assert "faults.device.crash" in md and "## accuracy: mean [95% CI] per point" in md
    for png in ("accuracy-by-value.png", "accuracy-bytes.png"):
        assert (out / "sweep" / png).stat().st_size > 5_000
    assert "-paired.png" not in md  # the reference (cdcda) did not run: nothing to draw

    # `cdcda report DIR` rebuilds the sweep's report byte for byte
    csv_text = (out / "sweep.csv").read_text()
    assert main(["report", str(out)]) == 0
    assert (out / "sweep.md").read_text() == md and (out / "sweep.csv").read_text() == csv_text

    # a rerun skips the finished point and runs the failed one again (it resumes)
    stamp = (good / "results" / "local_real" / "u0.json").stat().st_mtime_ns
    assert main(args) == 1
    assert (good / "results" / "local_real" / "u0.json").stat().st_mtime_ns == stamp
    assert "done already" in capsys.readouterr().err


def test_a_sweep_over_tasks_reports_each_task_s_own_metrics(tmp_path):
    """Tags is scored by accuracy and F1, headlines by ROUGE: each table and plot has the
    points that have its metric, the others show a dash."""
    out = tmp_path / "sweep"
    assert main(["sweep", "--config", "configs/tiny.toml", "--grid",
                 "data.benchmark=tags,headline", "--out", str(out), *SETS]) == 0
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    by = {(r["data.benchmark"], r["method"]): r for r in rows}
    assert by[("tags", "local_real")]["accuracy"] and not by[("tags", "local_real")]["rouge-1"]
    assert by[("headline", "local_real")]["rouge-1"] and not by[("headline", "local_real")]["f1"]
    md = (out / "sweep.md").read_text()
    for metric in ("accuracy", "f1", "rouge-1", "rouge-L"):
        assert f"## {metric}: mean [95% CI] per point" in md
        assert (out / "sweep" / f"{metric}-by-value.png").stat().st_size > 5_000


def test_paired_differences_are_drawn_per_point_against_zero(tmp_path):
    from simulation.results.sweep import paired_rows
    from simulation.results.sweep_plots import plot_against_value

    def point(value, diff):
        d = {"mean_diff": diff, "low": diff - 0.02, "high": diff + 0.02}
        return {"values": {"augment.filters": value},
                "comp": {"reference": "cdcda", "paired": {"local_real": {"rouge-1": d}}}}

    rows = paired_rows([point(True, 0.01), point(False, -0.03),
                        {"values": {"augment.filters": None}, "comp": None}])  # not run
    assert rows == [
        {"augment.filters": True, "method": "cdcda - local_real", "rouge-1": 0.01,
         "rouge-1_low": pytest.approx(-0.01), "rouge-1_high": 0.03},
        {"augment.filters": False, "method": "cdcda - local_real", "rouge-1": -0.03,
         "rouge-1_low": -0.05, "rouge-1_high": pytest.approx(-0.01)}]
    (title, name), = plot_against_value(tmp_path, rows, ["augment.filters"], paired=True)
    assert title == "rouge-1 paired differences against augment.filters"
    assert (tmp_path / name).stat().st_size > 5_000
    assert plot_against_value(tmp_path, [], ["augment.filters"], paired=True) == []
