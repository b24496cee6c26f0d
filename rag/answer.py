"""Answering: condense -> retrieve -> compact context -> generate (streamed) -> check citations, or refuse."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Generator, Iterator
from dataclasses import KW_ONLY, asdict, dataclass, field
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel

from rag import cite, condense, context
from rag import question as questions
from rag.config import Settings
from rag.llm import KeepsState, NoModel, with_deadline
from rag.prompt import ANSWER, conversation_block, shape_line
from rag.prompt import WHOLE as WHOLE_PROMPT
from rag.retrieve import HybridRetriever
from rag.text import MARKER, claims
from rag.whole import RETRIEVED, WHOLE, Corpus

log = logging.getLogger(__name__)

REFUSAL = "I could not find the answer in the documents: they do not seem to cover this question."
_REFUSAL_TEXT = re.compile(
    r"NOT[\s_]*FOUND|\b(?:passages?|documents?|context|text)s?\b[^.]{0,40}\b(?:do(?:es)? not|don't|doesn't)\s+"
    r"(?:contain|mention|provide|say|specify|include|state)|\bno information\b|\bnot (?:mentioned|provided|stated)\b",
    re.I,
)


@dataclass
class Answer:
    """One checked answer. `answer` is what is shown; `raw` is what the model wrote, and `unsupported` the sentences
    of it that the citation check dropped (no passage supports them)."""

    question: str
    standalone_question: str
    answer: str
    refused: bool
    _: KW_ONLY
    citations: list[cite.Citation] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    unsupported: list[str] = field(default_factory=list)
    raw: str = ""
    checked: list[tuple[str, bool]] = field(
        default_factory=list
    )  # every sentence the model wrote, and whether it stands
    kind: str = "fact"  # how the question was read: fact, yes_no, why, compare or multi_part
    support: str = ""  # how strong the evidence is, in words (`strength`); empty for a refusal
    way: str = RETRIEVED  # what the model was shown: the whole corpus, or retrieved passages

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentences(self) -> list[tuple[str, list[int]]]:
        """The answer's sentences without their markers, each with the passage numbers it cites."""
        return [(c.text + c.punct, c.markers) for c in claims(self.answer)]


@dataclass
class Event:
    """One step of a streamed answer: `evidence` (passages), `token` (text delta) or `answer` (the checked Answer)."""

    kind: str
    data: Any


def stream(
    question: str,
    history: condense.History,
    *,
    retriever: HybridRetriever,
    embedder: Embeddings,
    llm: BaseChatModel | NoModel,
    settings: Settings,
) -> Iterator[Event]:
    """Answer one question from retrieved passages, yielding the evidence as soon as it is known, then tokens, then
    the checked answer."""
    started = time.perf_counter()
    standalone = (
        condense.condense(question, history, llm, timeout=settings.llm_timeout_s)
        if settings.condense
        else condense.fallback(question, history)
    )
    reading = questions.read(standalone)
    deep = reading.deep and not isinstance(llm, NoModel)  # no model: a sentence or two whatever the question
    query_vector = embedder.embed_query(standalone)  # once: for the dense search and for scoring the context
    part_vectors = [embedder.embed_query(p) for p in reading.parts] if len(reading.parts) > 1 else []
    docs = retriever.retrieve_many(
        [standalone, *reading.parts[: len(part_vectors)]],
        [query_vector, *part_vectors],
        k=max(retriever.k, settings.deep_retrieve_k) if deep else None,
        spread=reading.compare,
    )
    passages, evidence = context.build(
        standalone,
        query_vector,
        docs,
        embedder,
        settings.deep_context_tokens if deep else settings.context_tokens,
        settings.tokenizer,
        settings.deep_context_margin if deep else settings.context_margin,
        parts=part_vectors,
        spread=reading.compare,
        in_document_order=settings.passage_order == "document",
    )
    asked = _Asked(question, standalone, reading, started, way=RETRIEVED)
    yield Event("evidence", passages)
    if not passages or evidence.hopeless or (isinstance(llm, NoModel) and evidence.weak):
        yield Event("answer", asked.refusal())
        return
    prompt = {"passages": context.render(passages), "question": standalone, "shape": shape_line(reading.instructions())}
    yield from _written(asked, ANSWER, prompt, _WARM, passages, evidence, embedder, llm, settings)


