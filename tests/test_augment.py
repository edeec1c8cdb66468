"""Augmentation prompts, candidate parsing, filters and their counts, consistency check."""

import pytest

from server.augment import augment
from server.filters import filter_candidates
from server.prompts import augmentation_prompt, parse_candidate
from server.settings import AugmentSettings
from tasks import get_task

TAGS = get_task("LaMP-2")
HEADLINES = get_task("LaMP-4")
HEADLINE_SEEDS = [{"text": "The council approved night buses on Monday.",
                   "title": "Will the council approve night buses?"}]
SEEDS = [{"description": "A lone astronaut races to repair the station.", "tag": "sci-fi"},
         {"description": "A shy librarian writes letters to a lost love.", "tag": "romance"}]


def test_prompt_shows_seeds_and_opens_a_block():
    p = augmentation_prompt(TAGS, SEEDS, 0)
    assert p.endswith("\n\ndescription:")
    assert "tag: sci-fi" in p and "tag: romance" in p
    assert augmentation_prompt(TAGS, SEEDS, 0) == p  # seeded shuffle


def test_parse_candidate_reads_fields_and_rejects_malformed():
    assert parse_candidate(TAGS, " A robot paints.\ntag: Sci-Fi") == {
        "description": "A robot paints.", "tag": "Sci-Fi"}
    assert parse_candidate(TAGS, " only a description") is None
    assert parse_candidate(TAGS, "") is None


def test_filters_count_every_reason():
    cands = [
        None,                                                                     # unparsable
        {"description": "A dragon guards a village in the hills.", "tag": "cooking"},  # label
        {"description": "Hi.", "tag": "comedy"},                                  # format
        {"description": "A lone astronaut races to repair the station!", "tag": "sci-fi"},  # seed
        {"description": "A detective hunts a killer in the rain.", "tag": "Violence"},  # kept
        {"description": "A detective hunts a killer in the rain.", "tag": "violence"},  # dup
        {"description": "A detective hunts a killer in the rain today.", "tag": "action"},  # near
        {"description": "Two chefs open a restaurant on the moon.", "tag": "comedy"},   # kept
    ]
    res = filter_candidates(TAGS, cands, SEEDS, near_duplicate=0.8)
    assert [c["tag"] for c in res.kept] == ["violence", "comedy"]
    counts = res.counts()
    assert counts["generated"] == 8 and counts["kept"] == 2
    for reason in ("unparsable", "invalid_label", "invalid_format", "copy_of_seed",
                   "duplicate", "near_duplicate"):
        assert counts[f"rejected_{reason}"] == 1, reason


class ScriptedLLM:
    """A stand-in cloud that answers from a script, recording what it was asked."""

    name = "scripted"

    def __init__(self, answers, relabel="sci-fi"):
        self.answers = answers
        self.relabel = relabel
        self.calls = []

    def complete(self, prompts, seed, greedy=False, max_new_tokens=None):
        self.calls.append((list(prompts), greedy))
        if greedy:
            return [f" {self.relabel}" for _ in prompts]
        return [self.answers[i % len(self.answers)] for i in range(len(prompts))]


def test_augment_batches_all_users_in_one_call_and_checks_consistency():
    llm = ScriptedLLM([" A robot learns to paint sunsets.\ntag: sci-fi",
                       " A knight loses a duel to a goose.\ntag: comedy"])
    seeds = {"u0": SEEDS, "u1": SEEDS[:1]}
    out, report = augment(llm, TAGS, seeds, AugmentSettings(n=2, consistency=True), seed=0)
    first_prompts, greedy = llm.calls[0]
    assert len(first_prompts) == 4 and not greedy  # 2 users x n=2 in one batch
    assert llm.calls[1][1]  # consistency pass is greedy
    assert [c["tag"] for c in out["u0"]] == ["sci-fi"]  # the comedy one was re-labelled sci-fi
    assert report.per_user["u0"]["rejected_inconsistent"] == 1
    assert report.totals()["generated"] == 4 and report.totals()["kept"] == 2


