"""The shared baselines against a scripted Grid: FedAvg's mean and traffic, the pooled
shared LoRA, and the cloud answering each user's own prompts."""

import json

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from test_strategy import ScriptedGrid

from strategies.accounting import Ledger, record_bytes
from strategies.failures import FailureLog
from strategies.methods.base import Services
from strategies.methods.fedavg_lora import FedAvgSettings
from strategies.strategy import AugmentationStrategy, StrategySettings


@pytest.fixture(autouse=True)
def server_identity(monkeypatch):
    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def _reply(msg, node, metrics, arrays=None, **meta):
    user = f"u{node}"
    content = RecordDict({f"meta/{user}": ConfigRecord({"user-id": user, **meta}),
                          f"metrics/{user}": MetricRecord(metrics)})
    if arrays is not None:
        content[f"arrays/{user}"] = arrays
    return Message(content=content, reply_to=msg)


def _arrays(value: float) -> ArrayRecord:
    return ArrayRecord(numpy_ndarrays=[np.full((3, 4), value, dtype=np.float32),
                                       np.full(5, 2 * value, dtype=np.float32)])


def _strategy(tmp_path, services):
    return AugmentationStrategy({"task": "LaMP-2"}, tmp_path, None,
                                Ledger(tmp_path / "ledger.jsonl"),
                                FailureLog(tmp_path / "failures.jsonl"),
                                StrategySettings(timeout=2.0, retries=0), services=services)


def _services(**kw):
    base = dict(train_pooled=lambda method, pooled: _arrays(0.0),
                initial_adapter=lambda method: _arrays(0.0),
                answer=lambda prompts, owners: ["comedy"] * len(prompts))
    return Services(**{**base, **kw})


def test_fedavg_global_adapter_is_the_example_weighted_mean_and_traffic_adds_up(tmp_path):
    examples = {1: 1.0, 2: 3.0, 3: 4.0}
    evaluated = {}

    def behaviour(node, msg):
        kind = msg.metadata.message_type
        if kind == "query.user":
            return _reply(msg, node, {})
        glob = msg.content["arrays"]
        if kind == "train":  # each client moves the global adapter by its own node number
            new = ArrayRecord(numpy_ndarrays=[a.numpy() + node for a in glob.values()])
            return _reply(msg, node, {"num-examples": examples[node]}, arrays=new)
        evaluated[node] = [a.numpy() for a in glob.values()]
        return _reply(msg, node, {"accuracy": 1.0})

    rounds = 2
    s = _strategy(tmp_path, _services(fedavg=FedAvgSettings(rounds=rounds, local_steps=1)))
    grid = ScriptedGrid([1, 2, 3], behaviour)
    s.discover(grid)
    res = s.run_method(grid, "fedavg_lora")
    assert set(res.per_user) == {"u1", "u2", "u3"} and res.failures == {}
    # each round adds the example-weighted mean of the clients' moves: (1*1 + 2*3 + 3*4) / 8
    step = (1 * 1 + 2 * 3 + 3 * 4) / 8
    for got in evaluated.values():
        np.testing.assert_allclose(got[0], np.full((3, 4), rounds * step), rtol=1e-6)
        np.testing.assert_allclose(got[1], np.full(5, rounds * step), rtol=1e-6)
    # adapter traffic: rounds x participants x adapter bytes, in each direction
    adapter = record_bytes(RecordDict({"arrays": _arrays(1.0)}))["arrays"]
    train = [e for e in s.ledger.entries if e["kind"] == "train"]
    assert len(train) == rounds * 3
    assert sum(e["records_down"]["arrays"] for e in train) == rounds * 3 * adapter
    assert sum(e["records_up"]["arrays"] for e in train) == rounds * 3 * adapter
    # and the run is charged every round (a round is not a resumed repeat of the last)
    charged = s.ledger.summary("fedavg_lora")
    assert charged["by_kind"]["train"]["messages"] == rounds * 3
    assert charged["by_record"]["arrays"]["up"] == rounds * 3 * adapter
    # the arrays guard is off for fedavg_lora's train replies only
    assert not [f for f in s.failures.entries if f["kind"] == "arrays"]


def test_shared_lora_trains_one_adapter_on_everyones_data_once(tmp_path):
    pools, sent = [], {}

    def behaviour(node, msg):
        kind = msg.metadata.message_type
        if kind == "query.data":
            items = [{"description": f"movie {node}.{i}", "tag": "comedy"} for i in range(node)]
            return _reply(msg, node, {"num-examples": node}, items=json.dumps(items))
        if kind == "evaluate":
            sent[node] = next(iter(msg.content["arrays"].values())).numpy()
        return _reply(msg, node, {"accuracy": 0.5})

    def train_pooled(method, pooled):
        pools.append(pooled)
        return _arrays(7.0)

    s = _strategy(tmp_path, _services(train_pooled=train_pooled))
    grid = ScriptedGrid([1, 2, 3], behaviour)
    s.discover(grid)
    s.run_method(grid, "shared_lora")
    assert len(pools) == 1 and {u: len(v) for u, v in pools[0].items()} == {
        "u1": 1, "u2": 2, "u3": 3}
    assert all((a == 7.0).all() for a in sent.values()) and len(sent) == 3
    # every uploaded example is counted, field by field, as data that left the device
    seeds = [e for e in s.ledger.entries if e["kind"] == "query.data"]
    assert sum(e["fields_up"]["description"] for e in seeds) == sum(
        len(f"movie {n}.{i}") for n in (1, 2, 3) for i in range(n))
    # a resumed run reuses the stored adapter instead of training again
    (tmp_path / "results" / "shared_lora" / "u2.json").unlink()
    s.run_method(grid, "shared_lora")
    assert len(pools) == 1


