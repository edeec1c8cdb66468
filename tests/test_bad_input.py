"""Every bad input gets one clear error naming the file, item id, field or option: no
traceback, exit code 2 from the CLI, LampFormatError (a ValueError) from the loaders."""

import errno
import json
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulation.cli import main
from tasks.benchmark import GENERATORS, make_benchmark
from tasks.lamp import (
    LampFormatError,
    check_experiment_data,
    load_lamp,
    load_lamp_dir,
    read_golds,
    read_outputs,
)

DATA = Path(__file__).parent / "data"
ITEM = {"LaMP-1": {"title": "t", "abstract": "a"}, "LaMP-2": {"description": "d", "tag": "comedy"},
        "LaMP-3": {"text": "t", "score": "3"}, "LaMP-4": {"text": "t", "title": "h"}}


def write_lamp(folder: Path, task: str, questions: list, golds: list | None) -> Path:
    """`dev_questions.json` (+ `dev_outputs.json` unless golds is None) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dev_questions.json").write_text(json.dumps(questions))
    if golds is not None:
        (folder / "dev_outputs.json").write_text(json.dumps({"task": task.replace("-", "_"),
                                                             "golds": golds}))
    return folder


def question(qid: str, task: str = "LaMP-3", **extra) -> dict:
    return {"id": qid, "input": "x", "profile": [{"id": f"{qid}-p", **ITEM[task]}], **extra}


def cli_error(capsys, argv: list[str]) -> str:
    """Run the CLI, assert it failed cleanly (exit 2, one error line), return stderr."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


# --- golds ------------------------------------------------------------------------------
@pytest.mark.parametrize("task, gold, problem", [
    ("LaMP-3", "", "is empty"),
    ("LaMP-4", "  \n", "is empty"),
    ("LaMP-1", "1", "not a LaMP-1 label; allowed: [1], [2]"),
    ("LaMP-2", "horror", "not a LaMP-2 label; allowed: sci-fi"),
    ("LaMP-3", "6", "not a LaMP-3 rating; allowed: 1, 2, 3, 4, 5"),
    ("LaMP-3", 4.5, "'4.5' is not a LaMP-3 rating"),
])
def test_empty_or_invalid_gold_names_file_id_and_field(tmp_path, task, gold, problem):
    folder = write_lamp(tmp_path, task, [question("q1", task)], [{"id": "q1", "output": gold}])
    with pytest.raises(LampFormatError) as err:
        load_lamp_dir(folder)
    msg = str(err.value)
    assert f"{folder / 'dev_outputs.json'}, item id=q1, field 'output'" in msg and problem in msg


def test_valid_golds_of_every_fixture_and_generator_load(tmp_path):
    for task in ("LaMP_1", "LaMP_2", "LaMP_3", "LaMP_4", "LaMP_5", "LaMP_7"):
        assert load_lamp_dir(DATA / task).users
    long_headline = " ".join(["word"] * 80)  # generation golds: any non-empty text
    folder = write_lamp(tmp_path / "h", "LaMP-4", [question("q1", "LaMP-4")],
                        [{"id": "q1", "output": long_headline}])
    assert load_lamp_dir(folder).users["q1"].queries[0].output == long_headline
    for gen in GENERATORS:
        make_benchmark(gen, 30, 0, tmp_path / gen, profile_size=2, queries=2, noise=0.5)
        data = load_lamp_dir(tmp_path / gen)
        read_golds(tmp_path / gen / "oracle_outputs.json", data.task)
        assert check_experiment_data(data, needs_golds=True, trains=True) == []


# --- ids ----------------------------------------------------------------------------------
def test_duplicate_question_id_is_named(tmp_path):
    folder = write_lamp(tmp_path, "LaMP-3", [question("q1"), question("q1")], None)
    with pytest.raises(LampFormatError, match=r"dev_questions.json, item id=q1, field 'id': "
                                              r"duplicate question id"):
        load_lamp_dir(folder, task="LaMP-3")


def test_duplicate_gold_id_is_named(tmp_path):
    golds = [{"id": "q1", "output": "3"}, {"id": "q1", "output": "5"}]
    folder = write_lamp(tmp_path, "LaMP-3", [question("q1")], golds)
    with pytest.raises(LampFormatError, match=r"dev_outputs.json, item id=q1, field 'id': "
                                              r"duplicate id \(entry #1"):
        load_lamp_dir(folder)


