"""Atomic file writes shared by device, cloud and runner: a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def umask() -> int:
    """The process's umask, read without changing it (os.umask sets it, racing threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def write_json(path: Path | str, obj, indent: int | None = 1) -> None:
    """Write JSON to a temp file beside `path`, then rename it into place.

    `indent=None` writes compact JSON. `json.dumps` (C encoder) is used, not `json.dump`,
    which encodes in pure Python: 100k-user benchmark files are written several times faster.
    """
    text = json.dumps(obj, indent=indent, separators=None if indent is not None else (",", ":"))
    write_text(path, text)


def write_text(path: Path | str, text: str) -> Path:
    """Write text atomically (a temp file beside `path`, then a rename), with the mode a
    plain open() would give (0666 less the umask: group-readable on a shared cluster
    folder), not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise named(err, path) from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def named(err: OSError, path: Path | str) -> OSError:
    """The error with the path it concerns (a failed write names none: 'No space left on
    device' alone says not where)."""
    if err.filename is not None:
        return err
    return type(err)(err.errno, err.strerror or str(err), str(path))


def append_line(path: Path, line: str) -> None:
    """One line appended and flushed (a kill loses at most this line); errors name path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(line)
    except OSError as err:
        raise named(err, path) from err


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield a temp folder beside `path`; on success it replaces `path` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        yield tmp
        tmp.chmod(0o777 & ~umask())  # mkdtemp's folder is private (0700)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_folder(path: Path, option: str = "--out") -> None:
    """`path` must be, or be able to become, a writable folder: name what is in the way."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == path else f"has a file as a parent ({p})"
                raise ValueError(f"{option} {path} {what}: expected a folder")
            if not os.access(p, os.W_OK):
                raise ValueError(f"{option} {path}: {p} is not writable")
            return


def load_stored(path: Path | str) -> dict | None:
    """A stored JSON object, or None if absent. A corrupt file is named in the log and
    moved aside (`<name>.corrupt`), so the caller recomputes it instead of crashing."""
    path = Path(path)
    try:
        obj = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (ValueError, OSError) as err:  # JSONDecodeError, UnicodeDecodeError, EISDIR
        _quarantine(path, f"{type(err).__name__}: {err}")
        return None
    if not isinstance(obj, dict):
        _quarantine(path, "not a JSON object")
        return None
    return obj


def _quarantine(path: Path, why: str) -> None:
    aside = path.with_name(path.name + ".corrupt")
    log.warning("stored file %s is unreadable (%s): moved to %s and recomputed",
                path, why, aside.name)
    with contextlib.suppress(OSError):
        os.replace(path, aside)


LOG_FILE = "run.log"  # every process of a run appends its log lines here

# Devices drop an empty file here, named after the message id, when they start a message's
# work: the server counts a device's timeout from then, not from when the message was sent.
INFLIGHT_DIR = ".inflight"


# ... and the server drops one in GIVEN_UP when it times a message out: a device that
# reaches it later (it was queued behind busy workers) skips the work nobody waits for
GIVEN_UP = "given-up"


def mark_started(run_dir: Path | str, message_id: str) -> bool:
    """Say the work of `message_id` starts now; False if the server has given it up."""
    if not message_id or "/" in message_id:  # a message never sent through a Grid
        return True
    folder = Path(run_dir) / INFLIGHT_DIR
    if (folder / GIVEN_UP / message_id).exists():
        return False
    folder.mkdir(parents=True, exist_ok=True)
    (folder / message_id).touch()
    return True


def give_up(run_dir: Path | str, message_id: str) -> None:
    """The server no longer waits for `message_id`'s reply (it timed out): a device that
    has not started it yet must not (with timed-out messages still queued, a retry would
    wait behind all of them, time out in turn, and so on)."""
    folder = Path(run_dir) / INFLIGHT_DIR / GIVEN_UP
    folder.mkdir(parents=True, exist_ok=True)
    (folder / message_id).touch()
