"""LaMP-7 users: the latent preference is this user's voice; the gold is their own tweet."""

from __future__ import annotations

import random
import re

from tasks.catalog import TASKS
from tasks.generators.user import User

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


def tweet_user(rng: random.Random) -> User:
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
