"""Text and HTML for the chat: model output made inert, and the sources panel with the supporting span marked."""

from __future__ import annotations

import html
import re

_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)|!\[[^\]]*\]\[[^\]]*\]")
_LINK = re.compile(r"\[([^\]]+)\]\((?:[^)]*)\)")
_URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+", re.I)
_REF_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*\S+.*$", re.M)


def inert(text: str) -> str:
    """Model output for the chat: no HTML, no images, no links (the text of a link stays)."""
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _REF_DEF.sub("", text)
    text = _URL.sub(lambda m: "`" + m.group(0).replace("`", "") + "`", text)
    return html.escape(text, quote=False)


def sources_html(items: list[dict], heading: str) -> str:
    """One card per source: title, the passage with the quote highlighted, and the whole chunk on demand."""
    if not items:
        return f"<div class='sources'><h3>{html.escape(heading)}</h3><p class='muted'>No sources.</p></div>"
    cards = []
    for it in items:
        text, quote = it["text"], it.get("quote") or ""
        at = text.find(quote) if quote else -1
        if at >= 0:
            before, after = text[:at], text[at + len(quote) :]
            passage = f"{_clip(before, left=True)}<mark>{html.escape(quote)}</mark>{_clip(after)}"
        else:
            passage = _clip(text)
        cards.append(
            f"<div class='source' id='source-{it['n']}'>"
            f"<div class='source-head'><span class='marker'>[{it['n']}]</span> {html.escape(it['title'] or it['source'])}</div>"
            f"<p class='passage'>{passage}</p>"
            f"<details><summary>Whole passage · {html.escape(it['source'])}</summary>"
            f"<p class='chunk'>{html.escape(text)}</p></details></div>"
        )
    return f"<div class='sources'><h3>{html.escape(heading)}</h3>{''.join(cards)}</div>"


def _clip(text: str, left: bool = False, width: int = 220) -> str:
    if len(text) <= width:
        return html.escape(text)
    return "…" + html.escape(text[-width:]) if left else html.escape(text[:width]) + "…"


CSS = """
.sources h3 { margin: 0 0 .5em 0; }
.source { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .6em .8em; margin-bottom: .6em; }
.source-head { font-weight: 600; margin-bottom: .3em; }
.source .marker { color: var(--color-accent); }
.source mark { background: #ffe58a; color: inherit; padding: 0 .1em; }
.source .passage { margin: .2em 0; font-size: .95em; }
.source .chunk { white-space: pre-wrap; font-size: .9em; }
.muted { opacity: .7; }
"""
