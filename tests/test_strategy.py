"""The metrics-only strategy against a scripted Grid: arrays rejected, failures counted, resume."""

import json

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from strategies.accounting import Ledger, message_bytes
from strategies.cdcda import AugmentationStrategy, StrategySettings
from strategies.failures import FailureLog


@pytest.fixture(autouse=True)
def server_identity(monkeypatch):
    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


class ScriptedGrid:
    """Answers each message at once from `behaviour(node, message)`; None = never replies."""

    def __init__(self, nodes, behaviour):
        self.nodes = nodes
        self.behaviour = behaviour
        self.pending = {}
        self.sent = []

    def get_node_ids(self):
        return list(self.nodes)

    def push_messages(self, messages):
        ids = []
        for i, msg in enumerate(messages):
            mid = f"m{len(self.sent)}-{i}"
            msg.metadata.__dict__["_message_id"] = mid
            self.sent.append(msg)
            reply = self.behaviour(msg.metadata.dst_node_id, msg)
            if reply is not None:
                self.pending[mid] = reply
            ids.append(mid)
        return ids

    def pull_messages(self, ids):
        out = [self.pending.pop(i) for i in list(ids) if i in self.pending]
        return out


def _reply(msg, user, metrics, arrays=False):
    content = RecordDict({"meta": ConfigRecord({"user-id": user}),
                          "metrics": MetricRecord(metrics)})
    if arrays:
        content["weights"] = ArrayRecord(numpy_ndarrays=[np.ones(4, dtype=np.float32)])
    return Message(content=content, reply_to=msg)


def _strategy(tmp_path, augmenter=None, timeout=2.0, retries=0, **settings):
    aug = augmenter or (lambda seeds, attempt: ({u: [] for u in seeds},
                                                {u: {"kept": 0} for u in seeds}, {}))
    return AugmentationStrategy({"task": "LaMP-2"}, tmp_path, aug,
                                Ledger(tmp_path / "ledger.jsonl"),
                                FailureLog(tmp_path / "failures.jsonl"),
                                StrategySettings(timeout=timeout, retries=retries, **settings))


def test_reply_with_arrays_is_rejected_and_not_stored(tmp_path):
    def behaviour(node, msg):
        user = f"u{node}"
        if msg.metadata.message_type == "query.user":
            return _reply(msg, user, {})
        return _reply(msg, user, {"accuracy": 1.0}, arrays=(node == 2))

    s = _strategy(tmp_path)
    grid = ScriptedGrid([1, 2], behaviour)
    s.discover(grid)
    res = s.run_method(grid, "local_real")
    assert list(res.per_user) == ["u1"]
    assert "arrays" in res.failures["u2"]
    assert not (tmp_path / "results" / "local_real" / "u2.json").exists()


def test_error_timeout_and_garbage_are_counted_and_the_rest_finishes(tmp_path):
    def behaviour(node, msg):
        if msg.metadata.message_type == "query.user":
            return _reply(msg, f"u{node}", {})
        if node == 2:
            return None  # a device that never answers
        if node == 3:  # garbage: no meta record
            return Message(content=RecordDict({"x": MetricRecord({"a": 1.0})}), reply_to=msg)
        return _reply(msg, f"u{node}", {"accuracy": 0.5})

    s = _strategy(tmp_path, timeout=0.3)
    grid = ScriptedGrid([1, 2, 3], behaviour)
    s.discover(grid)
    res = s.run_method(grid, "zero_shot")
    assert res.per_user == {"u1": {"accuracy": 0.5}}
    assert res.failures["u2"].startswith("timeout")
    assert res.failures["u3"].startswith("bad_reply")
    kinds = [(f["user"], f["kind"]) for f in s.failures.entries]
    assert sorted(kinds) == [("u2", "timeout"), ("u3", "bad_reply")]


def test_resume_skips_users_with_stored_results(tmp_path):
    calls = []

    def behaviour(node, msg):
        calls.append((node, msg.metadata.message_type))
        return _reply(msg, f"u{node}", {"accuracy": float(node)})

    s = _strategy(tmp_path)
    grid = ScriptedGrid([1, 2, 3], behaviour)
    s.discover(grid)
    (tmp_path / "results" / "zero_shot").mkdir(parents=True)
    (tmp_path / "results" / "zero_shot" / "u2.json").write_text(json.dumps({"accuracy": 9.0}))
    res = s.run_method(grid, "zero_shot")
    assert [n for n, k in calls if k == "evaluate"] == [1, 3]
    assert res.per_user["u2"] == {"accuracy": 9.0}


def test_cdcda_sends_each_user_only_its_own_synthetic_data(tmp_path):
    got = {}

    def behaviour(node, msg):
        kind = msg.metadata.message_type
        if kind == "query.seeds":
            seeds = [{"description": f"seed of u{node}", "tag": "comedy"}]
            return Message(content=RecordDict({
                "meta": ConfigRecord({"user-id": f"u{node}", "items": json.dumps(seeds)}),
                "metrics": MetricRecord({"num-seeds": 1})}), reply_to=msg)
        if kind == "train":
            got[node] = json.loads(msg.content["synthetic"]["items"])
        return _reply(msg, f"u{node}", {"accuracy": 1.0})

    def augmenter(seeds, attempt):
        items = {u: [{"description": "made for " + s[0]["description"], "tag": "comedy"}]
                 for u, s in seeds.items()}
        return items, {u: {"generated": 1, "kept": 1} for u in seeds}, {}

    s = _strategy(tmp_path, augmenter)
    grid = ScriptedGrid([1, 2], behaviour)
    s.discover(grid)
    s.run_method(grid, "cdcda")
    assert got[1][0]["description"] == "made for seed of u1"
    assert got[2][0]["description"] == "made for seed of u2"
    cached = json.loads((tmp_path / "synthetic" / "u1.json").read_text())
    assert cached["seeds"][0]["description"] == "seed of u1"
    comm = s.ledger.summary("cdcda")
    assert set(comm["by_kind"]) == {"query.seeds", "train"}
    assert comm["bytes_up"] > 0 and comm["bytes_down"] > 0
    records = comm["by_record"]
    assert set(records) == {"config", "synthetic", "meta", "metrics"}
    assert records["synthetic"]["down"] > 0 and records["synthetic"]["up"] == 0
    assert records["meta"]["up"] > records["meta"]["down"] == 0  # seeds travel in meta


def test_ledger_counts_the_protobuf_size():
    content = RecordDict({"metrics": MetricRecord({"a": 1.0})})
    n = message_bytes(content)
    assert 0 < n < 100
    big = RecordDict({"w": ArrayRecord(numpy_ndarrays=[np.ones(1000, dtype=np.float32)])})
    assert message_bytes(big) >= 4000  # the arrays' bytes are on the wire
