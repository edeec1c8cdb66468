"""profile_prompt: the base model answers with k BM25-retrieved profile items in the prompt."""

from strategies.methods.base import Method, evaluate_each

METHOD = Method(
    name="profile_prompt", run=evaluate_each("evaluate"), kinds=("evaluate",),
    traffic="metrics only")
