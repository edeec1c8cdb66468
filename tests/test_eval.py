"""`cdcda eval`: LaMP's official semantics by default, the lenient parser with --parse.

Expected values are computed by hand from LaMP's `eval/evaluation.py` rules: strip, exact
label match (macro-F1 over all task labels), unreadable rating -> the farthest of 1 and 5.
"""

import json
import logging
import math

import pytest
from rouge_score import rouge_scorer

from simulation.cli import main
from tasks.catalog import get_task
from tasks.evaluate import official_score, score_files


def write_pair(tmp_path, task: str, rows: list[tuple[str, str, str]]):
    """golds.json and preds.json in LaMP outputs format from (id, gold, prediction) rows."""
    golds, preds = tmp_path / "golds.json", tmp_path / "preds.json"
    for path, col in ((golds, 1), (preds, 2)):
        path.write_text(json.dumps({"task": task,
                                    "golds": [{"id": r[0], "output": r[col]} for r in rows]}))
    return golds, preds


def both(tmp_path, task: str, rows) -> tuple[dict, dict]:
    golds, preds = write_pair(tmp_path, task, rows)
    return score_files(task, golds, preds), score_files(task, golds, preds, parse=True)


# --- classification ---------------------------------------------------------------------------
def test_lamp2_case_counts_by_default_and_not_with_parse(tmp_path, caplog):
    rows = [("q1", "comedy", "Comedy"), ("q2", "comedy", " comedy \n"),
            ("q3", "action", "action"), ("q4", "sci-fi", "horror")]
    with caplog.at_level(logging.WARNING, logger="tasks.evaluate"):
        official, parsed = both(tmp_path, "LaMP_2", rows)
    # official: q2 (stripped) and q3 right; F1 comedy 2/3, action 1, 13 other labels 0
    assert official == pytest.approx({"accuracy": 0.5, "f1": (2 / 3 + 1) / 15, "n": 4})
    # parsed: "Comedy" -> comedy; "horror" stays wrong; F1 comedy 1, action 1
    assert parsed == pytest.approx({"accuracy": 0.75, "f1": 2 / 15, "n": 4})
    assert "2 of 4 LaMP-2 predictions are not exactly one of its labels" in caplog.text


def test_lamp1_explanation_is_wrong_by_default_right_with_parse(tmp_path):
    rows = [("a", "[1]", "[1] because the titles share a topic"), ("b", "[2]", "[2]"),
            ("c", "[1]", "1")]
    official, parsed = both(tmp_path, "LaMP_1", rows)
    # official: only b; F1 [1]: tp 0 fn 2 -> 0, [2]: tp 1 -> 1
    assert official == pytest.approx({"accuracy": 1 / 3, "f1": 0.5, "n": 3})
    assert parsed == pytest.approx({"accuracy": 1.0, "f1": 1.0, "n": 3})


def test_official_score_refuses_a_gold_outside_the_labels():
    with pytest.raises(ValueError, match="gold 'horror' is not a LaMP-2 label"):
        official_score(get_task("LaMP-2"), ["horror"], ["horror"])


# --- rating -----------------------------------------------------------------------------------
@pytest.mark.parametrize("pred, gold, official_err, parsed_err", [
    ("five stars", "4", 3.0, 3.0),  # unreadable both ways: 1, the farther from 4
    ("4 stars", "2", 3.0, 2.0),  # official: unreadable -> 5; parsed: 4
    ("6", "2", 4.0, 3.0),  # official takes 6 as is; the run's rule: off-scale -> 5
    ("nan", "5", 4.0, 4.0),  # float() reads it, LaMP's sklearn would fail: worst, 1
    (" 2 ", "1", 1.0, 1.0),
    ("3", "3", 0.0, 0.0),
])
def test_lamp3_one_query(tmp_path, pred, gold, official_err, parsed_err):
    official, parsed = both(tmp_path, "LaMP_3", [("q", gold, pred)])
    assert official == pytest.approx({"mae": official_err, "rmse": official_err, "n": 1})
    assert parsed == pytest.approx({"mae": parsed_err, "rmse": parsed_err, "n": 1})


def test_lamp3_mae_and_rmse_over_queries(tmp_path):
    rows = [("q1", "4", "five stars"), ("q2", "2", "4 stars"), ("q3", "2", "6"),
            ("q4", "5", "nan"), ("q5", "1", " 2 ")]
    official, parsed = both(tmp_path, "LaMP_3", rows)
    # errors official [3, 3, 4, 4, 1], parsed [3, 2, 3, 4, 1]
    assert official == pytest.approx({"mae": 15 / 5, "rmse": math.sqrt(51 / 5), "n": 5})
    assert parsed == pytest.approx({"mae": 13 / 5, "rmse": math.sqrt(39 / 5), "n": 5})


def test_lamp3_wild_number_counts_as_is_without_overflow():
    scores = official_score(get_task("LaMP-3"), ["1e200", "3"], ["3", "3"])
    assert scores == pytest.approx({"mae": 1e200 / 2, "rmse": 1e200 / math.sqrt(2)})
    # two errors near the largest float: their sum overflows, their mean does not
    scores = official_score(get_task("LaMP-3"), ["1e308", "-1e308"], ["3", "4"])
    assert scores == pytest.approx({"mae": 1e308, "rmse": 1e308})


