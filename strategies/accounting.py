"""Communication accounting: serialized bytes of every message, by method, kind and user."""

from __future__ import annotations

from collections import defaultdict

from flwr.app import RecordDict
from flwr.common.serde import recorddict_to_proto


def message_bytes(content: RecordDict) -> int:
    """Bytes of a message's content as Flower serializes it on the wire (protobuf)."""
    return recorddict_to_proto(content).ByteSize()


def record_bytes(content: RecordDict) -> dict[str, int]:
    """Bytes per top-level record (config, synthetic, meta, metrics, ...) of a message."""
    return {name: message_bytes(RecordDict({name: rec})) for name, rec in content.items()}


class Ledger:
    """Bytes up (device -> cloud) and down (cloud -> device) per method, kind and user."""

    def __init__(self) -> None:
        # method -> kind -> direction -> bytes ; method -> user -> direction -> bytes
        self.by_kind = defaultdict(lambda: defaultdict(lambda: {"up": 0, "down": 0, "messages": 0}))
        self.by_user = defaultdict(lambda: defaultdict(lambda: {"up": 0, "down": 0}))
        # method -> record name -> direction -> bytes (what the payload is made of)
        self.by_record = defaultdict(lambda: defaultdict(lambda: {"up": 0, "down": 0}))

    def add_message(self, method: str, kind: str, direction: str, content: RecordDict,
                    user: str | None) -> None:
        """Account one message: its whole size, and the size of each of its records."""
        self.add(method, kind, direction, message_bytes(content), user)
        for name, nbytes in record_bytes(content).items():
            self.by_record[method][name][direction] += nbytes

    def add(self, method: str, kind: str, direction: str, nbytes: int, user: str | None) -> None:
        entry = self.by_kind[method][kind]
        entry[direction] += nbytes
        if direction == "down":
            entry["messages"] += 1
        if user is not None:
            self.by_user[method][user][direction] += nbytes

    def summary(self, method: str) -> dict:
        kinds = {k: dict(v) for k, v in self.by_kind[method].items()}
        users = self.by_user[method]
        up = sum(v["up"] for v in kinds.values())
        down = sum(v["down"] for v in kinds.values())
        n = max(len(users), 1)
        per_user_totals = sorted(v["up"] + v["down"] for v in users.values()) or [0]
        return {
            "bytes_up": up,
            "bytes_down": down,
            "by_kind": kinds,
            "by_record": {k: dict(v) for k, v in self.by_record[method].items()},
            "users": len(users),
            "per_user_mean": {"up": up / n, "down": down / n},
            "per_user_total": {"min": per_user_totals[0], "max": per_user_totals[-1],
                               "median": per_user_totals[len(per_user_totals) // 2]},
        }

    def projection(self, method: str, users: int, rounds: int = 1) -> dict:
        """Total bytes for `users` users over `rounds` rounds at the measured per-user mean."""
        s = self.summary(method)
        per = s["per_user_mean"]["up"] + s["per_user_mean"]["down"]
        return {"users": users, "rounds": rounds, "bytes": per * users * rounds}
