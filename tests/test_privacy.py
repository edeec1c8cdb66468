"""The seed disclosure policy on the device: k bounds, withheld fields, scrubbing."""

import json
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.scrub import PLACEHOLDERS, find_sensitive, scrub
from clients.seeds import SeedSelection, disclose_seeds, select_seeds
from clients.settings import SeedSettings
from tasks.catalog import get_task
from tasks.structured import ConfigError

HEADLINES = get_task("LaMP-4")  # fields (text, title)


def _profile(n=6):
    return [{"id": f"p{i}", "date": f"2021-01-0{i + 1}",
             "text": f"Article {i}: write to desk{i}@paper.com or call 555-010-000{i}.",
             "title": f"SECRET-TITLE-{i}"} for i in range(n)]


# --- k bounds and policies -----------------------------------------------------------------
@pytest.mark.parametrize("policy", ["random", "recent"])
@pytest.mark.parametrize("k", [0, 1, 3, 6, 50])
def test_never_more_than_k_nor_than_the_profile_holds(k, policy):
    sel = disclose_seeds(HEADLINES, _profile(), SeedSettings(k=k, policy=policy, scrub=True), 0)
    assert len(sel.items) == min(k, 6)
    assert all(set(it) == {"text", "title"} for it in sel.items)  # no ids or dates leave


def test_k_zero_and_empty_profile_send_nothing():
    assert disclose_seeds(HEADLINES, _profile(), SeedSettings(k=0), 0).items == []
    assert disclose_seeds(HEADLINES, [], SeedSettings(k=4, scrub=True), 0).items == []


def test_random_policy_is_deterministic_per_seed_and_varies_across_seeds():
    profile, cfg = _profile(), SeedSettings(k=3)
    picks = [tuple(it["title"] for it in select_seeds(HEADLINES, profile, cfg, s))
             for s in range(8)]
    assert picks[0] == tuple(it["title"] for it in select_seeds(HEADLINES, profile, cfg, 0))
    assert len(set(picks)) > 1
    assert all(len(set(p)) == 3 for p in picks)  # k distinct items, no repeats


def test_recent_policy_takes_the_last_items_in_order():
    seeds = select_seeds(HEADLINES, _profile(), SeedSettings(k=2, policy="recent"), 0)
    assert [s["title"] for s in seeds] == ["SECRET-TITLE-4", "SECRET-TITLE-5"]


def test_select_seeds_is_the_items_of_disclose_seeds():
    cfg = SeedSettings(k=3, scrub=True)
    assert select_seeds(HEADLINES, _profile(), cfg, 7) == \
        disclose_seeds(HEADLINES, _profile(), cfg, 7).items


# --- withheld fields -----------------------------------------------------------------------
def test_withheld_fields_never_leave():
    sel = disclose_seeds(HEADLINES, _profile(), SeedSettings(k=6, fields=["text"]), 0)
    assert len(sel.items) == 6 and all(set(it) == {"text"} for it in sel.items)
    sent = json.dumps(sel.items)
    assert "title" not in sent and "SECRET-TITLE" not in sent


def test_default_fields_are_all_of_the_tasks_in_its_order():
    cfg = SeedSettings(k=1, fields=["title", "text"])
    assert list(select_seeds(HEADLINES, _profile(), cfg, 0)[0]) == ["text", "title"]
    assert list(select_seeds(HEADLINES, _profile(), SeedSettings(k=1), 0)[0]) == ["text", "title"]


@pytest.mark.parametrize("k", [0, 2])
def test_unknown_field_names_the_option_the_field_and_the_allowed_ones(k):
    with pytest.raises(ValueError) as err:
        select_seeds(HEADLINES, _profile(), SeedSettings(k=k, fields=["text", "tag"]), 0)
    message = str(err.value)
    assert "device.seeds.fields" in message and "'tag'" in message
    assert "allowed: text, title" in message


@pytest.mark.parametrize("fields, message", [
    (["text", "text"], "names a field twice"), (["text", ""], "must be field names"),
])
def test_bad_fields_setting_fails_at_start_up(fields, message):
    with pytest.raises(ConfigError, match=f"fields {message}"):
        SeedSettings(fields=fields)


