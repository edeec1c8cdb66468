"""Malformed LaMP input, from an unreadable file to an unsafe user id, as one clear error."""

from __future__ import annotations

import json
import re
from pathlib import Path

_MAX_NAME_BYTES = 200  # user ids name files (results/<method>/<user_id>.json); ext4 allows 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class LampFormatError(ValueError):
    """A LaMP file is malformed; the message names the file, the item id and the field."""

    def __init__(self, path: Path | str, item: str | None, field_name: str | None, problem: str):
        where = f"{path}"
        if item is not None:
            where += f", item id={item}"
        if field_name is not None:
            where += f", field '{field_name}'"
        super().__init__(f"{where}: {problem}")


def json_kind(value) -> str:
    """The JSON type of a value, for messages (never its text: it may be huge or nested)."""
    names = {bool: "a boolean", str: "a string", int: "a number", float: "a number",
             list: "an array", dict: "an object"}
    return names.get(type(value), "null")


def short_repr(text: str) -> str:
    """`text` quoted, cut at 60 characters, for messages."""
    return repr(text if len(text) <= 60 else text[:60] + "...")


def read_json(path: Path, max_bytes: int | None = None):
    """Parse a JSON file; every way that can fail is a LampFormatError naming the file.
    A file over `max_bytes` is refused before it is read."""
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise LampFormatError(path, None, None, f"is {size:,} bytes: at most "
                                  f"{max_bytes:,} per data file (split it into users)")
        with path.open(encoding="utf-8-sig") as f:  # JSON is UTF-8; a BOM is tolerated
            return json.load(f)
    except FileNotFoundError:
        problem = "file not found"
    except IsADirectoryError:
        problem = "is a folder, expected a JSON file"
    except UnicodeDecodeError as err:
        problem = f"not UTF-8 text ({err.reason})"
    except RecursionError:
        problem = "not valid JSON (nested too deeply)"
    except ValueError as err:  # JSONDecodeError, a number over Python's 4300-digit limit
        problem = f"not valid JSON ({err})"
    except OSError as err:  # no permission, a file where a folder should be, ...
        problem = f"cannot be read ({err.strerror or err})"
    raise LampFormatError(path, None, None, problem)


def item_id(value, path: Path, item: str, field_name: str = "id") -> str:
    if type(value) is str and value.strip():  # the common case first: called per item
        return value
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise LampFormatError(path, item, field_name,
                              f"must be a string or an integer, got {json_kind(value)}")
    if not str(value).strip():
        raise LampFormatError(path, item, field_name, "is empty")
    return str(value)


def _unsafe_name(name: str) -> str | None:
    """Why a user id cannot name a file, or None."""
    if not name.strip() or name in (".", ".."):
        return f"{short_repr(name)} is not a usable name"
    if "/" in name or "\\" in name:
        return f"{short_repr(name)} contains a path separator"
    if _CONTROL.search(name):
        return f"{short_repr(name)} contains a control character (NUL, newline, ...)"
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        return f"{short_repr(name)} is not valid Unicode (a lone surrogate)"
    return f"is {size} bytes long, over {_MAX_NAME_BYTES}" if size > _MAX_NAME_BYTES else None


def safe_user_id(q: dict, qid: str, path: Path) -> str:
    """`user_id` (time-based split) or the question id (user-based split), safe as a file name."""
    uid, field_name = (q["user_id"], "user_id") if "user_id" in q else (qid, "id")
    if not isinstance(uid, str):
        raise LampFormatError(path, qid, "user_id", "must be a string (as in LaMP's "
                              f"time-based split), got {json_kind(uid)}")
    problem = _unsafe_name(uid)
    if problem:
        raise LampFormatError(path, qid, field_name, f"{problem}; user ids name result files "
                              "(results/<method>/<user_id>.json)")
    return uid
