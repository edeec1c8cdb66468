"""The bundled benchmark: deterministic, scales, LaMP format, personalization matters."""

import json
import time

import pytest

from simulation.cli import main
from tasks import load_lamp_dir
from tasks.benchmark import make_benchmark


@pytest.mark.parametrize("task", ["tags", "rating", "headline"])
def test_same_seed_same_bytes_other_seed_differs(tmp_path, task):
    make_benchmark(task, 5, 3, tmp_path / "a")
    make_benchmark(task, 5, 3, tmp_path / "b")
    make_benchmark(task, 5, 4, tmp_path / "c")
    a = (tmp_path / "a" / "dev_questions.json").read_bytes()
    assert a == (tmp_path / "b" / "dev_questions.json").read_bytes()
    assert a != (tmp_path / "c" / "dev_questions.json").read_bytes()
    data = load_lamp_dir(tmp_path / "a")  # the same loader as LaMP
    assert len(data.users) == 5


def test_users_disagree_so_personalization_matters(tmp_path):
    """Same kind of movie, different users, different tags: no global answer is right."""
    make_benchmark("tags", 200, 0, tmp_path)
    data = load_lamp_dir(tmp_path)
    by_description: dict[str, set[str]] = {}
    for user in data.users.values():
        for item in user.profile:
            by_description.setdefault(item["description"], set()).add(item["tag"])
    assert max(len(tags) for tags in by_description.values()) >= 3


def test_user_preference_is_consistent_within_a_user(tmp_path):
    """Within one user, the same review text always gets the same score (a fixed bias)."""
    make_benchmark("rating", 50, 0, tmp_path, profile_size=30)
    data = load_lamp_dir(tmp_path)
    generous = harsh = 0
    for user in data.users.values():
        score_of: dict[str, set[str]] = {}
        for item in user.profile:
            tone = item["text"].split(": ", 1)[1]
            score_of.setdefault(tone, set()).add(item["score"])
        assert all(len(s) == 1 for s in score_of.values()), user.user_id
        worst = score_of.get("A total waste of money.", {"1"})
        generous += worst != {"1"}
        best = score_of.get("Flawless, exceeded what I hoped.", {"5"})
        harsh += best != {"5"}
    assert generous and harsh  # both kinds of user exist


def test_oracle_scores_perfect_and_noise_flips_some(tmp_path, capsys):
    make_benchmark("tags", 300, 1, tmp_path, noise=0.2)
    assert main(["eval", "--task", "LaMP-2", "--golds", str(tmp_path / "oracle_outputs.json"),
                 "--preds", str(tmp_path / "oracle_outputs.json")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0
    assert main(["eval", "--task", "LaMP-2", "--golds", str(tmp_path / "dev_outputs.json"),
                 "--preds", str(tmp_path / "oracle_outputs.json")]) == 0
    acc = json.loads(capsys.readouterr().out)["accuracy"]
    assert 0.7 < acc < 0.9


def test_scales_to_100k_users_in_seconds(tmp_path):
    start = time.perf_counter()
    meta = make_benchmark("rating", 100_000, 0, tmp_path, profile_size=4, queries=1)
    assert meta["users"] == 100_000
    assert time.perf_counter() - start < 120  # generous: seconds on a laptop, CI is shared
    golds = json.loads((tmp_path / "dev_outputs.json").read_text())["golds"]
    assert len(golds) == 100_000 and golds[-1]["id"] == "u99999-q0"


def test_cli_rejects_unknown_generator(tmp_path, capsys):
    assert main(["data", "make", "--task", "nope", "--users", "4", "--out", str(tmp_path)]) == 2
    assert "--task 'nope' is not one of tags, rating, headline" in capsys.readouterr().err