def test_fields_and_scrub_come_from_the_experiment_config():
    from simulation.config import DEFAULT_CONFIG, load_config

    cfg = load_config(DEFAULT_CONFIG, ["device.seeds.fields=['description']",
                                       "device.seeds.scrub=true"])
    assert cfg.device.seeds.fields == ["description"] and cfg.device.seeds.scrub is True
    default = load_config(DEFAULT_CONFIG).device.seeds
    assert default.fields == [] and default.scrub is False


def test_the_device_reply_carries_only_allowed_fields(tags_data, tmp_path, monkeypatch):
    from flwr.app import ConfigRecord, Context, Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from clients.client_app import app
    from clients.settings import DeviceSettings
    from tasks.structured import to_mapping

    for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)  # as if the ServerApp sent it
    dev = DeviceSettings(seeds=SeedSettings(k=3, fields=["description"], scrub=True))
    cfg = {"task": "LaMP-2", "data-dir": str(tags_data.questions_path.parent), "split": "dev",
           "run-dir": str(tmp_path), "method": "cdcda", "seed": 0,
           "device": json.dumps(to_mapping(dev))}
    msg = Message(content=RecordDict({"config": ConfigRecord(cfg)}), dst_node_id=1,
                  message_type="query.seeds")
    msg.metadata.__dict__["_message_id"] = "m1"
    ctx = Context(run_id=1, node_id=1, node_config={"partition-id": 0}, state=RecordDict(),
                  run_config={})
    items = json.loads(app(msg, ctx).content["meta/u0"]["items"])
    assert len(items) == 3 and all(set(it) == {"description"} for it in items)


# --- scrubbing of seeds --------------------------------------------------------------------
def test_scrub_applies_to_every_sent_field_and_is_counted():
    profile = [{"text": "mail a@b.com, see www.x.org", "title": "Call +1 (555) 123-4567 now"},
               {"text": "b@c.org and d@e.net", "title": "2021 in review: 5 stars, $12.99"}]
    sel = disclose_seeds(HEADLINES, profile, SeedSettings(k=2, policy="recent", scrub=True), 0)
    assert sel.items == [
        {"text": "mail [email], see [url]", "title": "Call [phone] now"},
        {"text": "[email] and [email]", "title": "2021 in review: 5 stars, $12.99"},
    ]
    assert sel.scrubbed == {"email": 3, "url": 1, "phone": 1}
    assert sel.metrics() == {"seeds-scrubbed-email": 3, "seeds-scrubbed-url": 1,
                             "seeds-scrubbed-phone": 1}


def test_scrub_counts_only_what_is_sent_and_reports_zeros():
    profile = [{"text": "nothing personal here", "title": "reach me at a@b.com"}]
    sel = disclose_seeds(HEADLINES, profile, SeedSettings(k=1, fields=["text"], scrub=True), 0)
    assert sel.items == [{"text": "nothing personal here"}]
    assert sel.metrics() == {"seeds-scrubbed-email": 0, "seeds-scrubbed-url": 0,
                             "seeds-scrubbed-phone": 0}


def test_without_scrub_text_is_sent_as_is_and_nothing_is_reported():
    sel = disclose_seeds(HEADLINES, _profile(1), SeedSettings(k=1), 0)
    assert sel == SeedSelection([{"text": _profile(1)[0]["text"], "title": "SECRET-TITLE-0"}])
    assert sel.metrics() == {}


# --- scrub(): positive and negative examples -----------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("mail john.doe@example.com now", "mail [email] now"),
    ("x@y.co.uk.", "[email]."),
    ("<a+b_c@mail-server.example.org>,", "<[email]>,"),
    ("Contact: JANE@EXAMPLE.ORG", "Contact: [email]"),
])
def test_scrub_emails(text, expected):
    assert scrub(text) == (expected, {"email": 1})


