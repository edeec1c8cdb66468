"""Messages to devices and back: one exchange, every reply checked, accounted and stored.

The strategies send requests through `DeviceExchange._exchange`: it pushes them, pulls
replies as they come, rejects garbage and arrays (unless a method allows them), charges
every exchange to the ledger, logs every failure, and times a device out only once it
has started the work.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from strategies.accounting import Exchange, Ledger, message_bytes, record_bytes
from strategies.failures import FailureLog
from tasks.files import INFLIGHT_DIR

log = logging.getLogger(__name__)


class RunStopped(RuntimeError):
    """The run was asked to stop (SIGINT/SIGTERM); everything finished so far is stored."""


class BadReply(ValueError):
    """A reply whose content is not what the protocol says (counted as `bad_reply`)."""


@dataclass
class _Sent:
    node: int
    user: str
    kind: str
    down: int
    records_down: dict[str, int]


def reply_metrics(reply: Message) -> dict[str, float]:
    """The reply's metrics, all finite numbers, or BadReply."""
    try:
        record = reply.content["metrics"]
    except KeyError:
        raise BadReply("no metrics record") from None
    if not isinstance(record, MetricRecord):
        raise BadReply("'metrics' is not a MetricRecord")
    out = {}
    for k, v in record.items():
        if isinstance(v, list) or not math.isfinite(float(v)):
            raise BadReply(f"metric '{k}' is not a finite number ({v!r})")
        out[k] = float(v)
    return out


