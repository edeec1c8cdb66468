"""The cloud's coordination of one experiment: seeds up, synthetic data down, metrics back.

Flower's round template (configure/aggregate around weights) does not fit a protocol that
never aggregates weights, so this drives the Grid directly, as Flower allows from
`@app.main()`: one small hook per phase, every exchange accounted in the ledger, every
failure in the failure log, every result stored as it lands. Failed users are retried
(`runtime.retries`); whatever is stored is never redone, so a killed run resumes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from strategies.accounting import Exchange, Ledger, message_bytes, record_bytes
from strategies.failures import FailureLog
from tasks.files import INFLIGHT_DIR, load_stored, write_json

log = logging.getLogger(__name__)

BASE_METHODS = ("zero_shot", "profile_prompt")
TRAIN_METHODS = ("local_real", "cdcda")
SHARED_METHODS = ("shared_lora", "fedavg_lora", "cloud")  # see strategies/baselines.py
METHODS = BASE_METHODS + TRAIN_METHODS + SHARED_METHODS

# (seeds by user, attempt) -> (synthetic items by user, filter counts by user,
#                              cloud errors by user: {cause: failed requests})
Augmenter = Callable[[Mapping[str, list[dict]], int],
                     tuple[dict[str, list[dict]], dict[str, dict], dict[str, dict[str, int]]]]
Progress = Callable[[str, int, int], None]


class RunStopped(RuntimeError):
    """The run was asked to stop (SIGINT/SIGTERM); everything finished so far is stored."""


@dataclass
class StrategySettings:
    timeout: float = 3600.0  # seconds from a device starting its work to its reply
    retries: int = 1  # extra attempts for users that failed
    sample: int = 0
    seed: int = 0
    fallback: str = "none"  # "real_only": train users whose augmentation failed on real data


@dataclass
class MethodResult:
    per_user: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # users still failed at the end
    seconds: float = 0.0


class BadReply(ValueError):
    """A reply whose content is not what the protocol says (counted as `bad_reply`)."""


@dataclass
class _Sent:
    node: int
    user: str
    kind: str
    down: int
    records_down: dict[str, int]


def _metrics(reply: Message) -> dict[str, float]:
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


class AugmentationStrategy:
    """Runs each method over the sampled users and keeps only metrics."""

    def __init__(self, request: Mapping[str, str | int], run_dir: Path, augmenter: Augmenter,
                 ledger: Ledger, failures: FailureLog | None = None,
                 settings: StrategySettings | None = None, progress: Progress | None = None,
                 should_stop: Callable[[], bool] | None = None, services=None):
        self.request = dict(request)  # the ConfigRecord every message carries
        self.run_dir = Path(run_dir)
        self.augmenter = augmenter
        self.ledger = ledger
        self.failures = failures or FailureLog()
        self.settings = settings or StrategySettings()
        self.progress = progress or (lambda m, d, t: None)
        self.should_stop = should_stop or (lambda: False)
        self.node_user: dict[int, str] = {}
        self.services = services  # strategies.baselines.Services, for the shared methods

    # --- plumbing ------------------------------------------------------------------------
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
        timeout = self.settings.timeout
        sent: dict[str, _Sent] = {}
        ids = grid.push_messages(messages)
        for mid, msg in zip(ids, messages):
            node = msg.metadata.dst_node_id
            sent[mid] = _Sent(node, self.node_user.get(node, f"node-{node}"),
                              msg.metadata.message_type, message_bytes(msg.content),
                              record_bytes(msg.content))
        failed: dict[str, str] = {}
        total, done = len(sent), 0
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
                done += 1
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
                        done += 1
                if sent and now - last_progress > timeout:
                    for mid in list(sent):
                        self._timeout(method, attempt, sent.pop(mid), failed,
                                      f"nothing started or replied for {timeout:g} s")
                        done += 1
            self.progress(method, done, total)
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
        if isinstance(parsed, _Seeds):
            entry.fields_up = parsed.field_bytes
        self.ledger.record(entry)  # before the result: a kill in between redoes the user
        commit(s.node, parsed)

    def _timeout(self, method: str, attempt: int, s: _Sent, failed: dict[str, str],
                 detail: str) -> None:
        self.ledger.record(Exchange(method, s.kind, s.user, "timeout", s.down, 0,
                                    s.records_down))
        self._fail(method, s.user, "timeout", detail, attempt, failed)

    def _result_path(self, method: str, user: str) -> Path:
        return self.run_dir / "results" / method / f"{user}.json"

    # --- phases --------------------------------------------------------------------------
    def wait_for_nodes(self, grid: Grid, expected: int, settle: float = 5.0,
                       max_wait: float = 60.0) -> list[int]:
        """SuperNodes register asynchronously: wait for `expected` of them, or until their
        number has not changed for `settle` seconds (a smaller federation), at most max_wait."""
        start = last_change = time.time()
        nodes: list[int] = []
        while True:
            if self.should_stop():
                raise RunStopped("stopped while waiting for SuperNodes")
            now_nodes = sorted(grid.get_node_ids())
            if len(now_nodes) != len(nodes):
                nodes, last_change = now_nodes, time.time()
            if len(nodes) >= expected or time.time() - start > max_wait or (
                    nodes and time.time() - last_change > settle):
                return nodes
            time.sleep(0.1)

    def discover(self, grid: Grid, expected: int = 0) -> dict[int, str]:
        """Learn which user each SuperNode holds (one tiny query per node, retried)."""
        nodes = self.wait_for_nodes(grid, expected) if expected else sorted(grid.get_node_ids())
        if expected and len(nodes) != expected:
            log.warning("%d SuperNodes for experiment.users = %d", len(nodes), expected)
        found: dict[int, str] = {}

        def commit(node: int, reply: Message) -> None:
            found[node] = str(reply.content["meta"]["user-id"])

        todo = list(nodes)
        for attempt in range(self.settings.retries + 1):
            if not todo:
                break
            msgs = [self._message(n, "query.user", "setup", attempt) for n in todo]
            self._exchange(grid, msgs, "setup", attempt, lambda node, reply: reply, commit)
            todo = [n for n in todo if n not in found]
        if not found:
            raise RuntimeError(f"no device answered discovery ({len(nodes)} SuperNodes, "
                               f"runtime.timeout = {self.settings.timeout:g} s); see run.log")
        users = sorted(found.items(), key=lambda kv: kv[1])
        if self.settings.sample and self.settings.sample < len(users):
            picked = random.Random(self.settings.seed).sample(users, self.settings.sample)
            users = sorted(picked, key=lambda kv: kv[1])
        self.node_user = dict(users)
        log.info("%d devices answered; %d users sampled", len(found), len(users))
        return self.node_user

    def _pending(self, method: str, result: MethodResult) -> list[int]:
        """Nodes whose user has no stored result for this method (resume skips the rest)."""
        todo = []
        for node, user in self.node_user.items():
            stored = load_stored(self._result_path(method, user))
            if stored is not None:
                result.per_user[user] = stored
            else:
                todo.append(node)
        if len(todo) < len(self.node_user):
            log.info("%s: %d users already done, %d to go", method,
                     len(self.node_user) - len(todo), len(todo))
        return todo

    def run_method(self, grid: Grid, method: str) -> MethodResult:
        if method not in METHODS:
            raise ValueError(f"unknown method '{method}': use {', '.join(METHODS)}")
        start = time.perf_counter()
        result = MethodResult()
        todo = self._pending(method, result)
        for attempt in range(self.settings.retries + 1):
            if not todo:
                break
            if attempt:
                log.info("%s: retrying %d users (attempt %d)", method, len(todo), attempt + 1)
            last = attempt == self.settings.retries
            failed = self._attempt(grid, method, todo, attempt, last, result)
            todo = [n for n in todo if self.node_user[n] in failed]
            result.failures = {self.node_user[n]: failed[self.node_user[n]] for n in todo}
        result.seconds = time.perf_counter() - start
        return result

    def _store(self, method: str, user: str, metrics: dict[str, float],
               result: MethodResult) -> None:
        write_json(self._result_path(method, user), metrics)
        result.per_user[user] = metrics

    def _attempt(self, grid: Grid, method: str, nodes: list[int], attempt: int, last: bool,
                 result: MethodResult) -> dict[str, str]:
        if method in SHARED_METHODS:
            from strategies.baselines import RUNNERS

            return RUNNERS[method](self, grid, method, nodes, attempt, result)
        failed: dict[str, str] = {}
        synthetic: dict[str, list[dict]] = {}
        fallback: set[str] = set()
        if method == "cdcda":
            synthetic, fallback = self._synthesise(grid, nodes, attempt, last, failed)
            nodes = [n for n in nodes if self.node_user[n] in synthetic]
        kind = "evaluate" if method in BASE_METHODS else "train"
        msgs = [self._message(n, kind, method, attempt, synthetic.get(self.node_user[n])
                              if method == "cdcda" else None) for n in nodes]

        def commit(node: int, metrics: dict[str, float]) -> None:
            user = self.node_user[node]
            if user in fallback:
                metrics["augment-fallback"] = 1.0  # trained real-only: the cloud failed
            self._store(method, user, metrics, result)

        if msgs:
            failed.update(self._exchange(grid, msgs, method, attempt,
                                         lambda node, reply: _metrics(reply), commit))
        return failed

    def _synthesise(self, grid: Grid, nodes: list[int], attempt: int, last: bool,
                    failed: dict[str, str]) -> tuple[dict[str, list[dict]], set[str]]:
        """Seed round + cloud augmentation, cached per user so a resumed run reuses it.

        Only complete augmentation is cached: a user whose cloud requests failed is
        retried (next attempt or next run), or with `fallback = "real_only"` trained on
        real data alone on the last attempt and marked so.
        """
        synthetic: dict[str, list[dict]] = {}
        missing = []
        for n in nodes:
            cached = load_stored(self.run_dir / "synthetic" / f"{self.node_user[n]}.json")
            if cached is not None and isinstance(cached.get("items"), list):
                synthetic[self.node_user[n]] = cached["items"]
            else:
                missing.append(n)
        if not missing:
            return synthetic, set()
        seeds: dict[str, list[dict]] = {}

        def commit(node: int, got: _Seeds) -> None:
            seeds[self.node_user[node]] = got.items

        msgs = [self._message(n, "query.seeds", "cdcda", attempt) for n in missing]
        failed.update(self._exchange(grid, msgs, "cdcda", attempt, _parse_seeds, commit))
        if self.should_stop():
            raise RunStopped("stopped before augmentation")
        items, counts, errors = self.augmenter(seeds, attempt) if seeds else ({}, {}, {})
        for user, kept in items.items():
            write_json(self.run_dir / "synthetic" / f"{user}.json",
                       {"seeds": seeds[user], "items": kept, "counts": counts[user]})
            synthetic[user] = kept
        fallback = set()
        for user, causes in errors.items():
            detail = ", ".join(f"{n} x {c}" for c, n in sorted(causes.items()))
            self._fail("cdcda", user, "cloud_error", f"augmentation failed: {detail}",
                       attempt, failed, causes=dict(causes))
            if last and self.settings.fallback == "real_only":
                synthetic[user] = []
                fallback.add(user)
                del failed[user]
        return synthetic, fallback


@dataclass
class _Seeds:
    items: list[dict]
    field_bytes: dict[str, int]


def _parse_seeds(node: int, reply: Message) -> _Seeds:
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
    return _Seeds(items, field_bytes)


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
