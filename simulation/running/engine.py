"""Flower's in-process simulation engine, made to scale past a few hundred SuperNodes.

In flwr 1.41 the engine's dispatcher (`vce_api.add_messages_to_queue`) asks the LinkState,
for every SuperNode, every 0.1 s, for one undelivered message, and
`InMemoryLinkState.get_message_ins` answers each question by scanning every stored message
with an expiry check per message: one pass costs SuperNodes x stored messages. At 1,000
users (one per node) that was 85% of the driver's CPU and 15 ms of overhead per user per
round (`cdcda bench sim`). `install()` puts in a dispatcher that makes the same pass in
one scan: the same checks (expiry, federation: Flower's own `_check_stored_messages`), the
same marking as delivered, at most one message per node per pass, first pushed first
served. It applies to the in-memory LinkState of the pinned Flower only; anything else
keeps Flower's own dispatcher.
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import version
from queue import Queue

from flwr.app import Message
from flwr.server.superlink.fleet.vce import vce_api
from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
from flwr.supercore.date import now

log = logging.getLogger(__name__)

FLOWER = "1.41."  # the version whose LinkState internals this reads
POLL_SECONDS = 0.1  # Flower's own interval between passes
_flower_dispatcher = vce_api.add_messages_to_queue


def undelivered(state: InMemoryLinkState, nodes: set[int]) -> list[Message]:
    """Take the messages to dispatch now: for each node in `nodes`, its oldest message
    not yet delivered (one per node per pass, as Flower's), marked delivered."""
    with state.lock:
        picked, seen = [], set()
        for message_id, msg in state.message_ins_store.items():
            meta = msg.metadata
            if meta.delivered_at == "" and meta.dst_node_id in nodes \
                    and meta.dst_node_id not in seen:
                picked.append(message_id)
                seen.add(meta.dst_node_id)
        if not picked:
            return []
        state._check_stored_messages(set(picked))  # deletes expired or invalid ones
        out = [state.message_ins_store[m] for m in picked if m in state.message_ins_store]
        delivered_at = now().isoformat()
        for msg in out:
            msg.metadata.delivered_at = delivered_at
    return out


def add_messages_to_queue(state, queue: Queue, nodes_mapping: dict[int, int],
                          f_stop: threading.Event) -> None:
    """Flower's dispatcher loop, one scan of the stored messages per pass."""
    if not (isinstance(state, InMemoryLinkState) and hasattr(state, "message_ins_store")):
        return _flower_dispatcher(state, queue, nodes_mapping, f_stop)
    nodes = set(nodes_mapping)
    while not f_stop.is_set():
        for msg in undelivered(state, nodes):
            queue.put(msg)
        f_stop.wait(POLL_SECONDS)


def install() -> bool:
    """Use the one-scan dispatcher for the engines started from now on (idempotent);
    False, and Flower's own dispatcher, on a Flower version it was not written for."""
    have = version("flwr")
    usable = have.startswith(FLOWER) and all(
        hasattr(InMemoryLinkState, a) for a in ("get_message_ins", "_check_stored_messages"))
    if not usable:
        log.debug("flwr %s: keeping Flower's own message dispatcher", have)
        return False
    vce_api.add_messages_to_queue = add_messages_to_queue
    return True