@pytest.mark.parametrize("user_id, problem", [
    (7, "must be a string"), (["u"], "must be a string"), ({"u": 1}, "must be a string"),
    (None, "must be a string"), ("", "not a usable name"), (".", "not a usable name"),
    ("..", "not a usable name"), ("a/b", "path separator"), ("a\\b", "path separator"),
    ("a\x00b", "control character"), ("\ud800", "not valid Unicode"), ("u" * 300, "bytes long"),
])
def test_user_id_must_be_a_string_safe_as_a_file_name(tmp_path, user_id, problem):
    folder = write_lamp(tmp_path, "LaMP-3", [question("q1", user_id=user_id)], None)
    with pytest.raises(LampFormatError) as err:
        load_lamp_dir(folder, task="LaMP-3")
    msg = str(err.value)
    assert "dev_questions.json, item id=q1, field 'user_id'" in msg and problem in msg


def test_question_id_used_as_user_id_must_be_safe_too(tmp_path):
    folder = write_lamp(tmp_path, "LaMP-3", [question("../q1")], None)
    with pytest.raises(LampFormatError, match=r"item id=../q1, field 'id': .*path separator"):
        load_lamp_dir(folder, task="LaMP-3")


# --- can a run use this data? -----------------------------------------------------------
def test_a_run_needs_an_outputs_file(tmp_path):
    data = load_lamp_dir(write_lamp(tmp_path, "LaMP-3", [question("q1")], None), task="LaMP-3")
    with pytest.raises(LampFormatError, match=r"dev_outputs.json: not found: a run needs golds"):
        check_experiment_data(data, needs_golds=True, trains=True)
    assert check_experiment_data(data, needs_golds=False, trains=True) == []


def test_training_needs_at_least_one_training_example(tmp_path):
    qs = [{"id": "q1", "input": "x", "profile": []}, question("q2", "LaMP-1")]  # 1 paper: 0 pairs
    data = load_lamp_dir(write_lamp(tmp_path, "LaMP-1", qs, None), task="LaMP-1")
    with pytest.raises(LampFormatError, match="field 'profile': 0 training examples"):
        check_experiment_data(data, needs_golds=False, trains=True)
    warnings = check_experiment_data(data, needs_golds=False, trains=False)
    assert warnings == [f"{data.questions_path}: 1 of 2 users have an empty profile (q1); "
                        "they have no real data to train on"]


def test_some_empty_profiles_warn_and_no_users_fails(tmp_path):
    qs = [{"id": "q1", "input": "x", "profile": []}, question("q2")]
    golds = [{"id": "q1", "output": "1"}, {"id": "q2", "output": "2"}]
    data = load_lamp_dir(write_lamp(tmp_path / "a", "LaMP-3", qs, golds))
    [warning] = check_experiment_data(data, needs_golds=True, trains=True)
    assert "1 of 2 users have an empty profile (q1)" in warning
    empty = load_lamp_dir(write_lamp(tmp_path / "b", "LaMP-3", [], []))
    with pytest.raises(LampFormatError, match="dev_questions.json: no questions"):
        check_experiment_data(empty, needs_golds=True, trains=False)


# --- unreadable files --------------------------------------------------------------------
@pytest.mark.parametrize("content, problem", [
    (b'[{"id": "q\xff"}]', "not UTF-8 text"),
    (b"[" * 100_000 + b"]" * 100_000, r"not valid JSON \(nested too deeply"),
    (b"[" + b"9" * 5000 + b"]", "not valid JSON"),
    (b'[{"id": "q1", "input": ', "not valid JSON"),
])
def test_unreadable_json_is_a_format_error_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "dev_questions.json"
    path.write_bytes(content)
    with pytest.raises(LampFormatError, match=f"dev_questions.json: {problem}"):
        load_lamp(path, task="LaMP-3")


def test_utf8_bom_is_tolerated(tmp_path):
    path = tmp_path / "dev_questions.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([question("q1")]).encode())
    assert load_lamp(path, task="LaMP-3").user_ids() == ["q1"]


# --- cdcda eval -----------------------------------------------------------------------------
def test_eval_refuses_golds_or_preds_of_another_task(tmp_path, capsys):
    golds = str(DATA / "LaMP_2" / "dev_outputs.json")
    err = cli_error(capsys, ["eval", "--task", "LaMP-4", "--golds", golds, "--preds", golds])
    assert f"{golds}, field 'task': is LaMP_2, expected LaMP_4" in err
    preds = tmp_path / "preds.json"
    preds.write_text(json.dumps({"task": "LaMP_4", "golds": [{"id": "2100", "output": "x"}]}))
    err = cli_error(capsys, ["eval", "--task", "LaMP-2", "--golds", golds, "--preds", str(preds)])
    assert f"{preds}, field 'task': is LaMP_4, expected LaMP_2" in err


