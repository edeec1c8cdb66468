"""The bundled benchmark: deterministic, scales, LaMP format, personalization matters."""

import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from simulation.cli import main
from simulation.config import load_config
from simulation.running.experiment import prepare_data
from tasks import TASKS, load_lamp_dir, read_golds
from tasks.benchmark import GENERATORS, make_benchmark
from tasks.generators import citation, headline, title
from tasks.lamp import LampData, check_experiment_data

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
FIXTURES = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize("task", list(GENERATORS))
def test_same_seed_same_bytes_other_seed_differs(tmp_path, task):
    make_benchmark(task, 5, 3, tmp_path / "a")
    make_benchmark(task, 5, 3, tmp_path / "b")
    make_benchmark(task, 5, 4, tmp_path / "c")
    a = (tmp_path / "a" / "dev_questions.json").read_bytes()
    assert a == (tmp_path / "b" / "dev_questions.json").read_bytes()
    assert a != (tmp_path / "c" / "dev_questions.json").read_bytes()
    data = load_lamp_dir(tmp_path / "a")  # the same loader as LaMP
    assert len(data.users) == 5


@pytest.mark.parametrize("name", list(GENERATORS))
def test_every_generator_loads_checks_and_gives_training_pairs(tmp_path, name):
    make_benchmark(name, 20, 0, tmp_path, profile_size=3, queries=2)
    data = load_lamp_dir(tmp_path)
    assert data.task.name == GENERATORS[name][0]
    assert check_experiment_data(data, needs_golds=True, trains=True) == []
    read_golds(tmp_path / "oracle_outputs.json", data.task)
    prefix = data.task.instruction.split("{")[0]  # LaMP-1's holds the paper's title
    for user in data.users.values():
        assert len(user.profile) == 3 and len(user.queries) == 2
        assert data.task.profile_pairs(user.profile), user.user_id
        assert all(q.prompt.startswith(prefix) for q in user.queries)


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


# --- the oracle beats every non-personalised answer ---------------------------------------
def _majority_by_input(data: LampData) -> list[str]:
    """The answer most users give this exact input, learned from every user's profile."""
    x, y = data.task.item_fields
    seen: dict[str, Counter] = {}
    for user in data.users.values():
        for item in user.profile:
            seen.setdefault(item[x], Counter())[item[y]] += 1
    prefix = data.task.instruction
    fallback = Counter(c.most_common(1)[0][0] for c in seen.values()).most_common(1)[0][0]
    return [seen[q.prompt.removeprefix(prefix)].most_common(1)[0][0]
            if q.prompt.removeprefix(prefix) in seen else fallback
            for user in data.users.values() for q in user.queries]


def _one_style_for_all(module, table: str):
    """The best score of giving every user one and the same style: regenerate the same
    content (same seeds, same draws) with every style mapped to one style."""
    def best(data: LampData, folder: Path, monkeypatch) -> dict[str, float]:
        styles = getattr(module, table)
        golds = _golds(data)
        scores = []
        for i, style in enumerate(styles.values()):
            monkeypatch.setattr(module, table, dict.fromkeys(styles, style))
            meta = json.loads((folder / "benchmark.json").read_text())
            make_benchmark(meta["generator"], meta["users"], meta["seed"], folder / f"s{i}",
                           meta["profile_size"], meta["queries"])
            scores.append(data.task.score(_golds(load_lamp_dir(folder / f"s{i}")), golds))
            monkeypatch.setattr(module, table, styles)
        return max(scores, key=lambda s: s["rouge-1"])
    return best


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9-]+", text.lower()))


def _citation_choice(query: str, context: set[str]) -> str:
    """[1] or [2]: the reference sharing more words with `context`; ties go to [1]."""
    first, second = re.search(r'\[1\]: "(.*)" \[2\]: "(.*)"$', query).groups()
    return "[1]" if len(_words(first) & context) >= len(_words(second) & context) else "[2]"


