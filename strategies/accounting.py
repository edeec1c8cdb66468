"""Communication accounting: serialized bytes of every exchange, persisted as a ledger.

The ledger is an append-only JSON-lines file in the run directory, one line per finished
exchange of one user (a request down and its reply up, or the request alone when the
device failed). A cohort message (`runtime.cohort` users per SuperNode) carries one record
per user, and the ledger splits it: each user is charged its view, what its own device
would have sent and received with a message of its own (`user_view`).

The ledger is the source of truth for the summary, so a resumed run ends with the same
figures as an uninterrupted one: an exchange repeated only because a run resumed
(discovery, or a reply stored in the ledger whose result file a kill cut off) is charged
once, while every failed attempt stays charged, because its bytes really crossed the network.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from flwr.app import ConfigRecord, RecordDict
from flwr.common.serde import recorddict_to_proto

from tasks.files import append_line

log = logging.getLogger(__name__)

LEDGER_FILE = "ledger.jsonl"


def message_bytes(content: RecordDict) -> int:
    """Bytes of a message's content as Flower serializes it on the wire (protobuf)."""
    return recorddict_to_proto(content).ByteSize()


def record_bytes(content: RecordDict) -> dict[str, int]:
    """Bytes per top-level record (config, synthetic, meta, metrics, ...) of a message."""
    return {name: message_bytes(RecordDict({name: rec})) for name, rec in content.items()}


# Config keys only a cohort message carries (whom it is for, how many users a SuperNode
# holds): a user's own device would neither send nor receive them, so no user pays for them.
COHORT_KEYS = ("users", "cohort")


def split(content: RecordDict) -> tuple[dict, dict[str, dict]]:
    """A cohort message's records: those all its users share (unsuffixed names; "config"
    without COHORT_KEYS), and each user's own ("<record>/<user>"), by user and base name."""
    shared: dict = {}
    own: dict[str, dict] = {}
    for name, record in content.items():
        base, sep, user = name.partition("/")
        if sep:
            own.setdefault(user, {})[base] = record
        elif isinstance(record, ConfigRecord) and any(k in record for k in COHORT_KEYS):
            shared[name] = ConfigRecord({k: v for k, v in record.items()
                                         if k not in COHORT_KEYS})
        else:
            shared[name] = record
    return shared, own


def user_view(content: RecordDict, user: str) -> RecordDict:
    """What `user`'s own device would have sent or received in place of this message: the
    shared records, and the user's own under their base names (K = 1's message exactly)."""
    shared, own = split(content)
    return RecordDict({**shared, **own.get(user, {})})


class Cohort:
    """A message split once into its users' views; each record is serialized once, so
    charging K users costs what charging the message did (the shared adapter included)."""

    def __init__(self, content: RecordDict) -> None:
        self.shared, self.own = split(content)
        self._shared_bytes = record_bytes(RecordDict(self.shared))

    @property
    def users(self) -> list[str]:
        """The users the message holds records of, in its order."""
        return list(self.own)

    def view(self, user: str) -> RecordDict:
        return RecordDict({**self.shared, **self.own.get(user, {})})

    def view_bytes(self, user: str) -> tuple[int, dict[str, int]]:
        """message_bytes and record_bytes of `user`'s view (a RecordDict's wire size is the
        sum of its records' sizes)."""
        records = {**self._shared_bytes, **record_bytes(RecordDict(self.own.get(user, {})))}
        return sum(records.values()), records


@dataclass
class Exchange:
    """One request and its reply (if any), as stored in the ledger."""

    method: str
    kind: str
    user: str
    outcome: str = "ok"  # ok | error | timeout | rejected | bad_reply
    down: int = 0
    up: int = 0
    records_down: dict[str, int] = field(default_factory=dict)
    records_up: dict[str, int] = field(default_factory=dict)
    fields_up: dict[str, int] = field(default_factory=dict)  # seed fields that left, bytes
    round: int = 0  # a FedAvg round: each one is traffic of its own
    attempt: int = 0  # a retry within a run is traffic of its own too (0: not written)

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v or k in ("down", "up")}


def read_jsonl(path: Path, what: str) -> list[dict]:
    """Lines of a JSON-lines file; unreadable lines are named, moved aside and dropped.

    A kill can cut the last line short: the file is rewritten without it (atomically) and
    the bad lines go to `<file>.corrupt` so nothing is silently lost.
    """
    if not path.exists():
        return []
    good, bad = [], []
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            good.append(obj)
        except ValueError:
            bad.append((number, line))
    if bad:
        log.warning("%s %s: %d unreadable line(s) (first: line %d) moved to %s.corrupt",
                    what, path, len(bad), bad[0][0], path.name)
        with (path.parent / f"{path.name}.corrupt").open("ab") as f:
            f.writelines(line + b"\n" for _, line in bad)
        tmp = path.parent / f".{path.name}.rewrite"
        tmp.write_text("".join(json.dumps(o) + "\n" for o in good))
        tmp.replace(path)
    return good