def test_eval_refuses_duplicate_prediction_ids(tmp_path, capsys):
    golds = DATA / "LaMP_2" / "dev_outputs.json"
    preds = tmp_path / "preds.json"
    rows = [{"id": "2100", "output": "fantasy"}, {"id": "2101", "output": "comedy"},
            {"id": "2100", "output": "comedy"}]
    preds.write_text(json.dumps({"golds": rows}))
    err = cli_error(capsys, ["eval", "--task", "LaMP-2", "--golds", str(golds),
                             "--preds", str(preds)])
    assert f"{preds}, item id=2100, field 'id': duplicate id" in err


@pytest.mark.parametrize("which", ["--golds", "--preds"])
@pytest.mark.parametrize("kind, problem", [("dir", "is a folder, expected a JSON file"),
                                           ("missing", "file not found"),
                                           ("under-a-file", "cannot be read")])
def test_eval_path_that_is_no_json_file_is_named(tmp_path, capsys, which, kind, problem):
    good = str(DATA / "LaMP_2" / "dev_outputs.json")
    (tmp_path / "a-file").write_text("{}")
    bad = {"dir": tmp_path, "missing": tmp_path / "nope.json",
           "under-a-file": tmp_path / "a-file" / "x.json"}[kind]
    args = {"--golds": good, "--preds": good, which: str(bad)}
    err = cli_error(capsys, ["eval", "--task", "LaMP-2", *(x for kv in args.items() for x in kv)])
    assert f"{bad}: {problem}" in err


def test_eval_unknown_task_names_the_option(capsys):
    golds = str(DATA / "LaMP_2" / "dev_outputs.json")
    err = cli_error(capsys, ["eval", "--task", "LaMP-9", "--golds", golds, "--preds", golds])
    assert "--task: unknown task 'LaMP-9'" in err


# --- cdcda data make --------------------------------------------------------------------------
@pytest.mark.parametrize("out, problem", [("a-file", "is a file"),
                                          ("a-file/sub", "has a file as a parent")])
def test_data_make_out_that_is_a_file_is_named(tmp_path, capsys, out, problem):
    (tmp_path / "a-file").write_text("x")
    err = cli_error(capsys, ["data", "make", "--task", "tags", "--users", "2",
                             "--out", str(tmp_path / out)])
    assert f"--out {tmp_path / out} {problem}" in err


@pytest.mark.parametrize("option, value, problem", [
    ("--users", "0", "--users must be between 1 and 10,000,000, got 0"),
    ("--queries", "-1", "--queries must be at least 1, got -1"),
    ("--profile-size", "0", "--profile-size must be at least 1, got 0"),
    ("--noise", "5", "--noise must be in [0, 1), got 5.0"),
    ("--task", "nope", "--task 'nope' is not one of tags, rating, headline"),
])
def test_data_make_bad_option_is_named(tmp_path, capsys, option, value, problem):
    args = {"--task": "tags", "--users": "2", "--out": str(tmp_path / "o"), option: value}
    err = cli_error(capsys, ["data", "make", *(x for kv in args.items() for x in kv)])
    assert problem in err
    assert not (tmp_path / "o").exists()


def test_any_os_error_is_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    def denied(*args):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "o"))

    monkeypatch.setattr("tasks.benchmark.make_benchmark", denied)
    err = cli_error(capsys, ["data", "make", "--task", "tags", "--users", "2",
                             "--out", str(tmp_path / "o")])
    assert err.strip() == f"error: {tmp_path / 'o'}: Permission denied"