# --- generation -------------------------------------------------------------------------------
def test_lamp4_rouge_is_the_plain_mean_of_per_query_scores(tmp_path):
    rows = [("q1", "Council approves new bus lanes", 'Headline: "Council backs bus lanes"'),
            ("q2", "Storm closes schools across the county", "  Storm shuts county schools \n"),
            ("q3", "Local team wins title", "Local team wins the title")]
    official, parsed = both(tmp_path, "LaMP_4", rows)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)

    def mean_rouge(preds):
        s = [scorer.score(g, p) for (_, g, _), p in zip(rows, preds)]
        return {"rouge-1": sum(x["rouge1"].fmeasure for x in s) / len(s),
                "rouge-L": sum(x["rougeL"].fmeasure for x in s) / len(s), "n": 3}

    assert official == pytest.approx(mean_rouge([r[2].strip() for r in rows]))
    # --parse drops the 'Headline: "..."' wrapper, which costs precision by default
    assert parsed == pytest.approx(mean_rouge(["Council backs bus lanes", rows[1][2].strip(),
                                               rows[2][2]]))
    assert parsed["rouge-1"] > official["rouge-1"]


# --- the command ------------------------------------------------------------------------------
def run_eval(capsys, *argv: str) -> dict:
    assert main(["eval", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_prints_official_metrics_and_n_and_parse_changes_them(tmp_path, capsys):
    golds, preds = write_pair(tmp_path, "LaMP_2", [("q1", "comedy", "Comedy"),
                                                   ("q2", "action", "action")])
    args = ["--task", "LaMP-2", "--golds", str(golds), "--preds", str(preds)]
    assert run_eval(capsys, *args) == pytest.approx({"accuracy": 0.5, "f1": 1 / 15, "n": 2})
    assert run_eval(capsys, *args, "--parse") == pytest.approx({"accuracy": 1.0, "f1": 2 / 15,
                                                                "n": 2})


def test_cli_raw_is_a_warning_no_op(tmp_path, capsys, caplog):
    golds, preds = write_pair(tmp_path, "LaMP_3", [("q1", "4", "five stars"),
                                                   ("q2", "2", "4 stars")])
    args = ["--task", "3", "--golds", str(golds), "--preds", str(preds)]
    default = run_eval(capsys, *args)
    assert default == pytest.approx({"mae": 3.0, "rmse": 3.0, "n": 2})
    with caplog.at_level(logging.WARNING):
        assert run_eval(capsys, *args, "--raw") == default
    assert "--raw does nothing now" in caplog.text
    assert run_eval(capsys, *args, "--parse") == pytest.approx(
        {"mae": 2.5, "rmse": math.sqrt(6.5), "n": 2})


def test_a_runs_own_predictions_score_in_one_command(tmp_path, capsys):
    folder = tmp_path / "predictions" / "cdcda"
    folder.mkdir(parents=True)
    for user, pairs in (("u0", [("Comedy.", "comedy"), ("romance", "comedy")]),
                        ("u1", [("romance", "romance")])):
        (folder / f"{user}.json").write_text(json.dumps({
            "user_id": user, "method": "cdcda", "predictions": [
                {"id": f"{user}-q{i}", "raw": r, "output": r.lower(), "gold": g}
                for i, (r, g) in enumerate(pairs)]}))
    assert main(["eval", "--task", "LaMP-2", "--preds", str(folder)]) == 0
    official = json.loads(capsys.readouterr().out)
    assert official["n"] == 3 and official["users"] == 2
    assert official["accuracy"] == pytest.approx(1 / 3)  # "Comedy." is not a label as it is
    assert main(["eval", "--task", "LaMP-2", "--preds", str(folder), "--parse"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["accuracy"] == pytest.approx(2 / 3)
    assert parsed["user_mean"]["accuracy"] == pytest.approx((0.5 + 1.0) / 2)  # as a run does
    (folder / "u2.json").write_text('{"predictions": [{"raw": "x"}]}')
    assert main(["eval", "--task", "LaMP-2", "--preds", str(folder)]) == 2
    assert "u2.json" in capsys.readouterr().err


def test_run_files_are_as_readable_as_open_makes_them(tmp_path):
    import os

    from tasks.files import atomic_dir, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "adapters") as tmp:
            (tmp / "f").write_text("w")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert (tmp_path / "adapters").stat().st_mode & 0o777 == 0o755


def test_user_strings_with_markup_print_as_they_are():
    from rich.console import Console

    from simulation.commands import _print_summary

    summary = {"task": "LaMP-2[/x]", "users": ["[/b]"], "status": "partial",
               "methods": {"zero_shot": {"metrics": {"accuracy": 0.5}, "per_user": {"u": {}},
                                         "failures": {"[/red]": "x"}, "status": "partial"}},
               "communication": {}, "warnings": ["user [/b] failed: [bold]"],
               "problems": ["[/i] closing tag with no opening"]}
    console = Console(record=True, width=200)
    assert _print_summary(summary, console) == 0
    text = console.export_text()
    assert "LaMP-2[/x]" in text and "user [/b] failed: [bold]" in text
    assert "[/i] closing tag with no opening" in text
