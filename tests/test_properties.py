"""Property tests: the cloud-output parsers, filters, metrics and config builder under attack.

Random and adversarial input (1 MB strings, control characters, NUL, lone surrogates, many
colons and lines, odd-case and repeated field names): no crash, no hang, every candidate
counted, metrics in range, bad config values named.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import time
import typing
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.filters import REASONS, _item_words, filter_candidates, jaccard
from server.prompts import is_item, parse_candidate
from simulation.config import Config
from tasks import TASKS, Task
from tasks.metrics import accuracy, macro_f1, mae, rmse, rouge
from tasks.structured import ConfigError, from_mapping

FAST = settings(max_examples=200, deadline=None, database=None)  # no .hypothesis/ in the tree
SOME = settings(max_examples=60, deadline=None, database=None)

ALL = list(TASKS.values())
LABELLED = [t for t in ALL if t.kind != "generation"]
GENERATION = [t for t in ALL if t.kind == "generation"]

# --- text strategies -------------------------------------------------------------------------
# Every line break str.splitlines knows, NUL, BOM, quotes, brackets, digits, dotted I.
SPECIAL = [":", "\n", "\r", "\x00", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029",
           "\t", " ", '"', "[", "]", "1", "2", "3", "5", ".", "\ufeff", "\u0130", "\ud800"]
chars = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from(SPECIAL))
junk = st.text(chars, max_size=60)
undecodable = st.binary(max_size=60).map(lambda b: b.decode("utf-8", "surrogateescape"))
anything = st.one_of(junk, undecodable)
# A value as parse_candidate returns it: one line, stripped, non-empty, valid UTF-8.
clean = st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]),
                min_size=1, max_size=30).map(str.strip).filter(bool)

VOCAB = ["robot", "paints", "a", "city", "night", "bus", "Robot", "café", "the", "moon", "Title"]
HUGE = "word " * 200_000  # 1 MB
words = st.lists(st.sampled_from(VOCAB), max_size=12).map(" ".join)
# Answer labels, quotes and spaces in any order: what generation parsing strips.
label_soup = st.lists(st.sampled_from(["Title:", "title", "headline :", "Tweet:", ":", '"', " ",
                                       "x", "\n", "[2]", "3"]), max_size=10).map("".join)


@st.composite
def odd_case(draw, name: str) -> str:
    ups = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if up else c for c, up in zip(name, ups))


@st.composite
def completion(draw, task: Task) -> str:
    """LLM-like output: `name: value` lines (any case, odd colons), junk lines, any breaks."""
    names = [*task.item_fields, "id", "label", ""]
    line = st.one_of(
        st.tuples(st.sampled_from(names).flatmap(odd_case),
                  st.sampled_from([":", " :", ": ", "::", ":\t"]), anything).map("".join),
        anything, st.text(":", min_size=1, max_size=30), words)
    lines = draw(st.lists(line, max_size=8))
    breaks = st.sampled_from(["\n", "\r\n", "\n\n", "\r", "\u2028", "\x85", "\x0b"])
    return "".join(ln + draw(breaks) for ln in lines)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- parse_candidate ------------------------------------------------------------------------
@FAST
@given(st.data())
def test_parse_candidate_gives_the_task_fields_as_clean_text_or_none(data):
    task = data.draw(st.sampled_from(ALL))
    text = data.draw(st.one_of(anything, completion(task)))
    item = parse_candidate(task, text)
    assert item == parse_candidate(task, text)
    if item is not None:
        assert list(item) == list(task.item_fields)
        for value in item.values():
            assert isinstance(value, str) and value and value == value.strip() and _utf8(value)


@FAST
@given(st.data())
def test_parse_candidate_reads_back_any_well_formed_block(data):
    """Names in any case, fields repeated afterwards (the first wins), junk lines after."""
    task = data.draw(st.sampled_from(ALL))
    item = {f: data.draw(clean) for f in task.item_fields}
    brk = data.draw(st.sampled_from(["\n", "\r\n", "\u2028"]))
    first, *rest = task.item_fields
    lines = [data.draw(st.sampled_from(["", " ", "\t"])) + item[first]]
    lines += [f"{data.draw(odd_case(f))}{data.draw(st.sampled_from([':', ' : ', ': ']))}{item[f]}"
              for f in rest]
    lines += [f"{data.draw(odd_case(f))}: {data.draw(anything)}" for f in task.item_fields]
    lines += data.draw(st.lists(anything, max_size=3))
    assert parse_candidate(task, brk.join(lines)) == item


@pytest.mark.parametrize("task", ALL, ids=lambda t: t.name)
def test_parse_candidate_rejects_lone_surrogates_in_a_value(task):
    text = "\n".join(f"{f}: robot paints \ud800 city" for f in task.item_fields)
    assert parse_candidate(task, " robot paints \udcff city\n" + text) is None
    assert parse_candidate(task, "\ud800 only in a line that is no field\n" + text) is None


# --- Task.parse / is_valid_output -----------------------------------------------------------
@FAST
@given(st.sampled_from(ALL), st.one_of(anything, words, label_soup))
def test_parse_is_total_deterministic_and_idempotent(task, text):
    out = task.parse(text)
    assert isinstance(out, str) and task.parse(text) == out
    assert task.parse(out) == out  # canonical: scoring parsed predictions again changes nothing
    assert isinstance(task.is_valid_output(text), bool)
    assert task.is_valid_output(out) == task.is_valid_output(out)
    if task.kind == "generation":
        assert len(out.splitlines()) <= 1 and out == out.strip()


@pytest.mark.parametrize("task", LABELLED, ids=lambda t: t.name)
def test_parse_keeps_every_valid_label_and_finds_it_in_chatter(task):
    labels = task.labels or ("1", "2", "3", "4", "5")
    for label in labels:
        assert task.parse(label) == label and task.is_valid_output(label)
        assert task.parse(f"  {label.upper()} \n") == label
        if task.kind == "rating" or task.name == "LaMP-1":
            assert task.parse(f"I'd say {label}.") == label
    assert not task.is_valid_output("") and not task.is_valid_output("none of them")


@FAST
@given(st.sampled_from(GENERATION), label_soup)
def test_generation_parse_strips_every_leading_label(task, text):
    out = task.parse(text)
    assert task.parse(out) == out
    assert not re.match(r'(headline|title|tweet|paraphrase)\s*:|["\s]', out, re.I)


@FAST
@given(st.sampled_from(GENERATION), st.lists(st.sampled_from(VOCAB), min_size=1, max_size=40))
def test_generation_parse_keeps_a_plain_answer(task, ws):
    text = " ".join(ws)
    assert task.parse(f'Title: "{text}"\nmore') == text == task.parse(text)
    assert task.is_valid_output(task.parse(text))


ADVERSARIAL = [
    "1" * 10**6, "[" * 10**6, " " * 10**6 + "x", "1." * 500_000, "1." + "1" * 10**6 + "x",
    "1" + " " * 10**6 + "x", '"' * 10**6, ' "' * 500_000 + "x", "title:" * 170_000,
    "title" + " " * 10**6 + "x", "a:" * 500_000, ":" * 10**6, "\n" * 10**6, "\r\n" * 500_000,
    "\ud800" * 10**6, "tag: sci-fi\n" * 90_000, "x" * 10**6 + "\ntitle: y", HUGE,
]


@pytest.mark.parametrize("task", ALL, ids=lambda t: t.name)
def test_parsers_are_fast_on_one_megabyte_of_adversarial_text(task):
    """Catastrophic regex backtracking would take minutes here; linear work takes ms."""
    for text in ADVERSARIAL:
        for fn in (task.parse, task.is_valid_output, lambda s, t=task: parse_candidate(t, s)):
            start = time.perf_counter()
            fn(text)
            assert time.perf_counter() - start < 2.0, (fn, text[:20])
        start = time.perf_counter()
        res = filter_candidates(task, [dict.fromkeys(task.item_fields, text)], [], 0.8)
        assert time.perf_counter() - start < 2.0, text[:20]
        assert res.generated == 1 and not res.kept  # 1 MB inputs are never kept


# --- filter_candidates ----------------------------------------------------------------------
def _answers(task: Task):
    if task.kind == "classification" and task.answer_field:
        return st.sampled_from([*task.labels, "Sci-Fi", " comedy ", "cooking", "", "the movie "
                                "is romance", "ROMANCE"])
    if task.kind == "rating":
        return st.sampled_from(["1", "5", "3", " 4 stars", "6", "nan", "0", "3.5", "", "five"])
    return words


def good_item(task: Task):
    """Right fields, string values; may still be rejected (label, length, copies)."""
    return st.fixed_dictionaries({f: words if i == 0 else _answers(task)
                                  for i, f in enumerate(task.item_fields)})


def bad_candidate(task: Task):
    value = st.one_of(anything, words, st.integers(), st.none(), st.floats(allow_nan=False),
                      st.lists(st.integers(), max_size=2), st.sampled_from([HUGE, b"bytes"]),
                      st.dictionaries(junk, st.integers(), max_size=2))
    keys = st.sampled_from([*task.item_fields, "id", "extra"])
    return st.one_of(st.none(), st.dictionaries(keys, value, max_size=4), st.integers(), junk,
                     st.lists(st.integers(), max_size=2))


def _check_filtered(task: Task, cands, seeds, near: float) -> None:
    before = copy.deepcopy(cands)
    res = filter_candidates(task, cands, seeds, near)
    counts = res.counts()
    assert set(res.rejected) <= set(REASONS)  # a reason outside REASONS is lost in counts()
    assert counts["generated"] == len(cands)
    assert counts["generated"] == counts["kept"] + sum(counts[f"rejected_{r}"] for r in REASONS)
    assert cands == before  # candidates are not modified
    for k in res.kept:
        assert list(k) == list(task.item_fields) and is_item(task, k)
        if task.answer_field is not None:
            assert task.is_valid_output(k[task.answer_field])
        x = k[task.item_fields[0]]
        assert len(x) <= 1000 and len(re.findall(r"\w+", x)) >= 3
        assert all(jaccard(_item_words(task, k), _item_words(task, s)) < near for s in seeds)
    for a, b in combinations(res.kept, 2):
        assert a != b
        assert jaccard(_item_words(task, a), _item_words(task, b)) < near


@FAST
@given(st.data())
def test_filter_counts_every_candidate_and_keeps_only_valid_distinct_items(data):
    task = data.draw(st.sampled_from(ALL))
    cands = data.draw(st.lists(st.one_of(good_item(task), bad_candidate(task)), max_size=12))
    seeds = data.draw(st.lists(good_item(task), max_size=4))
    near = data.draw(st.floats(0.05, 1.0))
    _check_filtered(task, cands, seeds, near)


@FAST
@given(st.data())
def test_parsed_completions_flow_through_the_filter(data):
    task = data.draw(st.sampled_from(ALL))
    texts = data.draw(st.lists(st.one_of(completion(task), anything), max_size=8))
    seeds = data.draw(st.lists(good_item(task), max_size=3))
    _check_filtered(task, [parse_candidate(task, t) for t in texts], seeds, 0.8)


@FAST
@given(st.data())
def test_a_missing_blank_or_non_text_field_is_unparsable(data):
    task = data.draw(st.sampled_from(ALL))
    cand = data.draw(good_item(task))
    f = data.draw(st.sampled_from(task.item_fields))
    bad = data.draw(st.one_of(st.integers(), st.none(), st.lists(st.integers()), st.just("  "),
                              st.just("robot paints \ud800 city"), st.just(b"robot paints")))
    if data.draw(st.booleans()):
        del cand[f]
    else:
        cand[f] = bad
    res = filter_candidates(task, [cand], [], 0.8)
    assert res.kept == [] and dict(res.rejected) == {"unparsable": 1}


def test_filter_keeps_only_the_task_fields():
    task = TASKS["LaMP-2"]
    cand = {"description": "A robot paints the city at night.", "tag": "Sci-Fi", "id": object()}
    res = filter_candidates(task, [cand], [], 0.8)
    assert res.kept == [{"description": "A robot paints the city at night.", "tag": "sci-fi"}]


# --- metrics --------------------------------------------------------------------------------
NUMERIC_JUNK = ["nan", "NaN", "inf", "-inf", "Infinity", "1e308", "-1e308", "1e999", "0", "6",
                "-3", "5.5", "0.9", "\u0663", "1_000", " 2 ", "4.0"]
rating_preds = st.one_of(anything, st.sampled_from(NUMERIC_JUNK), st.floats().map(str),
                         st.integers().map(str), st.sampled_from("12345"))


@FAST
@given(st.data())
def test_rating_errors_are_finite_and_on_the_scale(data):
    task = TASKS["LaMP-3"]
    golds = data.draw(st.lists(st.sampled_from("12345"), min_size=1, max_size=8))
    preds = data.draw(st.lists(rating_preds, min_size=len(golds), max_size=len(golds)))
    for p in (preds, [task.parse(x) for x in preds]):
        m, r = mae(p, golds), rmse(p, golds)
        assert math.isfinite(m) and math.isfinite(r)
        assert 0 <= m <= 4 and 0 <= r <= 4 and m <= r + 1e-9
        assert task.score(p, golds) == {"mae": m, "rmse": r}
    assert mae(golds, golds) == 0 == rmse(golds, golds)


@FAST
@given(st.data())
def test_classification_scores_are_fractions(data):
    task = data.draw(st.sampled_from([t for t in ALL if t.kind == "classification"]))
    golds = data.draw(st.lists(st.sampled_from(task.labels), min_size=1, max_size=8))
    preds = data.draw(st.lists(st.one_of(anything, st.sampled_from(task.labels)),
                               min_size=len(golds), max_size=len(golds)))
    for p in (preds, [task.parse(x) for x in preds]):
        s = task.score(p, golds)
        assert 0 <= s["accuracy"] <= 1 and 0 <= s["f1"] <= 1
    assert accuracy(golds, golds) == 1.0 and macro_f1(golds, golds, task.labels) > 0


@SOME
@given(st.lists(st.tuples(st.one_of(anything, words), st.one_of(anything, words)), min_size=1,
                max_size=4))
def test_rouge_is_a_fraction_and_rouge_l_at_most_rouge_1(pairs):
    preds, golds = [p for p, _ in pairs], [g for _, g in pairs]
    s = TASKS["LaMP-4"].score(preds, golds)
    assert 0 <= s["rouge-L"] <= s["rouge-1"] + 1e-9 <= 1 + 1e-9


def test_rouge_on_huge_predictions_stays_in_range():
    s = rouge(["x" * 10**6, "robot " * 20_000, "\ud800" * 1000], ["robot city", "robot", "a"])
    assert all(0 <= v <= 1 for v in s.values())
    assert rouge(["robot city"], ["Robot city"]) == {"rouge-1": 1.0, "rouge-L": 1.0}


def test_metrics_refuse_no_examples_and_no_labels():
    with pytest.raises(ValueError, match="no examples"):
        accuracy([], [])
    with pytest.raises(ValueError, match="labels"):
        macro_f1(["a"], ["a"], [])


# --- from_mapping ---------------------------------------------------------------------------
def _known(cls, prefix: str = "") -> set[str]:
    """Every dotted field and table name of a settings dataclass tree."""
    out = set()
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        out.add(prefix + f.name)
        if dataclasses.is_dataclass(hint):
            out |= _known(hint, f"{prefix}{f.name}.")
    return out


KNOWN = _known(Config)
json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), junk,
              st.sampled_from([10**400, -(10**400), "nan", "inf", "1e999", "3", "true", "a,b"])),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.one_of(junk, st.integers()),
                                                              kids, max_size=3),
    max_leaves=8)
new_key = st.one_of(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.integers())


def _valid(hint):
    if typing.get_origin(hint) is typing.Literal:
        return st.sampled_from(typing.get_args(hint))
    return {int: st.integers(0, 64), float: st.floats(0.01, 1.0), bool: st.booleans(),
            str: st.sampled_from(["cdcda", "LaMP-2", "x"])}.get(hint, st.just(["cdcda"]))


@st.composite
def config_data(draw, cls):
    """Some of `cls`'s fields, each a plausible value or anything at all, maybe a stray key."""
    hints = typing.get_type_hints(cls)
    out: dict = {}
    for f in dataclasses.fields(cls):
        if draw(st.integers(0, 3)):
            continue
        hint = hints[f.name]
        sub = config_data(hint) if dataclasses.is_dataclass(hint) else _valid(hint)
        out[f.name] = draw(st.one_of(sub, json_like))
    if draw(st.integers(0, 9)) == 0:
        out[draw(new_key)] = draw(json_like)
    return out


