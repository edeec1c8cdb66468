"""One user's part of a device's reply, and the checks every part passes.

A reply from a SuperNode holding several users carries each user's records under
"<record>/<user>"; the exchange cuts it into views (`strategies.accounting.user_view`), and
these read one view: its metrics, its items, its error.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from flwr.app import ConfigRecord, MetricRecord, RecordDict


class BadReply(ValueError):
    """A reply whose content is not what the protocol says (counted as `bad_reply`)."""


class NonFinite(BadReply):
    """A reply whose weights hold NaN or inf (counted as `non_finite`): averaged in, one
    user's diverged adapter would poison everyone's."""


@dataclass
class View:
    """One user's part of a reply: what that user's own device would have sent."""

    node: int
    user: str
    content: RecordDict


def reply_metrics(content: RecordDict) -> dict[str, float]:
    """A reply's (one user's view's) metrics, all finite numbers, or BadReply."""
    try:
        record = content["metrics"]
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


@dataclass
class Items:
    items: list[dict]
    field_bytes: dict[str, int]


def parse_items(view: View) -> Items:
    """The seed items a device sent, checked, with the bytes of each field that left."""
    items = json.loads(str(view.content["meta"]["items"]))
    if not isinstance(items, list) or not all(
            isinstance(it, dict) and all(isinstance(v, str) for v in it.values())
            for it in items):
        raise BadReply("seed items are not a list of objects of strings")
    field_bytes: dict[str, int] = {}
    for it in items:
        for name, value in it.items():
            field_bytes[name] = field_bytes.get(name, 0) + len(value.encode())
    return Items(items, field_bytes)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def error_reason(record) -> str:
    """The reason an "error/<user>" record gives (the device's own message)."""
    if isinstance(record, ConfigRecord) and "reason" in record:
        return str(record["reason"])
    return "the device sent an unreadable error record"


def error_detail(reason: str) -> str:
    """The device's own error message out of Flower's and Ray's wrapping of it."""
    if "Message: " in reason:  # ClientAppException: ... occurred. Message: <the error>
        return reason.rsplit("Message: ", 1)[1].strip().removesuffix("'>").strip()
    lines = [ln.strip() for ln in reason.splitlines() if ln.strip()]
    return lines[-1].removesuffix("'>") if lines else reason
