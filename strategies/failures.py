"""Every failure of a run, persisted by method, user, kind and attempt (`failures.jsonl`).

Kinds: `device_error` (the ClientApp raised), `timeout` (no reply within `runtime.timeout`
of the device starting its work), `arrays` (a reply carried weights: rejected),
`bad_reply` (malformed content), `non_finite` (training left the user's adapter with NaN or
inf weights), `cloud_error` (the cloud LLM failed requests; `causes`
counts them by cause), `no_seeds` (the device sent no usable seeds). A failure that a
retry later fixed stays in the log: the summary shows both.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from strategies.accounting import read_jsonl
from tasks.files import append_line

FAILURES_FILE = "failures.jsonl"
KINDS = ("device_error", "timeout", "arrays", "bad_reply", "cloud_error", "no_seeds",
         "non_finite")
# a failed exchange in the ledger and the failure kinds it is recorded as
_LEDGER_OUTCOMES = {"error": ("device_error", "non_finite"), "timeout": ("timeout",),
                    "rejected": ("arrays",), "bad_reply": ("bad_reply", "non_finite")}
RESTORED = "restored from the ledger: the failure record was lost (the disk filled up?)"


class FailureLog:
    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.entries: list[dict] = read_jsonl(self.path, "failure log") if self.path else []

    def record(self, method: str, user: str, kind: str, detail: str, attempt: int = 0,
               **extra) -> None:
        entry = {"method": method, "user": user, "kind": kind, "detail": detail[:500],
                 "attempt": attempt, **extra}
        self.entries.append(entry)
        if self.path is not None:
            append_line(self.path, json.dumps(entry) + "\n")

    def reconcile(self, ledger: Iterable[dict]) -> int:
        """Record each failed exchange of the ledger that this log lacks; returns how many.

        The ledger is written first (a failure is charged before it is logged), so a write
        error between the two (a full disk) left the ledger with a failure this log does
        not have. Detail beyond the kind is lost; the count and the kind are not."""
        have = Counter((e.get("method"), e.get("user"), int(e.get("attempt", 0)), e.get("kind"))
                       for e in self.entries)
        restored = 0
        for e in ledger:
            kinds = _LEDGER_OUTCOMES.get(e.get("outcome", "ok"))
            if not kinds:
                continue
            key = (e.get("method"), e.get("user"), int(e.get("attempt", 0)))
            kind = next((k for k in kinds if have[(*key, k)] > 0), None)
            if kind is not None:
                have[(*key, kind)] -= 1
                continue
            self.record(*key[:2], kinds[0], RESTORED, key[2], restored=True)
            restored += 1
        return restored
