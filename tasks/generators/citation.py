"""LaMP-1 users: the latent preference is the sub-topic of their field this user cites."""

from __future__ import annotations

import random

from tasks.catalog import TASKS
from tasks.generators.user import User

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


def citation_user(rng: random.Random) -> User:
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
