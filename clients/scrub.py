"""Replace e-mail addresses, URLs and phone numbers in text before it leaves the device.

The patterns are conservative: they leave years, ratings, prices, dates, citation markers
and plain numbers alone, and may miss exotic formats. Every pattern runs in linear time on
any input: a match can only start where the previous character cannot belong to it (a
lookbehind), so a long run is scanned once, not once per position, and its parts are
separated unambiguously, so a failed match backtracks a bounded amount. Scrubbing is
idempotent: scrubbed text scrubs to itself.
"""

from __future__ import annotations

import re
from collections import Counter

PLACEHOLDERS = {"email": "[email]", "url": "[url]", "phone": "[phone]"}

# local@label.label.tld; ends neither inside a longer token nor before ".more" (so that the
# text after a replaced address can never start a new address on a second pass)
_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]++@(?:[A-Za-z0-9-]++\.)+[A-Za-z]{2,63}"
    r"(?![\w%+@-]|\.[\w.%+@-])"
)

# scheme:// or www., up to whitespace, quotes, angle or square brackets; sentence
# punctuation at the end stays outside the URL
_URL = re.compile(
    r"(?<![\w.-])(?:(?i:https?|ftp)://|(?i:www)\.)"
    r"[^\s<>\"'\[\]]*[^\s<>\"'\[\].,;:!?)]"
)

# Phone candidates, checked by _is_phone (7-15 digits, not a date):
#   international  +44 20 7946 0958, +1 (555) 123-4567, +49 (0)30 901820, +15551234567
#   North American (555) 123-4567, 555-123-4567, 555.123.4567, 1-800-555-1234
#   national       020 7946 0958, (030) 901820, 030/901820, 06 12 34 56 78
# Groups are separated by one of " .-" (or "/" in national numbers); after the first group
# the separator is mandatory, so a run of digits splits into groups in few ways only. A
# number right after a word character, "+", "." (decimals, versions, "x@y.co.555...") or a
# replaced phone is not a phone's start.
_PHONE = re.compile(
    r"(?<![\w+.])(?<!\[phone\])"
    r"(?:"
    r"\+\d{7,15}"
    r"|\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?[ .-]?\d{1,8}(?:[ .-]\d{1,8}){0,5}"
    r"|(?:1[ .-])?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    r"|(?:\(0\d{1,4}\)|0\d{1,4})(?:[ /.-]\d{2,8}){1,4}"
    r")(?!\w)"
)
_DATE = re.compile(r"\d{1,2}([./-])\d{1,2}\1\d{2,4}|\d{4}([./-])\d{1,2}\2\d{1,2}")


def _is_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    return 7 <= digits <= 15 and _DATE.fullmatch(candidate) is None


def scrub(text: str) -> tuple[str, Counter]:
    """`text` with e-mails, URLs and phone numbers replaced by placeholders, and how many
    of each kind were replaced (keys "email", "url", "phone")."""
    counts: Counter = Counter()

    def sub(kind: str, pattern: re.Pattern, text: str) -> str:
        def replace(m: re.Match) -> str:
            if kind == "phone" and not _is_phone(m.group()):
                return m.group()
            counts[kind] += 1
            return PLACEHOLDERS[kind]

        return pattern.sub(replace, text)

    # e-mails first (their domains look like URLs), URLs before phones (a URL may hold digits)
    text = sub("email", _EMAIL, text)
    text = sub("url", _URL, text)
    text = sub("phone", _PHONE, text)
    return text, counts


def find_sensitive(text: str) -> list[tuple[str, str]]:
    """(kind, matched text) of everything `scrub` would replace; empty once scrubbed."""
    found = [("email", m.group()) for m in _EMAIL.finditer(text)]
    found += [("url", m.group()) for m in _URL.finditer(text)]
    found += [("phone", m.group()) for m in _PHONE.finditer(text) if _is_phone(m.group())]
    return found
