"""cdcda_active: rounds at cdcda's budget, a loss per seed sent up and counted, the next
round written from the weakest seeds, the adapter carried on between rounds, and a run
resumed mid-way giving the same result."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from simulation.cli import main
from simulation.config import load_config
from strategies.methods.cdcda_active import weakest
from tasks.structured import ConfigError

pytestmark = pytest.mark.e2e
USERS = ("u0", "u1", "u2", "u3")


def _run(out, url: str) -> dict:
    assert main(["run", "--config", "configs/tiny.toml", "--out", str(out),
                 "--set", "experiment.methods=['cdcda', 'cdcda_active']",
                 "--set", "augment.n=4", "--set", "augment.rounds=2",
                 "--set", "device.train.steps=4", "--set", "device.seeds.k=4",
                 "--set", "cloud.backend=openai", "--set", f"cloud.openai.base_url={url}",
                 "--set", "cloud.openai.model=stand-in"]) == 0
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def active_run(tmp_path_factory, stand_in_cloud):
    out = tmp_path_factory.mktemp("active") / "run"
    return out, _run(out, stand_in_cloud.url), stand_in_cloud


def test_weakest_is_the_highest_loss_half_in_seed_order():
    seeds = [{"x": str(i)} for i in range(5)]
    assert weakest(seeds, [0.1, 3.0, 0.2, 2.0, 0.3]) == [seeds[1], seeds[3], seeds[4]]
    assert weakest(seeds[:1], [9.0]) == seeds[:1]
    assert weakest(seeds, []) == seeds  # no signal yet: every seed


def test_active_spends_cdcda_budget_in_rounds(active_run):
    out, summary, _ = active_run
    by = {m: a["total"] for m, a in summary["augmentation_by_method"].items()}
    assert by["cdcda"]["generated"] == by["cdcda_active"]["generated"] == 16
    assert by["cdcda_active"]["kept"] > 0  # the stand-in's candidates parse
    report = (out / "report.md").read_text()
    for m in ("cdcda", "cdcda_active"):  # each method's own filter table
        assert f"## Augmentation ({m})\n\n4 users augmented." in report
    for user in USERS:
        a = summary["methods"]["cdcda"]["per_user"][user]
        b = summary["methods"]["cdcda_active"]["per_user"][user]
        assert a["train-steps"] == b["train-steps"] == 4
        assert b["round-steps"] == 2 and b["active-rounds"] == 2
        state = json.loads((out / "active" / f"{user}.json").read_text())
        kept = sum(len(r["items"]) for r in state["rounds"])
        assert b["num-synthetic"] == kept  # the last round trained on every round's data
        assert (out / "adapters-cdcda_active" / user / "adapter_model.safetensors").exists()


def test_each_round_sends_a_loss_per_seed_and_the_next_aims_at_the_weakest(active_run):
    out, summary, cloud = active_run
    for user in USERS:
        state = json.loads((out / "active" / f"{user}.json").read_text())
        seeds, (first, second) = state["seeds"], state["rounds"]
        for r in (first, second):
            assert len(r["signal"]) == len(seeds) == 4
            assert all(math.isfinite(x) and x > 0 for x in r["signal"])
        focus = [seeds[i] for i in second["focus"]]
        assert focus == weakest(seeds, first["signal"]) and len(focus) == 2
        rest = [s for s in seeds if s not in focus]
        # round 1's prompts show the focus seeds and none of the others
        aimed = [p for p in cloud.prompts if all(s["description"] in p for s in focus)
                 and not any(s["description"] in p for s in rest)]
        assert len(aimed) >= 2, user
        # training went on from round 0's adapter: its loss on the seeds kept falling
        assert sum(second["signal"]) < sum(first["signal"])
    up = summary["communication"]["cdcda_active"]
    assert "train.round" in json.dumps(up)  # the signal's message kind is accounted
    rounds = json.loads((out / "active" / "rounds.json").read_text())["rounds"]
    assert [rounds[r]["generated"] for r in ("0", "1")] == [8, 8]
    assert all(rounds[r]["cloud_seconds"] > 0 and rounds[r]["users"] == 4 for r in rounds)


def test_a_run_resumed_after_round_0_gives_the_same_result(active_run, tmp_path):
    out, summary, cloud = active_run
    again = tmp_path / "run"
    shutil.copytree(out, again)
    # as if the run had died after u1's round 0: its round 1 and result are lost
    state = json.loads((again / "active" / "u1.json").read_text())
    state["rounds"], state["done"] = state["rounds"][:1], 1
    (again / "active" / "u1.json").write_text(json.dumps(state))
    (again / "results" / "cdcda_active" / "u1.json").unlink()
    shutil.rmtree(again / "adapters-cdcda_active-rounds" / "u1" / "1")
    resumed = _run(again, cloud.url)
    keys = ("accuracy", "f1", "train-steps", "num-synthetic", "first-loss", "last-loss")
    for user in USERS:
        a = summary["methods"]["cdcda_active"]["per_user"][user]
        b = resumed["methods"]["cdcda_active"]["per_user"][user]
        assert {k: a[k] for k in keys} == {k: b[k] for k in keys}, user
    old = out / "adapters-cdcda_active" / "u1" / "adapter_model.safetensors"
    new = again / "adapters-cdcda_active" / "u1" / "adapter_model.safetensors"
    assert old.read_bytes() == new.read_bytes()


def test_active_needs_steps_and_a_candidate_per_round():
    with pytest.raises(ConfigError, match="device.train.steps"):
        load_config("configs/tiny.toml", ["experiment.methods=['cdcda_active']",
                                          "device.train.steps=0"])
    with pytest.raises(ConfigError, match="device.train.steps"):  # a round of 0 steps
        load_config("configs/tiny.toml", ["experiment.methods=['cdcda_active']",
                                          "device.train.steps=2", "augment.rounds=3",
                                          "augment.n=8"])
    with pytest.raises(ConfigError, match="augment.n"):
        load_config("configs/tiny.toml", ["experiment.methods=['cdcda_active']",
                                          "device.train.steps=4", "augment.n=1",
                                          "augment.rounds=2"])