def test_cloud_answers_each_users_own_prompts_and_failures_are_cloud_errors(tmp_path):
    from server.backends import CloudError

    scored = {}

    def behaviour(node, msg):
        kind = msg.metadata.message_type
        if kind == "query.prompts":
            return _reply(msg, node, {"num-queries": 2},
                          items=json.dumps([f"q{node}a", f"q{node}b"]))
        if kind == "evaluate":
            scored[node] = json.loads(msg.content[f"answers/u{node}"]["items"])
        return _reply(msg, node, {"accuracy": 1.0})

    def answer(prompts, owners):
        assert owners == [f"u{n}" for n in (1, 1, 2, 2, 3, 3)]  # each prompt's own user
        return [CloudError("timeout") if p.startswith("q3") else p.upper() for p in prompts]

    s = _strategy(tmp_path, _services(answer=answer))
    grid = ScriptedGrid([1, 2, 3], behaviour)
    s.discover(grid)
    res = s.run_method(grid, "cloud")
    assert scored == {1: ["Q1A", "Q1B"], 2: ["Q2A", "Q2B"]}
    assert "cloud_error" in res.failures["u3"]
    up = [e for e in s.ledger.entries if e["kind"] == "query.prompts"]
    assert sum(e["fields_up"]["prompt"] for e in up) == 3 * 2 * len("q1a")


def test_fedavg_ft_fine_tunes_fedavg_lora_s_global_adapter_on_each_device(tmp_path):
    inits, finetuned = [], {}

    def behaviour(node, msg):
        kind = msg.metadata.message_type
        if kind == "query.user":
            return _reply(msg, node, {})
        glob = msg.content["arrays"]
        if kind == "train":
            new = ArrayRecord(numpy_ndarrays=[a.numpy() + node for a in glob.values()])
            return _reply(msg, node, {"num-examples": float(node)}, arrays=new)
        if kind == "train.finetune":  # metrics only: the fine-tuned adapter stays here
            finetuned[node] = [a.numpy() for a in glob.values()]
            return _reply(msg, node, {"accuracy": 1.0},
                          arrays=_arrays(9.0) if node == 3 else None)
        return _reply(msg, node, {"accuracy": 0.5})

    def initial_adapter(method):
        inits.append(method)
        return _arrays(0.0)

    s = _strategy(tmp_path, _services(initial_adapter=initial_adapter,
                                      fedavg=FedAvgSettings(rounds=2, local_steps=1)))
    grid = ScriptedGrid([1, 2, 3], behaviour)
    s.discover(grid)
    s.run_method(grid, "fedavg_lora")
    res = s.run_method(grid, "fedavg_ft")
    # both start from the adapter seeded for fedavg_lora: the same rounds, trained once
    assert inits == ["fedavg_lora"]
    assert json.loads((tmp_path / "shared" / "fedavg_ft" / "state.json").read_text())[
        "adopted_from"] == "fedavg_lora"
    glob = np.load(tmp_path / "shared" / "fedavg_lora" / "global.npz")
    for got in finetuned.values():
        np.testing.assert_array_equal(got[0], glob[glob.files[0]])
    # a fine-tune reply that carries weights is rejected: only FedAvg's rounds may
    assert set(res.per_user) == {"u1", "u2"} and res.failures["u3"].startswith("arrays")
    # the same rounds, to the byte but for the method's name in each request's config
    ft, lora = s.ledger.summary("fedavg_ft"), s.ledger.summary("fedavg_lora")
    name = len("fedavg_lora") - len("fedavg_ft")
    assert ft["by_kind"]["train"]["up"] == lora["by_kind"]["train"]["up"]
    assert ft["by_kind"]["train"]["down"] == lora["by_kind"]["train"]["down"] - 6 * name
    assert ft["by_kind"]["train.finetune"]["down"] == \
        lora["by_kind"]["evaluate"]["down"] - 3 * name


