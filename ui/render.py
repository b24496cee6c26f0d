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


REMOVED_NOTE = "(removed: not supported by the documents)"
_REMOVED = re.compile(r"\s*~~[^~]*~~ \*" + re.escape(REMOVED_NOTE) + r"\*")


def checked_answer(answer: str, refused: bool, checked: list[tuple[str, bool]]) -> str:
    """The checked answer as shown: every sentence the model wrote in its place, a sentence the citation check
    removed struck through and marked, so the end matches what streamed (nothing silently replaced)."""
    removed = [t for t, ok in checked if not ok]
    if not removed:
        return inert(answer)
    if refused:
        body = [inert(answer)] + [_struck(t) for t in removed]
        return "\n\n".join(body)
    return " ".join(inert(t) if ok else _struck(t) for t, ok in checked)


def without_removed(text: str) -> str:
    """A shown answer without its struck-through sentences: what the conversation carries forward."""
    return _REMOVED.sub("", text).strip()


def _struck(sentence: str) -> str:
    return f"~~{inert(sentence).replace('~', '')}~~ *{REMOVED_NOTE}*"


# ":" and "." too: an escaped "http\://" or "www\." is no autolink, so an address shows as text, not as a link.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:])")
_MD_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|~:])")


def plain(text: str) -> str:
    """A user's own message for a Markdown view, shown exactly as typed: Markdown punctuation backslash-escaped and
    HTML escaped, so an image, link or tag in it is text, never fetched or run. `unplain` gives the text back."""
    return html.escape(_MD_SPECIAL.sub(r"\\\1", text), quote=False)


def unplain(shown: str) -> str:
    return _MD_ESCAPED.sub(r"\1", html.unescape(shown))


def sources_html(items: list[dict], heading: str) -> str:
    """One card per source: title, the passage with its `marks` (offsets into `text`) highlighted, and the whole
    chunk on demand."""
    if not items:
        return f"<div class='sources'><h3>{html.escape(heading)}</h3><p class='muted'>No sources.</p></div>"
    cards = []
    for it in items:
        text, marks = it["text"], sorted(m for m in it.get("marks", []) if 0 <= m[0] < m[1] <= len(it["text"]))
        if marks:
            parts, last = [_clip(text[: marks[0][0]], left=True)], marks[0][0]
            for s, e in marks:
                if s > last:
                    parts.append(_clip(text[last:s], middle=True))
                parts.append(f"<mark>{html.escape(text[max(s, last) : e])}</mark>")
                last = max(last, e)
            parts.append(_clip(text[last:]))
            passage = "".join(parts)
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


def _clip(text: str, left: bool = False, middle: bool = False, width: int = 220) -> str:
    if len(text) <= width:
        return html.escape(text)
    if middle:
        return html.escape(text[: width // 2]) + " … " + html.escape(text[-width // 2 :])
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
