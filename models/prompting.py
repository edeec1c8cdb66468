"""Turn a task prompt into model input: chat template for instruct models, plain text otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PromptStyle = Literal["auto", "chat", "plain"]


@dataclass
class PromptFormatter:
    """Formats (prompt, answer) pairs consistently for training and generation."""

    tokenizer: object
    style: PromptStyle = "auto"

    def __post_init__(self) -> None:
        if self.style not in ("auto", "chat", "plain"):
            raise ValueError(f"prompt style '{self.style}' is not one of auto, chat, plain")
        if self.style == "auto":
            self.style = "chat" if getattr(self.tokenizer, "chat_template", None) else "plain"
        if self.style == "chat" and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("prompt style 'chat' needs a tokenizer with a chat template")

    def prompt(self, text: str) -> str:
        """The text a model sees before its answer."""
        if self.style == "chat":
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        return f"{text}\nAnswer:"

    def answer_suffix(self) -> str:
        """What closes an answer in training data, so generation learns to stop."""
        if self.style == "chat":
            return "<|im_end|>" if "<|im_end|>" in self.tokenizer.get_vocab() else (
                self.tokenizer.eos_token or ""
            )
        return self.tokenizer.eos_token or "\n"

    def answer(self, text: str) -> str:
        """The target continuation for a training pair."""
        lead = "" if self.style == "chat" else " "
        return f"{lead}{text}{self.answer_suffix()}"