def _fedavg_grid(trained):
    def behaviour(node, msg):
        kind = msg.metadata.message_type
        if kind == "query.user":
            return _reply(msg, node, {})
        glob = msg.content["arrays"]
        if kind == "train":  # as a device replies: the method's name in the meta
            trained.append(node)
            new = ArrayRecord(numpy_ndarrays=[a.numpy() + node for a in glob.values()])
            return _reply(msg, node, {"num-examples": float(node)}, arrays=new,
                          method=msg.content["config"]["method"])
        return _reply(msg, node, {"sum": float(sum(a.numpy().sum() for a in glob.values()))})

    return ScriptedGrid([1, 2, 3], behaviour)


def _fedavg_run(path, methods, request=None):
    trained = []
    s = AugmentationStrategy({"task": "LaMP-2", **(request or {})}, path, None,
                             Ledger(path / "ledger.jsonl"), FailureLog(path / "failures.jsonl"),
                             StrategySettings(timeout=2.0, retries=0),
                             services=_services(fedavg=FedAvgSettings(rounds=2,
                                                                      local_steps=1)))
    grid = _fedavg_grid(trained)
    s.discover(grid)
    results = {m: s.run_method(grid, m) for m in methods}
    return s, results, trained


def test_fedavg_ft_taking_fedavg_lora_s_rounds_ends_as_training_its_own(tmp_path):
    both, res_both, trained_both = _fedavg_run(tmp_path / "both", ["fedavg_lora", "fedavg_ft"])
    alone, res_alone, trained_alone = _fedavg_run(tmp_path / "alone", ["fedavg_ft"])
    assert len(trained_both) == len(trained_alone) == 6  # 2 rounds x 3 users, once each
    assert res_both["fedavg_ft"].per_user == res_alone["fedavg_ft"].per_user
    a = np.load(tmp_path / "both" / "shared" / "fedavg_ft" / "global.npz")
    b = np.load(tmp_path / "alone" / "shared" / "fedavg_ft" / "global.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    # charged as if its own rounds had crossed the network: to the byte, per round
    got, want = both.ledger.summary("fedavg_ft"), alone.ledger.summary("fedavg_ft")
    assert got["by_kind"] == want["by_kind"] and got["by_record"] == want["by_record"]
    rounds = sorted(e.get("round", 0) for e in both.ledger.entries
                    if e["method"] == "fedavg_ft" and e["kind"] == "train")
    assert rounds == [0, 0, 0, 1, 1, 1]
    # adopting again (a resume after a kill before the state was written) charges nothing
    (tmp_path / "both" / "shared" / "fedavg_ft" / "state.json").unlink()
    (tmp_path / "both" / "shared" / "fedavg_ft" / "global.npz").unlink()
    both.run_method(_fedavg_grid([]), "fedavg_ft")
    assert both.ledger.summary("fedavg_ft")["by_kind"] == want["by_kind"]
    # the other way round: fedavg_lora takes fedavg_ft's rounds
    _, _, trained = _fedavg_run(tmp_path / "reversed", ["fedavg_ft", "fedavg_lora"])
    assert len(trained) == 6
    state = json.loads((tmp_path / "reversed" / "shared" / "fedavg_lora" / "state.json")
                       .read_text())
    assert state["adopted_from"] == "fedavg_ft"


def test_fedavg_rounds_are_not_taken_over_with_faults_or_lost_participants(tmp_path):
    faults = {"faults": json.dumps({"crash": 0.0, "hang": 0.0, "garbage": 0.1, "die": 0.0})}
    _, _, trained = _fedavg_run(tmp_path / "faults", ["fedavg_lora", "fedavg_ft"], faults)
    assert len(trained) == 12  # each method ran its own rounds: faults are drawn per method
    s, _, _ = _fedavg_run(tmp_path / "lost", ["fedavg_lora"])
    state = tmp_path / "lost" / "shared" / "fedavg_lora" / "state.json"
    stored = json.loads(state.read_text())
    assert stored["complete"] is True
    state.write_text(json.dumps({**stored, "complete": False}))
    trained = []
    s.run_method(_fedavg_grid(trained), "fedavg_ft")
    assert len(trained) == 6


def test_a_fedavg_participant_returning_nan_is_left_out_of_the_mean(tmp_path):
    def behaviour(node, msg):
        kind = msg.metadata.message_type
        if kind == "query.user":
            return _reply(msg, node, {})
        if kind == "train":
            value = float("nan") if node == 3 else float(node)
            return _reply(msg, node, {"num-examples": 1.0}, arrays=_arrays(value))
        return _reply(msg, node, {"accuracy": 1.0})

    s = _strategy(tmp_path, _services(fedavg=FedAvgSettings(rounds=1, local_steps=1)))
    grid = ScriptedGrid([1, 2, 3], behaviour)
    s.discover(grid)
    s.run_method(grid, "fedavg_lora")
    glob = np.load(tmp_path / "shared" / "fedavg_lora" / "global.npz")
    assert np.isfinite(glob[glob.files[0]]).all()
    np.testing.assert_allclose(glob[glob.files[0]], 1.5)  # the mean of nodes 1 and 2 only
    assert [(f["user"], f["kind"]) for f in s.failures.entries] == [("u3", "non_finite")]