def stream_whole(
    question: str,
    history: condense.History,
    *,
    corpus: Corpus,
    embedder: Embeddings,
    llm: BaseChatModel,
    settings: Settings,
) -> Iterator[Event]:
    """Answer one question with every document of `corpus` in view: the documents are a fixed prefix the runtime
    keeps, so only the conversation and the question are read. The follow-up's rewrite (deterministic, no model
    call) finds the passages shown while the answer is written; the check runs against every passage."""
    started = time.perf_counter()
    standalone = condense.fallback(question, history)
    reading = questions.read(question)
    corpus.embed(embedder)
    query_vector = embedder.embed_query(standalone)
    shown, evidence = corpus.evidence(standalone, query_vector, settings.retrieve_k, spread=reading.compare)
    asked = _Asked(question, standalone, reading, started, way=WHOLE)
    yield Event("evidence", shown)
    if evidence.hopeless:
        yield Event("answer", asked.refusal())
        return
    lines = condense.transcript(history, answer_tokens=120)
    prompt = {
        "passages": corpus.text,
        "conversation": conversation_block(lines),
        "question": question,
        "shape": shape_line(reading.instructions()),
    }
    yield from _written(asked, WHOLE_PROMPT, prompt, corpus.reading, corpus.passages, evidence, embedder, llm, settings)


@dataclass
class _Asked:
    """What one answer knows before generation: the question as asked and as read, its clock and its timings."""

    question: str
    standalone: str
    reading: questions.Reading
    started: float
    way: str
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.timings["retrieve_ms"] = _ms(self.started)

    def refusal(self, raw: str = "", checked: cite.Checked | None = None) -> Answer:
        self.timings.setdefault("first_token_ms", _ms(self.started))
        self.timings["total_ms"] = _ms(self.started)
        dropped = checked.unsupported if checked else []
        shown = (
            [(t, ok) for t, ok in checked.parts if not ok] if checked else []
        )  # connectives ("No.") go with the refusal
        return Answer(
            self.question,
            self.standalone,
            REFUSAL,
            True,
            timings=self.timings,
            unsupported=dropped,
            raw=raw,
            checked=shown,
            kind=self.reading.kind,
            way=self.way,
        )


def _written(
    asked: _Asked,
    template: Any,
    prompt: dict[str, str],
    warm: dict[str, str],
    passages: list[context.Passage],
    evidence: context.Evidence,
    embedder: Embeddings,
    llm: BaseChatModel | NoModel,
    settings: Settings,
) -> Iterator[Event]:
    """Generate (streamed) from `prompt`, then check the citations against `passages`: the checked answer, or a
    refusal when nothing the model wrote stands."""
    raw = yield from _generated(asked, template, prompt, warm, passages, llm, settings)
    if _declines(raw):
        yield Event("answer", asked.refusal(raw))
        return
    checked = cite.check(raw, passages, embedder, asked.standalone)
    if not checked.citations:
        yield Event("answer", asked.refusal(raw, checked))
        return
    if asked.reading.yes_no and len(asked.reading.parts) == 1:
        checked = cite.settle_verdict(checked, asked.question if asked.way == WHOLE else asked.standalone)
    asked.timings["total_ms"] = _ms(asked.started)
    yield Event(
        "answer",
        Answer(
            asked.question,
            asked.standalone,
            checked.text,
            False,
            citations=checked.citations,
            timings=asked.timings,
            unsupported=checked.unsupported,
            raw=raw,
            checked=checked.parts,
            kind=asked.reading.kind,
            support=strength(checked.parts, evidence),
            way=asked.way,
        ),
    )