@pytest.mark.parametrize("text, expected", [
    ("see http://example.com/a?b=1.", "see [url]."),
    ("(www.example.org)", "([url])"),
    ("HTTPS://EX.COM/path), then", "[url]), then"),
    ("ftp://files.x.net/a.txt", "[url]"),
    ('<a href="https://x.io/p#q">', '<a href="[url]">'),
])
def test_scrub_urls(text, expected):
    assert scrub(text) == (expected, {"url": 1})


@pytest.mark.parametrize("text", [
    "+44 20 7946 0958", "+1 (555) 123-4567", "+49 (0)30 901820", "+15551234567",
    "+33 1 23 45 67 89", "(555) 123-4567", "555-123-4567", "555.123.4567", "555 123 4567",
    "1-800-555-1234", "020 7946 0958", "(030) 901820", "030/901820", "06 12 34 56 78",
    "0171 1234567",
])
def test_scrub_phones(text):
    assert scrub(f"call {text}.") == ("call [phone].", {"phone": 1})


@pytest.mark.parametrize("text", [
    "in 2021", "rated 5", "costs $12.99", "$1,299.99", "see [1] and [2]", "1,234,567 people",
    "3.14159265", "2021-03-15", "01.02.2021", "05/12/2021", "pages 100-1000", "1999-2001",
    "the years 2019 2020 2021", "12:30-13:45", "ISBN 978-3-16-148410-0", "12345-6789",
    "4111 1111 1111 1111", "192.168.0.1", "10 20 30 40 50", "+5 stars", "version 1.2.3",
    "score 4.5/5", "@user said", "a@b", "foo@bar.c", "http://", "www", "a.www.b",
    "[email] [url] [phone]",
])
def test_scrub_leaves_ordinary_text_alone(text):
    assert scrub(text) == (text, {})


# --- scrub(): properties -------------------------------------------------------------------
# text built from the pieces the patterns are made of, so that near misses are common
_PIECES = st.sampled_from(
    list("a@.0123456789 -+()/[]:wWhH\t!?,;_%'\"<>é") + [
        "www.", "WWW.", "http://", "HTTPS://", "ftp://", "[phone]", "[email]", "[url]",
        "b@c.de", "x@y.co", "(555) 123-4567", "555-123-4567", "+44 20 7946 0958", "+1",
        "(0)", "020 ", "1-", "com", "org."])
TRICKY = st.lists(_PIECES, max_size=60).map("".join)
ANY_TEXT = st.one_of(st.text(max_size=200), TRICKY)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_TEXT)
def test_scrub_is_idempotent_and_leaves_no_match(text):
    out, counts = scrub(text)
    assert scrub(out) == (out, {})
    assert find_sensitive(out) == []
    assert set(counts) <= set(PLACEHOLDERS)
    for kind, placeholder in PLACEHOLDERS.items():  # each replacement left one placeholder
        assert out.count(placeholder) - text.count(placeholder) == counts[kind]


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(exclude_categories=["Nd"], exclude_characters="@"),
               max_size=200))
def test_scrub_leaves_text_without_at_signs_or_digits_alone_unless_it_has_a_url(text):
    out, counts = scrub(text)
    assert (out == text) == (counts["url"] == 0)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(TRICKY, st.text(min_size=1, max_size=50)).filter(bool))
def test_scrub_is_fast_on_a_megabyte(unit):
    text = (unit * (1_000_000 // len(unit) + 1))[:1_000_000]
    start = time.perf_counter()
    scrub(text)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("text", [
    "a" * 10**6, "a@" * 500_000, "x@" + "a." * 500_000 + "1", "1" * 10**6,
    ("+" + "1" * 20) * 50_000, "www." * 250_000, "http://" + "." * 10**6, "0 " * 500_000,
    "1-" * 500_000, "(0)" * 330_000, "a.b@c." * 170_000, "." * 10**6 + "@", "+1 2" * 250_000,
    "".join(random.Random(0).choice("a@.1 -+(www") for _ in range(10**6)),
], ids=lambda t: repr(t[:12]))
def test_scrub_is_fast_on_adversarial_megabytes(text):
    start = time.perf_counter()
    scrub(text)
    assert time.perf_counter() - start < 1.0