def test_zero_seeds_still_prompts_from_the_task_alone():
    llm = ScriptedLLM([" A robot learns to paint sunsets.\ntag: sci-fi"])
    out, report = augment(llm, TAGS, {"u0": []}, AugmentSettings(n=3), seed=0)
    assert llm.calls[0][0][0].startswith("Movies tagged by one user")
    assert report.per_user["u0"]["kept"] == 1 and report.per_user["u0"]["rejected_duplicate"] == 2


def test_blank_line_stop_fires_on_one_or_two_newline_tokens():
    import torch

    from models import load_tokenizer
    from server.backends import BlankLineStop

    tok = load_tokenizer("tiny-random")
    stop = BlankLineStop(tok)
    prompt = tok("title: x", return_tensors="pt")["input_ids"]
    stop.prompt_len = prompt.shape[1]

    def fires(text):
        new = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
        return bool(stop(torch.cat([prompt, new], dim=1), None)[0])

    assert fires(" A robot paints.\n\ntext:")
    assert not fires(" A robot paints.\ntag: sci-fi")
    nl = tok("\n", add_special_tokens=False)["input_ids"]
    two = torch.tensor([nl + nl])  # two separate newline tokens
    assert bool(stop(torch.cat([prompt, two], dim=1), None)[0])


def test_embedded_backend_samples_per_prompt_in_input_order():
    from server.backends import EmbeddedLLM
    from server.settings import CloudSettings

    llm = EmbeddedLLM(CloudSettings(model="tiny-random-1", max_new_tokens=8, batch_size=2))
    prompts = ["short", "a much longer prompt than the first one", "mid length"]
    a = llm.complete(prompts, seed=3)
    assert len(a) == 3 and a == llm.complete(prompts, seed=3)  # seeded
    assert all("\n\n" not in t for t in a)
    greedy = llm.complete(prompts[:1], seed=0, greedy=True)
    assert greedy == llm.complete(prompts[:1], seed=9, greedy=True)


def test_generation_copies_are_judged_on_input_and_output():
    task = get_task("LaMP-4")
    seed = {"text": "On Monday the city council approved the plan to extend night buses.",
            "title": "Will the city council approve plan to extend night buses?"}
    same_answer = {"text": "On Friday the city council approved the plan to extend night buses.",
                   "title": "Will the city council approve plan to extend night buses?"}
    new_answer = {"text": "On Monday the city council rejected the parking fees.",
                  "title": "Will the city council reject parking fees?"}
    res = filter_candidates(task, [same_answer, new_answer], [seed], near_duplicate=0.8)
    assert res.kept == [new_answer] and res.rejected["copy_of_seed"] == 1


def test_augmentation_does_not_depend_on_reply_order():
    llm_a, llm_b = ScriptedLLM([" A robot.\ntag: sci-fi"]), ScriptedLLM([" A robot.\ntag: sci-fi"])
    other = [{"description": "A knight loses a duel to a goose.", "tag": "comedy"}]
    augment(llm_a, TAGS, {"u0": SEEDS, "u1": other}, AugmentSettings(n=2), seed=5)
    augment(llm_b, TAGS, {"u1": other, "u0": SEEDS}, AugmentSettings(n=2), seed=5)
    assert llm_a.calls == llm_b.calls


def test_lamp1_papers_are_kept_though_their_second_field_is_no_label():
    """LaMP-1 items are (title, abstract); the answer ([1]/[2]) is built on the device."""
    task = get_task("LaMP-1")
    paper = {"title": "Sparse Adapters for Phones",
             "abstract": "We study low-rank adapters trained on phones and show that sparsity "
                         "keeps memory low without hurting accuracy in many settings at all."}
    res = filter_candidates(task, [paper], [], near_duplicate=0.8)
    assert res.kept == [paper], res.counts()


