"""Strict answer scoring, the same for this system and for any baseline or endpoint: one function reads an answer's
text (and the system's own refusal flag, when it has one) and says whether it answers the case.

An answerable case passes when the answer is not a refusal, states every fact, states no `must_not` claim, states
each `together` group of facts in one sentence, opens with the case's yes/no `polarity`, and is an answer rather than
a pasted document (at most `max_words`). An unanswerable case passes when the answer is a refusal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from evals.metrics import fact_found, match_form
from evals.suite import Case

# Independent of rag.answer.looks_like_refusal on purpose: an eval must not grade the system with the code it grades.
# A refusal, read from the text of the first sentence: the system says the documents do not hold the answer ("The
# passages do not say …", "It is not mentioned …", "I could not find …"). The hedge must open the sentence (a right
# answer may say that one document is silent on something), except for phrases that only a refusal uses. An answer that
# opens with "Yes" or "No" answers.
_HEDGE_OPENING = re.compile(
    r"^(?:(?:unfortunately|sorry|however|but),?\s+)?"
    r"(?:(?:the|these|those|provided|given)\s+)*(?:\w+\s+)?"
    r"(?:passages?|documents?|articles?|context|texts?|sources?|information)\b[^.;]{0,40}?"
    r"\b(?:do(?:es)?|did)(?: not|n't)\s+(?:\w+\s+){0,2}?"
    r"(?:say|state|mention|contain|provide|specify|include|give|answer|discuss|cover|address|indicate|report|tell)"
    r"|^(?:it|this|that|the answer)\s+(?:is|was)\s+not\s+"
    r"(?:mentioned|provided|stated|specified|given|addressed|discussed|reported)\b"
    r"|^(?:there is|there's)\s+no\s+(?:information|mention)",
    re.I,
)
_REFUSAL_ANYWHERE = re.compile(
    r"\bnot[\s_]*found\b|\bi (?:could|can|did)(?: not|n't|not) (?:find|answer|determine)|\bi do(?: not|n't) know\b"
    r"|\bno information (?:about|on|regarding)\b|\bnot (?:enough|sufficient) information\b"
    r"|\bcannot be (?:determined|answered)\b",
    re.I,
)
_MARKER = re.compile(r"\s*\[\d+(?:\s*[,;]\s*\d+)*\]")
_SENTENCE = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[^a-z\s])|\n+")
_FIRST_WORD = re.compile(r"[a-z]+")
MIN_MAX_WORDS = 120  # an answer may run to this many words, or three times its reference, whichever is more


@dataclass
class Verdict:
    """How an answer fares on a case: `passed`, and each check behind it."""

    passed: bool
    refused: bool
    facts: list[bool] = field(default_factory=list)
    must_not: list[str] = field(default_factory=list)  # the wrong claims the answer states
    together: bool = True
    polarity: bool = True
    too_long: bool = False

    @property
    def reasons(self) -> list[str]:
        out = []
        if self.refused:
            out.append("refused")
        if not all(self.facts):
            out.append(f"{self.facts.count(False)} fact(s) missing")
        if self.must_not:
            out.append("states " + "; ".join(repr(m) for m in self.must_not))
        if not self.together:
            out.append("facts that belong together are in different sentences")
        if not self.polarity:
            out.append("does not open with the right yes/no")
        if self.too_long:
            out.append("too long to be an answer")
        return out


def clean(answer: str) -> str:
    """The answer without citation markers, on one line."""
    return re.sub(r"\s+", " ", _MARKER.sub("", answer)).strip()


def sentences(answer: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(clean(answer)) if s and s.strip()]


def is_refusal(answer: str) -> bool:
    """Whether the answer's text declines to answer (a hedge citing a passage is still a refusal). An answer that
    opens with "Yes" or "No" answers."""
    parts = sentences(answer)
    if not parts:
        return True
    first = _FIRST_WORD.search(match_form(parts[0]))
    if first and first.group() in ("yes", "no"):
        return False
    return bool(_HEDGE_OPENING.search(parts[0]) or _REFUSAL_ANYWHERE.search(parts[0]))


def score(case: Case, answer: str, refused: bool = False) -> Verdict:
    """Score `answer` on `case`; `refused` is the answerer's own flag (a baseline has none: its text decides)."""
    refused = refused or is_refusal(answer)
    if not case.answerable:
        return Verdict(passed=refused, refused=refused)
    text = clean(answer)
    facts = [False] * len(case.facts) if refused else [fact_found(text, variants) for variants in case.facts]
    wrong = [v for variants in case.must_not for v in variants if fact_found(text, (v,))] if not refused else []
    together = (
        all(_in_one_sentence(answer, [case.facts[i] for i in group]) for group in case.together)
        if not refused
        else False
    )
    polarity = case.polarity is None or _opens_with(text, case.polarity)
    too_long = len(text.split()) > max(MIN_MAX_WORDS, 3 * len(case.reference.split()))
    passed = not refused and all(facts) and not wrong and together and polarity and not too_long
    return Verdict(passed, refused, facts, wrong, together, polarity, too_long)


def _in_one_sentence(answer: str, facts: list[tuple[str, ...]]) -> bool:
    return any(all(fact_found(s, variants) for variants in facts) for s in sentences(answer))


def _opens_with(text: str, polarity: str) -> bool:
    first = _FIRST_WORD.search(match_form(text))
    return first is not None and first.group() == polarity
