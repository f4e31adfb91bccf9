"""Normalisation against evasion: the text a policy's rules match is the prompt with its disguises removed.

`views(text)` gives one or two canonical strings: lower case, Unicode NFKC, zero-width/format and
combining characters dropped, homoglyphs folded to Latin, punctuation inside words removed, spaced-out
letters joined, words separated by one space; one view also decodes
leetspeak in words that contain letters (`k1ll`, `$ex`), the plain view keeps digits (`13 year old`).
Rules are canonicalised with `canonical_term` the same way (and match repeated letters: `kiiill`), so
`kill` matches `K.I.L.L`, `k1ll`, `кill`.
"""

from __future__ import annotations

import re
import unicodedata

# ruff: noqa: RUF001  (the table below is made of lookalike characters on purpose)

# Characters that look like Latin letters (Cyrillic, Greek, Armenian, IPA, Cherokee and symbol forms NFKC
# keeps), folded after casefolding; a small subset of Unicode's confusables.txt covering the lookalikes.
CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a",
    "в": "b",
    "е": "e",
    "ё": "e",
    "г": "r",
    "һ": "h",
    "і": "i",
    "ї": "i",
    "ј": "j",
    "к": "k",
    "ӏ": "l",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "ў": "y",
    "х": "x",
    "ѕ": "s",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "ь": "b",
    "ѵ": "v",
    "п": "n",
    "з": "3",
    "ч": "4",
    "д": "a",
    "ɡ": "g",
    "ɑ": "a",
    "ɩ": "i",
    "ɪ": "i",
    "ʏ": "y",
    "ʀ": "r",
    "ɴ": "n",
    "ʜ": "h",
    "ʟ": "l",
    "ᴋ": "k",
    "ᴍ": "m",
    "ᴛ": "t",
    "ᴜ": "u",
    "ᴠ": "v",
    "ᴡ": "w",
    "ᴢ": "z",
    "ᴄ": "c",
    "ᴅ": "d",
    "ᴇ": "e",
    "ᴏ": "o",
    "ᴘ": "p",
    "ꜱ": "s",
    "ʙ": "b",
    "ғ": "f",
    "ǫ": "q",
    # Greek
    "α": "a",
    "β": "b",
    "γ": "y",
    "δ": "d",
    "ε": "e",
    "η": "n",
    "ι": "i",
    "κ": "k",
    "μ": "u",
    "ν": "v",
    "ο": "o",
    "ρ": "p",
    "σ": "o",
    "ς": "c",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "ω": "w",
    "ϲ": "c",
    "ϳ": "j",
    # Armenian and others
    "օ": "o",
    "ս": "u",
    "ո": "n",
    "հ": "h",
    "ց": "g",
    "զ": "q",
    "ı": "i",
    "ȷ": "j",
    "ł": "l",
    "ø": "o",
    "đ": "d",
    "ħ": "h",
    "ŧ": "t",
    "ß": "ss",
    "æ": "ae",
    "œ": "oe",
    "þ": "p",
    "ð": "d",
}
_CONFUSABLE_TABLE = str.maketrans(CONFUSABLES)

# Leetspeak, applied only inside words that also contain letters; `1` and `|` are read both as i and l.
_LEET_I = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "9": "g",
        "@": "a",
        "$": "s",
        "!": "i",
        "|": "l",
        "€": "e",
        "+": "t",
        "£": "l",
        "¥": "y",
    }
)
_LEET_L = str.maketrans({"1": "l", "|": "i"})

# These split words; every other non-alphanumeric character inside a word is removed (`k.i.l.l`).
_SEPARATORS = re.compile(r"[\s,;:?()\[\]{}<>\"/\\&=~]+")
_EDGE_PUNCT = re.compile(r"^[^\w@$|€£¥]+|[^\w]+$")
_WIDE_GAP = re.compile(r"\s{2,}|\s*[,;:?()\[\]{}<>\"/\\&=~]+\s*")
_NON_WORD = re.compile(r"[^\w]|_")
_HAS_LETTER = re.compile(r"[^\W\d_]")
_LEET_CHARS = frozenset("01345789@$!|€+£¥")


def fold(text: str) -> str:
    """Case, NFKC, zero-width/format and combining characters, homoglyphs."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    # Cf: zero-width joiners, soft hyphen, bidi controls; Mn/Me: combining accents and Zalgo marks.
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Mn", "Me"))
    return unicodedata.normalize("NFKC", text).casefold().translate(_CONFUSABLE_TABLE)


def _words(folded: str, leet: str | None) -> list[str]:
    # Two or more spaces end a spelled-out word: `k i l l   h i m` is two words.
    return [word for segment in _WIDE_GAP.split(folded) for word in _segment_words(segment, leet)]


def _segment_words(folded: str, leet: str | None) -> list[str]:
    words: list[str] = []
    for chunk in _SEPARATORS.split(folded):
        chunk = _EDGE_PUNCT.sub("", chunk)
        if not chunk:
            continue
        if leet is not None and _HAS_LETTER.search(chunk) and not _LEET_CHARS.isdisjoint(chunk):
            chunk = chunk.translate(_LEET_I)
            if leet == "l":
                chunk = chunk.translate(_LEET_L)
        chunk = _NON_WORD.sub("", chunk)
        if chunk:
            words.append(chunk)
    return _join_spaced_letters(words)


def _join_spaced_letters(words: list[str]) -> list[str]:
    """`s e x` -> `sex`: a run of three or more one-letter words is one word spelled out."""
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1:
            run.append(word)
            continue
        if len(run) >= 3:
            joined.append("".join(run))
        else:
            joined.extend(run)
        run = []
        if word:
            joined.append(word)
    return joined


def views(text: str) -> list[str]:
    """The canonical forms of `text` the rules run on: plain, and with leetspeak decoded when it differs."""
    folded = fold(text)
    plain = " ".join(_words(folded, None))
    found = [plain]
    if not _LEET_CHARS.isdisjoint(folded):
        for reading in ("i", "l"):
            view = " ".join(_words(folded, reading))
            if view not in found:
                found.append(view)
    return found


def canonical_term(term: str) -> str:
    """A rule's words in the canonical form `views` gives a prompt (no leetspeak: rules are plain)."""
    return " ".join(_words(fold(term), None))
