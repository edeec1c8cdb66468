"""Messages to devices and back: one exchange, every reply checked, accounted and stored.

The strategies send requests through `DeviceExchange.exchange`: it pushes them, pulls
replies as they come, rejects garbage and arrays (unless the method's declaration allows
them), charges every exchange to the ledger, logs every failure, and times a device out only once it
has started the work.

A SuperNode holds `cohort` users (1 by default), so one message serves several: its config
lists them ("users"), and records of one user are named "<record>/<user>" both ways
("synthetic/u7" down, "meta/u7", "metrics/u7", "error/u7" up). Each user's part of a reply
(its view: shared records plus its own under base names) is checked, charged, parsed and
stored on its own, exactly as a message of its own would be.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from strategies.accounting import Cohort, Exchange, Ledger
from strategies.failures import FailureLog
from strategies.replies import ANSI, Items, NonFinite, View, error_detail, error_reason
from tasks.files import INFLIGHT_DIR, give_up

log = logging.getLogger(__name__)
POLL_GAP = 4  # seconds between pulls, in units of the last pull's own duration
NON_FINITE = "NonFiniteAdapter"  # a device's error reason that starts so: kind non_finite


class RunStopped(RuntimeError):
    """The run was asked to stop (SIGINT/SIGTERM); everything finished so far is stored."""


@dataclass
class _Sent:
    node: int
    kind: str
    users: list[str]  # whom the message is for; [] for discovery, whose reply says whom
    request: Cohort  # split per user, for the ledger
    round: int = 0  # a round of a method with rounds (FedAvg's), for the ledger

    def whom(self) -> list[str]:
        return self.users or [f"node-{self.node}"]


class DeviceExchange:
    """The plumbing every strategy shares: `user_node` says which SuperNode holds a user."""

    def __init__(self, request: Mapping[str, str | int], run_dir: Path, ledger: Ledger,
                 failures: FailureLog | None, timeout: float,
                 should_stop: Callable[[], bool] | None = None):
        self.request = dict(request)  # the ConfigRecord every message carries
        self.run_dir = Path(run_dir)
        self.ledger = ledger
        self.failures = failures or FailureLog()
        restored = self.failures.reconcile(ledger.entries)
        if restored:  # a resumed run after a write error (a full disk) cut the log short
            log.warning("%s: %d failure(s) the ledger charges had no record; restored",
                        self.failures.path, restored)
        self.timeout = timeout
        self.should_stop = should_stop or (lambda: False)
        self.user_node: dict[str, int] = {}  # the users taking part, sorted
        self.answered: dict[str, int] = {}  # every user a discovery reply named, and its node
        # by method, the message kinds whose replies may carry arrays (its declaration)
        self.arrays_up: dict[str, frozenset[str]] = {}

    @property
    def cohort(self) -> int:
        return int(self.request.get("cohort", 1))

    def _message(self, node: int, kind: str, method: str, attempt: int = 0,
                 users: list[str] | None = None, own: Mapping[str, Mapping] | None = None,
                 records: Mapping | None = None, **config) -> Message:
        """A request to one SuperNode for `users` (None: discovery, where the device says
        whom it holds); `records` are shared by them, `own[user]` are one user's records."""
        config = {**self.request, "method": method, "attempt": attempt, **config}
        if users is not None:
            config["users"] = json.dumps(users)
        content = RecordDict({"config": ConfigRecord(config)})
        for name, record in (records or {}).items():
            content[name] = record
        for user, mine in (own or {}).items():
            for name, record in mine.items():
                content[f"{name}/{user}"] = record
        return Message(content=content, dst_node_id=node, message_type=kind)

    def messages(self, users: list[str], kind: str, method: str, attempt: int = 0,
                  own: Callable[[str], Mapping] | None = None, records: Mapping | None = None,
                  **config) -> list[Message]:
        """One request per SuperNode holding some of `users`; `own(user)` gives the records
        of one user (its synthetic data, its answers)."""
        by_node: dict[int, list[str]] = defaultdict(list)
        for user in users:
            by_node[self.user_node[user]].append(user)
        return [self._message(node, kind, method, attempt, mine,
                              {u: own(u) for u in mine} if own else None, records, **config)
                for node, mine in by_node.items()]

    def _fail(self, method: str, user: str, kind: str, detail: str, attempt: int,
              failed: dict[str, str], **extra) -> None:
        failed[user] = f"{kind}: {detail}"
        self.failures.record(method, user, kind, detail, attempt, **extra)
        # per-user detail: run.log and failures.jsonl; the terminal gets the counts
        log.info("%s: user %s failed (%s): %s", method, user, kind, detail)

    def exchange(self, grid: Grid, messages: list[Message], method: str, attempt: int,
                 parse: Callable[[View], object],
                 commit: Callable[[View, object], None],
                 more: Callable[[], tuple[list[Message], bool]] | None = None,
                 busy: list[tuple[float, float]] | None = None) -> dict[str, str]:
        """Push messages and handle replies as they come; returns failures by user.

        For each user of a reply, `parse` checks its view (raising BadReply or anything
        else for garbage); the user's exchange goes to the ledger; then `commit` stores
        what it carried. A device's timeout counts from when it starts the work (it drops
        a marker file named after the message), so users queued behind busy workers never
        time out for waiting; if nothing starts or replies for `timeout` seconds the rest
        are timed out too. A message's failure (error, timeout) is each of its users'.

        `more()` streams further messages in: it returns those ready now and whether
        none will follow (a pipeline: users train as their data comes). While none are
        in flight nothing can time out. `busy` gets the (start, end) perf_counter spans
        in which some message was in flight, disjoint and in order.
        """
        timeout = self.timeout
        sent: dict[str, _Sent] = {}
        ids: list[str] = []

        def push(batch: list[Message]) -> None:
            pushed = grid.push_messages(batch)
            ids.extend(pushed)
            for mid, msg in zip(pushed, batch):
                users = json.loads(str(msg.content["config"].get("users", "[]")))
                sent[mid] = _Sent(msg.metadata.dst_node_id, msg.metadata.message_type, users,
                                  Cohort(msg.content),
                                  int(msg.content["config"].get("round", 0)))

        if messages:
            push(messages)
        done = more is None
        failed: dict[str, str] = {}
        started: dict[str, float] = {}
        inflight = self.run_dir / INFLIGHT_DIR
        last_progress = last_scan = time.time()
        tick = time.perf_counter()
        while sent or not done:
            if self.should_stop():
                raise RunStopped(f"stopped during {method} with {len(sent)} users in flight")
            if busy is not None:
                now_tick = time.perf_counter()
                if sent and busy and busy[-1][1] == tick:  # still in flight: one span
                    busy[-1] = (busy[-1][0], now_tick)
                elif sent:
                    busy.append((tick, now_tick))
                tick = now_tick
            if not done:
                batch, done = more()
                if batch:
                    push(batch)
                    last_progress = time.time()
                if not sent:
                    time.sleep(0.05)  # waiting for the producer, not for devices
                    last_progress = time.time()
                    continue
            asked = time.perf_counter()
            replies = list(grid.pull_messages(list(sent)))
            poll = time.perf_counter() - asked
            for reply in replies:
                if self.should_stop():  # replies from devices the stop itself killed
                    raise RunStopped(f"stopped during {method} with {len(sent)} in flight")
                s = sent.pop(reply.metadata.reply_to_message_id)
                started.pop(reply.metadata.reply_to_message_id, None)
                self._handle(method, attempt, s, reply, parse, commit, failed)
            now = time.time()
            if replies:
                last_progress = now
            if now - last_scan >= 0.25:  # one directory listing finds every started device
                last_scan = now
                for mid in _started_ids(inflight, sent, started):
                    started[mid] = last_progress = now
                for mid, t0 in list(started.items()):
                    if now - t0 > timeout:
                        self._timeout(method, attempt, mid, sent.pop(mid), failed,
                                      f"no reply {timeout:g} s after the device started")
                        started.pop(mid)
                        # the devices are alive, only slow: their workers come free now
                        last_progress = now
                if sent and now - last_progress > timeout:
                    for mid in list(sent):
                        self._timeout(method, attempt, mid, sent.pop(mid), failed,
                                      f"nothing started or replied for {timeout:g} s")
                        started.pop(mid, None)
            if sent:  # a pull costs in proportion to the ids in flight: wait a few pulls'
                # time between pulls (at least 50 ms when nothing came), so a thousand
                # in-flight messages do not make the driver a busy loop beside the devices
                time.sleep(max(POLL_GAP * poll, 0.0 if replies else 0.05))
        for mid in ids:
            (inflight / mid).unlink(missing_ok=True)
        return failed

    def _handle(self, method: str, attempt: int, s: _Sent, reply: Message,
                parse: Callable, commit: Callable, failed: dict[str, str]) -> None:
        if reply.has_error():  # the whole message failed: each of its users did
            reason = ANSI.sub("", str(reply.error.reason))
            for user in s.whom():
                down, records_down = s.request.view_bytes(user)
                self.ledger.record(Exchange(method, s.kind, user, "error", down, 0,
                                            records_down, round=s.round, attempt=attempt))
                self._fail(method, user, "device_error", error_detail(reason), attempt,
                           failed, trace=reason[-2000:])
            return
        answer = Cohort(reply.content)
        if s.users:
            extra = set(answer.users) - set(s.users)
            if extra:  # not charged to anyone: no user's own device would have sent them
                log.info("%s: a reply from node %d has records of users it was not asked "
                         "about (%s)", method, s.node, ", ".join(sorted(extra)[:3]))
        users = s.users or answer.users or s.whom()  # discovery: whom the reply names
        for user in users:
            if s.kind == "query.user" and user in answer.own:
                self.answered[user] = s.node
            self._handle_user(method, attempt, s, View(s.node, user, answer.view(user)),
                              answer.view_bytes(user), parse, commit, failed)

    def _handle_user(self, method: str, attempt: int, s: _Sent, view: View,
                     up: tuple[int, dict[str, int]], parse: Callable, commit: Callable,
                     failed: dict[str, str]) -> None:
        """One user's part of a reply: checked, charged, parsed and stored on its own."""
        down, records_down = s.request.view_bytes(view.user)
        entry = Exchange(method, s.kind, view.user, "ok", down, up[0], records_down, up[1],
                         round=s.round, attempt=attempt)
        content = view.content
        if "error" in content:  # this user's work failed on the device; the others' did not
            entry.outcome = "error"
            self.ledger.record(entry)
            reason = error_reason(content["error"])
            kind = "non_finite" if reason.startswith(NON_FINITE) else "device_error"
            self._fail(method, view.user, kind, reason, attempt, failed)
            return
        parsed, kind, detail = None, None, ""
        try:
            user = str(content["meta"]["user-id"])
        except (KeyError, TypeError):
            kind, detail = "bad_reply", "no meta record with a user-id"
        else:
            if user != view.user:
                kind, detail = "bad_reply", f"reply claims user '{user}'"
        if kind is None and content.array_records and \
                s.kind not in self.arrays_up.get(method, frozenset()):
            kind, detail = "arrays", "reply carries arrays (weights never leave the device)"
        if kind is None:
            try:
                parsed = parse(view)
            except Exception as err:  # garbage must not end the run: counted instead
                kind = "non_finite" if isinstance(err, NonFinite) else "bad_reply"
                detail = f"{type(err).__name__}: {err}"
        if kind is not None:
            entry.outcome = "rejected" if kind == "arrays" else "bad_reply"
            self.ledger.record(entry)
            self._fail(method, view.user, kind, detail, attempt, failed)
            return
        if isinstance(parsed, Items):
            entry.fields_up = parsed.field_bytes
        self.ledger.record(entry)  # before the result: a kill in between redoes the user
        commit(view, parsed)

    def cloud_failed(self, method: str, user: str, what: str, causes: Mapping[str, int],
                      attempt: int, failed: dict[str, str]) -> None:
        """Record a user whose cloud requests failed, with the failures by cause."""
        detail = ", ".join(f"{n} x {c}" for c, n in sorted(causes.items()))
        self._fail(method, user, "cloud_error", f"{what} failed: {detail}", attempt, failed,
                   causes=dict(causes))

    def _timeout(self, method: str, attempt: int, mid: str, s: _Sent,
                 failed: dict[str, str], detail: str) -> None:
        give_up(self.run_dir, mid)  # a device reaching it later skips it
        for user in s.whom():
            down, records_down = s.request.view_bytes(user)
            self.ledger.record(Exchange(method, s.kind, user, "timeout", down, 0,
                                        records_down, round=s.round, attempt=attempt))
            self._fail(method, user, "timeout", detail, attempt, failed)


def _started_ids(inflight: Path, sent: Mapping[str, object], started: Mapping[str, float]
                 ) -> list[str]:
    """Message ids whose device has dropped its start marker and are not yet known."""
    try:
        names = os.listdir(inflight)
    except FileNotFoundError:
        return []
    return [n for n in names if n in sent and n not in started]
