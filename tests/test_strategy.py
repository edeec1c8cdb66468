"""The metrics-only strategy against a scripted Grid: arrays rejected, failures counted, resume."""

import json
import time

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from strategies.accounting import Ledger, message_bytes
from strategies.failures import FailureLog
from strategies.strategy import AugmentationStrategy, StrategySettings
from tasks.files import mark_started


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
            self.receive(mid, msg)
            ids.append(mid)
        return ids

    def receive(self, mid, msg):
        """A message arrives: its reply, if any, waits to be pulled."""
        reply = self.behaviour(msg.metadata.dst_node_id, msg)
        if reply is not None:
            self.pending[mid] = reply

    def pull_messages(self, ids):
        out = [self.pending.pop(i) for i in list(ids) if i in self.pending]
        return out


def _records(user, metrics, arrays=False, **meta):
    """One user's records in a reply, named "<record>/<user>" (clients/protocol.py)."""
    out = {f"meta/{user}": ConfigRecord({"user-id": user, **meta}),
           f"metrics/{user}": MetricRecord(metrics)}
    if arrays:
        out[f"weights/{user}"] = ArrayRecord(numpy_ndarrays=[np.ones(4, dtype=np.float32)])
    return out


def _reply(msg, user, metrics, arrays=False, **meta):
    return Message(content=RecordDict(_records(user, metrics, arrays, **meta)), reply_to=msg)


def _users(msg):
    """The users a request is for (none for discovery)."""
    return json.loads(msg.content["config"].get("users", "[]"))


