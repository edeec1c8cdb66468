"""The bundled offline benchmark: users with latent preferences, written in LaMP format.

Each user has a hidden preference that a model can learn from a handful of examples and
that a generic model cannot guess, so personalization measurably matters:
- `citation` (LaMP-1 format): the sub-topic of their field this user cites; both candidate
  references share the field, only the user's papers tell which sub-topic is theirs;
- `tags` (LaMP-2 format): which tag this user gives each kind of movie;
- `rating` (LaMP-3 format): this user's bias, harsh or generous, on top of the review's tone;
- `headline` (LaMP-4 format): this user's headline style;
- `title` (LaMP-5 format): this user's paper-title style;
- `tweet` (LaMP-7 format): this user's voice (opener, word choice, sign-off, hashtag, case,
  punctuation, emoji); the query is the neutral text, the gold the user's own tweet.
The generator knows every user's oracle answer; `oracle_outputs.json` holds them, and golds
differ from the oracle only where `noise` flips an answer. Deterministic for a seed.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from pathlib import Path

from tasks.catalog import TASKS
from tasks.files import check_folder, write_json

log = logging.getLogger(__name__)

# A user is two draws: one profile item (its LaMP fields, without id and date) and one
# query (the full LaMP `input`, the oracle answer). Where a profile item has the query's
# shape (LaMP-2/3/4/5), both come from one `sample(r) -> (input text, answer)`.
Draw = Callable[[random.Random], tuple[str, str]]
User = tuple[Callable[[random.Random], dict], Draw]


def _same_shape(lamp_name: str, make_sample: Callable[[random.Random], Draw]
                ) -> Callable[[random.Random], User]:
    """A user of a task whose profile items are (input, answer) pairs like its queries."""
    task = TASKS[lamp_name]
    x, y = task.item_fields

    def make_user(rng: random.Random) -> User:
        sample = make_sample(rng)

        def item(r: random.Random) -> dict:
            text, answer = sample(r)
            return {x: text, y: answer}

        def query(r: random.Random) -> tuple[str, str]:
            text, answer = sample(r)
            return task.instruction + text, answer

        return item, query

    return make_user


# --- tags -------------------------------------------------------------------------------
_MOVIE_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # kind: (subjects, plots, tags a user may give this kind)
    "space": (
        ("A starship crew", "A lone astronaut", "A settler on Mars", "A cargo pilot"),
        ("fights to survive after the engines fail near Jupiter",
         "intercepts a signal from a dying star", "races to repair the station's oxygen plant"),
        ("sci-fi", "thought-provoking", "action", "dystopia"),
    ),
    "magic": (
        ("A young witch", "An apprentice wizard", "A princess cursed at birth", "A talking fox"),
        ("searches an enchanted forest for a stolen crown", "must break a spell before winter",
         "learns that her family's spells are fading"),
        ("fantasy", "based on a book", "classic", "romance"),
    ),
    "crime": (
        ("A tired detective", "A bank robber", "A rookie police officer", "A crooked lawyer"),
        ("plans one last heist in a rainy city", "hunts a killer who leaves riddles",
         "uncovers corruption inside the department"),
        ("violence", "twist ending", "action", "dark comedy"),
    ),
    "love": (
        ("A stranger", "A widowed baker", "A shy librarian", "A childhood friend"),
        ("falls for a neighbour during a summer in Lisbon", "writes letters to a lost love",
         "meets an old flame at a wedding"),
        ("romance", "comedy", "classic", "based on a book"),
    ),
    "war": (
        ("A platoon of young soldiers", "A field nurse", "A codebreaker", "A fighter pilot"),
        ("holds a bridge through a bitter winter", "smuggles children across the front line",
         "cracks an enemy cipher against the clock"),
        ("true story", "violence", "classic", "thought-provoking"),
    ),
    "mind": (
        ("A psychiatrist", "A man with no memory", "An insomniac artist", "A grieving mother"),
        ("starts to doubt which of her memories are real", "keeps waking up on the same day",
         "is haunted by a patient who may not exist"),
        ("psychology", "twist ending", "thought-provoking", "dark comedy"),
    ),
    "society": (
        ("A factory worker", "A teacher in a poor district", "A journalist", "A city mayor"),
        ("fights an eviction notice with her neighbours", "exposes a company poisoning a river",
         "loses her job to an algorithm"),
        ("social commentary", "true story", "dystopia", "comedy"),
    ),
}


def _tags_user(rng: random.Random) -> Draw:
    preference = {kind: rng.choice(spec[2]) for kind, spec in _MOVIE_KINDS.items()}
    kinds = rng.sample(sorted(_MOVIE_KINDS), 4)  # this user watches four kinds of movie

    def sample(r: random.Random) -> tuple[str, str]:
        kind = r.choice(kinds)
        subjects, plots, _ = _MOVIE_KINDS[kind]
        return f"{r.choice(subjects)} {r.choice(plots)}.", preference[kind]

    return sample


# --- rating -----------------------------------------------------------------------------
_PRODUCTS = ("kettle", "backpack", "desk lamp", "phone case", "blender", "rain jacket",
             "office chair", "pair of headphones", "coffee grinder", "yoga mat")
_TONE = {
    1: ("Broke within a week and support never answered.", "A total waste of money."),
    2: ("Works, barely, and feels cheap in the hand.", "Disappointing for what it costs."),
    3: ("Does the job, nothing more.", "Some good points, some annoying ones."),
    4: ("Solid and well made, only small quibbles.", "Happy with it overall."),
    5: ("Excellent in every way, I would buy it again.", "Flawless, exceeded what I hoped."),
}


def _rating_user(rng: random.Random) -> Draw:
    bias = rng.choice((-2, -1, -1, 0, 1, 1, 2))  # harsh to generous

    def sample(r: random.Random) -> tuple[str, str]:
        tone = r.randint(1, 5)
        text = f"This {r.choice(_PRODUCTS)}: {r.choice(_TONE[tone])}"
        return text, str(min(5, max(1, tone + bias)))

    return sample


# --- headline ---------------------------------------------------------------------------
_ACTORS = ("City council", "Local school board", "State university", "Regional hospital",
           "Water authority", "Transit agency", "County court", "Harbour police")
_ACTIONS = (("approves", "approved", "plan to extend night buses"),
            ("rejects", "rejected", "proposal to raise parking fees"),
            ("delays", "delayed", "vote on the new library budget"),
            ("announces", "announced", "free summer lunches for children"),
            ("cuts", "cut", "funding for the riverside park"),
            ("reviews", "reviewed", "complaints about late trains"))
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
_STYLES: dict[str, Callable[[str, tuple[str, str, str]], str]] = {
    "plain": lambda a, v: f"{a} {v[0]} {v[2]}",
    "question": lambda a, v: f"Will the {a.lower()} {v[0][:-1]} {v[2]}?",
    "colon": lambda a, v: f"{a}: {v[2]} {v[1]}",
    "breaking": lambda a, v: f"BREAKING: {a} {v[0]} {v[2]}",
    "local": lambda a, v: f"Your town this week: {v[2]} {v[1]} by {a.lower()}",
}


def _headline_user(rng: random.Random) -> Draw:
    style = _STYLES[rng.choice(sorted(_STYLES))]

    def sample(r: random.Random) -> tuple[str, str]:
        actor, act, day = r.choice(_ACTORS), r.choice(_ACTIONS), r.choice(_DAYS)
        text = (f"On {day} the {actor.lower()} {act[1]} the {act[2]} after a long public "
                f"meeting, officials said. {r.randint(2, 9)} members spoke in favour.")
        return text, style(actor, act)

    return sample


# --- citation ---------------------------------------------------------------------------
_FIELDS: dict[str, tuple[str, tuple[str, ...], dict[str, tuple[tuple[str, ...], ...]]]] = {
    # field: (subject, objects, {sub-topic: (title modifiers, abstract aims)})
    "language": ("Language Models", ("Fine-Tuning", "Adapters", "Decoding", "Pretraining"), {
        "privacy": (("Differentially Private", "Privacy-Preserving", "Federated"),
                    ("protect user text with differential privacy",
                     "bound the risk of membership inference", "train without sharing data")),
        "efficiency": (("Quantized", "Sparse", "Low-Rank"),
                       ("cut memory with 4-bit weights", "prune redundant attention heads",
                        "reduce latency on phones")),
        "multilingual": (("Multilingual", "Cross-Lingual", "Low-Resource"),
                         ("transfer to languages with little data",
                          "align embeddings across languages", "cover forty languages")),
        "reasoning": (("Chain-of-Thought", "Verifier-Guided", "Tool-Augmented"),
                      ("solve math problems step by step", "check each intermediate step",
                       "call a calculator when needed")),
    }),
    "vision": ("Vision Models", ("Segmentation", "Detection", "Representations", "Training"), {
        "medical": (("Radiology", "Histopathology", "Clinical"),
                    ("read chest scans", "grade tumour slides", "assist clinicians")),
        "geometry": (("Point-Cloud", "Depth-Aware", "Multi-View"),
                     ("recover scene depth", "fuse several camera views", "label lidar points")),
        "video": (("Temporal", "Video", "Motion-Aware"),
                  ("track objects across frames", "model motion over time", "segment clips")),
        "robustness": (("Adversarially Robust", "Shift-Robust", "Certified"),
                       ("resist adversarial noise", "survive distribution shift",
                        "certify predictions")),
    }),
    "robotics": ("Robot Policies", ("Learning", "Planning", "Control", "Evaluation"), {
        "grasping": (("Dexterous", "Tactile", "Grasp-Aware"),
                     ("pick up unseen objects", "sense contact forces", "use five fingers")),
        "navigation": (("Map-Free", "Outdoor", "Socially-Aware"),
                       ("cross crowded streets", "explore without a map", "avoid pedestrians")),
        "transfer": (("Sim-to-Real", "Domain-Randomized", "Simulator-Trained"),
                     ("close the reality gap", "randomize the simulator",
                      "transfer policies to hardware")),
        "language": (("Language-Conditioned", "Instruction-Following", "Vision-Language"),
                     ("follow spoken instructions", "ground words in objects",
                      "plan from text goals")),
    }),
    "databases": ("Query Engines", ("Optimization", "Indexing", "Execution", "Storage"), {
        "learned": (("Learned", "Neural", "ML-Guided"),
                    ("learn cardinality estimates", "replace indexes with models",
                     "tune knobs with a learned model")),
        "distributed": (("Distributed", "Geo-Replicated", "Sharded"),
                        ("scale across data centres", "replicate across regions",
                         "shard tables automatically")),
        "streaming": (("Streaming", "Incremental", "Real-Time"),
                      ("answer queries over live streams", "update views incrementally",
                       "keep latency under a millisecond")),
        "security": (("Encrypted", "Access-Controlled", "Verifiable"),
                     ("query encrypted tables", "enforce row-level access",
                      "prove results are correct")),
    }),
}
_PAPER_TITLES = ("{m} {o} for {s}", "{m} {o} of {s} at Scale", "On {m} {o} in {s}")
_QUERY_TITLES = ("Revisiting {o} for {s}", "A Closer Look at {o} in {s}",
                 "What Matters in {o} of {s}?", "{o} of {s}: Lessons from Practice")
_INSTRUCTION_1 = TASKS["LaMP-1"].instruction


def _citation_user(rng: random.Random) -> User:
    subject, objects, topics = _FIELDS[rng.choice(sorted(_FIELDS))]
    mine = rng.choice(sorted(topics))  # the sub-topic this user works on and cites
    others = sorted(set(topics) - {mine})

    def title(r: random.Random, topic: str) -> str:
        return r.choice(_PAPER_TITLES).format(m=r.choice(topics[topic][0]),
                                              o=r.choice(objects), s=subject)

    def item(r: random.Random) -> dict:
        aims = r.sample(topics[mine][1], 2)
        return {"title": title(r, mine),
                "abstract": f"We study {r.choice(objects).lower()} of {subject.lower()}. "
                            f"Our method aims to {aims[0]} and to {aims[1]}. Experiments on "
                            f"{r.randint(2, 9)} benchmarks show consistent gains."}

    def query(r: random.Random) -> tuple[str, str]:
        # The paper's title names only the field: which reference is related, the one in
        # the user's sub-topic or the other one, only the user's own papers tell.
        paper = r.choice(_QUERY_TITLES).format(o=r.choice(objects), s=subject)
        related, other = title(r, mine), title(r, r.choice(others))
        first, second, gold = ((related, other, "[1]") if r.random() < 0.5
                               else (other, related, "[2]"))
        return _INSTRUCTION_1.format(title=paper) + f' [1]: "{first}" [2]: "{second}"', gold

    return item, query


# --- title ------------------------------------------------------------------------------
_PROBLEMS = ("Traffic Forecasting", "Protein Folding", "Speech Recognition", "Fraud Detection",
             "Crop Yield Prediction", "Code Completion", "Image Segmentation", "Drug Discovery",
             "Weather Nowcasting", "Machine Translation")
_SETTINGS = ("on Edge Devices", "with Noisy Labels", "in Low-Resource Settings", "at City Scale",
             "under Distribution Shift", "with Limited Supervision")
_METHODS = (  # (name, as an adjective, acronym letter)
    ("Graph Neural Networks", "Graph-Based", "G"), ("Contrastive Learning", "Contrastive", "C"),
    ("Diffusion Models", "Diffusion-Based", "D"), ("Reinforcement Learning", "Reward-Driven", "R"),
    ("Evolutionary Search", "Evolutionary", "E"), ("Sparse Attention", "Sparse", "S"),
    ("Knowledge Distillation", "Distilled", "K"), ("Meta-Learning", "Meta-Learned", "M"),
)
_REASONS = ("labelled data is scarce", "inputs change quickly over time",
            "models must run within tight memory budgets", "errors are costly in practice")
_GAINS = ("needs no extra labels", "trains in a fraction of the usual time",
          "stays accurate when the data shifts", "is simple to implement")
_TITLE_FORMS: dict[str, Callable[[str, tuple[str, str, str], str], str]] = {
    # form: (topic, method, acronym) -> title
    "approach": lambda t, m, a: f"{t}: A {m[1]} Approach",
    "question": lambda t, m, a: f"Can {m[0]} Improve {t}?",
    "towards": lambda t, m, a: f"Towards {m[1]} {t}",
    "acronym": lambda t, m, a: f"{a}: {m[0]} for {t}",
    "plain": lambda t, m, a: f"{m[0]} for {t}",
}


def _title_style(form: str, long: bool) -> Callable[[str, str, tuple[str, str, str]], str]:
    """A style: one form, with the setting in the topic (long) or not (short)."""
    def style(problem: str, setting: str, method: tuple[str, str, str]) -> str:
        acronym = method[2] + "".join(w[0] for w in problem.split())
        topic = f"{problem} {setting}" if long else problem
        return _TITLE_FORMS[form](topic, method, acronym)

    return style


_TITLE_STYLES = {f"{form}-{'long' if long else 'short'}": _title_style(form, long)
                 for form in _TITLE_FORMS for long in (True, False)}


def _title_user(rng: random.Random) -> Draw:
    style = _TITLE_STYLES[rng.choice(sorted(_TITLE_STYLES))]

    def sample(r: random.Random) -> tuple[str, str]:
        problem, setting, method = r.choice(_PROBLEMS), r.choice(_SETTINGS), r.choice(_METHODS)
        abstract = (f"{problem.capitalize()} {setting.lower()} remains hard because "
                    f"{r.choice(_REASONS)}. "
                    f"We propose an approach based on {method[0].lower()} that "
                    f"{r.choice(_GAINS)}. Experiments on {r.randint(2, 9)} benchmarks show "
                    f"gains of {r.randint(2, 15)} points over strong baselines.")
        return abstract, style(problem, setting, method)

    return sample


# --- tweet ------------------------------------------------------------------------------
_DEEDS = ("finished my first half marathon", "burned the toast again",
          "found a little bookshop downtown", "got the new job", "missed the last train home",
          "watched a whole season in one night", "planted tomatoes on the balcony",
          "fixed my bike all by myself", "tried the new ramen place", "cleaned the entire flat")
_WHEN = ("this morning", "today", "last night", "this weekend", "after work")
_FEELING = ("and I am very happy", "and I am really tired", "and it was very good",
            "and I am going to do it again", "and it was really funny", "and I am so proud")
_REGISTERS = {  # word choice; None keeps the neutral words
    "plain": None,
    "slang": {"I am": "im", "very": "hella", "really": "lowkey", "good": "fire",
              "going to": "gonna", "happy": "hyped", "tired": "dead", "so": "sooo",
              "this morning": "this am", "last night": "last nite", "today": "2day"},
    "hype": {"very": "super", "really": "totally", "good": "amazing", "happy": "thrilled",
             "tired": "wiped out", "so": "incredibly", "funny": "hilarious",
             "this weekend": "this glorious weekend", "after work": "right after work"},
    "dry": {"very": "quite", "really": "rather", "good": "fine", "happy": "content",
            "so": "fairly", "funny": "amusing", "today": "earlier today"},
}
_OPENERS = ("", "ngl", "honestly", "update:", "PSA:", "lol")
_SIGNOFFS = ("", "anyway", "send help", "no regrets", "just saying", "10/10")
_HASHTAGS = ("", "#blessed", "#nofilter", "#mondaymood", "#lifeupdate", "#smalljoys")
_ENDINGS = (".", "!", "!!!", "", "...")
_EMOJI = ("", "\N{FACE WITH TEARS OF JOY}", "\N{PERSON RAISING BOTH HANDS IN CELEBRATION}",
          "\N{SPARKLES}", "\N{FIRE}")
_WORDS = {name: re.compile(r"\b(" + "|".join(sorted(subs, key=len, reverse=True)) + r")\b")
          for name, subs in _REGISTERS.items() if subs}
_INSTRUCTION_7 = TASKS["LaMP-7"].instruction


def _tweet_user(rng: random.Random) -> User:
    register = rng.choice(sorted(_REGISTERS))
    subs, words = _REGISTERS[register], _WORDS.get(register)
    opener, signoff, tag = rng.choice(_OPENERS), rng.choice(_SIGNOFFS), rng.choice(_HASHTAGS)
    ending, emoji, lower = rng.choice(_ENDINGS), rng.choice(_EMOJI), rng.random() < 0.4
    diary = rng.random() < 0.5  # drops the leading "I", as in "missed the bus again"

    def voice(neutral: str) -> str:
        text = neutral[2:] if diary else neutral
        text = words.sub(lambda m: subs[m.group(1)], text) if words else text
        text = text.rstrip(".") + ending
        if signoff:
            text += f" {signoff}"
        text = " ".join(p for p in (opener, text, emoji, tag) if p)
        return text.lower() if lower else text

    def neutral(r: random.Random) -> str:
        return f"I {r.choice(_DEEDS)} {r.choice(_WHEN)} {r.choice(_FEELING)}."

    def item(r: random.Random) -> dict:
        return {"text": voice(neutral(r))}

    def query(r: random.Random) -> tuple[str, str]:
        text = neutral(r)
        return _INSTRUCTION_7 + text, voice(text)

    return item, query


# name: (LaMP task, user factory, labels `noise` may flip a gold to: () for free text)
GENERATORS: dict[str, tuple[str, Callable[[random.Random], User], tuple[str, ...]]] = {
    "tags": ("LaMP-2", _same_shape("LaMP-2", _tags_user), TASKS["LaMP-2"].labels),
    "rating": ("LaMP-3", _same_shape("LaMP-3", _rating_user), ("1", "2", "3", "4", "5")),
    "headline": ("LaMP-4", _same_shape("LaMP-4", _headline_user), ()),
    "citation": ("LaMP-1", _citation_user, TASKS["LaMP-1"].labels),
    "title": ("LaMP-5", _same_shape("LaMP-5", _title_user), ()),
    "tweet": ("LaMP-7", _tweet_user, ()),
}


def make_benchmark(
    task: str,
    users: int,
    seed: int,
    out: Path | str,
    profile_size: int = 8,
    queries: int = 2,
    noise: float = 0.0,
) -> dict:
    """Write `dev_questions.json`, `dev_outputs.json` and `oracle_outputs.json` to `out`."""
    if task not in GENERATORS:
        raise ValueError(f"--task '{task}' is not one of {', '.join(GENERATORS)}")
    if not 1 <= users <= 10_000_000:
        raise ValueError(f"--users must be between 1 and 10,000,000, got {users}")
    for option, value in (("--profile-size", profile_size), ("--queries", queries)):
        if value < 1:
            raise ValueError(f"{option} must be at least 1, got {value}")
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"--noise must be in [0, 1), got {noise}")
    out = Path(out)
    check_folder(out)  # before generating: 100k users take seconds
    lamp_name, make_user, flip_labels = GENERATORS[task]
    if noise and not flip_labels:
        log.warning("--noise %s has no effect on %s: its golds are free text", noise, task)
    lamp = TASKS[lamp_name]
    questions, golds, oracle = [], [], []
    for u in range(users):
        rng = random.Random(f"{seed}/{task}/{u}")
        item, query = make_user(rng)
        uid = f"u{u}"
        profile = [{"id": f"{uid}-p{j}", "date": f"2024-{1 + j % 12:02d}-{1 + j:02d}",
                    **item(rng)} for j in range(profile_size)]
        if u == 0 and not lamp.profile_pairs(profile):
            log.warning("--profile-size %d gives %s users no %s training pair", profile_size,
                        task, lamp.name)
        for j in range(queries):
            text, answer = query(rng)
            qid = f"{uid}-q{j}"
            gold = answer
            if noise and flip_labels and rng.random() < noise:
                gold = rng.choice([lab for lab in flip_labels if lab != answer])
            questions.append({"id": qid, "user_id": uid, "input": text, "profile": profile})
            golds.append({"id": qid, "output": gold})
            oracle.append({"id": qid, "output": answer})
    out.mkdir(parents=True, exist_ok=True)
    meta = {"generator": task, "task": lamp.lamp_id, "users": users, "seed": seed,
            "profile_size": profile_size, "queries": queries, "noise": noise}
    write_json(out / "dev_questions.json", questions, indent=None)
    write_json(out / "dev_outputs.json", {"task": lamp.lamp_id, "golds": golds}, indent=None)
    write_json(out / "oracle_outputs.json", {"task": lamp.lamp_id, "golds": oracle}, indent=None)
    write_json(out / "benchmark.json", meta, indent=None)
    return meta

