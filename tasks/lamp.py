"""Read official LaMP JSON (questions + outputs, user- or time-based split) into per-user data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.catalog import Example, Task, get_task
from tasks.lamp_errors import (
    LampFormatError,
    item_id,
    json_kind,
    read_json,
    safe_user_id,
    short_repr,
)

_RATINGS = ("1", "2", "3", "4", "5")


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
    outputs_path: Path | None = None  # None: loaded without golds (queries' outputs are "")
    # texts over MAX_TEXT_BYTES, cut to it at load: "<file>, item id=<id>, field '<f>'
    # (<n> bytes)", so the run can count and name them
    cut: list[str] = field(default_factory=list)

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


def _gold_problem(task: Task, text: str) -> str | None:
    """Why a gold is not a valid answer for the task, or None (generation: any text)."""
    if not text.strip():
        return "is empty"
    if task.kind == "generation" or task.is_valid_output(text):
        return None
    noun, allowed = ("rating", _RATINGS) if task.kind == "rating" else ("label", task.labels)
    return f"{short_repr(text)} is not a {task.name} {noun}; allowed: {', '.join(allowed)}"


def _resolve_task(path: Path, file_task: str | None, task: str | Task | None) -> Task | None:
    """The task to check a file against: `task`, else the file's own; they must agree."""
    spec = get_task(task) if isinstance(task, str) else task
    if file_task is None:
        return spec
    try:
        own = get_task(file_task)
    except ValueError as err:
        raise LampFormatError(path, None, "task", str(err)) from err
    if spec is not None and own != spec:
        raise LampFormatError(path, None, "task", f"is {file_task}, expected {spec.lamp_id}")
    return own


def read_outputs(
    path: Path | str, task: str | Task | None = None, cuts: list[str] | None = None
) -> tuple[str | None, dict[str, str]]:
    """Read a LaMP outputs file, golds or predictions: (task id or None, {id: output}).

    Ids must be unique: with a repeated id one answer would silently win. With `task`, the
    file's own `task` field, if any, must agree. Outputs over MAX_TEXT_BYTES are cut, and
    named in `cuts`.
    """
    path = Path(path)
    data = read_json(path, MAX_FILE_BYTES)
    if not isinstance(data, dict) or not isinstance(data.get("golds"), list):
        raise LampFormatError(path, None, "golds", "expected an object with a 'golds' list")
    file_task = data.get("task")
    if file_task is not None and not isinstance(file_task, str):
        raise LampFormatError(path, None, "task",
                              f"must be a task id such as LaMP_2, got {json_kind(file_task)}")
    out: dict[str, str] = {}
    cut = cuts if cuts is not None else []
    for i, g in enumerate(data["golds"]):
        if not isinstance(g, dict):
            raise LampFormatError(path, f"#{i}", None, "entry is not an object")
        if g.get("id") is None:
            raise LampFormatError(path, f"#{i}", "id", "missing")
        gid = item_id(g["id"], path, f"#{i}")
        if gid in out:
            raise LampFormatError(path, gid, "id", f"duplicate id (entry #{i} repeats it)")
        value = g.get("output")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise LampFormatError(path, gid, "output", "missing or not a string")
        out[gid] = _bounded(value, path, gid, "output", cut)
    if task is not None:
        _resolve_task(path, file_task, task)
    return file_task, out


def read_golds(
    path: Path | str, task: str | Task | None = None, cuts: list[str] | None = None
) -> tuple[str | None, dict[str, str]]:
    """Read a LaMP outputs file of golds: (task id or None, {question id: gold}).

    Every gold must be a non-empty, valid answer for `task` (else for the file's own task):
    a bad gold would silently score every prediction as wrong.
    """
    path = Path(path)
    file_task, golds = read_outputs(path, cuts=cuts)
    spec = _resolve_task(path, file_task, task)
    for gid, text in golds.items():
        problem = _gold_problem(spec, text) if spec else ("is empty" if not text.strip() else None)
        if problem:
            raise LampFormatError(path, gid, "output", problem)
    return file_task, golds


# LaMP's longest texts (LaMP-4 articles, LaMP-5 abstracts) are a few kB: a text 1,000 times
# that is broken data. Held whole it was uploaded as a seed, tokenised by the cloud and the
# device, and OOM-killed them (seen: a 50 MB profile item killed the driver). So each text
# is cut here, where the device reads its data, and the run counts and names the cuts.
MAX_TEXT_BYTES = 1_000_000
# a split's file is parsed whole, by the driver and by every device worker
MAX_FILE_BYTES = 4 * 1024**3


def _bounded(value, path: Path, item: str, field: str, cut: list[str]) -> str:
    """The text of a query or profile field, valid Unicode (it is sent and tokenised as
    UTF-8: a lone surrogate would fail every method on the device, blamed on it) and cut to
    MAX_TEXT_BYTES at a character boundary; a cut is appended to `cut`, named."""
    if not isinstance(value, str):
        return str(value)
    if value.isascii() and len(value) <= MAX_TEXT_BYTES:  # the common case: no copy
        return value
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise LampFormatError(path, item, field, f"is not valid Unicode ({err.reason} at "
                              f"character {err.start})") from None
    if len(data) <= MAX_TEXT_BYTES:
        return value
    cut.append(f"{path}, item id={item}, field '{field}' ({len(data):,} bytes)")
    return data[:MAX_TEXT_BYTES].decode("utf-8", errors="ignore")


