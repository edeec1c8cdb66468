"""The LaMP loader on the official layout, per-user views, and errors naming file/item/field."""

import json
from pathlib import Path

import pytest

from tasks import LampFormatError, get_task, load_lamp, load_lamp_dir

DATA = Path(__file__).parent / "data"  # not `from tests.conftest`: tests/ is not a package


@pytest.mark.parametrize("task", ["LaMP_1", "LaMP_2", "LaMP_3", "LaMP_4", "LaMP_5", "LaMP_7"])
def test_sample_of_every_task_loads_with_pairs_and_golds(task):
    data = load_lamp_dir(DATA / task)
    assert data.task == get_task(task)
    for uid, user in data.users.items():
        assert user.queries and all(q.output for q in user.queries)
        pairs = data.train_pairs(uid)
        assert pairs, f"{task}: no training pairs for {uid}"
        assert all(p.prompt and p.output for p in pairs)
    ds = data.to_dataset(data.user_ids()[0], "test")
    assert set(ds.column_names) == {"id", "prompt", "output"}


def test_lamp2_pairs_are_query_shaped():
    data = load_lamp_dir(DATA / "LaMP_2")
    pair = data.train_pairs(data.user_ids()[0])[0]
    assert pair.prompt.startswith("Which tag does this movie relate to")
    assert pair.output in get_task("LaMP-2").labels


def test_lamp1_pairs_alternate_positions_and_use_users_papers():
    data = load_lamp_dir(DATA / "LaMP_1")
    pairs = data.train_pairs(data.user_ids()[0])
    assert [p.output for p in pairs] == ["[1]", "[2]"]
    assert "Measuring Memory on Mobile Inference" in pairs[0].prompt


def test_user_based_split_makes_each_question_a_user(tmp_path):
    q = [{"id": "a", "input": "x", "profile": [{"text": "t", "score": "3"}]},
         {"id": "b", "input": "y", "profile": [{"text": "u", "score": "4"}]}]
    (tmp_path / "q.json").write_text(json.dumps(q))
    data = load_lamp(tmp_path / "q.json", task="LaMP-3")
    assert data.user_ids() == ["a", "b"]


def test_time_based_split_merges_profiles_and_sorts_by_date(tmp_path):
    p1 = {"id": "p1", "date": "2020-05-01", "text": "late", "score": "1"}
    p0 = {"id": "p0", "date": "2019-01-01", "text": "early", "score": "5"}
    q = [{"id": "a", "user_id": "u", "input": "x", "profile": [p1]},
         {"id": "b", "user_id": "u", "input": "y", "profile": [p0, p1]}]
    (tmp_path / "q.json").write_text(json.dumps(q))
    data = load_lamp(tmp_path / "q.json", task="LaMP-3")
    assert [it["id"] for it in data.users["u"].profile] == ["p0", "p1"]
    assert len(data.users["u"].queries) == 2


@pytest.mark.parametrize("question, field", [
    ({"id": "q9", "profile": []}, "input"),
    ({"id": "q9", "input": "x"}, "profile"),
    ({"id": "q9", "input": "x", "profile": [{"id": "p7", "text": "t"}]}, "score"),
])
def test_malformed_question_names_file_item_and_field(tmp_path, question, field):
    path = tmp_path / "dev_questions.json"
    path.write_text(json.dumps([question]))
    with pytest.raises(LampFormatError) as err:
        load_lamp(path, task="LaMP-3")
    msg = str(err.value)
    assert str(path) in msg and f"'{field}'" in msg
    assert ("p7" if field == "score" else "q9") in msg


