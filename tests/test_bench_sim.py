"""`cdcda bench sim`: Flower's engine on Ray, overhead per user per round, as JSON."""

from __future__ import annotations

import json
import math

import pytest

from simulation.bench.sim import GOAL_MS, report
from simulation.cli import main
from simulation.config import load_config


def test_report_divides_by_users_not_nodes():
    cfg = load_config(None, ["experiment.users=100"])
    got = {"users_found": 100, "nodes": 100, "discovery_seconds": 2.0,
           "round_seconds": [0.1, 0.3], "zero_shot_seconds": 5.0, "failures": 0}
    peaks = {"driver_mb": 400.0, "workers_mb": 1000.0, "worker_max_mb": 600.0,
             "total_mb": 2000.0, "workers": 2}
    out = report(cfg, got, wall=10.0, peaks=peaks)
    assert out["overhead_ms_per_user_round"] == pytest.approx(2.0)  # 0.2 s / 100 users
    assert out["round_ms_per_user"] == [1.0, 3.0]
    assert out["meets_goal"] is (2.0 <= GOAL_MS)
    assert out["zero_shot_ms_per_user"] == pytest.approx(50.0)
    assert out["startup_and_teardown_seconds"] == pytest.approx(10.0 - 2.0 - 0.4 - 5.0)
    assert out["peak_memory_mb"]["workers"] == 1000.0
    assert set(out["versions"]) == {"flwr", "ray", "python"}


def test_bad_arguments_are_named(capsys):
    assert main(["bench", "sim", "--users", "0"]) == 2
    assert "--users" in capsys.readouterr().err


@pytest.mark.e2e
def test_bench_sim_on_four_users_through_flower_on_ray(capsys):
    assert main(["bench", "sim", "--users", "4", "--rounds", "1"]) == 0
    out = json.loads(capsys.readouterr().out)  # stdout is the JSON and nothing else
    assert out["users"] == out["users_found"] == 4
    assert out["nodes"] == math.ceil(4 / out["cohort"])
    assert out["rounds"] == 1 and out["zero_shot_failures"] == 0
    for key in ("overhead_ms_per_user_round", "zero_shot_ms_per_user", "discovery_seconds",
                "wall_seconds"):
        assert math.isfinite(out[key]) and out[key] > 0, key
    mem = out["peak_memory_mb"]
    assert mem["driver"] > 50 and mem["workers"] > 50 and mem["worker_processes"] >= 1
    assert mem["all"] >= mem["driver"] + mem["workers"]
    assert out["versions"]["flwr"] and out["versions"]["ray"]