def _generated(
    asked: _Asked,
    template: Any,
    prompt: dict[str, str],
    warm: dict[str, str],
    passages: list[context.Passage],
    llm: BaseChatModel | NoModel,
    settings: Settings,
) -> Generator[Event, None, str]:
    """The model's reply to `prompt`, streamed as token events (a deep question may write longer); returns it whole.
    Without a model: the best-supported sentences of `passages`."""
    timings, started = asked.timings, asked.started
    if isinstance(llm, NoModel):
        raw = llm.write(passages)
        timings["first_token_ms"] = _ms(started)
        if raw:
            yield Event("token", raw)
        return raw
    parts = []
    _prime(llm, template, warm)
    chain = template | (llm.bind(max_tokens=settings.deep_max_tokens) if asked.reading.deep else llm)
    try:
        for chunk in with_deadline(chain.stream(prompt), settings.llm_timeout_s):
            _count_prompt(chunk, timings)
            delta = chunk.text
            if not delta:
                continue
            if not parts:
                timings["first_token_ms"] = _ms(started)
            parts.append(delta)
            yield Event("token", delta)
    except ValueError as exc:  # LangChain raises on a reply of zero tokens: that is an empty answer
        if parts or "No generation chunks" not in str(exc):
            raise
    return "".join(parts)


WELL, PARTLY, WEAK = "well supported", "partly supported", "weak evidence"


def strength(parts: list[tuple[str, bool]], evidence: context.Evidence) -> str:
    """A coarse label from the citation check, never a raw score: every sentence standing on evidence close to the
    question is well supported; a sentence removed makes it partly supported; most sentences removed, or no retrieved
    sentence close in meaning to the question, is weak evidence."""
    kept = sum(1 for _, ok in parts if ok)
    if not parts or evidence.weak or 2 * kept < len(parts):
        return WEAK
    return PARTLY if kept < len(parts) else WELL


def looks_like_refusal(text: str) -> bool:
    """Whether a reply (this system's or another's) says the documents do not answer, rather than answering."""
    return text.strip() == REFUSAL or _declines(text)


def _declines(text: str) -> bool:
    """Whether the model's reply is empty, or says the documents do not answer and cites nothing: the one reading of
    a refusal in the library (a reply that cites a passage is checked instead)."""
    return not text.strip() or bool(_REFUSAL_TEXT.search(text)) and not MARKER.search(text)


def _count_prompt(chunk: Any, timings: dict[str, float]) -> None:
    """The prompt figures a backend reports with its last chunk (LangChain's usage metadata; the embedded runtime also
    gives the read time): tokens it had to read, tokens it reused from its cache. They tell prompt length from speed."""
    usage = chunk.usage_metadata
    if not usage or not usage.get("input_tokens"):
        return
    cached = (usage.get("input_token_details") or {}).get("cache_read", 0)
    timings["prompt_tokens"] = timings.get("prompt_tokens", 0) + usage["input_tokens"] - cached
    timings["cached_tokens"] = timings.get("cached_tokens", 0) + cached
    if chunk.response_metadata.get("prompt_read_ms") is not None:
        timings["prompt_read_ms"] = round(
            timings.get("prompt_read_ms", 0) + chunk.response_metadata["prompt_read_ms"], 1
        )


_WARM = {"passages": "[1] (Title) Text.", "question": "Why?", "shape": ""}  # a prompt holding the whole fixed prefix


def warm_up(llm: BaseChatModel | NoModel) -> None:
    """Have the runtime hold the fixed prompt prefix before the first real question: a backend that can keep a prompt's
    state (`prime`, the embedded one) restores it from an earlier process or reads and saves it; others read it once."""
    if isinstance(llm, NoModel):
        return
    if isinstance(llm, KeepsState):
        _prime(llm)
    else:
        (ANSWER | llm.bind(max_tokens=1)).invoke(_WARM)


def _prime(llm: BaseChatModel, template: Any = ANSWER, warm: dict[str, str] = _WARM) -> None:
    """Before a question: the prefix state, for a backend that keeps one (at once when already held)."""
    if isinstance(llm, KeepsState):
        llm.prime(template.invoke(warm).to_messages())


def final(events: Iterator[Event]) -> Answer:
    """The answer a stream of events ends with (its evidence and tokens consumed)."""
    last = None
    for event in events:
        if event.kind == "answer":
            last = event.data
    assert last is not None
    return last


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


__all__ = [
    "Answer",
    "Event",
    "REFUSAL",
    "final",
    "looks_like_refusal",
    "strength",
    "stream",
    "stream_whole",
]
