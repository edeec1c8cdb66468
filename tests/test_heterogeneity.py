"""Heterogeneity: h = 1 is today's benchmark, h = 0 one shared preference; the ceiling."""

import json
import math
import random
import time
from pathlib import Path

import pytest

from tasks import TASKS, load_lamp_dir
from tasks.benchmark import CEILING_INPUTS, CEILING_USERS, GENERATORS, make_benchmark
from tasks.ceiling import _Tokens, single_answer_ceiling
from tasks.generators import tags
from tasks.population import keeps_population, population_preference, user_preference

FILES = ("dev_questions.json", "dev_outputs.json", "oracle_outputs.json", "benchmark.json")


def _files(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_h1_writes_exactly_the_default(tmp_path, name):
    make_benchmark(name, 12, 3, tmp_path / "default", profile_size=3, noise=0.2)
    make_benchmark(name, 12, 3, tmp_path / "h1", profile_size=3, noise=0.2, heterogeneity=1.0)
    assert _files(tmp_path / "default") == _files(tmp_path / "h1")
    meta = json.loads((tmp_path / "h1" / "benchmark.json").read_text())
    assert meta["heterogeneity"] == 1.0


@pytest.mark.parametrize("name", list(GENERATORS))
def test_at_h0_any_two_users_answer_an_input_alike(name):
    """Not so at h = 1: there some two of the first users answer some input differently."""
    spec, seed = GENERATORS[name], 5
    population = population_preference(name, seed)
    rng = random.Random(0)
    inputs = [spec.draw_input(rng) for _ in range(60)]

    def answers(user: int, h: float) -> list[str | None]:
        preference = user_preference(name, seed, user, h, population)
        return [spec.answer(preference, x) for x in inputs]

    shared = answers(0, 0.0)
    assert any(a is not None for a in shared)  # citation users skip some queries
    assert all(answers(u, 0.0) == shared for u in (1, 7, 42))
    own = [answers(u, 1.0) for u in range(8)]
    assert any(a != b and None not in (a, b) for x, y in zip(own, own[1:])
               for a, b in zip(x, y))


@pytest.mark.parametrize("name", ["tags", "rating", "headline", "tweet"])
def test_at_h0_the_written_benchmark_has_one_answer_per_input(tmp_path, name):
    def answers_by_input(h: float) -> dict[str, set[str]]:
        folder = tmp_path / str(h)
        make_benchmark(name, 200, 0, folder, profile_size=2, queries=4, heterogeneity=h)
        questions = json.loads((folder / "dev_questions.json").read_text())
        oracle = json.loads((folder / "oracle_outputs.json").read_text())["golds"]
        seen: dict[str, set[str]] = {}
        for q, gold in zip(questions, oracle):
            seen.setdefault(q["input"], set()).add(gold["output"])
        return seen

    assert all(len(answers) == 1 for answers in answers_by_input(0.0).values())
    assert max(len(answers) for answers in answers_by_input(1.0).values()) > 1


@pytest.mark.parametrize("name", list(GENERATORS))
def test_inputs_do_not_depend_on_h(tmp_path, name):
    """Only the answers change with h; citation's references follow the cited sub-topic,
    so there the paper's title is what stays."""
    def inputs(h: float) -> list[str]:
        make_benchmark(name, 30, 1, tmp_path / str(h), profile_size=2, heterogeneity=h)
        questions = json.loads((tmp_path / str(h) / "dev_questions.json").read_text())
        return [q["input"].split('"')[1] if name == "citation" else q["input"]
                for q in questions]

    assert inputs(0.0) == inputs(0.5) == inputs(1.0)


@pytest.mark.parametrize("h", [0.2, 0.5, 0.9])
def test_a_mixed_population_keeps_the_shared_preference_with_probability_1_minus_h(h):
    kept = sum(keeps_population("headline", 0, u, h) for u in range(2000)) / 2000
    assert abs(kept - (1 - h)) < 0.04


def test_benchmark_users_have_the_preference_the_ceiling_gives_them(tmp_path):
    """The ceiling's population is the benchmark's: each tags user's tags follow
    user_preference(...) kind by kind, at a mixed h."""
    make_benchmark("tags", 40, 2, tmp_path, profile_size=6, heterogeneity=0.5)
    population = population_preference("tags", 2)
    kind_of = {plot: kind for kind, (_, plots, _) in tags._MOVIE_KINDS.items() for plot in plots}
    data = load_lamp_dir(tmp_path)
    for u, user in enumerate(data.users.values()):
        preference = user_preference("tags", 2, u, 0.5, population)
        for item in user.profile:
            (kind,) = {k for plot, k in kind_of.items() if item["description"].endswith(plot + ".")}
            assert item["tag"] == preference[kind], user.user_id


def test_benchmark_json_records_h_and_the_ceiling(tmp_path):
    meta = make_benchmark("rating", 6, 4, tmp_path, heterogeneity=0.5)
    assert json.loads((tmp_path / "benchmark.json").read_text()) == meta
    assert meta["heterogeneity"] == 0.5
    assert meta["single_answer_ceiling"] == single_answer_ceiling(
        "rating", 0.5, users=CEILING_USERS, seed=4, inputs=CEILING_INPUTS)


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan, "0.5", True])
def test_invalid_heterogeneity_is_refused_by_name(tmp_path, bad):
    with pytest.raises(ValueError, match=r"heterogeneity must be a number in \[0, 1\]"):
        make_benchmark("tags", 4, 0, tmp_path / "out", heterogeneity=bad)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="heterogeneity"):
        single_answer_ceiling("tags", bad)


