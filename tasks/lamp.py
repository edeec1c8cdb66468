"""Read official LaMP JSON (questions + outputs, user- or time-based split) into per-user data."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tasks.catalog import Example, Task, get_task


class LampFormatError(ValueError):
    """A LaMP file is malformed; the message names the file, the item id and the field."""

    def __init__(self, path: Path | str, item: str | None, field_name: str | None, problem: str):
        where = f"{path}"
        if item is not None:
            where += f", item id={item}"
        if field_name is not None:
            where += f", field '{field_name}'"
        super().__init__(f"{where}: {problem}")


@dataclass
class UserData:
    """One user's profile (their real data) and held-out queries with golds."""

    user_id: str
    profile: list[dict] = field(default_factory=list)
    queries: list[Example] = field(default_factory=list)


@dataclass
class LampData:
    """A LaMP split grouped by user; the same loader serves the bundled benchmark."""

    task: Task
    users: dict[str, UserData]
    questions_path: Path

    def user_ids(self) -> list[str]:
        return list(self.users)

    def train_pairs(self, user_id: str) -> list[Example]:
        return self.task.profile_pairs(self.users[user_id].profile)

    def to_dataset(self, user_id: str, split: str = "train"):
        """A user's training pairs (`train`) or queries (`test`) as a `datasets.Dataset`."""
        from datasets import Dataset

        rows = self.train_pairs(user_id) if split == "train" else self.users[user_id].queries
        return Dataset.from_dict({
            "id": [r.id for r in rows],
            "prompt": [r.prompt for r in rows],
            "output": [r.output for r in rows],
        })


def _read_json(path: Path):
    if not path.exists():
        raise LampFormatError(path, None, None, "file not found")
    try:
        with path.open() as f:
            return json.load(f)
    except json.JSONDecodeError as err:
        raise LampFormatError(path, None, None, f"not valid JSON ({err})") from err


def read_golds(path: Path | str) -> tuple[str | None, dict[str, str]]:
    """Read a LaMP outputs file: (task id or None, {question id: output})."""
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("golds"), list):
        raise LampFormatError(path, None, "golds", "expected an object with a 'golds' list")
    golds: dict[str, str] = {}
    for i, g in enumerate(data["golds"]):
        gid = g.get("id") if isinstance(g, dict) else None
        if gid is None:
            raise LampFormatError(path, f"#{i}", "id", "missing")
        if "output" not in g or not isinstance(g["output"], str | int | float):
            raise LampFormatError(path, str(gid), "output", "missing or not a string")
        golds[str(gid)] = str(g["output"])
    return data.get("task"), golds


def load_lamp(
    questions: Path | str, outputs: Path | str | None = None, task: str | Task | None = None
) -> LampData:
    """Load a LaMP questions file (and its outputs file, if any) grouped by user.

    Questions of the time-based split carry `user_id`; in the user-based split every
    question is its own user. Profile items of one user are merged by id and sorted by
    `date` where present, as LaMP's own code does.
    """
    qpath = Path(questions)
    gold_task, golds = read_golds(outputs) if outputs is not None else (None, {})
    if task is None:
        if gold_task is None:
            raise ValueError(f"{qpath}: no task given and no outputs file to read it from")
        task = gold_task
    task = task if isinstance(task, Task) else get_task(task)
    if gold_task is not None and get_task(gold_task) != task:
        raise LampFormatError(outputs, None, "task", f"is {gold_task}, expected {task.lamp_id}")

    raw = _read_json(qpath)
    if not isinstance(raw, list):
        raise LampFormatError(qpath, None, None, "expected a list of questions")
    users: dict[str, UserData] = {}
    seen_items: dict[str, set[str]] = {}
    for i, q in enumerate(raw):
        if not isinstance(q, dict):
            raise LampFormatError(qpath, f"#{i}", None, "question is not an object")
        qid = q.get("id")
        if qid is None:
            raise LampFormatError(qpath, f"#{i}", "id", "missing")
        qid = str(qid)
        if not isinstance(q.get("input"), str):
            raise LampFormatError(qpath, qid, "input", "missing or not a string")
        profile = q.get("profile")
        if not isinstance(profile, list):
            raise LampFormatError(qpath, qid, "profile", "missing or not a list")
        uid = str(q.get("user_id", qid))
        user = users.setdefault(uid, UserData(uid))
        seen = seen_items.setdefault(uid, set())
        for j, item in enumerate(profile):
            iid = str(item.get("id", f"{qid}/{j}")) if isinstance(item, dict) else f"{qid}/{j}"
            if not isinstance(item, dict):
                raise LampFormatError(qpath, iid, "profile", "profile item is not an object")
            for fname in task.item_fields:
                if not isinstance(item.get(fname), str | int | float):
                    raise LampFormatError(
                        qpath, iid, fname, f"missing in a {task.name} profile item")
            if iid not in seen:
                seen.add(iid)
                user.profile.append(item)
        if outputs is not None and qid not in golds:
            raise LampFormatError(outputs, qid, "output", "no gold for this question")
        user.queries.append(Example(q["input"], golds.get(qid, ""), {}, qid))
    for user in users.values():
        if all("date" in it for it in user.profile):
            user.profile.sort(key=lambda it: str(it["date"]))
    return LampData(task, users, qpath)


def load_lamp_dir(folder: Path | str, split: str = "dev", task: str | None = None) -> LampData:
    """Load `{split}_questions.json` (+ `{split}_outputs.json` if present) from a folder."""
    folder = Path(folder)
    q = folder / f"{split}_questions.json"
    o = folder / f"{split}_outputs.json"
    if not q.exists():
        raise LampFormatError(q, None, None, "file not found (expected LaMP layout)")
    return load_lamp(q, o if o.exists() else None, task)
