"""zero_shot: the base model answers each user's queries, untrained and unprompted."""

from strategies.methods.base import Method, evaluate_each

METHOD = Method(
    name="zero_shot", run=evaluate_each("evaluate"), kinds=("evaluate",),
    traffic="metrics only")
