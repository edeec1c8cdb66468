"""What a run costs the machine: timings.json across sessions, the memory sampler, and the
summary's `scale` block (left out of the resumed-vs-uninterrupted comparison)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from simulation.config import load_config
from simulation.results.summary import TIMINGS_FILE, USERS_FILE, build_summary, without_measurements
from simulation.running.measure import FIELDS, MemorySampler, Timings, merge_peaks, sample
from tasks.files import write_json

CFG = ["experiment.methods=['zero_shot','local_real']", "experiment.users=3"]


def _session(run_dir, peaks: dict, method_seconds: float, discovery: float) -> None:
    t = Timings(run_dir)
    t.discovered(discovery, nodes=3)
    t.memory(peaks)
    t.begin("zero_shot")
    t.add("zero_shot", method_seconds)
    t.save()


def test_sessions_add_time_and_keep_the_highest_memory(tmp_path):
    _session(tmp_path, {"driver_mb": 300, "workers_mb": 900, "worker_max_mb": 500,
                        "total_mb": 1500, "workers": 2}, 4.0, 0.3)
    _session(tmp_path, {"driver_mb": 350, "workers_mb": 700, "worker_max_mb": 600,
                        "total_mb": 1400, "workers": 2}, 1.0, 0.5)
    data = json.loads((tmp_path / TIMINGS_FILE).read_text())
    assert data["sessions"] == 2
    assert data["methods"]["zero_shot"] == pytest.approx(5.0)
    assert data["discovery"] == {"seconds": pytest.approx(0.8), "rounds": 2, "nodes": 3}
    assert data["peak_memory"] == {"driver_mb": 350, "workers_mb": 900, "worker_max_mb": 600,
                                   "total_mb": 1500, "workers": 2}
    assert "running" not in data


def test_merge_peaks_is_a_field_by_field_maximum():
    assert merge_peaks({}, {"driver_mb": 1.0}) == {**{k: 0.0 for k in FIELDS}, "driver_mb": 1.0}
    assert merge_peaks({"workers": 3}, {"workers": 2})["workers"] == 3


def test_sample_sees_this_process_and_a_ray_worker_child():
    # a child that looks like a Ray worker (its title starts with ray::) and one that does not
    worker = subprocess.Popen(["bash", "-c", "exec -a ray::ClientAppActor.run sleep 30"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)
        s = sample()
        assert s["driver_mb"] > 10 and s["workers"] >= 1 and s["worker_max_mb"] > 0
        assert s["workers_mb"] >= s["worker_max_mb"]
        assert s["total_mb"] > s["driver_mb"] + s["workers_mb"]  # the other child counts too
    finally:
        for p in (worker, other):
            p.kill()
            p.wait()


def test_sampler_reports_every_second_and_once_more_at_stop():
    seen = []
    with MemorySampler(interval=0.05, on_sample=seen.append) as sampler:
        time.sleep(0.3)
    assert len(seen) >= 3
    assert sampler.peaks["driver_mb"] > 10
    assert all(seen[i]["driver_mb"] <= seen[i + 1]["driver_mb"] for i in range(len(seen) - 1))


def test_sampler_finds_workers_started_after_it_by_listing_the_tree_again():
    with MemorySampler(interval=0.02, relist=3) as sampler:
        assert sampler.peaks["workers"] == 0
        worker = subprocess.Popen(["bash", "-c", "exec -a ray::IDLE sleep 30"])
        try:
            time.sleep(0.5)
        finally:
            worker.kill()
            worker.wait()
    assert sampler.peaks["workers"] >= 1 and sampler.peaks["worker_max_mb"] > 0


def test_sampler_sees_workers_of_a_run_shorter_than_its_relisting_period():
    # CI failed `bench sim` once: 4 users ran in under 10 samples and the workers,
    # started after the first listing, were never listed again
    with MemorySampler(interval=0.02, relist=1000) as sampler:
        worker = subprocess.Popen(["bash", "-c", "exec -a ray::IDLE sleep 30"])
        try:
            time.sleep(0.5)
        finally:
            worker.kill()
            worker.wait()
    assert sampler.peaks["workers"] >= 1 and sampler.peaks["worker_max_mb"] > 0


def _stored_run(run_dir, timings: dict) -> dict:
    cfg = load_config(None, CFG)
    write_json(run_dir / USERS_FILE, {"users": ["u0", "u1", "u2"]})
    for m in ("zero_shot", "local_real"):
        for i, u in enumerate(["u0", "u1", "u2"]):
            write_json(run_dir / "results" / m / f"{u}.json",
                       {"accuracy": i / 2, "num-examples": 2.0, "user-seconds": 0.1 * i})
    write_json(run_dir / TIMINGS_FILE, timings)
    return build_summary(run_dir, cfg, "LaMP-2", ["accuracy"], statistics=False)


def test_scale_block_and_resumed_equality(tmp_path):
    one = {"seconds": 60.0, "sessions": 1, "methods": {"zero_shot": 3.0, "local_real": 30.0},
           "discovery": {"seconds": 0.6, "rounds": 1, "nodes": 3},
           "peak_memory": {"driver_mb": 400.0, "workers_mb": 1200.0, "worker_max_mb": 610.0,
                           "total_mb": 2100.0, "workers": 2}}
    s = _stored_run(tmp_path / "a", one)
    sc = s["scale"]
    assert sc["users"] == 3 and sc["nodes"] == 3 and sc["cohort"] == 1
    assert sc["wall_seconds"] == 60.0 and sc["seconds_per_user"] == pytest.approx(20.0)
    assert sc["discovery_ms_per_user"] == pytest.approx(200.0)  # 0.6 s / 1 round / 3 users
    assert sc["method_ms_per_user"] == {"zero_shot": pytest.approx(1000.0),
                                        "local_real": pytest.approx(10000.0)}
    assert sc["peak_memory_mb"] == {"driver": 400.0, "workers": 1200.0, "worker_max": 610.0,
                                    "all": 2100.0, "worker_processes": 2}
    assert all(math.isfinite(v) for v in (sc["wall_seconds"], sc["discovery_ms_per_user"]))

    # the same stored results after two sessions: only the measurements differ
    two = {**one, "seconds": 75.0, "sessions": 2,
           "discovery": {"seconds": 1.4, "rounds": 2, "nodes": 3},
           "peak_memory": {**one["peak_memory"], "driver_mb": 450.0}}
    r = _stored_run(tmp_path / "b", two)
    assert r["scale"]["discovery_ms_per_user"] == pytest.approx(1400 / 2 / 3)
    assert r["scale"] != s["scale"]
    x, y = without_measurements(s), without_measurements(r)
    assert "scale" not in x and "sessions" not in x
    assert x == y


def test_a_run_without_timings_still_has_a_scale_block(tmp_path):
    s = _stored_run(tmp_path, {})
    assert s["scale"]["wall_seconds"] == 0.0 and s["scale"]["peak_memory_mb"]["all"] == 0.0


def test_terminal_line_names_time_overhead_and_memory(tmp_path):
    from rich.console import Console

    from simulation.commands import _print_summary

    s = _stored_run(tmp_path, {"seconds": 60.0, "discovery": {"seconds": 0.6, "rounds": 1},
                               "peak_memory": {"driver_mb": 400.0, "workers_mb": 1200.0,
                                               "worker_max_mb": 610.0, "total_mb": 2100.0,
                                               "workers": 2}})
    console = Console(record=True, width=200)
    _print_summary(s, console)
    text = console.export_text()
    assert "3 users in 60 s" in text and "discovery 200.0 ms/user" in text
    assert "driver 400 MiB" in text and "workers 1200 MiB" in text


def test_report_header_carries_the_scale_line(tmp_path):
    from simulation.results.report import write_report

    s = _stored_run(tmp_path, {"seconds": 60.0, "discovery": {"seconds": 0.6, "rounds": 1,
                                                              "nodes": 3},
                               "peak_memory": {"driver_mb": 400.0, "workers_mb": 1200.0,
                                               "worker_max_mb": 610.0, "total_mb": 2100.0,
                                               "workers": 2}})
    (tmp_path / "summary.json").write_text(json.dumps(s))
    text = write_report(tmp_path).read_text()
    assert "Scale: 3 users on 3 SuperNodes (1 per node), 60 s (20.00 s per user)" in text
    assert "200.0 ms per user" in text and "all processes 2100 MiB" in text
