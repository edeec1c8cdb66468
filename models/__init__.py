"""Which language models exist and how to load them offline; shared by device and cloud."""

from models.loading import (
    NAMED_MODELS,
    LoadedModel,
    cache_root,
    load_model,
    load_tokenizer,
    resolve_model_dir,
)
from models.prompting import PromptFormatter

__all__ = [
    "NAMED_MODELS",
    "LoadedModel",
    "PromptFormatter",
    "cache_root",
    "load_model",
    "load_tokenizer",
    "resolve_model_dir",
]