def _check_typed(obj) -> None:
    for f in dataclasses.fields(obj):
        hint, value = typing.get_type_hints(type(obj))[f.name], getattr(obj, f.name)
        if dataclasses.is_dataclass(hint):
            _check_typed(value)
        elif typing.get_origin(hint) is typing.Literal:
            assert value in typing.get_args(hint), f.name
        elif typing.get_origin(hint) is list:
            assert type(value) is list and all(type(v) is str for v in value), f.name
        else:  # an int default in a float field is fine (PEP 484)
            assert type(value) in ((int, float) if hint is float else (hint,)), f.name
            assert value == value, f.name  # no nan


MESSAGE = re.compile(r"unknown option (?P<unknown>.*); known options of \[(?P<of>[^\]]*)\]"
                     r"|\[(?P<table>[^\]]*)\] must be a table"
                     r"|(?P<field>[\w.]+)(\[\d+\])? ")


@FAST
@given(config_data(Config))
def test_from_mapping_builds_a_typed_config_or_names_the_bad_field(data):
    try:
        cfg = from_mapping(Config, data)
    except ConfigError as err:
        m = MESSAGE.match(str(err))
        assert m, str(err)
        if m["of"]:
            assert m["of"] == "top level" or m["of"] in KNOWN, str(err)
            assert m["of"] == "top level" or m["unknown"].startswith(m["of"] + "."), str(err)
        elif m["table"]:
            assert m["table"] == "top level" or m["table"] in KNOWN, str(err)
        else:
            assert m["field"] in KNOWN, str(err)
    else:
        _check_typed(cfg)


