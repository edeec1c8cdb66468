"""The allocator keeps freed memory for the next large tensor (models/allocator.py).

Each check runs in a fresh interpreter: mallopt is process-wide and cannot be undone by
the test, and the default must be seen untouched."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from simulation.cli import build_parser

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")

PROBE = """
import ctypes, json
import torch
from models.allocator import keep_freed_memory

class Info(ctypes.Structure):  # glibc's struct mallinfo2 (malloc.h), field by field
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
tuned = keep_freed_memory()
before = libc.mallinfo2()
x = torch.empty(48 * 2**20 // 4)  # 48 MiB: past glibc's largest mmap threshold
live = libc.mallinfo2()
del x
freed = libc.mallinfo2()
print(json.dumps({"tuned": tuned, "mmapped_while_live": live.hblkhd - before.hblkhd,
                  "free_after": freed.fordblks, "free_gained": freed.fordblks - before.fordblks}))
"""


def _probe(malloc: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CDCDA_MALLOC"}
    if malloc:
        env["CDCDA_MALLOC"] = malloc
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_large_tensors_come_from_the_heap_and_stay_after_free():
    got = _probe(None)
    assert got["tuned"] is True
    assert got["mmapped_while_live"] == 0  # not a fresh mmap
    assert got["free_after"] >= 48 * 2**20  # kept for the next tensor, not unmapped


def test_system_leaves_glibc_as_it_was():
    got = _probe("system")
    assert got["tuned"] is False
    assert got["mmapped_while_live"] >= 48 * 2**20  # glibc's default: its own mmap
    assert got["free_gained"] < 48 * 2**20  # and unmapped on free


@pytest.mark.parametrize("argv, computes", [
    (["run", "--out", "x"], True), (["sweep", "--out", "x"], True),
    (["bench", "train"], True), (["bench", "cloud"], True), (["bench", "sim"], True),
    (["summary", "x"], False), (["report", "x"], False)])
def test_commands_that_compute_tune_it_before_their_threads_start(argv, computes):
    assert getattr(build_parser().parse_args(argv), "computes", False) is computes