# --- property tests: random and adversarial files --------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.text(st.characters(codec=None, categories=["L", "N", "P", "Z", "Cc", "Cs"])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
def mostly(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Usually a valid value (so later checks are reached), 1 time in 20 any JSON at all."""
    return st.integers(0, 19).flatmap(lambda n: JSON if n == 0 else valid)


ID = mostly(st.sampled_from(["q1", "q2", "q3", 1, 2, "", " "]))
ITEM_S = st.fixed_dictionaries(
    {"text": mostly(st.text(max_size=30)), "score": mostly(st.sampled_from(["1", "3", "5"]))},
    optional={"id": mostly(st.sampled_from(["p1", "p2", 3])), "date": mostly(st.text(max_size=10))})
QUESTION = st.fixed_dictionaries(
    {"id": ID, "input": mostly(st.text(max_size=20)),
     "profile": mostly(st.lists(ITEM_S, max_size=3))},
    optional={"user_id": mostly(st.sampled_from(["u1", "u2", "..", "a/b", "", "\x00", "\ud800"]))})
GOLDS = st.fixed_dictionaries(
    {"golds": mostly(st.lists(st.fixed_dictionaries(
        {"id": ID, "output": mostly(st.sampled_from(["1", "4", " ", "", "x", "comedy", 3]))}),
        max_size=4))},
    optional={"task": mostly(st.sampled_from(["LaMP_3", "LaMP-3", "LaMP_2", "LaMP_9", "3"]))})


MATCHING = "golds for exactly the questions' ids"


def _golds_for(questions) -> dict:
    questions = questions if isinstance(questions, list) else []
    ids = [q.get("id") for q in questions if isinstance(q, dict)]
    return {"task": "LaMP_3", "golds": [{"id": i, "output": "3"} for i in ids]}


def _doc_bytes(doc) -> bytes:
    return json.dumps(doc, ensure_ascii=True).encode()  # lone surrogates become \ud800


def _mangle(data: bytes, how: int, at: int) -> bytes:
    at = at % (len(data) + 1)
    return [data, data[:at], data[:at] + b"\xff\xfe" + data[at:],
            data[:at] + b"\x00" + data[at:]][how]


ADVERSARIAL = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda n, c: c * n, st.integers(1, 50_000), st.sampled_from([b"[", b"{\"a\":"])),
    st.builds(lambda n: b'[{"id": "' + b"x" * n + b'", "input": "", "profile": []}]',
              st.integers(0, 2_000_000)),
)


def _check_loader(tmp_path: Path, questions: bytes, outputs: bytes | None) -> None:
    """The property: data back, or a LampFormatError naming one of the two files."""
    folder = Path(tmp_path)
    (folder / "dev_questions.json").write_bytes(questions)
    (folder / "dev_outputs.json").unlink(missing_ok=True)
    if outputs is not None:
        (folder / "dev_outputs.json").write_bytes(outputs)
    for task in (None, "LaMP-3"):
        try:
            data = load_lamp_dir(folder, task=task)
            check_experiment_data(data, needs_golds=True, trains=True)
        except LampFormatError as err:
            assert str(folder / "dev_questions.json") in str(err) or \
                str(folder / "dev_outputs.json") in str(err)
        else:
            assert all(isinstance(u, str) for u in data.users)
            assert all(u and "/" not in u and u not in (".", "..") for u in data.users)


PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(questions=st.lists(QUESTION, max_size=4) | JSON,
       golds=st.sampled_from([None, MATCHING]) | GOLDS | JSON,
       how=st.integers(0, 3), at=st.integers(0, 10_000))
def test_property_structured_files_load_or_fail_naming_the_file(tmp_path, questions, golds,
                                                                how, at):
    golds = _golds_for(questions) if golds == MATCHING else golds
    q = _mangle(_doc_bytes(questions), how, at)
    _check_loader(tmp_path, q, None if golds is None else _doc_bytes(golds))


@PROPERTY
@given(raw=ADVERSARIAL, golds_raw=st.none() | ADVERSARIAL)
def test_property_adversarial_bytes_load_or_fail_naming_the_file(tmp_path, raw, golds_raw):
    _check_loader(tmp_path, raw, golds_raw)


@PROPERTY
@given(doc=GOLDS | JSON, how=st.integers(0, 3), at=st.integers(0, 10_000),
       task=st.sampled_from([None, "LaMP-2", "LaMP-3", "LaMP-4"]))
def test_property_outputs_files_read_or_fail_naming_the_file(tmp_path, doc, how, at, task):
    path = tmp_path / "dev_outputs.json"
    path.write_bytes(_mangle(_doc_bytes(doc), how, at))
    for read in (read_outputs, read_golds):
        try:
            _, out = read(path, task)
        except LampFormatError as err:
            assert str(path) in str(err)
        else:
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in out.items())


def test_printable_gold_ids_round_trip(tmp_path):
    """A sanity check on the property tests' oracle: a valid file reads back exactly."""
    ids = [c * 3 for c in string.ascii_letters[:5]]
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"task": "LaMP_3", "golds": [{"id": i, "output": "2"}
                                                             for i in ids]}))
    assert read_golds(path) == ("LaMP_3", dict.fromkeys(ids, "2"))
