"""`cdcda run` and `cdcda bench` (filled in as the runner lands)."""

from __future__ import annotations

import argparse


def add_run_and_bench(sub: argparse._SubParsersAction) -> None:
    return None