def _citation_from_query_alone(data: LampData, folder: Path, monkeypatch) -> dict[str, float]:
    preds = [_citation_choice(q.prompt, _words(q.prompt.split('"')[1]))
             for user in data.users.values() for q in user.queries]
    return data.task.score(preds, _golds(data))


def _golds(data: LampData) -> list[str]:
    return [q.output for user in data.users.values() for q in user.queries]


_INSTRUCTION_7 = TASKS["LaMP-7"].instruction
NONPERSONAL = {  # generator: (what a non-personalised model answers, metric, least margin)
    "tags": (lambda data, *_: data.task.score(_majority_by_input(data), _golds(data)),
             "accuracy", 0.3),
    "rating": (lambda data, *_: data.task.score(_majority_by_input(data), _golds(data)),
               "mae", 0.5),
    "headline": (_one_style_for_all(headline, "_STYLES"), "rouge-1", 0.1),
    "citation": (_citation_from_query_alone, "accuracy", 0.3),
    "title": (_one_style_for_all(title, "_TITLE_STYLES"), "rouge-1", 0.2),
    "tweet": (lambda data, *_: data.task.score(
        [q.prompt.removeprefix(_INSTRUCTION_7) for u in data.users.values() for q in u.queries],
        _golds(data)), "rouge-1", 0.2),
}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_oracle_clearly_beats_a_non_personalised_answer(tmp_path, monkeypatch, name):
    make_benchmark(name, 300, 0, tmp_path, profile_size=6, queries=2)
    data = load_lamp_dir(tmp_path)
    _, oracle = read_golds(tmp_path / "oracle_outputs.json", data.task)
    preds = [oracle[q.id] for user in data.users.values() for q in user.queries]
    ours = data.task.score(preds, _golds(data))
    baseline, metric, margin = NONPERSONAL[name]
    theirs = baseline(data, tmp_path, monkeypatch)
    sign = 1 if data.task.higher_is_better else -1
    assert ours[metric] == (1.0 if sign > 0 else 0.0)  # no noise: the golds are the oracle
    assert sign * (ours[metric] - theirs[metric]) >= margin, (ours, theirs)


def test_citation_answer_is_in_the_profile_not_the_query(tmp_path):
    """Both references share the user's field; only the user's own papers tell which one
    is in the sub-topic they cite. The query's own title names no sub-topic."""
    make_benchmark("citation", 300, 0, tmp_path, profile_size=6, queries=2)
    data = load_lamp_dir(tmp_path)
    topic_of = {mod: topic for _, _, topics in citation._FIELDS.values()
                for topic, (mods, _) in topics.items() for mod in mods}

    def topics(title: str) -> set[str]:
        return {topic for mod, topic in topic_of.items() if f"{mod} " in f"{title} "}

    preds = []
    for user in data.users.values():
        (mine,) = {t for it in user.profile for t in topics(it["title"])}  # one sub-topic
        for q in user.queries:
            paper = q.prompt.split('"')[1]
            first, second = re.search(r'\[1\]: "(.*)" \[2\]: "(.*)"$', q.prompt).groups()
            assert not topics(paper) and len(topics(first)) == len(topics(second)) == 1
            preds.append("[1]" if topics(first) == {mine} else "[2]")
    golds = _golds(data)
    assert data.task.score(preds, golds)["accuracy"] == 1.0
    assert 0.4 < data.task.score(["[1]"] * len(golds), golds)["accuracy"] < 0.6


def test_a_tweet_user_keeps_one_voice(tmp_path):
    """Every past tweet and every gold of one user carries the same hashtag (or none)."""
    make_benchmark("tweet", 100, 0, tmp_path, profile_size=6, queries=2)
    data = load_lamp_dir(tmp_path)
    voices = Counter()
    for user in data.users.values():
        texts = [it["text"] for it in user.profile] + [q.output for q in user.queries]
        hashtags = {tuple(re.findall(r"#\w+", t)) for t in texts}
        assert len(hashtags) == 1, texts
        voices[hashtags.pop()] += 1
    assert len(voices) >= 4 and max(voices.values()) < 50  # users differ