# --- the single-answer ceiling ----------------------------------------------------------------
def _first(result: dict, key: str) -> float:
    metric = TASKS[GENERATORS[result["generator"]].lamp_name].metric_names[0]
    return result[key][metric]


@pytest.mark.parametrize("name", list(GENERATORS))
def test_ceiling_is_below_the_oracle_at_h1_and_is_it_at_h0(name):
    users = 64 if name == "tweet" else 256  # a tweet input has a distinct answer a user
    mixed = single_answer_ceiling(name, 1.0, users=users, inputs=16)
    sign = 1 if TASKS[GENERATORS[name].lamp_name].higher_is_better else -1
    assert mixed["users"] == users and mixed["inputs"] == 16
    assert _first(mixed, "oracle") == (1.0 if sign > 0 else 0.0)
    assert sign * (_first(mixed, "oracle") - _first(mixed, "single_answer")) >= 0.1, mixed
    shared = single_answer_ceiling(name, 0.0, users=users, inputs=16)
    assert shared["single_answer"] == shared["oracle"]


@pytest.mark.parametrize("name", ["headline", "tags", "rating", "citation"])
def test_ceiling_rises_as_the_population_shares_more(name):
    sign = 1 if TASKS[GENERATORS[name].lamp_name].higher_is_better else -1
    firsts = [sign * _first(single_answer_ceiling(name, h, users=256, inputs=32), "single_answer")
              for h in (1.0, 0.5, 0.0)]
    assert firsts[0] + 0.03 < firsts[1] < firsts[2] - 0.03, firsts


def test_ceiling_is_deterministic_and_fast():
    start = time.perf_counter()
    first = single_answer_ceiling("tweet", 1.0, users=CEILING_USERS, inputs=CEILING_INPUTS)
    assert time.perf_counter() - start < 5  # ~0.2 s; generous for a shared CI machine
    assert single_answer_ceiling("tweet", 1.0, users=CEILING_USERS,
                                 inputs=CEILING_INPUTS) == first
    assert single_answer_ceiling("tweet", 1.0, users=CEILING_USERS, inputs=CEILING_INPUTS,
                                 seed=1) != first


def test_fast_rouge_is_the_tasks_rouge():
    """The ceiling's ROUGE (bit-parallel LCS, set overlap) equals task.score pair by pair."""
    rng = random.Random(3)
    texts = ["", "!!!", "a a a b", "b a a", "I i I", "x"]
    for name in ("headline", "title", "tweet"):
        spec = GENERATORS[name]
        texts += [spec.answer(spec.own_preference(rng), spec.draw_input(rng)) for _ in range(40)]
    task = TASKS["LaMP-7"]
    for a in texts:
        for b in [*rng.sample(texts, 12), a, ""]:
            fast, slow = _Tokens(a).rouge(_Tokens(b)), task.score([a], [b])
            assert fast == pytest.approx((slow["rouge-1"], slow["rouge-L"]), abs=1e-12), (a, b)
