"""The one-scan dispatcher for Flower's engine (simulation/engine.py) against Flower's own,
on a real in-memory LinkState: the same messages, in the same passes, marked the same."""

from __future__ import annotations

import secrets
import threading
import time
from queue import Queue

import pytest
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.common.constant import HEARTBEAT_INTERVAL_INF, NOOP_ACCOUNT_NAME, NOOP_FLWR_AID
from flwr.proto.task_pb2 import Task
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.linkstate import LinkStateFactory
from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from flwr.superlink.federation import NoOpFederationManager
from flwr.superlink.grid import InMemoryGrid

from simulation.running import engine

RUN = 7


@pytest.fixture
def link(monkeypatch):
    """(state, grid, node ids) as Flower's run_simulation sets them up, 5 SuperNodes."""
    for name, value in (("_run_id", RUN), ("_node_id", 0), ("_task_id", 11)):
        monkeypatch.setattr(TaskIdentity, name, value)
    factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(),
                               ObjectStoreFactory())
    state = factory.state()
    run = Run.create_empty(run_id=RUN)
    run.primary_task_id = 11
    state.run_ids[RUN] = RunRecord(run=run)
    state.task_store[11] = Task(task_id=11, run_id=RUN)
    nodes = []
    for _ in range(5):
        node = state.create_node(NOOP_FLWR_AID, NOOP_ACCOUNT_NAME, secrets.token_bytes(32),
                                 heartbeat_interval=HEARTBEAT_INTERVAL_INF)
        state.acknowledge_node_heartbeat(node_id=node, heartbeat_interval=HEARTBEAT_INTERVAL_INF)
        nodes.append(node)
    grid = InMemoryGrid(factory)
    grid.set_run(run)
    return state, grid, nodes


def _push(grid, nodes, ttl=None) -> list[str]:
    msgs = [Message(RecordDict({"c": ConfigRecord({"i": i})}), dst_node_id=n,
                    message_type="query.user", ttl=ttl) for i, n in enumerate(nodes)]
    return list(grid.push_messages(msgs))


def _flower_pass(state, nodes) -> list[Message]:
    """One pass of Flower's own dispatcher loop."""
    return [m for n in nodes for m in state.get_message_ins(node_id=n, limit=1)]


def test_each_pass_takes_the_messages_flowers_would(link):
    state, grid, nodes = link
    ids = _push(grid, nodes + nodes[:2])  # two nodes have a second message waiting
    first = engine.undelivered(state, set(nodes))
    assert [m.metadata.message_id for m in first] == ids[:5]  # one per node, oldest first
    assert all(m.metadata.delivered_at for m in first)
    second = engine.undelivered(state, set(nodes))
    assert [m.metadata.message_id for m in second] == ids[5:]
    assert engine.undelivered(state, set(nodes)) == [] == _flower_pass(state, nodes)
    assert engine.undelivered(state, set(nodes[1:])) == []


def test_same_messages_as_flowers_dispatcher(link):
    state, grid, nodes = link
    _push(grid, nodes[::-1] + nodes[:3])
    ours = engine.undelivered(state, set(nodes))
    for m in ours:  # undo, then let Flower's dispatcher choose
        m.metadata.delivered_at = ""
    theirs = _flower_pass(state, nodes)
    assert {m.metadata.message_id for m in ours} == {m.metadata.message_id for m in theirs}


def test_expired_messages_are_dropped_not_dispatched(link):
    state, grid, nodes = link
    _push(grid, nodes[:2], ttl=0.05)
    time.sleep(0.1)
    assert engine.undelivered(state, set(nodes)) == []
    assert not state.message_ins_store  # Flower's own check deleted them


def test_installed_loop_feeds_the_queue_until_stopped(link, monkeypatch):
    state, grid, nodes = link
    monkeypatch.setattr(vce_api, "add_messages_to_queue", vce_api.add_messages_to_queue)
    assert engine.install() is True
    assert vce_api.add_messages_to_queue is engine.add_messages_to_queue
    ids = _push(grid, nodes)
    queue: Queue = Queue()
    stop = threading.Event()
    loop = threading.Thread(target=vce_api.add_messages_to_queue,
                            args=(state, queue, {n: i for i, n in enumerate(nodes)}, stop))
    loop.start()
    got = [queue.get(timeout=5).metadata.message_id for _ in ids]
    stop.set()
    loop.join(5)
    assert not loop.is_alive() and got == ids and queue.empty()


def test_another_flower_keeps_its_own_dispatcher(monkeypatch):
    monkeypatch.setattr(vce_api, "add_messages_to_queue", vce_api.add_messages_to_queue)
    before = vce_api.add_messages_to_queue
    monkeypatch.setattr(engine, "version", lambda name: "9.0.0")
    assert engine.install() is False and vce_api.add_messages_to_queue is before
