"""The terminal: one rich console on stderr that the command line owns (stdout carries JSON)."""

from __future__ import annotations

from rich.console import Console

console = Console(stderr=True)


def describe(err: Exception) -> str:
    """An error's message; an OSError's names its path(s) first, as our own errors do."""
    if isinstance(err, OSError) and err.filename is not None:
        paths = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
        return f"{paths}: {err.strerror or err}"
    return str(err)
