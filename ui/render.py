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
    chunk on demand; an item with `page` shows it, and one with `open` (the quote's offsets in the whole document) gets
    a button that opens the document in the viewer (`ui/viewer.py`)."""
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
        name = html.escape(it["title"] or it["source"])
        page = f" <span class='page'>p. {int(it['page'])}</span>" if it.get("page") else ""
        opener = ""
        if it.get("open"):
            start, end = (int(x) for x in it["open"])
            opener = (
                f"<button type='button' class='open-doc' data-source='{html.escape(it['source'])}' data-start='{start}'"
                f" data-end='{end}' aria-label='Open document [{it['n']}]: {name}'>Open document</button>"
            )
        cards.append(
            f"<div class='source' id='source-{it['n']}'>"
            f"<div class='source-head'><span class='marker'>[{it['n']}]</span> {name}{page}{opener}</div>"
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
.source .marker { color: #b45309; }
.dark .source .marker { color: #fb923c; }
button.stop { background: #b91c1c; border-color: #b91c1c; color: #fff; }
button.stop:hover { background: #991b1b; }
.upload-container .or { color: #595959; }
.dark .upload-container .or { color: #b0b0b0; }
.source mark { background: #ffe58a; color: inherit; padding: 0 .1em; }
.source .passage { margin: .2em 0; font-size: .95em; }
.source .chunk { white-space: pre-wrap; font-size: .9em; }
.source .page { font-weight: 400; white-space: nowrap; }
.source .open-doc { float: right; font-weight: 400; font-size: .85em; padding: .1em .6em;
  border: 1px solid var(--border-color-primary); border-radius: 6px;
  background: var(--button-secondary-background-fill); color: var(--button-secondary-text-color); cursor: pointer; }
.source .open-doc:focus-visible, .viewer button:focus-visible, .viewer a:focus-visible, .viewer-text:focus-visible {
  outline: 2px solid var(--color-accent); outline-offset: 2px; }
.viewer { width: min(960px, 94vw); max-height: 90vh; padding: 0; border: 1px solid var(--border-color-primary);
  border-radius: 10px; background: var(--background-fill-primary); color: var(--body-text-color); }
.viewer::backdrop { background: rgba(0, 0, 0, .5); }
.viewer-box { display: flex; flex-direction: column; max-height: 90vh; padding: 1em 1.2em; box-sizing: border-box; }
.viewer-head { display: flex; align-items: flex-start; gap: 1em; }
.viewer-head h2 { flex: 1; margin: 0; font-size: 1.2em; }
.viewer-close { padding: .2em .8em; border: 1px solid var(--border-color-primary); border-radius: 6px; cursor: pointer;
  background: var(--button-secondary-background-fill); color: var(--button-secondary-text-color); }
.viewer-meta { margin: .4em 0 .6em; font-size: .9em; overflow-wrap: anywhere; }
.viewer-meta a { color: inherit; text-decoration: underline; }
.viewer-text { flex: 1 1 auto; min-height: 0; overflow-y: auto; white-space: pre-wrap; line-height: 1.5;
  padding-right: .5em; }
.viewer-text mark { background: #ffe58a; color: #111; padding: 0 .1em; }
.muted { opacity: .7; }
"""

PAGE_JS = """
() => {
  // Gradio lays its example questions out as role="list" with buttons for children, which is not a list (an ARIA
  // error screen readers trip on): they are a labelled group of buttons.
  // Its upload area's name ("Click to upload or drop files") does not contain what it shows ("Drop File Here - or -
  // Click to Upload"), so speech control cannot find it: its name becomes what it shows.
  const mend = () => {
    document.querySelectorAll('.examples[role="list"]').forEach((el) => {
      el.setAttribute('role', 'group');
      el.setAttribute('aria-label', 'Example questions');
    });
    document.querySelectorAll('.upload-container[aria-label]').forEach((el) => el.removeAttribute('aria-label'));
  };
  mend();
  new MutationObserver(mend).observe(document.body, {childList: true, subtree: true});
  // On a phone the conversation list would cover the chat: it starts closed there (its toggle opens it).
  if (window.matchMedia('(max-width: 768px)').matches) {
    const close = () => {
      const toggle = document.querySelector('button.toggle-button[aria-label="Toggle Sidebar"]');
      const bar = toggle && toggle.closest('.sidebar');
      if (!bar) return false;
      if (bar.classList.contains('open')) toggle.click();
      return true;
    };
    if (!close()) {
      const watch = new MutationObserver(() => close() && watch.disconnect());
      watch.observe(document.body, {childList: true, subtree: true});
    }
  }
}
"""