def test_generation_consistency_keeps_candidates_whose_output_the_cloud_agrees_with():
    task, seeds = HEADLINES, {"u0": HEADLINE_SEEDS}

    class Cloud:
        name = "scripted"

        def complete(self, prompts, seed, greedy=False, max_new_tokens=None):
            if not greedy:
                return [" A storm closes the harbour for two days.\ntitle: Will the storm "
                        "close the harbour?",
                        " Prices of bread rise again in the north.\n"
                        "title: Northern bakers cut loaves"]
            # re-answers in the user's question style: agrees with the first only
            return [" Will the storm close the harbour?" if "storm" in p else
                    " Will bread prices rise again?" for p in prompts]

    out, report = augment(Cloud(), task, seeds,
                          AugmentSettings(n=2, consistency=True, consistency_rouge=0.5), seed=0)
    assert [c["title"] for c in out["u0"]] == ["Will the storm close the harbour?"]
    assert report.per_user["u0"]["rejected_inconsistent"] == 1
    loose, _ = augment(Cloud(), task, seeds,
                       AugmentSettings(n=2, consistency=True, consistency_rouge=0.0), seed=0)
    assert len(loose["u0"]) == 2  # at threshold 0 every candidate agrees


def test_a_users_synthetic_data_does_not_depend_on_who_else_is_augmented():
    """A retried, resumed or streamed user is augmented beside other users than in an
    undisturbed run: its prompts, batches and samples must be its own all the same."""
    from server.backends import EmbeddedLLM
    from server.settings import CloudSettings

    class Recorder:  # what the cloud wrote for each prompt (a tiny model's kept is empty)
        name = "recorder"

        def __init__(self, llm):
            self.llm, self.seen = llm, []

        def complete(self, prompts, seed, greedy=False, max_new_tokens=None, **kw):
            out = self.llm.complete(prompts, seed, greedy, max_new_tokens, **kw)
            self.seen.extend(zip(prompts, out))
            return out

    task = get_task("LaMP-2")
    llm = EmbeddedLLM(CloudSettings(model="tiny-random-1", max_new_tokens=16, batch_size=8))
    seeds = {f"u{i}": [{"description": f"film {i} number {j} " + "word " * (i * j % 5),
                        "tag": "comedy"} for j in range(3)] for i in range(4)}
    settings = AugmentSettings(n=3)

    def written(users, together=None, who="film 2 number"):
        rec = Recorder(llm)
        augment(rec, task, {u: seeds[u] for u in users}, settings, seed=11, together=together)
        return [(p, t) for p, t in rec.seen if who in p]  # u2's, in order

    alone = written(["u2"])
    assert len(alone) == 3 and all(isinstance(t, str) and t for _, t in alone)
    assert written(["u0", "u1", "u2", "u3"]) == alone
    assert written(["u2", "u3"]) == alone
    # batched by node (u0+u1, u2+u3): a node's users together, whoever else is asked, so
    # one call for every node (no pipeline) writes what one call per node (pipeline) writes
    nodes = {"u0": "u0", "u1": "u0", "u2": "u2", "u3": "u2"}
    per_node = written(["u2", "u3"], nodes, who="film") + \
        written(["u0", "u1"], nodes, who="film")
    everyone = written(["u0", "u1", "u2", "u3"], nodes, who="film")
    assert sorted(everyone) == sorted(per_node) and len(everyone) == 12


def test_a_nodes_users_are_named_by_its_first_user():
    from strategies.methods.base import node_names

    class Coordinator:
        user_node = {"u3": 7, "u1": 7, "u2": 9, "u0": 5}

    assert node_names(Coordinator(), ["u3", "u2", "u9"]) == {"u3": "u1", "u2": "u2",
                                                            "u9": "u9"}


def test_grouped_seeds_batch_each_group_on_its_own():
    from server.backends import EmbeddedLLM
    from server.settings import CloudSettings

    llm = EmbeddedLLM(CloudSettings(model="tiny-random-1", max_new_tokens=8, batch_size=4))
    a = ["one prompt", "another, longer prompt here"]
    b = ["x", "a third prompt of b", "b again"]
    both = llm.complete(a + b, [1, 1, 2, 2, 2])
    assert both[:2] == llm.complete(a, 1) and both[2:] == llm.complete(b, 2)
    with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
        llm.complete(b, [1, 2])


