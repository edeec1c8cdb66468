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
from pathlib import Path

from strategies.accounting import read_jsonl
from tasks.files import append_line

FAILURES_FILE = "failures.jsonl"
KINDS = ("device_error", "timeout", "arrays", "bad_reply", "cloud_error", "no_seeds",
         "non_finite")


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
