"""Citations checked by code: markers must point at retrieved passages, every sentence is attributed to the
passage that supports it best, and each citation carries the exact supporting quote with source offsets."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from langchain_core.embeddings import Embeddings

from rag.context import Passage
from rag.text import claims as split_claims
from rag.text import tokenize

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

SUPPORTED = 0.5  # support at or above this: a sentence is grounded in the passage
WEAK = 0.35  # below this for every passage: the sentence is not grounded anywhere


@dataclass
class Citation:
    """Passage `n` as cited in the answer; `quote` is source_text[start:end], on page `page` of a paged document
    (PDF; None for others)."""

    n: int
    chunk_id: str
    source: str
    title: str
    text: str
    quote: str
    start: int
    end: int
    page: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Checked:
    """The checked answer: `text` is what stands; `parts` are all the model's sentences in order, each with whether it
    stands (a removed sentence is shown as removed, never silently)."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    removed_markers: list[int] = field(default_factory=list)
    parts: list[tuple[str, bool]] = field(default_factory=list)


def claim_stands(claim: str, passage: str, embedder: Embeddings, question: str = "") -> bool:
    """Whether the citation check keeps `claim` citing one passage of text `passage`, as an answer to `question` (what
    evals measure the check by, against hand labels)."""
    from langchain_core.documents import Document as LCDocument

    from rag.text import normalize

    shown = Passage.from_document(1, LCDocument(page_content=normalize(passage), metadata={}))
    return bool(check(f"{claim} [1]", [shown], embedder, question).citations)


def check(answer: str, passages: list[Passage], embedder: Embeddings, question: str = "") -> Checked:
    """Validate and complete the answer's citations; drop sentences that no passage supports. Words of the `question`
    may appear in an answer that copies a passage (it names what was asked); its names and numbers may not."""
    import numpy as np

    by_n = {p.n: p for p in passages}
    claims, written, removed = _claims(answer, passages, by_n)
    with_text = [p for p in passages if len(p.sentence_vectors(embedder))]  # vectors from building the context
    owner = [(p.n, s, e) for p in with_text for s, e in p.sentences]
    if not claims or not owner:
        return Checked(text="", removed_markers=removed)
    sent_vecs = np.vstack([p.vectors for p in with_text])
    claim_vecs = np.array(embedder.embed_documents([c.text for c in claims]))
    texts = [by_n[n].text[s:e] for n, s, e in owner]

    out = Checked(text="", removed_markers=removed)
    best_quote: dict[int, tuple[float, int, int]] = {}
    asked = _stems(question)

    def drop(sentence: str) -> None:
        out.unsupported.append(sentence)
        out.parts.append((sentence, False))

    def keep(sentence: str) -> None:
        out.parts.append((sentence, True))

    for ci, claim in enumerate(claims):
        if not claim.text:  # nothing but an image or an address no passage gives
            drop(written[ci] + claim.punct)
            continue
        terms = set(tokenize(claim.text))
        if terms <= _VERDICTS and not _NUMBER.search(claim.text):  # connective text ("Yes."): nothing to ground
            keep(claim.text + claim.punct)
            continue
        support = [
            _support(claim.text, terms, float(claim_vecs[ci] @ sent_vecs[j]), texts[j], by_n[owner[j][0]], asked)
            for j in range(len(texts))
        ]
        per_passage = _best_per_passage(claim.text, terms, support, texts, owner)
        cited = _markers(claim.markers, per_passage)
        text = without_media(claim.text, " ".join(by_n[n].text for n in cited)) if cited else ""
        if not text:  # nothing supports it, or an address only a passage it does not cite gives
            drop((claim.text if not cited else written[ci]) + claim.punct)
            continue
        claim.text = text
        for n in cited:
            value, j = per_passage[n]
            if n not in best_quote or value > best_quote[n][0]:
                best_quote[n] = (value, owner[j][1], owner[j][2])
        keep(f"{claim.text} {''.join(f'[{n}]' for n in cited)}{claim.punct}")

    out.text = " ".join(t for t, ok in out.parts if ok)
    out.citations = [_citation(by_n[n], *best_quote[n][1:]) for n in sorted(best_quote)]
    return out


