"""How the words read in pictures and the words asked for are compared: folded the same way on both sides.

The catalog's FTS5 table uses the trigram tokenizer (substrings, any script), but the SQLite linked
here (3.40) lacks its `remove_diacritics` (3.45), so case and accents are folded in Python, both when
words are stored and when they are asked for. Spaces are dropped within a line as well: the
recogniser often runs two printed words together ("HARDWARESTORE") or splits one, and a phrase asked
for should match either way. Lines stay apart (a newline between them), so a phrase never matches
across two lines. Stdlib only: the protocol checks a request's words with it.
"""

from __future__ import annotations

import re
import unicodedata

MIN_CHARS = 3  # a trigram index finds nothing shorter
_SPACE = re.compile(r"\s+")
_TOKEN = re.compile(r"\w+")


def fold(text: str) -> str:
    """Case, accents and spaces folded away: "Café  Noir" -> "cafenoir"."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACE.sub("", plain.casefold())


def fold_lines(lines: list[str]) -> str:
    """The text stored for a picture: each line folded, one line per row of text."""
    return "\n".join(folded for folded in (fold(line) for line in lines) if folded)


def phrase(text: str) -> str:
    """An FTS5 query matching `text` literally (a quoted string: INV-2023 or 17.49 are not syntax)."""
    return '"' + fold(text).replace('"', '""') + '"'


def tokens(texts: list[str]) -> list[str]:
    """The folded words of a search's texts that a trigram index can find (3 characters or more), once each."""
    found = [fold(token) for text in texts for token in _TOKEN.findall(text)]
    return list(dict.fromkeys(token for token in found if len(token) >= MIN_CHARS))


def any_of(words: list[str]) -> str:
    """An FTS5 query matching any of the (folded) words."""
    return " OR ".join('"' + word.replace('"', '""') + '"' for word in words)