def load_lamp(
    questions: Path | str, outputs: Path | str | None = None, task: str | Task | None = None
) -> LampData:
    """Load a LaMP questions file (and its outputs file, if any) grouped by user.

    Questions of the time-based split carry `user_id`; in the user-based split every
    question is its own user. Profile items of one user are merged by id and sorted by
    `date` where present, as LaMP's own code does.
    """
    qpath = Path(questions)
    opath = Path(outputs) if outputs is not None else None
    cut: list[str] = []
    gold_task, golds = read_golds(opath, task, cut) if opath is not None else (None, {})
    if task is None:
        if gold_task is None:
            raise LampFormatError(opath or qpath, None, "task",
                                  "no task given and no outputs file naming one")
        task = gold_task
    task = task if isinstance(task, Task) else get_task(task)

    raw = read_json(qpath, MAX_FILE_BYTES)
    if not isinstance(raw, list):
        raise LampFormatError(qpath, None, None, "expected a list of questions")
    users: dict[str, UserData] = {}
    seen_items: dict[str, set[str]] = {}
    seen_questions: set[str] = set()
    for i, q in enumerate(raw):
        if not isinstance(q, dict):
            raise LampFormatError(qpath, f"#{i}", None, "question is not an object")
        if q.get("id") is None:
            raise LampFormatError(qpath, f"#{i}", "id", "missing")
        qid = item_id(q["id"], qpath, f"#{i}")
        if qid in seen_questions:
            raise LampFormatError(qpath, qid, "id", f"duplicate question id (question #{i})")
        seen_questions.add(qid)
        if not isinstance(q.get("input"), str):
            raise LampFormatError(qpath, qid, "input", "missing or not a string")
        query = _bounded(q["input"], qpath, qid, "input", cut)
        profile = q.get("profile")
        if not isinstance(profile, list):
            raise LampFormatError(qpath, qid, "profile", "missing or not a list")
        uid = safe_user_id(q, qid, qpath)
        user = users.setdefault(uid, UserData(uid))
        seen = seen_items.setdefault(uid, set())
        for j, item in enumerate(profile):
            iid = f"{qid}/{j}"
            if not isinstance(item, dict):
                raise LampFormatError(qpath, iid, "profile", "profile item is not an object")
            if item.get("id") is not None:
                iid = item_id(item["id"], qpath, iid)
            for fname in task.item_fields:
                if not isinstance(item.get(fname), str | int | float):
                    raise LampFormatError(
                        qpath, iid, fname, f"missing in a {task.name} profile item")
                text = _bounded(item[fname], qpath, iid, fname, cut)
                if text is not item[fname] and isinstance(item[fname], str):
                    item = {**item, fname: text}
            if not isinstance(item.get("date", ""), str | int | float):
                raise LampFormatError(qpath, iid, "date", "not a string (profiles sort on it)")
            if iid not in seen:
                seen.add(iid)
                user.profile.append(item)
        if opath is not None and qid not in golds:
            raise LampFormatError(opath, qid, "output", "no gold for this question")
        user.queries.append(Example(query, golds.get(qid, ""), {}, qid))
    for user in users.values():
        if all("date" in it for it in user.profile):
            user.profile.sort(key=lambda it: str(it["date"]))
    return LampData(task, users, qpath, opath, cut)


def load_lamp_dir(folder: Path | str, split: str = "dev", task: str | None = None) -> LampData:
    """Load `{split}_questions.json` (+ `{split}_outputs.json` if present) from a folder."""
    folder = Path(folder)
    q = folder / f"{split}_questions.json"
    o = folder / f"{split}_outputs.json"
    if not q.exists():
        raise LampFormatError(q, None, None, "file not found (expected LaMP layout)")
    return load_lamp(q, o if o.exists() else None, task)


def _examples(ids: list[str]) -> str:
    return ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")


def check_experiment_data(data: LampData, *, needs_golds: bool, trains: bool) -> list[str]:
    """Refuse data no run can use; return warnings for degenerate-but-legal data.

    Raises LampFormatError for no users, no golds when `needs_golds` (names the missing
    `{split}_outputs.json`), and 0 training examples in all when `trains`.
    """
    qpath, n = data.questions_path, len(data.users)
    if not n:
        raise LampFormatError(qpath, None, None, "no questions, so 0 users to simulate")
    if needs_golds and data.outputs_path is None:
        split = qpath.name.removesuffix("_questions.json")
        expected = (qpath.with_name(f"{split}_outputs.json") if split != qpath.name
                    else f"{qpath} (no outputs file given)")
        raise LampFormatError(expected, None, None, "not found: a run needs golds to score "
                              f"its predictions on {qpath.name}")
    warnings = []
    if data.cut:
        warnings.append(f"{len(data.cut)} text(s) over {MAX_TEXT_BYTES:,} bytes were cut to "
                        f"that size, here and on the devices (first: {data.cut[0]}); a "
                        "LaMP text is a few kB")
    no_queries = [u for u, d in data.users.items() if not d.queries]
    if no_queries:
        warnings.append(f"{qpath}: {len(no_queries)} of {n} users have no queries "
                        f"({_examples(no_queries)}); they are trained but never scored")
    empty = [u for u, d in data.users.items() if not d.profile]
    if empty:
        warnings.append(f"{qpath}: {len(empty)} of {n} users have an empty profile "
                        f"({_examples(empty)}); they have no real data to train on")
    if trains:
        no_pairs = [u for u, d in data.users.items() if d.profile and not data.train_pairs(u)]
        if len(empty) + len(no_pairs) == n:
            raise LampFormatError(qpath, None, "profile", f"0 training examples: no user's "
                                  f"profile gives a {data.task.name} training pair, so a "
                                  "training method has nothing to learn from")
        if no_pairs:
            warnings.append(f"{qpath}: {len(no_pairs)} of {n} users have profile items but 0 "
                            f"{data.task.name} training pairs ({_examples(no_pairs)})")
    return warnings