def _claims(answer: str, passages: list[Passage], by_n: dict[int, Passage]) -> tuple[list, list[str], list[int]]:
    """The answer's sentences with what they would fetch or link to taken out (images never: the sentence showing
    one goes; links and addresses only as the passages give them) and markers naming no passage removed; the
    sentences as the model wrote them (a removed sentence is shown so); the removed markers."""
    claims = split_claims(answer)
    seen = " ".join(p.text for p in passages)
    written = [c.text for c in claims]
    for c in claims:
        c.text = "" if _IMAGE.search(c.text) else without_media(c.text, seen)
    removed = [m for c in claims for m in c.markers if m not in by_n]
    for c in claims:
        c.markers = [m for m in c.markers if m in by_n]
    return claims, written, removed


def _best_per_passage(
    claim: str, terms: set[str], support: list[float], texts: list[str], owner: list[tuple[int, int, int]]
) -> dict[int, tuple[float, int]]:
    """For each passage, its best sentence's support of the claim and that sentence's index; a passage with a
    sentence that contradicts the claim supports it not at all."""
    per_passage: dict[int, tuple[float, int]] = {}
    contradicted = {owner[j][0] for j in range(len(texts)) if _contradicts(claim, terms, texts[j])}
    for j, value in enumerate(support):
        n = owner[j][0]
        value = 0.0 if n in contradicted else value
        if n not in per_passage or value > per_passage[n][0]:
            per_passage[n] = (value, j)
    return per_passage


def _markers(written: list[int], per_passage: dict[int, tuple[float, int]]) -> list[int]:
    """The passages a claim cites: none when no passage backs it (it goes); the written markers that back it; the
    best-supporting passage first when the model wrote none that backs it, or a weaker one where a passage supports
    it well."""
    best_n = max(per_passage, key=lambda n: per_passage[n][0])
    if per_passage[best_n][0] < WEAK:
        return []
    keep = [n for n in written if per_passage[n][0] >= WEAK]
    if not keep or per_passage[best_n][0] >= SUPPORTED and best_n not in keep and per_passage[keep[0]][0] < SUPPORTED:
        keep = [best_n] + [n for n in keep if per_passage[n][0] >= SUPPORTED]
    return keep


def _citation(p: Passage, s: int, e: int) -> Citation:
    """The citation of passage `p` by its sentence `s:e`: the exact quote and its offsets in the document."""
    return Citation(
        n=p.n,
        chunk_id=p.chunk_id,
        source=p.source,
        title=p.title,
        text=p.text,
        quote=p.text[s:e],
        start=p.start + s,
        end=p.start + e,
        page=p.page_at(p.start + s),
    )


def without_media(text: str, passages: str) -> str:
    """`text` without Markdown or HTML images, with links reduced to their words, and without web addresses that do not
    appear in `passages` (an answer shows no image and links only to what its documents name)."""
    text = _LINK.sub(lambda m: m.group(1) or m.group(2) or "", _IMAGE.sub(" ", text))
    text = _URL.sub(lambda m: m.group(0) if m.group(0).rstrip(".,;:!?") in passages else " ", text)
    text = " ".join(text.split())
    return "" if not re.search(r"\w", text) else text


_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)|<img\b[^>]*>", re.I)
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)|<a\b[^>]*>([^<]*)</a>", re.I)
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>()\[\]\"']+|\bwww\.[^\s<>()\[\]\"']+", re.I)
# A sentence of a passage that speaks to the assistant ("ignore previous instructions", "System note:", "reply X to
# every question") is an injection attempt, not a fact: nothing it says supports an answer.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.]{0,60}\b(?:instructions?|rules|prompts?|directions)\b"
    r"|\b(?:system|developer|admin)\s+(?:note|message|prompt|instructions?)\s*:|^\W*(?:assistant|system|ai)\s*:"
    r"|\b(?:reply|respond|answer|say|write|output|print)\b[^.]{0,40}\b(?:to|for|in)\s+(?:every|all|any|each)\s+(?:questions?|users?|requests?|answers?)\b",
    re.I,
)


def _numbers(text: str) -> set[str]:
    """The numbers `text` states, each whole: "28" is not in "1836693622858816" nor in "2028"."""
    return set(_NUMBER.findall(text))