def test_filters_off_keep_what_parses_with_a_valid_label_only():
    cands = [None,
             {"description": "A dragon guards a village in the hills.", "tag": "cooking"},
             {"description": "Hi.", "tag": "comedy"},
             {"description": "A lone astronaut races to repair the station!", "tag": "sci-fi"},
             {"description": "A detective hunts a killer in the rain.", "tag": "violence"},
             {"description": "A detective hunts a killer in the rain.", "tag": "violence"}]
    res = filter_candidates(TAGS, cands, SEEDS, near_duplicate=0.8, quality=False)
    assert len(res.kept) == 4  # format, copy of a seed and duplicate all pass
    assert res.rejected == {"unparsable": 1, "invalid_label": 1}


def test_two_step_answers_each_written_input_from_the_seeds():
    task, seeds = HEADLINES, {"u0": HEADLINE_SEEDS}

    class Cloud:
        name = "scripted"

        def __init__(self):
            self.calls = []

        def complete(self, prompts, seed, greedy=False, max_new_tokens=None):
            self.calls.append((list(prompts), greedy, max_new_tokens))
            if not greedy:  # step 1: inputs, one without its answer, one empty
                return [" A storm closes the harbour for two days.\ntitle: Storm news",
                        " Prices of bread rise again in the north.", " "]
            return [" Will the storm close the harbour?\n" if "storm" in p else "\n"
                    for p in prompts]

    cloud = Cloud()
    out, report = augment(cloud, task, seeds, AugmentSettings(n=3, two_step=True), seed=0)
    step2, greedy, limit = cloud.calls[1]
    assert greedy and limit == task.max_new_tokens and len(step2) == 2
    # the relabel prompt shows the seed with its answer, then the new input, open answer
    assert "title: Will the council approve night buses?" in step2[0]
    assert step2[0].endswith("text: A storm closes the harbour for two days.\ntitle:")
    assert out["u0"] == [{"text": "A storm closes the harbour for two days.",
                          "title": "Will the storm close the harbour?"}]
    assert report.per_user["u0"]["rejected_unparsable"] == 2  # no input; an empty answer
    with pytest.raises(ValueError, match="consistency"):
        AugmentSettings(two_step=True, consistency=True)


def test_users_named_together_share_the_clouds_batches():
    """cloud.batch_by = "node": a node's users share batch keys (one per node, stable
    whoever else is asked); without `together` no key is sent and each user is alone."""
    class Keys:
        name = "keys"

        def __init__(self):
            self.calls = []

        def complete(self, prompts, seed, greedy=False, max_new_tokens=None, **kw):
            self.calls.append((list(seed), kw.get("batch")))
            return [" A storm closes the harbour.\ntitle: Storm " + str(i)
                    for i in range(len(prompts))]

    seeds = {u: HEADLINE_SEEDS for u in ("a", "b", "c")}
    cloud = Keys()
    augment(cloud, HEADLINES, seeds, AugmentSettings(n=2, consistency=True), seed=0,
            together={"a": "a", "b": "a", "c": "c"})
    (own, keys), (_, check_keys) = cloud.calls  # candidates, then the consistency pass
    assert own[0] == own[1] != own[2] == own[3] != own[4]  # each user its own stream
    assert keys[:4] == [keys[0]] * 4 and keys[4:] == [keys[4]] * 2 and keys[0] != keys[4]
    assert set(check_keys) <= set(keys) and len(set(check_keys)) == 2
    again = Keys()
    augment(again, HEADLINES, {"c": HEADLINE_SEEDS}, AugmentSettings(n=2), seed=0,
            together={"c": "c"})
    assert again.calls[0][1] == keys[4:]  # c's key does not depend on who else is asked
    alone = Keys()
    augment(alone, HEADLINES, seeds, AugmentSettings(n=2), seed=0)
    assert alone.calls[0][1] is None
