"""The ClientApp's handlers: seeds never exceed k, train replies carry metrics and no arrays,
a SuperNode answers for each user of its cohort, one user's failure is that user's alone."""

import json

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from clients.client_app import app
from clients.seeds import select_seeds
from clients.settings import DeviceSettings, SeedSettings, TrainSettings
from tasks.structured import to_mapping


@pytest.fixture(autouse=True)
def server_identity(monkeypatch):
    """Messages are created as the ServerApp would: Flower stamps them with its task ids."""
    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def _message(kind, data_dir, run_dir, k=2, synthetic=None, users=None, cohort=1):
    """A request as the strategy sends it: for `users` (None: discovery), each user's
    synthetic data in its own record."""
    dev = DeviceSettings(model="tiny-random", prompt_style="plain",
                         train=TrainSettings(epochs=1, batch_size=4, bf16=False),
                         seeds=SeedSettings(k=k))
    cfg = {"task": "LaMP-2", "data-dir": str(data_dir), "split": "dev", "run-dir": str(run_dir),
           "method": "cdcda", "seed": 0, "device": json.dumps(to_mapping(dev)),
           "cohort": cohort}
    if users is not None:
        cfg["users"] = json.dumps(users)
    content = RecordDict({"config": ConfigRecord(cfg)})
    for user, items in (synthetic or {}).items():
        content[f"synthetic/{user}"] = ConfigRecord({"items": json.dumps(items)})
    msg = Message(content=content, dst_node_id=1, message_type=kind)
    msg.metadata.__dict__["_message_id"] = "m1"
    return msg


def _context(pid=0):
    return Context(run_id=1, node_id=1, node_config={"partition-id": pid}, state=RecordDict(),
                   run_config={})


@pytest.mark.parametrize("k", [0, 1, 3, 50])
def test_seed_reply_never_discloses_more_than_k(tags_data, tmp_path, k):
    reply = app(_message("query.seeds", tags_data.questions_path.parent, tmp_path, k=k,
                         users=["u1"]), _context(1))
    items = json.loads(reply.content["meta/u1"]["items"])
    assert len(items) == min(k, len(tags_data.users["u1"].profile))
    assert reply.content["metrics/u1"]["num-seeds"] == len(items)
    assert all(set(it) == {"description", "tag"} for it in items)  # no ids or dates leave


def test_seed_policy_recent_takes_latest_items(tags_data):
    profile = tags_data.users["u0"].profile
    seeds = select_seeds(tags_data.task, profile, SeedSettings(k=2, policy="recent"), 0)
    assert [s["description"] for s in seeds] == [p["description"] for p in profile[-2:]]


def test_train_reply_has_metrics_and_no_arrays(tags_data, tmp_path):
    synthetic = [{"description": "A robot learns to paint sunsets.", "tag": "sci-fi"}]
    reply = app(_message("train", tags_data.questions_path.parent, tmp_path,
                         synthetic={"u0": synthetic}, users=["u0"]), _context(0))
    assert not reply.has_error()
    assert len(reply.content.array_records) == 0
    assert set(reply.content) == {"meta/u0", "metrics/u0"}
    m = reply.content["metrics/u0"]
    assert m["num-synthetic"] == 1 and m["num-real"] == 6 and m["num-examples"] == 7
    assert "accuracy" in m and m["adapter-bytes"] > 0
    assert reply.content["meta/u0"]["user-id"] == "u0"
    assert (tmp_path / "adapters" / "u0" / "adapter_model.safetensors").exists()


def test_bad_partition_fails_with_a_clear_message(tags_data, tmp_path):
    # the simulation engine turns this exception into an error reply the strategy counts
    with pytest.raises(ValueError, match="partition-id 99 but .* has 4 users"):
        app(_message("query.user", tags_data.questions_path.parent, tmp_path), _context(99))


def _faulty(message, faults, fault_seed=0):
    message.content["config"]["faults"] = json.dumps(faults)
    message.content["config"]["fault-seed"] = fault_seed
    return message


def test_a_device_marks_when_it_starts_so_its_timeout_counts_from_there(tags_data, tmp_path):
    app(_message("query.user", tags_data.questions_path.parent, tmp_path), _context(0))
    assert (tmp_path / ".inflight" / "m1").exists()


def test_injected_device_faults_crash_hang_and_garbage(tags_data, tmp_path):
    import time

    from clients.faults import InjectedCrash

    data = tags_data.questions_path.parent
    reply = app(_faulty(_message("query.seeds", data, tmp_path, users=["u1"]),
                        {"crash": 1.0}), _context(1))
    assert not reply.has_error()  # the user's error record, not the message's
    assert set(reply.content) == {"error/u1"}
    assert reply.content["error/u1"]["reason"] == (
        f"{InjectedCrash.__name__}: injected crash of u1's device")
    start = time.perf_counter()
    reply = app(_faulty(_message("query.seeds", data, tmp_path, users=["u1"]),
                        {"hang": 1.0, "hang_seconds": 0.3}), _context(1))
    assert time.perf_counter() - start >= 0.3 and not reply.has_error()
    seen = set()
    for seed in range(40):  # every kind of garbage shows up, each one malformed
        reply = app(_faulty(_message("query.seeds", data, tmp_path, users=["u1"]),
                            {"garbage": 1.0}, seed), _context(1))
        seen.add(_garbage_kind(reply.content, "u1"))
    assert seen == {"no_meta", "arrays", "wrong_user", "bad_seeds", "nan_metric"}