def test_missing_gold_and_bad_json_are_named(tmp_path):
    (tmp_path / "q.json").write_text(json.dumps([{"id": "q1", "input": "x", "profile": []}]))
    (tmp_path / "o.json").write_text(json.dumps({"task": "LaMP_3", "golds": []}))
    with pytest.raises(LampFormatError, match=r"o.json, item id=q1, field 'output'"):
        load_lamp(tmp_path / "q.json", tmp_path / "o.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LampFormatError, match="bad.json: not valid JSON"):
        load_lamp(tmp_path / "bad.json", task="LaMP-3")


def test_outputs_file_of_another_task_is_refused(tmp_path):
    (tmp_path / "q.json").write_text("[]")
    (tmp_path / "o.json").write_text(json.dumps({"task": "LaMP_2", "golds": []}))
    with pytest.raises(LampFormatError, match="field 'task': is LaMP_2, expected LaMP_3"):
        load_lamp(tmp_path / "q.json", tmp_path / "o.json", task="LaMP-3")


@pytest.mark.parametrize("where", ["input", "profile"])
@pytest.mark.parametrize("text, says", [
    ("caf\ud800", "is not valid Unicode (surrogates not allowed at character 3)"),
])
def test_a_text_not_unicode_is_refused_at_load_naming_item_and_field(
        tmp_path, where, text, says):
    question = {"id": "q1", "input": "Which tag? x", "profile": [
        {"id": "p1", "description": "a film", "tag": "comedy"}]}
    if where == "input":
        question["input"] = text
    else:
        question["profile"][0]["description"] = text
    path = tmp_path / "dev_questions.json"
    path.write_text(json.dumps([question]))
    with pytest.raises(LampFormatError) as err:
        load_lamp(path, task="LaMP-2")
    field = "input" if where == "input" else "description"
    assert says in str(err.value) and field in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("where", ["input", "profile", "gold"])
def test_a_text_over_the_bound_is_cut_at_load_counted_named_and_warned_once(tmp_path, where):
    from tasks.lamp import MAX_TEXT_BYTES, check_experiment_data

    huge = "é" * (MAX_TEXT_BYTES // 2) + "xyz" * 1000  # 2-byte characters: cut between them
    question = {"id": "q1", "input": "Which tag? x", "profile": [
        {"id": "p1", "description": "a film", "tag": "comedy"}]}
    golds = {"task": "LaMP_2", "golds": [{"id": "q1", "output": "comedy"}]}
    if where == "input":
        question["input"] = huge
    elif where == "profile":
        question["profile"][0]["description"] = huge
    q, o = tmp_path / "dev_questions.json", tmp_path / "dev_outputs.json"
    q.write_text(json.dumps([question]))
    o.write_text(json.dumps(golds))
    if where == "gold":  # a gold must be a LaMP-2 tag: use predictions' reader instead
        from tasks.lamp import read_outputs

        o.write_text(json.dumps({"golds": [{"id": "q1", "output": huge}]}))
        cuts: list[str] = []
        _, out = read_outputs(o, cuts=cuts)
        assert out["q1"] == "é" * (MAX_TEXT_BYTES // 2)  # whole characters, at the bound
        assert len(cuts) == 1 and str(o) in cuts[0] and "'output'" in cuts[0]
        return
    data = load_lamp(q, o, task="LaMP-2")
    user = data.users["q1"]
    text = user.queries[0].prompt if where == "input" else user.profile[0]["description"]
    assert text == "é" * (MAX_TEXT_BYTES // 2)  # the cut is whole characters, within the bound
    field = "input" if where == "input" else "description"
    assert data.cut == [f"{q}, item id={'q1' if where == 'input' else 'p1'}, field '{field}' "
                        f"({len(huge.encode()):,} bytes)"]
    warnings = check_experiment_data(data, needs_golds=True, trains=True)
    said = [w for w in warnings if "cut" in w]
    assert len(said) == 1 and "1 text(s) over 1,000,000 bytes" in said[0] and data.cut[0] in said[0]


def test_a_data_file_over_the_bound_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import tasks.lamp as lamp

    path = tmp_path / "dev_questions.json"
    path.write_text(json.dumps([{"id": "q1", "input": "x", "profile": []}]))
    monkeypatch.setattr(lamp, "MAX_FILE_BYTES", 10)
    with pytest.raises(LampFormatError, match=r"is \d+ bytes: at most 10 per data file") as err:
        load_lamp(path, task="LaMP-2")
    assert str(path) in str(err.value)