def _strategy(tmp_path, augmenter=None, timeout=2.0, retries=0, **settings):
    aug = augmenter or (lambda seeds, attempt, **_: ({u: [] for u in seeds},
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
            return Message(content=RecordDict({"metrics/u3": MetricRecord({"a": 1.0})}),
                           reply_to=msg)
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
            return _reply(msg, f"u{node}", {"num-seeds": 1}, items=json.dumps(seeds))
        if kind == "train":
            got[node] = json.loads(msg.content[f"synthetic/u{node}"]["items"])
        return _reply(msg, f"u{node}", {"accuracy": 1.0})

    def augmenter(seeds, attempt, **_):
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


class TimedGrid(ScriptedGrid):
    """Devices that start and answer later: `plan(node, msg)` -> (start_after, work, reply);
    start_after None = never starts, reply None = never answers. A device drops its start
    marker (as the real ClientApp does) once it starts."""

    def __init__(self, nodes, plan, run_dir):
        super().__init__(nodes, behaviour=lambda node, msg: None)
        self.plan, self.run_dir, self.timed = plan, run_dir, {}

    def push_messages(self, messages):
        ids = super().push_messages(messages)
        now = time.time()
        for mid, msg in zip(ids, messages):
            if msg.metadata.message_type == "query.user":
                self.pending[mid] = _reply(msg, f"u{msg.metadata.dst_node_id}", {})
            else:
                start, work, reply = self.plan(msg.metadata.dst_node_id, msg)
                self.timed[mid] = (None if start is None else now + start, work, reply)
        return ids

    def pull_messages(self, ids):
        now = time.time()
        for mid, (start, work, reply) in list(self.timed.items()):
            if start is not None and now >= start:
                mark_started(self.run_dir, mid)
                if reply is not None and now >= start + work:
                    self.pending[mid] = reply
                    del self.timed[mid]
        return super().pull_messages(ids)


def test_a_timeout_counts_from_when_the_device_starts_not_from_the_push(tmp_path):
    def plan(node, msg):
        ok = _reply(msg, f"u{node}", {"accuracy": 1.0})
        return {1: (0.0, 0.3, ok),      # quick
                2: (0.4, 0.5, ok),      # queued behind u1: answers 0.9 s after the push
                3: (0.0, None, None),   # starts and hangs
                4: (None, None, None),  # never picked up
                }[node]

    s = _strategy(tmp_path, timeout=0.6)
    grid = TimedGrid([1, 2, 3, 4], plan, tmp_path)
    s.discover(grid)
    res = s.run_method(grid, "zero_shot")
    assert set(res.per_user) == {"u1", "u2"}  # u2 waited its turn and did not time out
    assert "after the device started" in res.failures["u3"]
    assert "nothing started or replied" in res.failures["u4"]
    # start markers cleaned up; the two timed-out messages are marked given up
    assert [p.name for p in (tmp_path / ".inflight").iterdir()] == ["given-up"]
    assert len(list((tmp_path / ".inflight" / "given-up").iterdir())) == 2


def test_failed_devices_are_retried_and_the_failure_stays_in_the_log(tmp_path):
    def behaviour(node, msg):
        attempt = msg.content["config"]["attempt"]
        if msg.metadata.message_type == "query.user":
            return _reply(msg, f"u{node}", {})
        if node == 2 and attempt == 0:
            return Message(Error(code=0, reason="ClientAppException occurred. Message: boom"),
                           reply_to=msg)
        if node == 3:  # a NaN metric is garbage, every time
            return _reply(msg, "u3", {"accuracy": float("nan")})
        return _reply(msg, f"u{node}", {"accuracy": 1.0})

    s = _strategy(tmp_path, retries=2)
    grid = ScriptedGrid([1, 2, 3], behaviour)
    s.discover(grid)
    res = s.run_method(grid, "local_real")
    assert set(res.per_user) == {"u1", "u2"}
    assert list(res.failures) == ["u3"] and "not a finite number" in res.failures["u3"]
    log = [(f["user"], f["kind"], f["attempt"]) for f in s.failures.entries]
    assert log == [("u2", "device_error", 0), ("u3", "bad_reply", 0), ("u3", "bad_reply", 1),
                   ("u3", "bad_reply", 2)]
    assert s.failures.entries[0]["detail"] == "boom"  # the device's own message
    comm = s.ledger.summary("local_real")
    assert comm["failed_exchanges"]["exchanges"] == 4  # failed attempts are charged


def _seeds_reply(msg, node, fields=("description", "tag")):
    seed = {"description": f"seed of u{node}", "tag": "comedy"}
    items = [{f: seed[f] for f in fields}]
    return _reply(msg, f"u{node}", {"num-seeds": 1}, items=json.dumps(items))


@pytest.mark.parametrize("fallback", ["none", "real_only"])
def test_a_user_whose_augmentation_failed_is_not_cached_nor_silently_trained(tmp_path,
                                                                           fallback):
    trained = {}

    def behaviour(node, msg):
        kind = msg.metadata.message_type
        if kind == "query.seeds":
            return _seeds_reply(msg, node)
        if kind == "train":
            trained[node] = json.loads(msg.content[f"synthetic/u{node}"]["items"])
        return _reply(msg, f"u{node}", {"accuracy": 1.0})

    def augmenter(seeds, attempt, **_):  # the cloud fails every request of u2
        ok = {u: [{"description": "new", "tag": "comedy"}] for u in seeds if u != "u2"}
        return ok, {u: {"generated": 1, "kept": 1} for u in ok}, {
            "u2": {"connection": 2}} if "u2" in seeds else {}

    s = _strategy(tmp_path, augmenter, retries=1, fallback=fallback)
    grid = ScriptedGrid([1, 2], behaviour)
    s.discover(grid)
    res = s.run_method(grid, "cdcda")
    assert not (tmp_path / "synthetic" / "u2.json").exists()
    errors = [f for f in s.failures.entries if f["kind"] == "cloud_error"]
    assert [(f["user"], f["attempt"], f["causes"]) for f in errors] == [
        ("u2", 0, {"connection": 2}), ("u2", 1, {"connection": 2})]
    if fallback == "none":
        assert 2 not in trained and "cloud_error" in res.failures["u2"]
    else:
        assert trained[2] == [] and res.failures == {}
        stored = json.loads((tmp_path / "results" / "cdcda" / "u2.json").read_text())
        assert stored["augment-fallback"] == 1.0
    assert "augment-fallback" not in res.per_user["u1"]
    # u2's seeds went up twice (the retry sends them again): both are charged
    sent = [e for e in s.ledger.entries if e["kind"] == "query.seeds" and e["user"] == "u2"]
    assert len(sent) == 2
    charged = s.ledger.summary("cdcda", ["u2"])["by_kind"]["query.seeds"]
    assert charged["messages"] == 2 and charged["up"] == sum(e["up"] for e in sent)


def test_what_left_each_device_is_listed_by_field_and_bytes(tmp_path):
    from strategies.accounting import disclosure

    def behaviour(node, msg):
        if msg.metadata.message_type == "query.seeds":
            return _seeds_reply(msg, node, fields=("description",))  # the tag stays home
        return _reply(msg, f"u{node}", {"accuracy": 1.0})

    s = _strategy(tmp_path, lambda seeds, a, **_: ({u: [] for u in seeds},
                                              {u: {"kept": 0} for u in seeds}, {}))
    grid = ScriptedGrid([1], behaviour)
    s.discover(grid)
    s.run_method(grid, "cdcda")
    got = disclosure(Ledger(tmp_path / "ledger.jsonl").entries, ["u1"])
    assert got["per_user"]["u1"]["seed_fields"] == {"description": len("seed of u1")}
    assert set(got["per_user"]["u1"]["records"]) == {"meta", "metrics"}


def test_a_corrupt_stored_result_is_named_moved_aside_and_recomputed(tmp_path, caplog):
    def behaviour(node, msg):
        return _reply(msg, f"u{node}", {"accuracy": 0.5})

    s = _strategy(tmp_path)
    grid = ScriptedGrid([1], behaviour)
    s.discover(grid)
    bad = tmp_path / "results" / "zero_shot" / "u1.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"accuracy": 1.0, "tru')  # cut short
    res = s.run_method(grid, "zero_shot")
    assert res.per_user["u1"] == {"accuracy": 0.5}
    assert (bad.parent / "u1.json.corrupt").read_text() == '{"accuracy": 1.0, "tru'
    assert str(bad) in caplog.text


def test_the_ledger_charges_a_resumed_repeat_once_and_every_failure(tmp_path):
    from strategies.accounting import Exchange, summarise

    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.record(Exchange("m", "train", "u1", "timeout", 100, 0))
    ledger.record(Exchange("m", "train", "u1", "ok", 100, 40))
    ledger.record(Exchange("m", "train", "u1", "ok", 100, 40))  # repeated by a resume
    ledger.record(Exchange("m", "train", "u2", "ok", 100, 50))
    with path.open("a") as f:
        f.write('{"method": "m", "kind": "tr')  # a kill cut the last line short
    again = Ledger(path)
    assert len(again.entries) == 4
    assert (tmp_path / "ledger.jsonl.corrupt").read_text().startswith('{"method": "m"')
    s = summarise(again.entries, "m")
    assert s["bytes_down"] == 300 and s["bytes_up"] == 90
    assert s["failed_exchanges"] == {"up": 0, "down": 100, "exchanges": 1}
    assert s["by_kind"]["train"]["messages"] == 3


def test_device_fault_draws_are_seeded_and_follow_the_rates():
    from clients.faults import DeviceFaults, draw

    f = DeviceFaults(crash=0.2, garbage=0.1)
    draws = [draw(f, 7, "local_real", "train", f"u{i}", 0)[0] for i in range(2000)]
    assert draws == [draw(f, 7, "local_real", "train", f"u{i}", 0)[0] for i in range(2000)]
    assert 0.17 < draws.count("crash") / 2000 < 0.23
    assert 0.08 < draws.count("garbage") / 2000 < 0.12
    retry = [draw(f, 7, "local_real", "train", f"u{i}", 1)[0] for i in range(2000)]
    assert retry != draws  # a retry draws again


def test_a_cloud_outage_hits_whole_users_and_ends_after_its_attempts():
    from server.backends import CloudError
    from server.faults import FaultyCloud
    from server.settings import CloudFaults

    class Echo:
        name = "echo"

        def complete(self, prompts, seed, greedy=False, max_new_tokens=None):
            return [p.upper() for p in prompts]

    owners = [f"u{i // 4}" for i in range(400)]  # 100 users x 4 requests
    faults = CloudFaults(outage=0.3, outage_attempts=1, fail=0.1)
    out = FaultyCloud(Echo(), faults, 0, owners, attempt=0).complete(["x"] * 400, 0)
    down = {o for o, r in zip(owners, out) if r == CloudError("injected_outage")}
    assert 20 < len(down) < 40
    for o, r in zip(owners, out):
        assert (r == CloudError("injected_outage")) == (o in down)  # all or nothing per user
    fails = sum(r == CloudError("injected_failure") for r in out)
    assert 10 < fails < 50 and all(r == "X" for r in out if not isinstance(r, CloudError))
    later = FaultyCloud(Echo(), faults, 0, owners, attempt=1).complete(["x"] * 400, 0)
    assert CloudError("injected_outage") not in later  # the outage lasted one attempt


def test_bytes_are_the_wire_size_a_payload_adds_exactly_its_own_length():
    def seeds(n):
        return RecordDict({"meta": ConfigRecord({"user-id": "u1", "items": "x" * n})})

    # 1,000 -> 2,000 characters: every protobuf length prefix on the way stays 2 bytes
    # (128 .. 16,383), so the message grows by exactly the 1,000 payload bytes
    assert message_bytes(seeds(2000)) - message_bytes(seeds(1000)) == 1000
    # the same for an adapter: 1,000 -> 2,000 float32 values is 4,000 bytes more
    a = ArrayRecord(numpy_ndarrays=[np.zeros(1000, dtype=np.float32)])
    b = ArrayRecord(numpy_ndarrays=[np.zeros(2000, dtype=np.float32)])
    assert message_bytes(RecordDict({"w": b})) - message_bytes(RecordDict({"w": a})) == 4000


# --- cohorts: a SuperNode holding several users --------------------------------------------
class CohortGrid(ScriptedGrid):
    """SuperNodes holding several users each (`holds`: node -> users); `answer(user, msg)`
    gives one user's records (None: that user sends nothing). Discovery names every user."""

    def __init__(self, holds, answer):
        def behaviour(node, msg):
            if msg.metadata.message_type == "query.user":
                users, answer_ = holds[node], lambda u, m: _records(u, {"num-profile": 1})
            else:
                users, answer_ = _users(msg), answer
            content = RecordDict()
            for user in users:
                for name, record in (answer_(user, msg) or {}).items():
                    content[name] = record
            return Message(content=content, reply_to=msg)

        super().__init__(list(holds), behaviour)


def _error(user, reason):
    return {f"error/{user}": ConfigRecord({"reason": reason})}


def test_a_users_view_is_its_own_message_at_cohort_one():
    from strategies.accounting import Cohort, record_bytes, user_view

    adapter = ArrayRecord(numpy_ndarrays=[np.ones(8, dtype=np.float32)])
    s = AugmentationStrategy({"task": "LaMP-2", "cohort": 3}, ".", None, Ledger(None))
    cohort = s._message(7, "train", "cdcda", 1, ["u1", "u2"], own={
        "u1": {"synthetic": ConfigRecord({"items": "[1]"})},
        "u2": {"synthetic": ConfigRecord({"items": "[2, 2]"})}}, records={"arrays": adapter})
    alone = AugmentationStrategy({"task": "LaMP-2"}, ".", None, Ledger(None))._message(
        7, "train", "cdcda", 1, records={"arrays": adapter})
    alone.content["synthetic"] = ConfigRecord({"items": "[2, 2]"})
    view = user_view(cohort.content, "u2")
    assert set(view) == {"config", "arrays", "synthetic"}
    assert "users" not in view["config"] and "cohort" not in view["config"]
    assert view["synthetic"]["items"] == "[2, 2]"
    assert message_bytes(view) == message_bytes(alone.content)  # u2's own device's message
    assert record_bytes(view) == record_bytes(alone.content)
    for user in ("u1", "u2"):  # charging from the split costs one serialization per record
        assert Cohort(cohort.content).view_bytes(user) == (
            message_bytes(user_view(cohort.content, user)),
            record_bytes(user_view(cohort.content, user)))
    # a reply: each user's records renamed; another user's never in its view
    reply = RecordDict({**_records("u1", {"a": 1.0}), **_records("u2", {"a": 2.0})})
    assert set(user_view(reply, "u1")) == {"meta", "metrics"}
    assert user_view(reply, "u1")["metrics"]["a"] == 1.0


def _charges(ledger):
    from strategies.accounting import charged

    return sorted((e["method"], e["kind"], e["user"], e["outcome"], e["down"], e["up"],
                   sorted(e.get("records_down", {}).items()),
                   sorted(e.get("records_up", {}).items()), sorted(e.get("fields_up", {}).items()))
                  for e in charged(ledger.entries))


def test_each_user_is_charged_what_its_own_device_would_send_and_receive(tmp_path):
    """The same users, one per SuperNode and three per SuperNode: the same ledger."""
    def answer(user, msg):
        kind = msg.metadata.message_type
        if kind == "query.seeds":
            seeds = [{"description": f"seed of {user}" * (int(user[1:]) + 1), "tag": "x"}]
            return _records(user, {"num-seeds": 1}, items=json.dumps(seeds))
        return _records(user, {"accuracy": 1.0, "num-examples": 3.0}, method="cdcda")

    def augmenter(seeds, attempt, **_):
        items = {u: [{"description": "made for " + s[0]["description"], "tag": "x"}] * 2
                 for u, s in seeds.items()}
        return items, {u: {"kept": 2} for u in seeds}, {}

    users = ["u0", "u1", "u2", "u3"]
    ledgers = {}
    for k, holds in ((1, {i + 1: [u] for i, u in enumerate(users)}),
                     (3, {1: users[:3], 2: users[3:]})):
        run = tmp_path / f"k{k}"
        s = AugmentationStrategy({"task": "LaMP-2", "cohort": k}, run, augmenter,
                                 Ledger(run / "ledger.jsonl"), settings=StrategySettings())
        grid = CohortGrid(holds, answer)
        s.discover(grid)
        for method in ("zero_shot", "cdcda"):
            res = s.run_method(grid, method)
            assert set(res.per_user) == set(users) and not res.failures
        ledgers[k] = _charges(s.ledger)
    sent = [(m.metadata.message_type, _users(m)) for m in grid.sent]  # at K = 3
    assert ("train", ["u0", "u1", "u2"]) in sent  # one message for a node's three users
    assert len(ledgers[1]) == 4 * 4  # setup, evaluate, seeds, train for every user
    assert ledgers[3] == ledgers[1]


def test_one_user_of_a_cohort_fails_and_only_that_user_is_retried(tmp_path):
    def answer(user, msg):
        attempt = msg.content["config"]["attempt"]
        if user == "u1" and attempt == 0:  # the device's work for u1 alone failed
            return _error(user, "RuntimeError: out of memory")
        if user == "u3":  # garbage from u3, every time
            return _records(user, {"accuracy": float("nan")})
        return _records(user, {"accuracy": 1.0})

    s = _strategy(tmp_path, retries=1)
    grid = CohortGrid({1: ["u0", "u1", "u2"], 2: ["u3"]}, answer)
    s.discover(grid)
    assert s.user_node == {"u0": 1, "u1": 1, "u2": 1, "u3": 2}
    res = s.run_method(grid, "local_real")
    assert set(res.per_user) == {"u0", "u1", "u2"} and list(res.failures) == ["u3"]
    nan = "BadReply: metric 'accuracy' is not a finite number (nan)"
    log = [(f["user"], f["kind"], f["attempt"], f["detail"]) for f in s.failures.entries]
    assert log == [("u1", "device_error", 0, "RuntimeError: out of memory"),
                   ("u3", "bad_reply", 0, nan), ("u3", "bad_reply", 1, nan)]
    retry = [(m.metadata.dst_node_id, _users(m)) for m in grid.sent
             if m.metadata.message_type == "train" and m.content["config"]["attempt"] == 1]
    assert retry == [(1, ["u1"]), (2, ["u3"])]  # the failed users only, grouped by node
    errors = [e for e in s.ledger.entries if e["outcome"] == "error"]
    assert [(e["user"], set(e["records_up"])) for e in errors] == [("u1", {"error"})]


def test_a_whole_message_failing_fails_each_of_its_users(tmp_path):
    def behaviour(node, msg):
        if msg.metadata.message_type == "query.user":
            return Message(content=RecordDict({
                **_records(f"u{node}a", {}), **_records(f"u{node}b", {})}), reply_to=msg)
        if node == 1:
            return Message(Error(code=0, reason="ClientAppException occurred. Message: boom"),
                           reply_to=msg)
        return None  # node 2 never answers

    s = _strategy(tmp_path, timeout=0.3)
    grid = ScriptedGrid([1, 2], behaviour)
    s.discover(grid)
    res = s.run_method(grid, "zero_shot")
    assert res.failures == {"u1a": "device_error: boom", "u1b": "device_error: boom",
                            "u2a": res.failures["u2a"], "u2b": res.failures["u2b"]}
    assert res.failures["u2a"].startswith("timeout") and res.failures["u2b"] == res.failures[
        "u2a"]
    charged = [(e["user"], e["outcome"]) for e in s.ledger.entries if e["method"] == "zero_shot"]
    assert sorted(charged) == [("u1a", "error"), ("u1b", "error"), ("u2a", "timeout"),
                               ("u2b", "timeout")]


def test_discovery_asks_a_node_again_when_one_of_its_users_failed(tmp_path):
    asked = []

    def behaviour(node, msg):
        attempt = msg.content["config"]["attempt"]
        asked.append((node, attempt))
        records = {**_records("u0", {}), **_records("u1", {})} if node == 1 else \
            _records("u2", {})
        if node == 1 and attempt == 0:
            records["meta/u1"]["user-id"] = "someone-else"  # garbage for u1
        return Message(content=RecordDict(records), reply_to=msg)

    s = _strategy(tmp_path, retries=1)
    s.discover(ScriptedGrid([1, 2], behaviour))
    assert asked == [(1, 0), (2, 0), (1, 1)]
    assert s.user_node == {"u0": 1, "u1": 1, "u2": 2}
    assert [(f["user"], f["kind"]) for f in s.failures.entries] == [("u1", "bad_reply")]


def test_a_diverged_adapter_is_counted_as_non_finite_not_as_a_device_error(tmp_path):
    def behaviour(node, msg):
        user = f"u{node}"
        if msg.metadata.message_type == "query.user":
            return _reply(msg, user, {})
        if node == 2:  # the device's own error record for this user (clients/device.py)
            return Message(content=RecordDict({f"error/{user}": ConfigRecord({
                "reason": "NonFiniteAdapter: user u2's adapter is not finite"})}), reply_to=msg)
        return _reply(msg, user, {"accuracy": 1.0})

    s = _strategy(tmp_path)
    grid = ScriptedGrid([1, 2], behaviour)
    s.discover(grid)
    res = s.run_method(grid, "local_real")
    assert list(res.per_user) == ["u1"] and res.failures["u2"].startswith("non_finite")
    assert [f["kind"] for f in s.failures.entries] == ["non_finite"]


def test_failures_cut_off_by_a_full_disk_are_restored_from_the_ledger_on_resume(
        tmp_path, monkeypatch):
    import errno

    import strategies.failures as failures_module
    from tasks.files import append_line

    def behaviour(node, msg):
        if msg.metadata.message_type == "query.user":
            return _reply(msg, f"u{node}", {})
        if node == 2:
            return Message(Error(code=0, reason="ClientAppException occurred. Message: boom"),
                           reply_to=msg)
        return _reply(msg, f"u{node}", {"accuracy": 1.0})

    def full_disk(path, line):  # the ledger's line went in; the failure's does not
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    s = _strategy(tmp_path)
    grid = ScriptedGrid([1, 2], behaviour)
    s.discover(grid)
    monkeypatch.setattr(failures_module, "append_line", full_disk)
    with pytest.raises(OSError, match="No space"):
        s.run_method(grid, "local_real")
    monkeypatch.setattr(failures_module, "append_line", append_line)
    assert not (tmp_path / "failures.jsonl").exists()

    again = _strategy(tmp_path)  # the resumed run
    failed = [e for e in again.ledger.entries if e["outcome"] != "ok"]
    assert [(e["user"], e["outcome"]) for e in failed] == [("u2", "error")]
    logged = [(f["user"], f["kind"], f["attempt"]) for f in again.failures.entries]
    assert logged == [("u2", "device_error", 0)]
    stored = [json.loads(line) for line in (tmp_path / "failures.jsonl").read_text().splitlines()]
    assert stored == again.failures.entries and stored[0]["restored"] is True
    assert _strategy(tmp_path).failures.entries == stored  # restored once, not per session


def test_messages_timed_out_while_queued_are_skipped_and_the_retry_is_not_starved(tmp_path):
    """One worker, busy past the timeout: the messages queued behind it time out, and are
    given up. When the worker comes free it skips them (as the device's handler does) and
    the retries go through, instead of every retry timing out behind stale messages."""
    from tasks.files import mark_started

    class OneWorker(ScriptedGrid):
        def __init__(self, nodes):
            super().__init__(nodes, None)
            self.queue, self.busy_until, self.skipped = [], 0.0, 0

        def receive(self, mid, msg):  # queued for the one worker, answered in pull
            self.queue.append((mid, msg))

        def pull_messages(self, ids):
            now = time.time()
            if now >= self.busy_until and self.queue:
                mid, msg = self.queue.pop(0)
                node = msg.metadata.dst_node_id
                if not mark_started(tmp_path, mid):
                    self.skipped += 1
                else:
                    kind = msg.metadata.message_type
                    slow = kind == "evaluate" and msg.content["config"]["attempt"] == 0 \
                        and node == 1
                    self.busy_until = now + (0.6 if slow else 0.0)
                    user = f"u{node}"
                    self.pending[mid] = _reply(msg, user, {} if kind == "query.user"
                                               else {"accuracy": 1.0})
            return super().pull_messages(ids)

    s = _strategy(tmp_path, timeout=0.4, retries=2)
    grid = OneWorker([1, 2, 3])
    s.discover(grid)
    res = s.run_method(grid, "zero_shot")
    assert sorted(res.per_user) == ["u1", "u2", "u3"] and not res.failures
    assert grid.skipped >= 1  # the stale copies were skipped, not worked on