def test_oracle_scores_perfect_and_noise_flips_some(tmp_path, capsys):
    make_benchmark("tags", 300, 1, tmp_path, noise=0.2)
    assert main(["eval", "--task", "LaMP-2", "--golds", str(tmp_path / "oracle_outputs.json"),
                 "--preds", str(tmp_path / "oracle_outputs.json")]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0
    assert main(["eval", "--task", "LaMP-2", "--golds", str(tmp_path / "dev_outputs.json"),
                 "--preds", str(tmp_path / "oracle_outputs.json")]) == 0
    acc = json.loads(capsys.readouterr().out)["accuracy"]
    assert 0.7 < acc < 0.9


def test_citation_noise_swaps_the_two_references(tmp_path):
    make_benchmark("citation", 300, 1, tmp_path, noise=0.2)
    _, golds = read_golds(tmp_path / "dev_outputs.json", "LaMP-1")
    _, oracle = read_golds(tmp_path / "oracle_outputs.json", "LaMP-1")
    flipped = sum(golds[i] != oracle[i] for i in golds) / len(golds)
    assert 0.1 < flipped < 0.3


def test_one_paper_gives_citation_users_no_training_pair(tmp_path, caplog):
    make_benchmark("citation", 4, 0, tmp_path, profile_size=1)
    assert "--profile-size 1 gives citation users no LaMP-1 training pair" in caplog.text


@pytest.mark.parametrize("task", ["rating", "citation", "title", "tweet"])
def test_scales_to_100k_users_in_seconds(tmp_path, task):
    start = time.perf_counter()
    meta = make_benchmark(task, 100_000, 0, tmp_path, profile_size=4, queries=1)
    assert meta["users"] == 100_000
    assert time.perf_counter() - start < 120  # generous: seconds on a laptop, CI is shared
    golds = json.loads((tmp_path / "dev_outputs.json").read_text())["golds"]
    assert len(golds) == 100_000 and golds[-1]["id"] == "u99999-q0"


def test_cli_rejects_unknown_generator(tmp_path, capsys):
    assert main(["data", "make", "--task", "nope", "--users", "4", "--out", str(tmp_path)]) == 2
    assert ("--task 'nope' is not one of tags, rating, headline, citation, title, tweet"
            in capsys.readouterr().err)


# --- configs --------------------------------------------------------------------------------
def test_there_is_a_config_per_generator_and_per_lamp_task():
    names = {p.stem for p in CONFIGS.glob("*.toml")}
    assert {f"bench-{g}" for g in GENERATORS} <= names
    assert {f"lamp-{n}" for n in (1, 2, 3, 4, 5, 7)} <= names


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_config_loads_and_names_its_data(tmp_path, path):
    cfg = load_config(path)
    assert cfg.experiment.name == path.stem
    if path.stem.startswith("bench-"):
        assert cfg.data.source == "benchmark" and cfg.data.benchmark == path.stem[6:]
        cfg = load_config(path, ["experiment.users=4"])
        folder, split, task = prepare_data(cfg, tmp_path)
        data = load_lamp_dir(folder, split)
        assert data.task.name == task == GENERATORS[cfg.data.benchmark][0]
        assert len(data.users) == 4
    elif path.stem.startswith("lamp-"):
        n = path.stem[5:]
        assert (cfg.data.source, cfg.data.dir, cfg.data.split, cfg.data.task) == (
            "lamp", f"data/LaMP_{n}", "dev", f"LaMP-{n}")
        # The same config on the schema fixtures: the task and split fit LaMP's files.
        cfg = load_config(path, [f"data.dir={FIXTURES / f'LaMP_{n}'}", "experiment.users=1"])
        assert prepare_data(cfg, tmp_path)[2] == f"LaMP-{n}"
