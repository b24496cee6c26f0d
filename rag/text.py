"""Text primitives that ingestion and answering share: sentences, tokens (tiktoken), words, and citation markers."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from rag._offline import ensure_tiktoken_cache

# ---- normal form: what the loader makes of a document, and the engine of a question

_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\U000e0000-\U000e007f]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def normalize(text: str) -> str:
    """NFC, no invisible or control characters, no lone surrogates (they become U+FFFD), Unix newlines, at most one
    blank line in a row."""
    text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", _INVISIBLE.sub("", text))
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


# ---- sentences

# A sentence ends at . ! ? or … (its closing quotes or brackets stay with it) where white space follows and the
# next sentence starts (not a lower-case word), or at a line break.
_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])([\"'”’)\]]*)\s+(?=[^a-z\s])|\n+")
# Abbreviations and initials whose full stop does not end a sentence.
_ABBREVIATION = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|Gen|Col|Lt|Sgt|Rep|Sen|Gov|vs|etc|No|Fig|al|e\.g|i\.e|U\.S|U\.K|U\.N)|\b[A-Z])\.$"
)

# A list's number ("steps: 1. Preheat", a line opening "2."): its full stop ends no sentence.
_ENUMERATOR = re.compile(r"(?:^\s*|:\s*)\d{1,2}\.$")


def sentences(text: str) -> Iterator[tuple[int, int, bool]]:
    """Yield (start, end, starts_paragraph) for each sentence, trimmed of white space."""
    pos = 0
    para = True
    for match in _SENTENCE_END.finditer(text):
        if "\n" not in match.group() and _ABBREVIATION.search(text, max(pos, match.start() - 8), match.start()):
            continue
        if "\n" not in match.group() and _ENUMERATOR.search(text[pos : match.start()]):
            continue
        end = match.start() + len(match.group(1) or "")
        if end > pos:
            yield pos, end, para
            para = False
        if "\n\n" in match.group():
            para = True
        pos = match.end()
    if pos < len(text) and text[pos:].strip():
        end = len(text.rstrip())
        yield pos, end, para


# ---- tokens (tiktoken; `encode_ordinary`, so text holding special tokens such as <|endoftext|> never raises)


@lru_cache(maxsize=4)
def encoding(name: str = "cl100k_base") -> Any:
    ensure_tiktoken_cache(name)
    import tiktoken

    return tiktoken.get_encoding(name)


def count_tokens(text: str, name: str = "cl100k_base") -> int:
    return len(encoding(name).encode_ordinary(text))


# ---- words

_WORD = re.compile(r"[^\W_]+(?:[-'’][^\W_]+)*", re.U)
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between both but
    by can could did do does doing down during each few for from further had has have having he her here hers herself
    him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only
    or other our ours ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves""".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-cased words without stop words; hyphenated words also give their parts."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        word = word.replace("’", "'")
        if word not in STOPWORDS:
            out.append(word)
            if "-" in word:
                out.extend(p for p in word.split("-") if p and p not in STOPWORDS)
    return out


# ---- citation markers: "[1]", "[1, 2]", "[1][3]"

MARKER = re.compile(r"\s*\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_LEADING_MARKERS = re.compile(rf"(?:{MARKER.pattern})+")


def strip_markers(text: str) -> str:
    return MARKER.sub("", text)


def marker_numbers(text: str) -> list[int]:
    """Every passage number the markers in `text` name, in order."""
    return [int(x) for m in MARKER.finditer(text) for x in re.split(r"[,;]", m.group(1))]


@dataclass
class Claim:
    """One sentence of an answer without its markers: `text`, its closing punctuation, and the passages it cites."""

    text: str
    punct: str = ""
    markers: list[int] = field(default_factory=list)


def claims(answer: str) -> list[Claim]:
    """Split an answer into sentences with the passage numbers each cites. A marker standing alone, or opening the
    next sentence after one that ends in an ellipsis, belongs to the sentence before it."""
    text = answer.strip()
    out: list[Claim] = []
    for s, e, _ in sentences(text):
        raw = text[s:e]
        lead = _LEADING_MARKERS.match(raw)
        if lead and out:
            out[-1].markers.extend(n for n in marker_numbers(lead.group()) if n not in out[-1].markers)
            raw = raw[lead.end() :]
        markers = list(dict.fromkeys(marker_numbers(raw)))
        body = strip_markers(raw).strip()
        punct = body[-1] if body[-1:] in (".", "!", "?") else ""
        body = body[: len(body) - len(punct)].rstrip()
        if body:
            out.append(Claim(body, punct, markers))
        elif out:
            out[-1].markers.extend(n for n in markers if n not in out[-1].markers)
    return out
