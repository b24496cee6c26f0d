"""Open the source: a PDF's page map, citations that carry pages, the whole document behind a citation, and the
viewer's HTML (escaped, the quote marked at its offsets, a link only for a web address)."""

import html
import re
from html.parser import HTMLParser

import pytest

import rag
from rag.errors import InputError, LoadError
from rag.load import Document, load
from ui.render import sources_html
from ui.viewer import open_document, viewer_html

from .fakes import ReplayChatModel
from .files import make_paged_pdf

BALTIC = "corpus/baltic-states-poland-finland-leave-ottawa-convention.md"
EXPERTS = "corpus/experts-urge-britain-reconsider-landmines.md"
BALTIC_URL = "https://www.toutiao.com/article/1836693622858816/"
LATE_SENTENCE = (
    "The return of landmines may temporarily protect the borders of NATO countries, "
    "but in the long run, true security can only be achieved through diplomacy and cooperation."
)
PAGES = [
    ["The report opens with a summary.", "It names no country."],
    [],  # a page without text (a scanned image, a blank): it must not shift the numbers of the pages after it
    ["Finland has an 800-mile border with Russia."],
    ["The last page thanks the reviewers."],
]


class Parsed(HTMLParser):
    """Every tag with its attributes, and the text, of a piece of HTML as a browser would read it."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text = ""
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text += data


def viewer_text(shown: str) -> tuple[str, str, str]:
    """The viewer's document text split at the mark: (before, marked, after), unescaped."""
    body = re.search(r"<div class='viewer-text'[^>]*>(.*)</div></div></dialog>$", shown, re.S).group(1)
    mark = re.search(r"<mark id='viewer-mark'>(.*?)</mark>", body, re.S)
    if not mark:
        return html.unescape(body), "", ""
    return tuple(html.unescape(part) for part in (body[: mark.start()], mark.group(1), body[mark.end() :]))


# ---- the page map


def test_a_pdf_page_map_points_each_page_at_its_text(tmp_path):
    doc = load(make_paged_pdf(tmp_path / "report.pdf", PAGES, title="Border report"))
    assert len(doc.pages) == len(PAGES) and doc.pages == sorted(doc.pages) and doc.pages[0] == 0
    for n, lines in enumerate(PAGES, 1):
        if lines:
            assert doc.text[doc.pages[n - 1] :].startswith(lines[0]), n
    assert doc.page_at(doc.text.index("It names")) == 1
    assert doc.page_at(doc.pages[2] - 1) == 1, "the blank line before a page is the end of the one before"
    assert doc.page_at(doc.text.index("800-mile")) == 3, "the page after an empty page keeps its own number"
    assert doc.page_at(doc.text.index("thanks")) == 4 and doc.page_at(len(doc.text) - 1) == 4
    md = tmp_path / "a.md"
    md.write_text("# A\n\nText.\n")
    assert load(md).pages == [] and load(md).page_at(3) is None


