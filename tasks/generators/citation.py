"""LaMP-1 users: the latent preference is the sub-topic of their field this user cites."""

from __future__ import annotations

import random

from tasks.catalog import TASKS
from tasks.generators.user import Generator, User

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


# A preference maps a field to the sub-topic cited in it: a user's own covers their field
# only, the population's every field (so a shared preference still fits each user's field).
Citations = dict[str, str]
# (field, paper title, (sub-topic, title) of reference [1], (sub-topic, title) of [2])
Query = tuple[str, str, tuple[str, str], tuple[str, str]]


def own_preference(rng: random.Random) -> Citations:
    """The user's field and the sub-topic of it they cite."""
    field = rng.choice(sorted(_FIELDS))
    return {field: rng.choice(sorted(_FIELDS[field][2]))}


def population_preference(rng: random.Random) -> Citations:
    """One sub-topic for every field, so a shared preference fits any user's field."""
    return {field: rng.choice(sorted(_FIELDS[field][2])) for field in sorted(_FIELDS)}


def _title(r: random.Random, field: str, topic: str) -> str:
    subject, objects, topics = _FIELDS[field]
    return r.choice(_PAPER_TITLES).format(m=r.choice(topics[topic][0]), o=r.choice(objects),
                                          s=subject)


def _paper(r: random.Random, field: str) -> str:
    subject, objects, _ = _FIELDS[field]
    return r.choice(_QUERY_TITLES).format(o=r.choice(objects), s=subject)


def draw_input(rng: random.Random) -> Query:
    """A query of any field whose two references are in two different sub-topics."""
    field = rng.choice(sorted(_FIELDS))
    first, second = rng.sample(sorted(_FIELDS[field][2]), 2)
    return (field, _paper(rng, field), (first, _title(rng, field, first)),
            (second, _title(rng, field, second)))


def answer(preference: Citations, query: Query) -> str | None:
    """The reference in the cited sub-topic; None if neither is (nobody asks this user)."""
    return {query[2][0]: "[1]", query[3][0]: "[2]"}.get(preference.get(query[0], ""))


def render(query: Query) -> str:
    """The query as LaMP-1 writes it."""
    return _INSTRUCTION_1.format(title=query[1]) + f' [1]: "{query[2][1]}" [2]: "{query[3][1]}"'


def citation_user(rng: random.Random, shared: Citations | None = None) -> User:
    ((field, own),) = own_preference(rng).items()
    mine = own if shared is None else shared[field]  # the sub-topic this user cites
    subject, objects, topics = _FIELDS[field]
    others = sorted(set(topics) - {mine})

    def item(r: random.Random) -> dict:
        aims = r.sample(topics[mine][1], 2)
        return {"title": _title(r, field, mine),
                "abstract": f"We study {r.choice(objects).lower()} of {subject.lower()}. "
                            f"Our method aims to {aims[0]} and to {aims[1]}. Experiments on "
                            f"{r.randint(2, 9)} benchmarks show consistent gains."}

    def query(r: random.Random) -> tuple[str, str]:
        # The paper's title names only the field: which reference is related, the one in
        # the user's sub-topic or the other one, only the user's own papers tell.
        paper = _paper(r, field)
        related = (mine, _title(r, field, mine))
        other_topic = r.choice(others)
        other = (other_topic, _title(r, field, other_topic))
        built = (field, paper, related, other) if r.random() < 0.5 else (
            field, paper, other, related)
        return render(built), answer({field: mine}, built)

    return item, query


GENERATOR = Generator("LaMP-1", citation_user, TASKS["LaMP-1"].labels, own_preference,
                      population_preference, draw_input, answer)
