"""The chat's answer stream: `respond` turns the engine's events into (chat text, sources HTML) updates."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import nullcontext

import rag
from ui.lanes import Busy, Lanes
from ui.render import checked_answer, inert, sources_html, without_removed

log = logging.getLogger(__name__)

ERROR = "Sorry, something went wrong while answering. Please try again."
MODEL_ERROR = "The language model could not answer this time. Please try again, or ask a shorter question."
SEARCHING = "Searching these passages…"


def respond(
    message: str,
    history: list[dict],
    k: int | None = None,
    backend: str | None = None,
    sources: list[str] | None = None,
    depth: str | None = None,
    *,
    engine: rag.Engine,
    lanes: Lanes | None = None,
    on_answer: Callable[[rag.Answer, str], None] | None = None,
) -> Iterator[tuple[str, str]]:
    """Stream (chat text, sources HTML): the evidence first, then the growing answer, then the checked answer; with
    `sources` chosen, only those documents are searched. `on_answer` gets the checked answer and the text shown for it
    (to save it, and to take votes on it) before it is shown."""
    try:
        valid = backend in rag.Settings.choices("llm_backend")
        chosen = tuple(x for x in sources or [] if isinstance(x, str)) or None
        params = rag.QueryParams(
            k=int(k) if k else None,
            backend=backend if valid else None,
            sources=chosen,
            depth=depth if depth in rag.Settings.choices("depth") else None,
        )
        with lanes.lane() if lanes else nullcontext():
            yield from _answer(engine, message, history, params, on_answer)
    except Busy as exc:
        yield inert(f"The server is busy: {exc}."), ""
    except rag.RagError as exc:
        if not exc.for_user:
            log.warning("answer failed: %s", exc)
        yield inert(str(exc)) if exc.for_user else exc.told_user or MODEL_ERROR, ""
    except Exception:  # never a stack trace in the chat
        log.exception("answer failed")
        yield ERROR, ""


def _answer(
    engine: rag.Engine,
    message: str,
    history: list[dict],
    params: rag.QueryParams,
    on_answer: Callable[[rag.Answer, str], None] | None,
) -> Iterator[tuple[str, str]]:
    text, found = "", []
    for event in engine.ask_stream(message, pairs(history), params):
        if event.kind == "evidence":
            found = [_shown(p) for p in event.data]
            yield "", sources_html(found, SEARCHING)
        elif event.kind == "token":
            text += event.data
            yield inert(text), sources_html(found, SEARCHING)
        else:
            final: rag.Answer = event.data
            shown = checked_answer(final.answer, final.refused, final.checked)
            if on_answer is not None:
                on_answer(final, shown)
            cards = [] if final.refused else [cited(c) for c in final.citations]
            heading = f"Sources · {final.support}" if final.support and not final.refused else "Sources"
            if final.way == rag.Way.WHOLE and not final.refused:
                heading += " · read from the whole corpus"
            yield shown, sources_html(cards, heading)


def pairs(history: list[dict]) -> list[tuple[str, str]]:
    """Gradio's message list as (user, assistant) turns (`rag.turns`), the struck sentences left out of the answers."""
    return rag.turns(_said(history))


def _said(history: list[dict]) -> Iterator[tuple[str, str]]:
    """(role, text) of each message of Gradio's list that has text."""
    for msg in history or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):  # Gradio 6 may send content as typed parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if isinstance(content, str):
            role = msg.get("role")
            yield role, without_removed(content) if role == "assistant" else content


def _shown(p: rag.Passage) -> dict:
    """A passage the model is being shown, with the sentences it sees marked."""
    return {"n": p.n, "title": p.title, "source": p.source, "text": p.text, "marks": sorted(p.highlights)}


def cited(c: rag.Citation) -> dict:
    """A citation, with its supporting quote marked in the passage, its page (PDF) and where the quote is in the
    whole document (for the viewer)."""
    at = c.text.find(c.quote) if c.quote else -1
    marks = [(at, at + len(c.quote))] if at >= 0 else []
    return {
        "n": c.n,
        "title": c.title,
        "source": c.source,
        "text": c.text,
        "marks": marks,
        "page": c.page,
        "open": (c.start, c.end),
    }
