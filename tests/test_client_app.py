"""The ClientApp's handlers: seeds never exceed k, train replies carry metrics and no arrays."""

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


def _message(kind, data_dir, run_dir, k=2, synthetic=None):
    dev = DeviceSettings(model="tiny-random", prompt_style="plain",
                         train=TrainSettings(epochs=1, batch_size=4, bf16=False),
                         seeds=SeedSettings(k=k))
    cfg = {"task": "LaMP-2", "data-dir": str(data_dir), "split": "dev", "run-dir": str(run_dir),
           "method": "cdcda", "seed": 0, "device": json.dumps(to_mapping(dev))}
    content = RecordDict({"config": ConfigRecord(cfg)})
    if synthetic is not None:
        content["synthetic"] = ConfigRecord({"items": json.dumps(synthetic)})
    msg = Message(content=content, dst_node_id=1, message_type=kind)
    msg.metadata.__dict__["_message_id"] = "m1"
    return msg


def _context(pid=0):
    return Context(run_id=1, node_id=1, node_config={"partition-id": pid}, state=RecordDict(),
                   run_config={})


@pytest.mark.parametrize("k", [0, 1, 3, 50])
def test_seed_reply_never_discloses_more_than_k(tags_data, tmp_path, k):
    reply = app(_message("query.seeds", tags_data.questions_path.parent, tmp_path, k=k),
                _context(1))
    items = json.loads(reply.content["meta"]["items"])
    assert len(items) == min(k, len(tags_data.users["u1"].profile))
    assert reply.content["metrics"]["num-seeds"] == len(items)
    assert all(set(it) == {"description", "tag"} for it in items)  # no ids or dates leave


def test_seed_policy_recent_takes_latest_items(tags_data):
    profile = tags_data.users["u0"].profile
    seeds = select_seeds(tags_data.task, profile, SeedSettings(k=2, policy="recent"), 0)
    assert [s["description"] for s in seeds] == [p["description"] for p in profile[-2:]]


def test_train_reply_has_metrics_and_no_arrays(tags_data, tmp_path):
    synthetic = [{"description": "A robot learns to paint sunsets.", "tag": "sci-fi"}]
    reply = app(_message("train", tags_data.questions_path.parent, tmp_path,
                         synthetic=synthetic), _context(0))
    assert not reply.has_error()
    assert len(reply.content.array_records) == 0
    m = reply.content["metrics"]
    assert m["num-synthetic"] == 1 and m["num-real"] == 6 and m["num-examples"] == 7
    assert "accuracy" in m and m["adapter-bytes"] > 0
    assert reply.content["meta"]["user-id"] == "u0"
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
    with pytest.raises(InjectedCrash, match="injected crash of u1's device"):
        app(_faulty(_message("query.seeds", data, tmp_path), {"crash": 1.0}), _context(1))
    start = time.perf_counter()
    reply = app(_faulty(_message("query.seeds", data, tmp_path),
                        {"hang": 1.0, "hang_seconds": 0.3}), _context(1))
    assert time.perf_counter() - start >= 0.3 and not reply.has_error()
    seen = set()
    for seed in range(40):  # every kind of garbage shows up, each one malformed
        reply = app(_faulty(_message("query.seeds", data, tmp_path), {"garbage": 1.0}, seed),
                    _context(1))
        c = reply.content
        if "meta" not in c:
            seen.add("no_meta")
        elif c.array_records:
            seen.add("arrays")
        elif c["meta"]["user-id"] != "u1":
            seen.add("wrong_user")
        elif c["meta"]["items"] == "{not json":
            seen.add("bad_seeds")
        else:
            assert c["metrics"]["num-examples"] != c["metrics"]["num-examples"]  # NaN
            seen.add("nan_metric")
    assert seen == {"no_meta", "arrays", "wrong_user", "bad_seeds", "nan_metric"}
