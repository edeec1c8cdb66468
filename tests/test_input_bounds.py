"""Inputs too large to hold: texts are cut to the model's context before they are
tokenised, on the device (answering, training) and in the embedded cloud."""

import pytest

from clients.inference import generate
from clients.trainer import encode
from models import PromptFormatter, load_model
from models.context import clip, context_tokens, max_token_chars
from tasks.catalog import Example

HUGE = "word " * 400_000  # 2 MB: a quarter of a million tokens and more


class Spy:
    """A tokenizer that records the longest text it was given."""

    def __init__(self, tokenizer):
        self.tokenizer, self.longest = tokenizer, 0

    def __call__(self, texts, *args, **kwargs):
        for t in [texts] if isinstance(texts, str) else texts:
            self.longest = max(self.longest, len(t))
        return self.tokenizer(texts, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny-random-1")


def test_clip_keeps_the_end_of_a_prompt_and_the_start_of_an_answer(tiny):
    tok = tiny.tokenizer
    n = max_token_chars(tok)
    assert n == max(len(t) for t in tok.get_vocab())
    assert clip("short", 10, tok) == "short"
    text = "a" * (100 * n) + "THE QUESTION"
    assert clip(text, 10, tok).endswith("THE QUESTION") and len(clip(text, 10, tok)) == 10 * n
    assert clip(text, 10, tok, keep="start") == text[: 10 * n]
    # a cut text still has at least as many tokens as the bound: nothing the model sees moves
    ids = tok(clip(HUGE, 50, tok), add_special_tokens=False)["input_ids"]
    assert len(ids) >= 50


def test_a_huge_query_is_answered_within_the_context_and_never_tokenised_whole(tiny):
    spy = Spy(tiny.tokenizer)
    fmt = PromptFormatter(tiny.tokenizer, "plain")
    report = generate(tiny.model, spy, fmt, [HUGE + " end?", "a short one"], max_new_tokens=4,
                      batch_size=2)
    room = context_tokens(tiny.model) - 4
    assert len(report.texts) == 2
    assert spy.longest <= room * max_token_chars(tiny.tokenizer)
    assert context_tokens(tiny.model) == tiny.model.config.max_position_embeddings == 1024


def test_a_huge_training_example_is_cut_before_tokenising(tiny):
    spy = Spy(tiny.tokenizer)
    fmt = PromptFormatter(tiny.tokenizer, "plain")
    rows = encode([Example(HUGE + " end?", HUGE, {}, "x")], spy, fmt, max_length=64)
    (ids, labels), = rows
    assert len(ids) <= 64 and any(t != -100 for t in labels)
    assert spy.longest <= 64 * max_token_chars(tiny.tokenizer)


def test_the_embedded_cloud_cuts_a_huge_prompt_to_its_context():
    from server.backends import EmbeddedLLM
    from server.settings import CloudSettings

    llm = EmbeddedLLM(CloudSettings(model="tiny-random-1", max_new_tokens=8, batch_size=2))
    spy = Spy(llm.tokenizer)
    llm.tokenizer = spy
    out = llm.complete([HUGE, "short"], seed=1)
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    assert spy.longest <= (context_tokens(llm.model) - 8) * max_token_chars(spy.tokenizer)


@pytest.mark.e2e
def test_a_run_with_a_50_mb_field_cuts_it_uploads_at_most_the_bound_and_stays_in_memory(
        tmp_path):
    """The issue's case end to end: one 50 MB profile text. It is cut at load (warned once,
    counted), its seed leaves the device at the bound, not whole, and the run's peak
    memory stays within 1.5x of the same run without it."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from tasks.lamp import MAX_TEXT_BYTES

    data = Path(__file__).parent / "data" / "LaMP_2"
    peaks, ups = {}, {}
    for name in ("normal", "huge"):
        folder = tmp_path / name
        shutil.copytree(data, folder)
        if name == "huge":
            questions = json.loads((folder / "dev_questions.json").read_text())
            questions[0]["profile"][0]["description"] = "a film " + "x" * 50_000_000
            (folder / "dev_questions.json").write_text(json.dumps(questions))
        out = tmp_path / f"run-{name}"
        # each run in a fresh process: this one's memory holds whatever earlier tests loaded
        said = tmp_path / f"{name}.log"
        with said.open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "simulation.cli", "run", "--config",
                 "configs/tiny.toml", "--out", str(out), "--set", "data.source=lamp",
                 "--set", f"data.dir={folder}", "--set", "data.task=LaMP-2",
                 "--set", "experiment.users=2",
                 "--set", "experiment.methods=['zero_shot','cdcda']"],
                cwd=Path(__file__).parent.parent, stdout=log, stderr=subprocess.STDOUT)
            peaks[name] = _peak_rss_mib(proc)
        assert proc.returncode == 0, said.read_text()[-3000:]
        ledger = [json.loads(x) for x in (out / "ledger.jsonl").read_text().splitlines()]
        ups[name] = max(e["up"] for e in ledger)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["status"] == "ok"
        if name == "huge":
            assert summary["data_info"]["texts_cut"] == 1
            assert "1 text(s) over 1,000,000 bytes were cut" in said.read_text()
            assert (out / "run.log").read_text().count("were cut to that size") == 1
    assert MAX_TEXT_BYTES < ups["huge"] < MAX_TEXT_BYTES + 50_000  # the seed, at the bound
    print(json.dumps({"peak_rss_mib": peaks, "largest_upload": ups}))  # with -s
    assert peaks["huge"] <= 1.5 * peaks["normal"], peaks


def _peak_rss_mib(proc) -> float:
    """The sum over a process and its descendants of each one's own peak RSS, sampled every
    0.1 s until it ends: steadier than the run's own once-a-second peak of the sum."""
    import time

    import psutil

    peak: dict[int, int] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                peak[p.pid] = max(peak.get(p.pid, 0), p.memory_info().rss)
            except psutil.Error:
                pass
        time.sleep(0.1)
    return sum(peak.values()) / 2**20
