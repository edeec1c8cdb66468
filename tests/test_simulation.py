"""End to end on tiny models: the real Flower simulation engine on Ray with 4 users."""

import json
import os

import pytest

from simulation.cli import main
from simulation.results.summary import without_measurements

pytestmark = pytest.mark.e2e


def _run(out, *extra):
    return main(["run", "--config", "configs/tiny.toml", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny config's run, one user per SuperNode; shared by the tests of this module."""
    out = tmp_path_factory.mktemp("k1") / "run"
    assert _run(out) == 0
    return out


def test_four_users_through_flower_on_ray_then_resume(tiny_run):
    out = tiny_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["users"] == ["u0", "u1", "u2", "u3"]
    assert set(summary["methods"]) == {"zero_shot", "profile_prompt", "local_real", "cdcda",
                                       "shared_lora", "fedavg_lora", "fedavg_ft", "cloud"}
    for name, method in summary["methods"].items():
        assert method["failures"] == {}, name
        assert set(method["per_user"]) == {"u0", "u1", "u2", "u3"}
        assert 0.0 <= method["metrics"]["accuracy"] <= 1.0
    cd = summary["methods"]["cdcda"]["per_user"]["u0"]
    assert cd["num-real"] == 4 and cd["adapter-bytes"] > 0
    comm = summary["communication"]
    assert set(comm["cdcda"]["by_kind"]) == {"query.seeds", "train"}
    assert comm["cdcda"]["bytes_up"] > comm["zero_shot"]["bytes_up"]  # seeds went up
    assert set(comm["fedavg_lora"]["by_kind"]) == {"train", "evaluate"}
    assert set(comm["shared_lora"]["by_kind"]) == {"query.data", "evaluate"}
    assert set(comm["cloud"]["by_kind"]) == {"query.prompts", "evaluate"}
    # fedavg_ft: fedavg_lora's rounds, then the adapter down once to fine-tune (the same
    # bytes but for the method's name in each request and reply)
    ft, lora = comm["fedavg_ft"]["by_kind"], comm["fedavg_lora"]["by_kind"]
    assert set(ft) == {"train", "train.finetune"}
    name = len("fedavg_lora") - len("fedavg_ft")
    for way in ("up", "down"):
        assert ft["train"][way] == lora["train"][way] - name * ft["train"]["messages"], way
    assert ft["train.finetune"]["down"] == lora["evaluate"]["down"] - name * 4
    # adapters travel for the shared LoRAs only: far more bytes down than the rest
    assert comm["fedavg_lora"]["bytes_down"] > 10 * comm["local_real"]["bytes_down"]
    assert comm["fedavg_lora"]["bytes_up"] > 10 * comm["local_real"]["bytes_up"]
    assert summary["privacy"]["per_user"]["u0"]["seed_fields"]  # seeds and pooled data
    assert summary["augmentation"]["total"]["generated"] == 4 * 2
    for user in summary["users"]:
        assert (out / "adapters" / user / "adapter_config.json").exists()
        assert (out / "adapters-local_real" / user / "adapter_config.json").exists()
        assert (out / "adapters-fedavg_ft" / user / "adapter_config.json").exists()
    assert (out / "config.toml").exists()

    assert summary["status"] == "ok" and summary["problems"] == []
    # the run wrote its report; `cdcda report DIR` rebuilds the very same one
    report = (out / "report.md").read_text()
    assert "| cdcda |" in report and (out / "report" / "bytes.png").stat().st_size > 10_000
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").read_text() == report
    assert set(summary["comparisons"]["paired"]) == {
        "zero_shot", "profile_prompt", "local_real", "shared_lora", "fedavg_lora", "fedavg_ft",
        "cloud"}
    ledger = (out / "ledger.jsonl").read_text().splitlines()

    # resume: every user is done, so nothing is trained or sent again and the summary,
    # rebuilt from the stored state, is the same (timings aside)
    stamp = (out / "results" / "cdcda" / "u0.json").stat().st_mtime_ns
    assert _run(out) == 0
    again = json.loads((out / "summary.json").read_text())
    assert (out / "results" / "cdcda" / "u0.json").stat().st_mtime_ns == stamp
    new_lines = (out / "ledger.jsonl").read_text().splitlines()[len(ledger):]
    assert {json.loads(x)["kind"] for x in new_lines} == {"query.user"}  # discovery only
    assert without_measurements(again) == without_measurements(summary)
    assert again["sessions"] == 2
    assert "CDCDA_RUN_DIR" not in os.environ  # the run's settings do not leak out


def test_a_cohort_of_three_users_per_supernode_changes_nothing_a_user_sees(
        tiny_run, tmp_path_factory):
    """runtime.cohort = 3: 2 SuperNodes for 4 users; each user gets its result, is charged
    what it was charged with a SuperNode of its own, and what no training touches (base
    model, profile prompt, cloud) comes out identical."""
    from strategies.accounting import charged

    out = tmp_path_factory.mktemp("k3") / "run"  # as long as tiny_run's: same config bytes
    assert len(str(out)) == len(str(tiny_run))
    assert _run(out, "--set", "runtime.cohort=3") == 0
    assert "4 users on 2 SuperNodes answered" in (out / "run.log").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok"
    for name, method in summary["methods"].items():
        assert set(method["per_user"]) == {"u0", "u1", "u2", "u3"}, name

    def charges(run):
        entries = [json.loads(x) for x in (run / "ledger.jsonl").read_text().splitlines()]
        return {(e["method"], e["kind"], e["user"], e.get("round", 0)): e
                for e in charged(entries)}

    alone, cohort = charges(tiny_run), charges(out)
    # discovery, the eight methods' kinds, and the second round of both FedAvg methods
    assert len(alone) == 4 * 16
    assert cohort.keys() == alone.keys()
    for key, entry in alone.items():  # bytes both ways, per record, and seed fields
        assert cohort[key] == entry, key

    def results(run, method):
        return {u: {k: v for k, v in json.loads((run / "results" / method / f"{u}.json")
                                                .read_text()).items()
                    if not k.endswith(("seconds", "per-second"))}
                for u in ("u0", "u1", "u2", "u3")}

    for method in ("zero_shot", "profile_prompt", "cloud"):
        assert results(out, method) == results(tiny_run, method), method


@pytest.mark.parametrize("extra", ["", ";cloud.replicas=1;cloud.num_cpus=0"],
                         ids=["in-process-cloud", "cloud-replica"])
def test_flwr_run_dot_runs_the_same_apps(tmp_path, extra):
    """Flower's own entry point: local SuperLink, federation of 2 SuperNodes, our apps;
    also with the cloud in a Ray replica, which the ServerApp starts on Flower's Ray
    (with no CPU reserved: Flower's device pool holds every CPU there)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    out = tmp_path / "flwr-run"
    flwr = Path(sys.executable).parent / "flwr"
    # flwr starts `flower-superlink` from PATH: the venv's bin must be on it
    env = {**os.environ, "PATH": f"{flwr.parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "FLWR_HOME": str(tmp_path / "flwr-home"),
           "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "FLWR_TELEMETRY_ENABLED": "0",
           "RAY_USAGE_STATS_ENABLED": "0"}
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run([str(flwr), "run", ".", "--stream", "--run-config",
                               f'out="{out}" config-file="configs/tiny.toml" '
                               f'overrides="experiment.methods=[\'zero_shot\',\'cdcda\']{extra}"'],
                              cwd=root, env=env, timeout=300, capture_output=True, text=True)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        deadline = time.time() + 120
        while not (out / "summary.json").exists() and time.time() < deadline:
            time.sleep(1)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["users"] == ["u0", "u1"]  # Flower's default federation size
        assert set(summary["methods"]) == {"zero_shot", "cdcda"}
        assert summary["methods"]["cdcda"]["failures"] == {}
        # the cloud answered every request (through the replica where there is one)
        assert summary["augmentation"]["total"]["generated"] == 4
        assert summary["augmentation"]["total"]["cloud_errors"] == 0
        assert summary["config"]["cloud"]["replicas"] == (1 if extra else 0)
    finally:  # `flwr run` leaves its local SuperLink running: stop the one we started
        subprocess.run(["pkill", "-f", str(tmp_path / "flwr-home")], check=False)


def test_malformed_lamp_data_fails_before_the_simulation_starts(tmp_path, capsys):
    data = tmp_path / "lamp"
    data.mkdir()
    (data / "dev_questions.json").write_text(json.dumps([{"id": "q1", "input": "x",
                                                          "profile": [{"id": "p1"}]}]))
    code = main(["run", "--config", "configs/tiny.toml", "--out", str(tmp_path / "run"),
                 "--set", "data.source=lamp", "--set", f"data.dir={data}",
                 "--set", "data.task=LaMP-3"])
    assert code == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "dev_questions.json" in err and "p1" in err and "'text'" in err
