"""The document viewer: a cited source's "Open document" button shows the whole document in a dialog, the quoted span
marked and scrolled into view (`document_viewer`; the HTML itself is `viewer_html`)."""

from __future__ import annotations

import html
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import gradio as gr

import rag

log = logging.getLogger(__name__)

FAILED = "The document could not be opened. Please try again."
MAX_SOURCE_CHARS = 4096  # a longer source name in a request is no indexed document


def viewer_html(doc: rag.Document, start: int, end: int) -> str:
    """`doc` (what `Engine.docs.document` returns) as a dialog: its title, source, original address (a link only for an
    http(s) one), the page of the quote for a PDF, and the whole text with characters `start`..`end` marked
    (`#viewer-mark`). Everything from the document is escaped: its text is shown, never run as markup."""
    text = doc.text
    start = min(max(int(start), 0), len(text))
    end = min(max(int(end), start), len(text))
    marked = f"<mark id='viewer-mark'>{html.escape(text[start:end])}</mark>" if end > start else ""
    body = html.escape(text[:start]) + marked + html.escape(text[end:])
    page = doc.page_at(start)
    about = (
        [html.escape(doc.source)]
        + ([f"p. {page}"] if page else [])
        + ([_address(doc.source_url)] if doc.source_url else [])
    )
    return _dialog(html.escape(doc.title or doc.source), " · ".join(about), body)


def error_html(message: str) -> str:
    """The dialog saying why a document could not be shown (escaped)."""
    return _dialog("Cannot open the document", "", html.escape(message))


def _dialog(title: str, about: str, body: str) -> str:
    return (
        "<dialog class='viewer' aria-labelledby='viewer-title'><div class='viewer-box'>"
        f"<div class='viewer-head'><h2 id='viewer-title'>{title}</h2>"
        "<button type='button' class='viewer-close'>Close</button></div>"
        + (f"<p class='viewer-meta'>{about}</p>" if about else "")
        + f"<div class='viewer-text' tabindex='0' role='region' aria-label='Document text'>{body}</div></div></dialog>"
    )


def _address(url: str) -> str:
    """The original address as a plain link when it is a web address; any other (javascript:, data:, a path) as text."""
    shown = html.escape(url)
    if not _web_address(url):
        return f"<span class='viewer-url'>{shown}</span>"
    return (
        f"<a class='viewer-url' href='{html.escape(url, quote=True)}' target='_blank' "
        f"rel='noopener noreferrer nofollow'>{shown}</a>"
    )


def _web_address(url: str) -> bool:
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return False  # a browser drops tabs and newlines from an address: "java\nscript:" must never get that far
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def open_document(engine: rag.Engine, request: Any) -> str:
    """The viewer HTML for a request from the page: {"source", "start", "end"} (the citation's document and the
    quote's offsets in it). A request that names no indexed document gets the reason in the dialog."""
    try:
        source, start, end = _read(request)
        return viewer_html(engine.docs.document(source), start, end)
    except rag.RagError as exc:
        if not exc.for_user:
            log.warning("document viewer: %s", exc)
        return error_html(str(exc) if exc.for_user else FAILED)
    except Exception:  # never a stack trace in the page
        log.exception("document viewer failed")
        return error_html(FAILED)


def _read(request: Any) -> tuple[str, int, int]:
    if not isinstance(request, dict):
        raise _bad()
    source, start, end = request.get("source"), request.get("start"), request.get("end")
    if not isinstance(source, str) or not source.strip() or len(source) > MAX_SOURCE_CHARS:
        raise _bad()
    if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in (start, end)):
        raise _bad()
    return source, start, end


def _bad() -> rag.RagError:
    return rag.RagError("the request names no document: open one from a source's “Open document” button")


# Runs once the viewer renders. Clicks on any "Open document" button (they live in the sources panel, re-rendered
# with every answer) are caught on the document. The dialog is the browser's own modal <dialog>: the page behind it
# is inert and Escape closes it; Tab goes round inside it, and on closing the focus goes back to the button.
_JS = """
const viewer = window.ragViewer || (window.ragViewer = {});
Object.assign(viewer, {element, props, server});
const frame = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
viewer.open = async (opener) => {
  if (viewer.pending) return;  // a double click asks once
  viewer.pending = true;
  viewer.opener = opener;
  let shown;
  try {
    const {source, start, end} = opener.dataset;
    shown = await viewer.server.open_document({source, start: Number(start), end: Number(end)});
  } catch (error) {
    shown = FAILED_HTML;
  } finally {
    viewer.pending = false;
  }
  viewer.props.value = typeof shown === 'string' ? shown : FAILED_HTML;
  let dialog = null;
  for (let i = 0; i < 100 && !dialog; i++) {
    await frame();
    dialog = viewer.element.querySelector('dialog.viewer');
  }
  if (!dialog) return;
  if (!dialog.open) dialog.showModal();
  (dialog.querySelector('.viewer-text') || dialog).focus({preventScroll: true});
  const mark = dialog.querySelector('#viewer-mark');
  if (mark) mark.scrollIntoView({block: 'center'});
};
viewer.closed = () => {
  viewer.props.value = '';
  if (viewer.opener && viewer.opener.isConnected) viewer.opener.focus();
};
if (!viewer.wired) {
  viewer.wired = true;
  document.addEventListener('click', (event) => {
    const opener = event.target instanceof Element ? event.target.closest('button.open-doc') : null;
    if (opener) viewer.open(opener);
  });
}
if (!element.ragWired) {
  element.ragWired = true;
  element.addEventListener('click', (event) => {
    const dialog = element.querySelector('dialog.viewer');
    // The dialog itself is hit only outside its box: a click on the backdrop.
    if (dialog && (event.target === dialog || event.target.closest('.viewer-close'))) dialog.close();
  });
  element.addEventListener('close', () => viewer.closed(), true);
  element.addEventListener('keydown', (event) => {
    // Tab past the last control comes back to the first (the modal dialog alone would let it leave the page).
    const dialog = element.querySelector('dialog.viewer[open]');
    if (event.key !== 'Tab' || !dialog) return;
    const stops = [...dialog.querySelectorAll('button, a[href], [tabindex="0"]')];
    const [first, last] = [stops[0], stops[stops.length - 1]];
    if (!event.shiftKey && document.activeElement === last) { event.preventDefault(); first.focus(); }
    else if (event.shiftKey && document.activeElement === first) { event.preventDefault(); last.focus(); }
  });
}
"""


def document_viewer(engine: rag.Engine) -> gr.HTML:
    """The viewer component (empty until a source is opened); place it anywhere in the page: the dialog opens above."""

    def open_document_for_page(request: Any) -> str:
        return open_document(engine, request)

    open_document_for_page.__name__ = "open_document"  # the name the page's script calls
    return gr.HTML(
        "",
        elem_id="viewer",
        js_on_load=_JS.replace("FAILED_HTML", json.dumps(error_html(FAILED))),
        server_functions=[open_document_for_page],
        apply_default_css=False,
    )