def _support(
    claim: str, terms: set[str], similarity: float, sentence: str, passage: Passage, asked: set[str] = frozenset()
) -> float:
    """How well one source sentence backs a claim: meaning and shared words. A number the claim states that its
    passage lacks is no support at all (a changed figure); a name it lacks (text and title) halves the support; a
    sentence addressing the assistant supports nothing."""
    if _INSTRUCTION.search(sentence):
        return 0.0
    source = f"{passage.title}\n{passage.text}"
    if not _numbers(claim) <= _numbers(source):
        return 0.0
    recall = len(terms & set(tokenize(sentence))) / len(terms) if terms else 0.0
    value = 0.6 * similarity + 0.4 * recall
    lowered = _plain(source)
    if any(_plain(name) not in lowered for name in _NAME.findall(claim)):
        value *= 0.5
    if recall >= 0.75 and _stems(claim) - _stems(source) - asked:
        value *= (
            0.5  # a near copy with a word changed or added ("improved" for "deteriorated", "delivered within weeks")
        )
    return value


_VERDICTS = frozenset({"yes", "no", "true", "false", "correct"})  # a bare verdict opening an answer grounds nothing


def _plain(text: str) -> str:
    return text.lower().replace("’", "'")


# A capitalised word after a lower-case one (not a sentence opening), or an acronym: a name the claim commits to.
_NAME = re.compile(r"(?<=[a-z0-9,;:]\s)[A-Z][\w’'-]*[\w]|\b[A-Z]{2,}\b")
# Negation of a verb ("did not", "isn't", "never"), not a contrast ("X, not Y"), which a "No" answer uses freely.
_NEGATION = re.compile(
    r"\b(?:(?:is|are|was|were|do|does|did|has|have|had|can|could|will|would|shall|should|may|might|must)\s+not|cannot|never"
    r"|no longer|neither|\w+n[’']t)\b",
    re.I,
)


def _contradicts(claim: str, terms: set[str], sentence: str) -> bool:
    """The claim copies the sentence but flips a negation of what it copies: "X did not sign the treaty" from "X signed
    the treaty", or "X condemned the decision" from "X would not condemn the decision". A negation elsewhere in a long
    sentence ("..., though he would not comment") says nothing about the part the claim copied."""
    if not terms or len(terms & set(tokenize(sentence))) / len(terms) < 0.75:
        return False
    claim_stems, sentence_stems = _stems(claim), _stems(sentence)
    for text, other, other_text in ((claim, sentence_stems, sentence), (sentence, claim_stems, claim)):
        for scope in _negated(text):
            if scope and len(scope & other) * 2 >= len(scope) and not _negated(other_text):
                return True
    return False


def _stems(text: str) -> set[str]:
    return {w[:_STEM] for w in tokenize(_plain(text))}


_STEM = 5  # a word's first letters stand for its inflections (sign, signed, signing)


def _negated(text: str) -> list[set[str]]:
    """For each negation in `text`, the stems of the (at most four) content words it governs, up to the next comma."""
    out = []
    for m in _NEGATION.finditer(text):
        rest = re.split(r"[,;:.!?]", text[m.end() :], maxsplit=1)[0]
        out.append({w[:_STEM] for w in tokenize(rest)[:4]})
    return out


# -- a yes/no answer's first word, decided by the evidence ---------------------------------------------------------

YES, NO = "yes", "no"
_OPENING = re.compile(r"^\s*(yes|no)\b[\s,.!:;—–-]*", re.I)
_ASKING = re.compile(
    r"^\s*(?:(?:is|are|was|were|do|does|did|has|have|had|can|could|will|would|should|may|might|must)(?:n[’']t)?\b"
    r"|is it (?:true|the case|correct) that\b)",
    re.I,
)
# Doing the opposite of the asked verb: "failed to reach", "refused to sign", "declined to join", "without signing".
_FAILED = re.compile(
    r"\b(?:fail(?:s|ed)?|refus(?:es|ed)?|declin(?:es|ed)|unable|without|reject(?:s|ed)?|rul(?:es|ed) out)\s+(?:to\s+)?"
    r"|(?:,|\bbut)\s+not\s+(?!only\b|just\b|merely\b)",  # a contrast: "an iterator, not a list"
    re.I,
)
_CONTRARY_PREFIX = ("non-", "non", "un", "in", "dis")
# A question about all of something ("Has every member ratified it?") that the evidence answers with an exception
# ("all members except X ratified it", "every state apart from X").
_UNIVERSAL = re.compile(r"\b(?:every|all|each|as a whole|without exception)\b", re.I)
_EXCEPTION = re.compile(
    r"\b(?:except|excepting|excluding|apart from|other than|save for|with the exception of|but not)\b", re.I
)


