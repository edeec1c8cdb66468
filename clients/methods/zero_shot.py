"""zero_shot on the device: the base model answers each query as it is."""

from clients.methods.base import evaluate_base

HANDLERS = {"evaluate": evaluate_base()}