@pytest.mark.parametrize("data, message", [
    ({"device": {"train": {"epochs": float("inf")}}}, "device.train.epochs must be int"),
    ({"device": {"lora": {"alpha": 10**400}}}, "device.lora.alpha must be float"),
    ({"device": {"train": {"weight_decay": float("nan")}}}, "device.train.weight_decay must be"),
    ({"device": {"lora": {"target_modules": [{}]}}}, "device.lora.target_modules[0] must be"),
    ({"experiment": {"methods": [["cdcda"]]}}, "experiment.methods[0] must be a string"),
    ({1: 2, "experiment": {}}, "unknown option 1; known options of [top level]"),
    ({"runtime": {"\n": 1}}, "unknown option runtime.'\\n'; known options of [runtime]"),
    ([("experiment", {})], "[top level] must be a table"),
    ({"device": {"lora": "rank=2"}}, "device.lora must be a table"),
])
def test_from_mapping_regressions(data, message):
    with pytest.raises(ConfigError) as err:
        from_mapping(Config, data)
    assert message in str(err.value)


def test_from_mapping_accepts_valid_values_unchanged():
    cfg = from_mapping(Config, {"device": {"lora": {"rank": "4", "target_modules": "q, v"},
                                           "train": {"lr": 1, "bf16": "false"}},
                                "experiment": {"methods": ("cdcda",)}})
    assert cfg.device.lora.rank == 4 and cfg.device.lora.target_modules == ["q", "v"]
    assert cfg.device.train.lr == 1.0 and cfg.device.train.bf16 is False
    assert cfg.experiment.methods == ["cdcda"]
    assert from_mapping(Config, dataclasses.asdict(Config())) == Config()