def test_a_citation_of_a_pdf_carries_the_page_of_its_quote(tmp_path, embedder):
    """The PDF is one chunk starting on page 1: the page of a quote on page 3 comes from where the pages break
    inside the chunk, not from where the chunk starts."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    make_paged_pdf(corpus / "report.pdf", PAGES, title="Border report")
    settings = rag.Settings(corpus_dir=corpus, index_dir=tmp_path / "index", llm_backend="local")
    model = ReplayChatModel(["Finland has an 800-mile border with Russia [1].", "The report opens with a summary [1]."])
    engine = rag.Engine(settings, embedder=embedder, llm=model)
    assert engine.ingest().ok
    [stored] = engine.store.get()
    assert stored.metadata["page"] == 1 and stored.metadata["page_breaks"]
    doc = engine.docs.document(stored.metadata["source"])

    for question, quote, page in [
        ("How long is Finland's border with Russia?", "Finland has an 800-mile border with Russia.", 3),
        ("How does the report open?", "The report opens with a summary.", 1),
    ]:
        [c] = engine.ask(question).citations
        assert (c.quote, c.page, c.to_dict()["page"]) == (quote, page, page)
        assert doc.text[c.start : c.end] == quote and doc.page_at(c.start) == page
        shown = viewer_html(doc, c.start, c.end)
        assert f"p. {page}" in Parsed(shown).text and viewer_text(shown)[1] == quote


# ---- the whole document behind a citation


def test_document_gives_the_indexed_text_title_and_address(ready_engine, ready_settings, tmp_path, monkeypatch):
    """Read from where ingestion ran (not the working directory); the text chunk and citation offsets point into."""
    root = ready_settings.corpus_dir.parent
    monkeypatch.chdir(tmp_path)  # "corpus/…" does not resolve from here
    doc = ready_engine.docs.document(BALTIC)
    expected = load(root / BALTIC, source=BALTIC)
    assert (doc.source, doc.text, doc.title) == (BALTIC, expected.text, expected.title)
    assert doc.title.startswith("The Russia-Ukraine war may be coming to an end")
    assert doc.text.endswith("official position of the platform.") and not doc.text.startswith("---")
    assert doc.source_url == BALTIC_URL
    assert doc.pages == [] and doc.page_at(100) is None
    chunks = ready_engine.docs.chunks(BALTIC)
    assert chunks and all(doc.text[h.start : h.end] == h.text for h in chunks)

    experts = ready_engine.docs.document("experts-urge-britain-reconsider-landmines.md")  # a unique file name will do
    assert experts.source == EXPERTS and experts.source_url is None and "James Cowan" in experts.text


@pytest.mark.parametrize("source", ["corpus/nope.md", "/etc/passwd", "../../etc/passwd", ""])
def test_a_source_that_is_not_indexed_is_a_one_line_error(ready_engine, source):
    with pytest.raises(InputError) as err:
        ready_engine.docs.document(source)
    assert "\n" not in str(err.value) and "not an indexed document" in str(err.value)
    assert BALTIC in str(err.value), "the error lists the documents there are"


def test_a_document_changed_or_gone_since_indexing_is_refused_not_misquoted(tmp_path, embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    path = corpus / "note.md"
    path.write_text("# Note\n\nThe unit cleared forty mines that week.\n")
    engine = rag.Engine(rag.Settings(corpus_dir=corpus, index_dir=tmp_path / "index"), embedder=embedder)
    assert engine.ingest().ok
    assert "forty mines" in engine.docs.document(str(path)).text
    path.write_text("# Note\n\nThe unit cleared four mines that week.\n")  # offsets of the index no longer fit
    with pytest.raises(LoadError, match="rag ingest"):
        engine.docs.document(str(path))
    path.unlink()
    with pytest.raises(LoadError, match="rag ingest"):
        engine.docs.document(str(path))


def test_citation_offsets_open_the_viewer_at_the_quote(ready_settings, embedder):
    model = ReplayChatModel([LATE_SENTENCE.rstrip(".") + " [1]."])
    engine = rag.Engine(ready_settings.model_copy(update={"llm_backend": "local"}), embedder=embedder, llm=model)
    [c] = engine.ask("Can the return of landmines protect the borders of NATO countries in the long run?").citations
    assert (c.source, c.quote, c.page, c.to_dict()["page"]) == (BALTIC, LATE_SENTENCE, None, None)
    doc = engine.docs.document(c.source)
    assert doc.text[c.start : c.end] == c.quote

    shown = open_document(engine, {"source": c.source, "start": c.start, "end": c.end})
    assert viewer_text(shown) == (doc.text[: c.start], c.quote, doc.text[c.end :]), (
        "the whole text, the quote marked in its place"
    )
    parsed = Parsed(shown)
    [link] = [attrs for tag, attrs in parsed.tags if tag == "a"]
    assert link["href"] == BALTIC_URL and set(link["rel"].split()) == {"noopener", "noreferrer", "nofollow"}
    meta = html.unescape(re.search(r"<p class='viewer-meta'>(.*?)</p>", shown).group(1))
    assert doc.title in parsed.text and not re.search(r"\bp\. \d", meta), "no page for a document without pages"

    experts = Parsed(open_document(engine, {"source": EXPERTS, "start": 0, "end": 10}))
    assert not [t for t, _ in experts.tags if t == "a"], "no address, no link"


# ---- the viewer's HTML


def test_the_viewer_shows_a_hostile_document_as_text():
    text = "Notes <img src=x onerror=alert(1)> met <script>alert(2)</script> & 'left' \"early\" {{7*7}} ${alert(4)}."
    doc = Document(source="corpus/x'\"><b>.md", title="Field <b>notes</b>", text=text, format="markdown")
    start, end = text.index("<img"), text.index(" met")
    shown = viewer_html(doc, start, end)
    parsed = Parsed(shown)
    assert {t for t, _ in parsed.tags} <= {"dialog", "div", "h2", "button", "p", "mark"}, parsed.tags
    assert viewer_text(shown) == (text[:start], "<img src=x onerror=alert(1)>", text[end:])
    assert "Field <b>notes</b>" in parsed.text and "corpus/x'\"><b>.md" in parsed.text


@pytest.mark.parametrize(
    ("url", "link"),
    [
        ("https://example.org/a?b=1&c='x'\"y", True),
        ("http://example.org", True),
        ("HTTPS://EXAMPLE.ORG/", True),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)//https://example.org", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("java\nscript:alert(1)", False),
        ("https://exa mple.org", False),
        ("//evil.example/x", False),
        ("ftp://example.org/f", False),
        ("https:///no-host", False),
        ("/etc/passwd", False),
    ],
)
def test_the_original_address_is_a_plain_link_only_when_it_is_a_web_address(url, link):
    doc = Document(source="s.md", title="T", text="Some text.", format="markdown", meta={"source_url": url})
    parsed = Parsed(viewer_html(doc, 0, 4))
    anchors = [attrs for tag, attrs in parsed.tags if tag == "a"]
    assert url in parsed.text, "the address is shown as written"
    assert {t for t, _ in parsed.tags} <= {"dialog", "div", "h2", "button", "p", "mark", "a", "span"}
    if link:
        assert anchors == [
            {"class": "viewer-url", "href": url, "target": "_blank", "rel": "noopener noreferrer nofollow"}
        ]
    else:
        assert anchors == []


def test_offsets_out_of_range_are_clamped_not_an_error():
    doc = Document(source="s.md", title="T", text="Short text.", format="markdown")
    assert viewer_text(viewer_html(doc, 6, 999)) == ("Short ", "text.", "")
    assert viewer_text(viewer_html(doc, 8, 3)) == ("Short text.", "", ""), "an empty span marks nothing"


def test_a_cited_card_has_a_button_that_opens_its_document():
    source = "corpus/it's <here>.pdf"
    item = {
        "n": 2,
        "title": "A <i>title</i>",
        "source": source,
        "text": "Chunk text.",
        "marks": [(0, 5)],
        "page": 4,
        "open": (120, 131),
    }
    parsed = Parsed(sources_html([item, {**item, "n": 3, "open": None, "page": None}], "Sources"))
    buttons = [attrs for tag, attrs in parsed.tags if tag == "button"]
    assert buttons == [
        {
            "type": "button",
            "class": "open-doc",
            "data-source": source,
            "data-start": "120",
            "data-end": "131",
            "aria-label": "Open document [2]: A <i>title</i>",
        }
    ], "one button, for the card that has offsets"
    assert parsed.text.count("p. 4") == 1 and not [t for t, _ in parsed.tags if t == "i"]


@pytest.mark.parametrize(
    "request_",
    [
        None,
        [BALTIC, 0, 5],
        {"source": 1, "start": 0, "end": 5},
        {"source": BALTIC, "start": -1, "end": 5},
        {"source": BALTIC, "start": True, "end": 5},
        {"source": BALTIC, "start": "0", "end": 5},
        {"source": "x" * 5000, "start": 0, "end": 5},
        {"source": "/etc/passwd", "start": 0, "end": 5},
        {"source": "corpus/../../../etc/passwd", "start": 0, "end": 5},
    ],
)
def test_a_bad_request_from_the_page_gets_a_reason_in_the_dialog(ready_engine, request_):
    shown = open_document(ready_engine, request_)
    parsed = Parsed(shown)
    assert "Cannot open the document" in parsed.text and "root:" not in shown
    assert not [t for t, _ in parsed.tags if t == "mark"]
