"""local_real: each device trains its own LoRA on its real examples only (OPPU-like)."""

from strategies.methods.base import Method, evaluate_each

METHOD = Method(
    name="local_real", run=evaluate_each("train"), kinds=("train",),
    traffic="metrics only", trains="own", trainer="cohort")
