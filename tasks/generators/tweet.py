"""LaMP-7 users: the latent preference is this user's voice; the gold is their own tweet."""

from __future__ import annotations

import random
import re
from typing import NamedTuple

from tasks.catalog import TASKS
from tasks.generators.user import Generator, User

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


class Voice(NamedTuple):
    """A user's voice, shared or own as a whole (never part by part)."""

    register: str
    opener: str
    signoff: str
    tag: str
    ending: str
    emoji: str
    lower: bool
    diary: bool  # drops the leading "I", as in "missed the bus again"


def draw_preference(rng: random.Random) -> Voice:
    register = rng.choice(sorted(_REGISTERS))
    opener, signoff, tag = rng.choice(_OPENERS), rng.choice(_SIGNOFFS), rng.choice(_HASHTAGS)
    ending, emoji, lower = rng.choice(_ENDINGS), rng.choice(_EMOJI), rng.random() < 0.4
    return Voice(register, opener, signoff, tag, ending, emoji, lower, rng.random() < 0.5)


def draw_input(rng: random.Random) -> str:
    """The neutral text, also the query's input."""
    return f"I {rng.choice(_DEEDS)} {rng.choice(_WHEN)} {rng.choice(_FEELING)}."


def answer(voice: Voice, neutral: str) -> str:
    """The neutral text as this voice tweets it."""
    subs, words = _REGISTERS[voice.register], _WORDS.get(voice.register)
    text = neutral[2:] if voice.diary else neutral
    text = words.sub(lambda m: subs[m.group(1)], text) if words else text
    text = text.rstrip(".") + voice.ending
    if voice.signoff:
        text += f" {voice.signoff}"
    text = " ".join(p for p in (voice.opener, text, voice.emoji, voice.tag) if p)
    return text.lower() if voice.lower else text


def tweet_user(rng: random.Random, shared: Voice | None = None) -> User:
    own = draw_preference(rng)
    voice = own if shared is None else shared

    def item(r: random.Random) -> dict:
        return {"text": answer(voice, draw_input(r))}

    def query(r: random.Random) -> tuple[str, str]:
        text = draw_input(r)
        return _INSTRUCTION_7 + text, answer(voice, text)

    return item, query


GENERATOR = Generator("LaMP-7", tweet_user, (), draw_preference, draw_preference, draw_input,
                      answer)