class Ledger:
    """Appends exchanges to `ledger.jsonl` (or keeps them in memory when path is None)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.entries: list[dict] = read_jsonl(self.path, "ledger") if self.path else []

    def record(self, exchange: Exchange) -> None:
        entry = exchange.to_json()
        self.entries.append(entry)
        if self.path is not None:  # one line, flushed: a kill loses at most this line
            append_line(self.path, json.dumps(entry) + "\n")

    def summary(self, method: str, users: Iterable[str] | None = None) -> dict:
        return summarise(self.entries, method, users)


def charged(entries: Iterable[Mapping]) -> list[Mapping]:
    """The exchanges a run is charged for: every failed one, and the last successful one
    per (method, kind, user, round, attempt): a repeat caused only by resuming (a new
    session starts again at attempt 0) is not traffic twice, while each FedAvg round is,
    and so is a retry's re-sent request (cdcda's seeds go up again when the cloud failed
    them the first time)."""
    entries = list(entries)
    last_ok: dict[tuple, int] = {}
    for i, e in enumerate(entries):
        if e.get("outcome", "ok") == "ok":
            key = (e["method"], e["kind"], e["user"], e.get("round", 0), e.get("attempt", 0))
            last_ok[key] = i
    keep = set(last_ok.values())
    return [e for i, e in enumerate(entries) if e.get("outcome", "ok") != "ok" or i in keep]


def summarise(entries: Iterable[Mapping], method: str, users: Iterable[str] | None = None
              ) -> dict:
    """Bytes up (device -> cloud) and down by kind, record and user for one method."""
    wanted = set(users) if users is not None else None
    by_kind: dict = defaultdict(lambda: {"up": 0, "down": 0, "messages": 0})
    by_record: dict = defaultdict(lambda: {"up": 0, "down": 0})
    by_user: dict = defaultdict(lambda: {"up": 0, "down": 0})
    failed = {"up": 0, "down": 0, "exchanges": 0}
    for e in charged(x for x in entries if x["method"] == method):
        if wanted is not None and e["user"] not in wanted:
            continue
        k = by_kind[e["kind"]]
        k["up"] += e.get("up", 0)
        k["down"] += e.get("down", 0)
        k["messages"] += 1
        for name, n in e.get("records_down", {}).items():
            by_record[name]["down"] += n
        for name, n in e.get("records_up", {}).items():
            by_record[name]["up"] += n
        u = by_user[e["user"]]
        u["up"] += e.get("up", 0)
        u["down"] += e.get("down", 0)
        if e.get("outcome", "ok") != "ok":
            failed["up"] += e.get("up", 0)
            failed["down"] += e.get("down", 0)
            failed["exchanges"] += 1
    up = sum(v["up"] for v in by_kind.values())
    down = sum(v["down"] for v in by_kind.values())
    n = max(len(by_user), 1)
    totals = sorted(v["up"] + v["down"] for v in by_user.values()) or [0]
    return {
        "bytes_up": up,
        "bytes_down": down,
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "by_record": {k: dict(v) for k, v in sorted(by_record.items())},
        "failed_exchanges": failed,
        "users": len(by_user),
        "per_user_mean": {"up": up / n, "down": down / n},
        "per_user_total": {"min": totals[0], "max": totals[-1],
                           "median": totals[len(totals) // 2]},
    }


def projection(summary: Mapping, users: int, rounds: int = 1, round_kinds: tuple = (),
               measured_rounds: int = 1) -> dict:
    """Bytes for `users` users over `rounds` rounds, from the measured per-user means.

    Kinds in `round_kinds` (fedavg_lora's `train`) recur every round: their measured
    per-user bytes cover `measured_rounds` rounds and scale to `rounds`; the rest
    (discovery, evaluation, seeds, synthetic data) are paid once per user.
    """
    n = max(summary["users"], 1)
    per_round = sum(v["up"] + v["down"] for k, v in summary["by_kind"].items()
                    if k in round_kinds) / n / max(measured_rounds, 1)
    once = (summary["bytes_up"] + summary["bytes_down"]) / n - per_round * measured_rounds
    return {"users": users, "rounds": rounds,
            "bytes": users * (once + per_round * rounds),
            "bytes_per_user": once + per_round * rounds}


def disclosure(entries: Iterable[Mapping], users: Iterable[str]) -> dict:
    """What left each device, from the ledger: record names and seed fields, with bytes."""
    per_user: dict[str, dict] = {u: {"records": {}, "seed_fields": {}} for u in users}
    for e in charged(entries):
        if e["user"] not in per_user or not e.get("up"):
            continue
        got = per_user[e["user"]]
        for name, n in e.get("records_up", {}).items():
            got["records"][name] = got["records"].get(name, 0) + n
        for name, n in e.get("fields_up", {}).items():
            got["seed_fields"][name] = got["seed_fields"].get(name, 0) + n
    fields: dict[str, int] = defaultdict(int)
    for got in per_user.values():
        for name, n in got["seed_fields"].items():
            fields[name] += n
    return {"seed_fields_total": dict(sorted(fields.items())), "per_user": per_user}
