"""Pure metric functions: ranking quality, key facts, refusals, support of answer sentences by cited passages,
percentiles.

Nothing here loads a model or reads a file: callers pass texts, ids and precomputed similarities.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence

# ---- retrieval: `retrieved` is a ranked list of chunk ids, `relevant` the ids that hold a supporting quote


def hit_at_k(retrieved: Sequence[str], relevant: set[str], k: int) -> float:
    """1.0 when any of the first k results is relevant."""
    return 1.0 if any(r in relevant for r in retrieved[:k]) else 0.0


def recall_at_k(retrieved: Sequence[str], groups: Sequence[set[str]], k: int) -> float:
    """Share of evidence items (each a set of chunk ids that hold its quote) found among the first k results."""
    if not groups:
        return 0.0
    top = set(retrieved[:k])
    return sum(1 for g in groups if g & top) / len(groups)


def mrr(retrieved: Sequence[str], relevant: set[str]) -> float:
    """Reciprocal rank of the first relevant result; 0.0 when none is retrieved."""
    for rank, r in enumerate(retrieved, 1):
        if r in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(retrieved: Sequence[str], relevant: set[str], k: int) -> float:
    """Binary-relevance nDCG: DCG of the first k results over the DCG of an ideal ranking of every relevant chunk."""
    if not relevant:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, r in enumerate(retrieved[:k]) if r in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal


# ---- text normalisation shared by the answer metrics

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " "})
_DASHES = re.compile(r"[\u2010-\u2015\u2212-]")
_THOUSANDS = re.compile(r"(?<=\d)[,\u202f](?=\d{3}(?!\d))")
_UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {
    w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if w != "_"
}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_NUMBER_WORD = "|".join([*_UNITS, *_TENS, *_SCALES])
_NUMBER_RUN = re.compile(rf"\b(?:{_NUMBER_WORD})(?:(?:\s+|\s+and\s+)(?:{_NUMBER_WORD}))*\b")


def match_form(text: str) -> str:
    """The form answers and facts are compared in (not rag.text.normalize, the library's normal form of a text): lower
    case, straight quotes, dashes as spaces, no thousands separators, `%` as `percent`, number words as digits."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    text = _DASHES.sub(" ", text)
    text = _THOUSANDS.sub("", text)
    text = text.replace("%", " percent")
    text = _NUMBER_RUN.sub(lambda m: _words_to_number(m.group()), text)
    return re.sub(r"\s+", " ", text).strip()


def _words_to_number(words: str) -> str:
    total, current = 0, 0
    tokens = [w for w in words.split() if w != "and"]
    if tokens[0] in _SCALES or tokens == ["one"]:  # "hundred ..." and a lone "one" ("no one") are words, not numbers
        return words
    for w in tokens:
        if w in _UNITS:
            current += _UNITS[w]
        elif w in _TENS:
            current += _TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        else:
            total += max(current, 1) * _SCALES[w]
            current = 0
    return str(total + current)


# ---- key facts: each fact is a list of accepted variants; a variant ending in `*` matches any word ending


def fact_pattern(variant: str) -> re.Pattern[str]:
    """The regex one variant compiles to: whole words after normalisation, a plural `s`/`es` allowed, `*` = any
    ending."""
    prefix = variant.rstrip().endswith("*")
    core = re.escape(match_form(variant.rstrip().rstrip("*")))
    tail = r"\w*" if prefix else r"(?:s|es)?(?!\w)"
    return re.compile(rf"(?<!\w){core}{tail}")


def fact_found(answer: str, variants: Sequence[str]) -> bool:
    """Whether the answer states the fact in any of its accepted variants."""
    text = match_form(answer)
    return any(fact_pattern(v).search(text) for v in variants)


def facts_found(answer: str, facts: Sequence[Sequence[str]]) -> list[bool]:
    return [fact_found(answer, variants) for variants in facts]


# ---- refusals: the positive class is "refused"


def refusal_precision_recall(refused: Sequence[bool], answerable: Sequence[bool]) -> tuple[float | None, float | None]:
    """Precision: refusals that were right (the case is unanswerable); recall: unanswerable cases that were refused."""
    right = sum(1 for r, a in zip(refused, answerable, strict=True) if r and not a)
    n_refused = sum(1 for r in refused if r)
    n_unanswerable = sum(1 for a in answerable if not a)
    precision = right / n_refused if n_refused else None
    recall = right / n_unanswerable if n_unanswerable else None
    return precision, recall


# ---- support of one answer sentence by one cited passage
# Independent of rag.cite's support check on purpose: an eval must not grade the system with the code it grades.

SUPPORT_COVERAGE = 0.6  # share of the sentence's content words found in the passage
SUPPORT_SIMILARITY = 0.7  # cosine between the sentence and the passage's closest sentence
_STOP = frozenset(
    """a an the and or but if of to in on at by for with from as into onto about than then that this these those it its
    is are was were be been being has have had do does did not no so such there their they them he she his her we our
    you your i me my which who whom whose what when where why how also very can could would should may might will
    shall must just only some any all each both more most other according said says yes""".split()
)
_WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def content_words(text: str) -> set[str]:
    """Lower-cased content words of a text, plurals folded, stop words dropped."""
    return {_stem(w) for w in _WORD.findall(match_form(text)) if w not in _STOP}


def numbers(text: str) -> set[str]:
    return set(_NUMBER.findall(match_form(text)))


def is_claim(text: str) -> bool:
    """Whether a sentence states something to ground: connective text ("Yes.", "In short:") does not."""
    return bool(content_words(text) or numbers(text))


def coverage(claim: str, passage: str) -> float:
    """Share of the claim's content words that the passage contains; 1.0 for a claim without any."""
    words = content_words(claim)
    return len(words & content_words(passage)) / len(words) if words else 1.0


def supports(claim: str, passage: str, similarity: float) -> bool:
    """A heuristic, not a model: a passage supports a claim when it holds every number and every name the claim
    states, its closest sentence agrees with the claim on negation and on antonyms, and it holds most of the
    claim's content words or a sentence close in meaning (`similarity`: the best cosine between the claim and a
    passage sentence). Its agreement with hand-labelled pairs is measured (evals/suites/support_pairs.jsonl)."""
    if not numbers(claim) <= numbers(passage) or not names(claim) <= content_words(passage):
        return False
    closest = max(_PASSAGE_SENTENCE.split(passage), key=lambda s: coverage(claim, s))
    near_copy = coverage(claim, closest) >= 0.75 and coverage(closest, claim) >= 0.25  # a rewording may negate freely
    if near_copy and negated(claim) != negated(closest) or _antonym_clash(content_words(claim), content_words(closest)):
        return False
    return coverage(claim, passage) >= SUPPORT_COVERAGE or similarity >= SUPPORT_SIMILARITY


_PASSAGE_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_NAME = re.compile(r"(?<=[a-z0-9,;:]\s)[A-Z][\w'’-]*|\b[A-Z]{2,}\b")
_NEGATIONS = frozenset("not no non never none nor neither without cannot nobody nothing".split())
_NEGATIVE_STEMS = ("refus", "reject", "deni", "deny", "declin", "fail", "unabl", "lack", "oppos", "withh")
_ANTONYMS = [
    ("increase", "decrease"), ("rise", "fall"), ("more", "less"), ("more", "fewer"), ("higher", "lower"),
    ("join", "leave"), ("joined", "left"), ("allow", "ban"), ("support", "oppose"), ("accept", "reject"),
    ("before", "after"), ("first", "last"), ("largest", "smallest"), ("strengthen", "weaken"),
    ("strengthened", "weakened"), ("cheap", "expensive"), ("low", "high"), ("safe", "dangerous"), ("win", "lose"),
    ("agree", "disagree"), ("enter", "exit"), ("add", "remove"), ("true", "false"), ("increased", "decreased"),
    ("increasing", "decreasing"), ("rose", "fell"), ("rising", "falling"), ("joining", "leaving"),
    ("strengthening", "weakening"), ("allowed", "banned"), ("supported", "opposed"), ("accepted", "rejected"),
]  # fmt: skip
_OPPOSITE = {a: b for a, b in _ANTONYMS} | {b: a for a, b in _ANTONYMS}


def names(text: str) -> set[str]:
    """Capitalised words inside a sentence and acronyms (people, places, organisations), as content words."""
    return content_words(" ".join(w for w in _NAME.findall(text) if len(w) > 1))


def negated(text: str) -> bool:
    """Whether a sentence is negative: "not", "never", "n't", or a verb of refusal ("refused", "rejected", ...)."""
    words = re.findall(r"[a-z']+", text.lower().replace("’", "'"))
    return any(w in _NEGATIONS or w.endswith("n't") or w.startswith(_NEGATIVE_STEMS) for w in words)


def _antonym_clash(claim_words: set[str], passage_words: set[str]) -> bool:
    """The claim uses a word whose opposite the passage uses, and not the word itself."""
    return any(_OPPOSITE.get(w) in passage_words and w not in passage_words for w in claim_words)


def evidence_recall(cited: set[str], groups: Sequence[set[str]], mode: str = "all") -> float | None:
    """Share of evidence items with a cited chunk that holds their quote (`any`: 1.0 when one item is covered): whether
    the answer cites where the gold answer is written. Not ALCE's citation recall (see evals/run.py for that)."""
    if not groups:
        return None
    covered = [bool(g & cited) for g in groups]
    if mode == "any":
        return 1.0 if any(covered) else 0.0
    return sum(covered) / len(covered)


# ---- aggregation helpers


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def mean(values: Iterable[float | bool | None]) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between closest ranks, as numpy's default."""
    data = sorted(float(v) for v in values if v is not None)
    if not data:
        return None
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def _stem(word: str) -> str:
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


# ---- intervals for small suites


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval (95% by default) of a proportion; None without cases."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_bootstrap(
    a: Sequence[bool], b: Sequence[bool], rounds: int = 5000, seed: int = 7
) -> tuple[float, float, float]:
    """The difference mean(a) - mean(b) over the same cases, with a 95% percentile bootstrap interval (cases resampled
    in pairs, so the interval reflects that both sides answered the same questions)."""
    import random

    if len(a) != len(b) or not a:
        raise ValueError("paired_bootstrap needs two equally long, non-empty lists")
    rng = random.Random(seed)
    n = len(a)
    diffs = sorted(
        sum(a[i] - b[i] for i in idx) / n for idx in ([rng.randrange(n) for _ in range(n)] for _ in range(rounds))
    )
    return (sum(a) - sum(b)) / n, diffs[int(0.025 * rounds)], diffs[int(0.975 * rounds) - 1]