def stance(question: str, sentence: str) -> str | None:
    """What `sentence` says to the yes/no `question`: YES when it states what is asked (all its words and numbers, not
    negated), NO when it states the opposite (a negation of the asked words, a "non-"/"un-" form of one, a failure
    to do it, an exception to an "every"/"all" the question asks about), None when it does not clearly speak to it.
    A negative question ("Didn't X sign?") asks the same as the positive one, as English answers it ("Yes, X
    signed")."""
    body = _ASKING.sub("", question).rstrip(" ?")
    asked = _roots(body) - {"true", "case", "corre"}
    said = _roots(sentence)
    if not asked or len(asked & said) * 2 < len(asked):
        return None
    scopes = [{_root(w) for w in tokenize(_plain(text))[:4]} for text in _negated_texts(sentence)]
    if any(scope & asked for scope in scopes) or _failed(sentence, asked) or _contrary(sentence, asked):
        return NO
    if _UNIVERSAL.search(body) and _EXCEPTION.search(sentence):
        return NO
    if asked <= said and _numbers(body) <= _numbers(sentence):  # every asked word: "abandoned" too
        return YES
    return None


def _root(word: str) -> str:
    """A word's first letters once a common ending is off: "opened" and "open", "signs" and "signed" meet."""
    if len(word) > 4:
        word = re.sub(r"(?:ing|ed|es|s)$", "", word)
    return word[:_STEM]


def _roots(text: str) -> set[str]:
    return {_root(w) for w in tokenize(_plain(text))}


def _negated_texts(text: str) -> list[str]:
    return [re.split(r"[,;:.!?]", text[m.end() :], maxsplit=1)[0] for m in _NEGATION.finditer(text)]


def _failed(sentence: str, asked: set[str]) -> bool:
    for m in _FAILED.finditer(sentence):
        if {_root(w) for w in tokenize(_plain(sentence[m.end() :]))[:3]} & asked:
            return True
    return False


def _contrary(sentence: str, asked: set[str]) -> bool:
    """A word of the sentence that is an asked word with a contrary prefix ("non-signatory" for "signatory")."""
    for word in tokenize(_plain(sentence)):
        for prefix in _CONTRARY_PREFIX:
            rest = word[len(prefix) :].lstrip("-")
            if word.startswith(prefix) and len(rest) >= 5 and _root(rest) in asked and _root(word) not in asked:
                return True
    return False


def settle_verdict(checked: Checked, question: str) -> Checked:
    """Open the answer to a yes/no `question` with the word its evidence gives: the quotes it cites, in order, the
    first that clearly speaks to the question decides. A "Yes" whose evidence states the opposite becomes "No" (and
    the other way round); an answer without the word gets it when the evidence is clear; otherwise it is left."""
    word = None
    for c in checked.citations:
        word = stance(question, c.quote)
        if word:
            break
    if word is None or not checked.text:
        return checked
    opening = _OPENING.match(checked.text)
    said = opening.group(1).lower() if opening else None
    if said == word:
        return checked
    rest = checked.text[opening.end() :] if opening else checked.text
    checked.text = f"{word.capitalize()}. {rest[:1].upper()}{rest[1:]}"
    if checked.parts:
        first, ok = checked.parts[0]
        first_open = _OPENING.match(first)
        if first_open and not first[first_open.end() :].strip():
            checked.parts[0] = (f"{word.capitalize()}.", ok)
        else:
            checked.parts.insert(0, (f"{word.capitalize()}.", True))
            if first_open:
                tail = first[first_open.end() :]
                checked.parts[1] = (f"{tail[:1].upper()}{tail[1:]}", ok)
    return checked