def _garbage_kind(c, user):
    """Which malformation one user's records show (None: well formed)."""
    meta, metrics = c.get(f"meta/{user}"), c.get(f"metrics/{user}")
    if meta is None:
        return "no_meta"
    if f"weights/{user}" in c:
        return "arrays"
    if meta["user-id"] != user:
        return "wrong_user"
    if meta.get("items") == "{not json":
        return "bad_seeds"
    if metrics.get("num-examples", 0) != metrics.get("num-examples", 0):  # NaN
        return "nan_metric"
    return None


# --- cohorts: a SuperNode holding K users --------------------------------------------------
@pytest.mark.parametrize("cohort, pid, held", [
    (1, 2, ["u2"]), (2, 1, ["u2", "u3"]), (3, 0, ["u0", "u1", "u2"]), (3, 1, ["u3"]),
    (4, 0, ["u0", "u1", "u2", "u3"]),
])
def test_a_node_holds_its_slice_of_the_sorted_users_and_discovery_names_them(
        tags_data, tmp_path, cohort, pid, held):
    reply = app(_message("query.user", tags_data.questions_path.parent, tmp_path,
                         cohort=cohort), _context(pid))
    assert list(reply.content) == [f"{r}/{u}" for u in held for r in ("meta", "metrics")]
    for u in held:
        assert reply.content[f"meta/{u}"]["user-id"] == u
        assert reply.content[f"metrics/{u}"]["num-profile"] == 6


def test_a_partition_past_the_last_cohort_fails_naming_the_cohort(tags_data, tmp_path):
    with pytest.raises(ValueError, match=r"partition-id 2 but .* has 4 users \(2 per"):
        app(_message("query.user", tags_data.questions_path.parent, tmp_path, cohort=2),
            _context(2))


def test_a_message_answers_only_its_users_and_names_a_user_the_node_does_not_hold(
        tags_data, tmp_path):
    reply = app(_message("query.seeds", tags_data.questions_path.parent, tmp_path,
                         users=["u2", "u0", "u9"], cohort=3), _context(0))
    assert list(reply.content) == ["meta/u2", "metrics/u2", "meta/u0", "metrics/u0",
                                   "error/u9"]
    assert "u9 is not on this SuperNode" in reply.content["error/u9"]["reason"]


def _seed_with(faults, kind, users, want):
    """A fault seed under which the draws give each user the fault `want(user)` says."""
    from clients.faults import DeviceFaults, draw

    f = DeviceFaults(**faults)
    for seed in range(500):
        if all(draw(f, seed, "cdcda", kind, u, 0)[0] == want(u) for u in users):
            return seed
    raise AssertionError("no such seed")


def _cohort_seeds_with_fault(tags_data, tmp_path, fault: str, victim: str):
    """The seeds reply of a 4-user cohort where only `victim` draws `fault` (rate 0.5)."""
    users = ["u0", "u1", "u2", "u3"]
    seed = _seed_with({fault: 0.5}, "query.seeds", users,
                      lambda u: fault if u == victim else None)
    msg = _faulty(_message("query.seeds", tags_data.questions_path.parent, tmp_path,
                           users=users, cohort=4), {fault: 0.5}, seed)
    return app(msg, _context(0)).content


def test_one_user_of_a_cohort_crashes_and_the_others_answer(tags_data, tmp_path):
    c = _cohort_seeds_with_fault(tags_data, tmp_path, "crash", "u2")
    assert "injected crash of u2's device" in c["error/u2"]["reason"]
    assert "meta/u2" not in c and "metrics/u2" not in c
    for u in ("u0", "u1", "u3"):
        assert c[f"meta/{u}"]["user-id"] == u and len(json.loads(c[f"meta/{u}"]["items"])) == 2


def test_garbage_malforms_only_the_user_it_was_drawn_for(tags_data, tmp_path):
    c = _cohort_seeds_with_fault(tags_data, tmp_path, "garbage", "u1")
    assert _garbage_kind(c, "u1") is not None
    assert [_garbage_kind(c, u) for u in ("u0", "u2", "u3")] == [None, None, None]


def test_a_cohort_trains_through_the_cohort_entry_point_and_its_error_is_everyones(
        tags_data, tmp_path, monkeypatch):
    from clients import device

    calls = []

    def train_users(rt, task, users, synthetic, settings, method, run_dir, run_seed,
                    adapters=None, init_state=None):
        calls.append(([u.user_id for u in users], synthetic))
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        return {u.user_id: {"num-examples": 1.0} for u in users}

    monkeypatch.setattr(device, "runtime", lambda settings: type("RT", (), {
        "load_seconds": 0.5})())
    monkeypatch.setattr(device, "train_users", train_users)
    msg = _message("train", tags_data.questions_path.parent, tmp_path,
                   synthetic={"u0": [{"x": "a"}], "u2": [{"x": "b"}]},
                   users=["u0", "u1", "u2"], cohort=4)
    c = app(msg, _context(0)).content
    assert calls == [(["u0", "u1", "u2"], {"u0": [{"x": "a"}], "u2": [{"x": "b"}]})]
    assert {u: dict(c[f"metrics/{u}"]) for u in ("u0", "u1", "u2")} == {
        u: {"num-examples": 1.0, "model-load-seconds": 0.5} for u in ("u0", "u1", "u2")}
    c = app(msg, _context(0)).content
    assert set(c) == {"error/u0", "error/u1", "error/u2"}
    assert all(c[n]["reason"] == "RuntimeError: out of memory" for n in c)