class DeviceExchange:
    """The plumbing every strategy shares: `node_user` maps SuperNodes to users."""

    def __init__(self, request: Mapping[str, str | int], run_dir: Path, ledger: Ledger,
                 failures: FailureLog | None, timeout: float,
                 should_stop: Callable[[], bool] | None = None):
        self.request = dict(request)  # the ConfigRecord every message carries
        self.run_dir = Path(run_dir)
        self.ledger = ledger
        self.failures = failures or FailureLog()
        self.timeout = timeout
        self.should_stop = should_stop or (lambda: False)
        self.node_user: dict[int, str] = {}

    def _message(self, node: int, kind: str, method: str, attempt: int = 0,
                 synthetic: list[dict] | None = None, records: Mapping | None = None,
                 **config) -> Message:
        config = {**self.request, "method": method, "attempt": attempt, **config}
        content = RecordDict({"config": ConfigRecord(config)})
        if synthetic is not None:
            content["synthetic"] = ConfigRecord({"items": json.dumps(synthetic)})
        for name, record in (records or {}).items():
            content[name] = record
        return Message(content=content, dst_node_id=node, message_type=kind)

    def _fail(self, method: str, user: str, kind: str, detail: str, attempt: int,
              failed: dict[str, str], **extra) -> None:
        failed[user] = f"{kind}: {detail}"
        self.failures.record(method, user, kind, detail, attempt, **extra)
        # per-user detail: run.log and failures.jsonl; the terminal gets the counts
        log.info("%s: user %s failed (%s): %s", method, user, kind, detail)

    def _exchange(self, grid: Grid, messages: list[Message], method: str, attempt: int,
                  parse: Callable[[int, Message], object],
                  commit: Callable[[int, object], None],
                  arrays_allowed: bool = False) -> dict[str, str]:
        """Push messages and handle replies as they come; returns failures by user.

        `parse` checks a reply (raising BadReply or anything else for garbage); the
        exchange goes to the ledger; then `commit` stores what it carried. A device's
        timeout counts from when it starts the work (it drops a marker file named after
        the message), so users queued behind busy workers never time out for waiting;
        if nothing starts or replies for `timeout` seconds the rest are timed out too.
        """
        timeout = self.timeout
        sent: dict[str, _Sent] = {}
        ids = grid.push_messages(messages)
        for mid, msg in zip(ids, messages):
            node = msg.metadata.dst_node_id
            sent[mid] = _Sent(node, self.node_user.get(node, f"node-{node}"),
                              msg.metadata.message_type, message_bytes(msg.content),
                              record_bytes(msg.content))
        failed: dict[str, str] = {}
        started: dict[str, float] = {}
        inflight = self.run_dir / INFLIGHT_DIR
        last_progress = last_scan = time.time()
        while sent:
            if self.should_stop():
                raise RunStopped(f"stopped during {method} with {len(sent)} users in flight")
            replies = list(grid.pull_messages(list(sent)))
            for reply in replies:
                if self.should_stop():  # replies from devices the stop itself killed
                    raise RunStopped(f"stopped during {method} with {len(sent)} in flight")
                s = sent.pop(reply.metadata.reply_to_message_id)
                started.pop(reply.metadata.reply_to_message_id, None)
                self._handle(method, attempt, s, reply, parse, commit, failed, arrays_allowed)
            now = time.time()
            if replies:
                last_progress = now
            if now - last_scan >= 0.25:  # one directory listing finds every started device
                last_scan = now
                for mid in _started_ids(inflight, sent, started):
                    started[mid] = last_progress = now
                for mid, t0 in list(started.items()):
                    if now - t0 > timeout:
                        self._timeout(method, attempt, sent.pop(mid), failed,
                                      f"no reply {timeout:g} s after the device started")
                        started.pop(mid)
                if sent and now - last_progress > timeout:
                    for mid in list(sent):
                        self._timeout(method, attempt, sent.pop(mid), failed,
                                      f"nothing started or replied for {timeout:g} s")
            if sent and not replies:
                time.sleep(0.05)
        for mid in ids:
            (inflight / mid).unlink(missing_ok=True)
        return failed

    def _handle(self, method: str, attempt: int, s: _Sent, reply: Message,
                parse: Callable, commit: Callable, failed: dict[str, str],
                arrays_allowed: bool = False) -> None:
        entry = Exchange(method, s.kind, s.user, "ok", s.down, 0, s.records_down)
        if reply.has_error():
            entry.outcome = "error"
            self.ledger.record(entry)
            reason = _ANSI.sub("", str(reply.error.reason))
            self._fail(method, s.user, "device_error", _error_detail(reason), attempt, failed,
                       trace=reason[-2000:])
            return
        entry.up, entry.records_up = message_bytes(reply.content), record_bytes(reply.content)
        parsed, kind, detail = None, None, ""
        try:
            user = str(reply.content["meta"]["user-id"])
        except (KeyError, TypeError):
            kind, detail = "bad_reply", "no meta record with a user-id"
        else:
            if s.kind == "query.user":
                s.user = entry.user = user
            elif user != s.user:
                kind, detail = "bad_reply", f"reply claims user '{user}'"
        if kind is None and reply.content.array_records and not arrays_allowed:
            kind, detail = "arrays", "reply carries arrays (weights never leave the device)"
        if kind is None:
            try:
                parsed = parse(s.node, reply)
            except Exception as err:  # garbage must not end the run: counted instead
                kind, detail = "bad_reply", f"{type(err).__name__}: {err}"
        if kind is not None:
            entry.outcome = "rejected" if kind == "arrays" else "bad_reply"
            self.ledger.record(entry)
            self._fail(method, s.user, kind, detail, attempt, failed)
            return
        if isinstance(parsed, Items):
            entry.fields_up = parsed.field_bytes
        self.ledger.record(entry)  # before the result: a kill in between redoes the user
        commit(s.node, parsed)

    def _cloud_failed(self, method: str, user: str, what: str, causes: Mapping[str, int],
                      attempt: int, failed: dict[str, str]) -> None:
        """Record a user whose cloud requests failed, with the failures by cause."""
        detail = ", ".join(f"{n} x {c}" for c, n in sorted(causes.items()))
        self._fail(method, user, "cloud_error", f"{what} failed: {detail}", attempt, failed,
                   causes=dict(causes))

    def _timeout(self, method: str, attempt: int, s: _Sent, failed: dict[str, str],
                 detail: str) -> None:
        self.ledger.record(Exchange(method, s.kind, s.user, "timeout", s.down, 0,
                                    s.records_down))
        self._fail(method, s.user, "timeout", detail, attempt, failed)


@dataclass
class Items:
    items: list[dict]
    field_bytes: dict[str, int]


def parse_items(node: int, reply: Message) -> Items:
    """The seed items a device sent, checked, with the bytes of each field that left."""
    items = json.loads(str(reply.content["meta"]["items"]))
    if not isinstance(items, list) or not all(
            isinstance(it, dict) and all(isinstance(v, str) for v in it.values())
            for it in items):
        raise BadReply("seed items are not a list of objects of strings")
    field_bytes: dict[str, int] = {}
    for it in items:
        for name, value in it.items():
            field_bytes[name] = field_bytes.get(name, 0) + len(value.encode())
    return Items(items, field_bytes)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _error_detail(reason: str) -> str:
    """The device's own error message out of Flower's and Ray's wrapping of it."""
    if "Message: " in reason:  # ClientAppException: ... occurred. Message: <the error>
        return reason.rsplit("Message: ", 1)[1].strip().removesuffix("'>").strip()
    lines = [ln.strip() for ln in reason.splitlines() if ln.strip()]
    return lines[-1].removesuffix("'>") if lines else reason


def _started_ids(inflight: Path, sent: Mapping[str, object], started: Mapping[str, float]
                 ) -> list[str]:
    """Message ids whose device has dropped its start marker and are not yet known."""
    try:
        names = os.listdir(inflight)
    except FileNotFoundError:
        return []
    return [n for n in names if n in sent and n not in started]
