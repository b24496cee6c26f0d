"""Load files into normalised text with provenance: .txt, .md, .html, .pdf, .docx, chosen by content and extension."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import LoadError
from rag.text import normalize

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".meta.json"
TEXT_EXTS = {".txt", ".text", ".md", ".markdown", ".rst"}
HTML_EXTS = {".html", ".htm", ".xhtml"}
SUPPORTED_EXTS = TEXT_EXTS | HTML_EXTS | {".pdf", ".docx"}

# Zero-width and invisible formatting characters, and Unicode tag characters (used to hide text).
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.S)
# Inline styles that hide text from a reader: not displayed, invisible, zero-sized, transparent or white-on-white.
_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d])|opacity\s*:\s*0(?![.\d]*[1-9])"
    r"|(?<![-\w])color\s*:\s*(?:#fff(?:fff)?\b|white\b|rgba?\(\s*255\s*,\s*255\s*,\s*255\b|transparent\b)",
    re.I,
)


@dataclass
class Document:
    """One source file as normalised text; `text` is what chunk offsets point into. `pages` (PDF only) says where
    each page starts in `text`: page n at `pages[n - 1]`."""

    source: str
    title: str
    text: str
    format: str
    meta: dict[str, str] = field(default_factory=dict)
    pages: list[int] = field(default_factory=list)

    @property
    def source_url(self) -> str | None:
        """The original address the front matter or sidecar gives (`source_url`), if any."""
        return self.meta.get("source_url") or None

    @property
    def digest(self) -> str:
        """The sha256 of `text`, stored with each chunk (`doc_hash`): chunk ids derive from it, re-ingesting an
        unchanged document finds it stored, and a document read back for the viewer is checked against it."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def page_at(self, offset: int) -> int | None:
        """The page (from 1) that character `offset` of `text` is on; None for a document without pages."""
        return page_at(self.pages, offset)


def page_at(starts: list[int], offset: int) -> int | None:
    """The page (from 1) of character `offset`, given where each page starts; None without pages. An empty page
    starts where the next one does, so an offset there belongs to the later page, the one that holds the text."""
    return max(1, bisect_right(starts, offset)) if starts else None


def load(path: Path, source: str | None = None, timeout: float = 60.0) -> Document:
    """Read one file; raise LoadError with the reason when it cannot be used.

    PDF and Word files are parsed in a child process that is killed after `timeout` seconds, so a hostile
    file (a reference loop, a decompression bomb) cannot hang or exhaust the ingestion.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from None
    fmt = sniff(path, data)
    meta = _sidecar(path)
    title, pages = "", []
    if fmt == "pdf":
        title, pages = _isolated(_pdf, data, timeout)
        text = "\n\n".join(p.strip() for p in pages if p.strip())
    elif fmt == "docx":
        title, text = _isolated(_docx, data, timeout)
    elif fmt == "html":
        title, text = _html(_decode(data))
    else:
        text = _decode(data)
        front, text = _front_matter(text)
        meta = {**front, **meta}
    text = normalize(text)
    if not text:
        raise LoadError("no text found (empty, whitespace-only, or an image-only file)")
    title = meta.pop("title", "") or title or _first_line_title(text) or path.stem
    return Document(
        source=source or str(path),
        title=normalize(title)[:300],
        text=text,
        format=fmt,
        meta=meta,
        pages=_page_starts(pages, text),
    )


def _page_starts(pages: list[str], text: str) -> list[int]:
    """Where each page's text starts in the normalised `text` the pages were joined into; an empty page starts where
    the next page does (or at the end)."""
    starts, pos = [], 0
    for page in pages:
        body = normalize(page)
        if not body:
            starts.append(-1)  # filled in below
            continue
        found = text.find(body, pos)
        starts.append(found if found >= 0 else pos)  # not found: normalising the joined text changed this page's edge
        pos = starts[-1] + len(body)
    following = len(text)
    for i in reversed(range(len(starts))):
        starts[i] = following = following if starts[i] < 0 else starts[i]
    return starts


def sniff(path: Path, data: bytes) -> str:
    """The format by content first (PDF and DOCX magic, HTML markup), then by extension."""
    ext = path.suffix.lower()
    if data.startswith(b"%PDF-"):
        return "pdf"
    if data.startswith(b"PK\x03\x04"):
        if ext == ".docx" or _is_docx(data):
            return "docx"
        raise LoadError("a zip archive that is not a .docx document")
    if ext == ".pdf":
        raise LoadError("named .pdf but is not a PDF (no %PDF- header)")
    if ext == ".docx":
        raise LoadError("named .docx but is not a Word document (not a zip archive)")
    if ext not in SUPPORTED_EXTS:
        raise LoadError(
            f"unsupported file type {ext or '(no extension)'}; supported: {', '.join(sorted(SUPPORTED_EXTS))}"
        )
    if _looks_binary(data):
        raise LoadError(f"binary content in a {ext} file; only text can be indexed from it")
    head = data[:2048].lstrip().lower()
    if ext in HTML_EXTS or head.startswith((b"<!doctype html", b"<html")):
        return "html"
    return "markdown" if ext in {".md", ".markdown"} else "text"


def _looks_binary(data: bytes) -> bool:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # UTF-16 with a byte-order mark
    sample = data[:8192]
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    controls = sum(b < 32 and b not in (9, 10, 12, 13) for b in sample)
    return controls / len(sample) > 0.05


def _decode(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Western text in Windows-1252/Latin-1 is the most common non-UTF-8 case; detectors guess it wrong on short texts.
    try:
        text = data.decode("cp1252")
        if all(ch.isascii() or "\u00c0" <= ch <= "\u00ff" or ch in "‘’“”–—…€«»°§" for ch in text):
            return text
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None:
        return str(best)
    return data.decode("latin-1")


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    match = _FRONT_MATTER.match(text.replace("\r\n", "\n"))
    if not match:
        return {}, text
    import yaml

    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return {}, text
    if not isinstance(data, dict):
        return {}, text
    return {str(k): str(v) for k, v in data.items() if v is not None}, text.replace("\r\n", "\n")[match.end() :]


def _sidecar(path: Path) -> dict[str, str]:
    side = path.with_name(path.name + SIDECAR_SUFFIX)
    if not side.is_file():
        return {}
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LoadError(f"unreadable sidecar {side.name}: {exc}") from None
    if not isinstance(data, dict):
        raise LoadError(f"sidecar {side.name} must hold a JSON object")
    return {str(k): str(v) for k, v in data.items() if v is not None}


def _first_line_title(text: str) -> str:
    first = text.split("\n", 1)[0].strip().lstrip("#").strip()
    return first if 0 < len(first) <= 150 else ""


def _is_docx(data: bytes) -> bool:
    import io

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return "word/document.xml" in zf.namelist()
    except zipfile.BadZipFile:
        return False


def _pdf(data: bytes) -> tuple[str, list[str]]:
    import io

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [page.extract_text() or "" for page in reader.pages]
        title = str((reader.metadata or {}).get("/Title") or "")
    except (PdfReadError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise LoadError(f"malformed PDF: {exc}") from None
    return title, pages


# Caps on a .docx archive, checked before anything is decompressed.
MAX_ZIP_ENTRIES = 2000
MAX_ZIP_BYTES = 200 * 1024 * 1024
MAX_ZIP_RATIO = 200


def _check_zip(data: bytes) -> None:
    import io

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
    except zipfile.BadZipFile as exc:
        raise LoadError(f"malformed .docx: {exc}") from None
    if len(infos) > MAX_ZIP_ENTRIES:
        raise LoadError(f"suspicious .docx: {len(infos)} archive entries (limit {MAX_ZIP_ENTRIES})")
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_BYTES:
        raise LoadError(
            f"suspicious .docx: expands to {total / 1048576:.0f} MB (limit {MAX_ZIP_BYTES / 1048576:.0f} MB)"
        )
    for i in infos:
        if i.file_size > 1024 * 1024 and i.file_size > MAX_ZIP_RATIO * max(i.compress_size, 1):
            raise LoadError(
                f"suspicious .docx: {i.filename} compresses {i.file_size // max(i.compress_size, 1)}:1 (a zip bomb?)"
            )


def _isolated(parse, data: bytes, timeout: float) -> tuple[str, str]:
    """Run `parse(data)` in a forked child; kill it after `timeout` seconds."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(parse, data, send), daemon=True)
    child.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise LoadError(f"parsing took longer than {timeout:g} s (RAG_PARSE_TIMEOUT_S); the file may be malformed")
        ok, value = receive.recv()
    except EOFError:
        raise LoadError(f"the parser crashed (exit code {child.exitcode}); the file may be malformed") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receive.close()
    if not ok:
        raise LoadError(value)
    return value


def _child(parse, data: bytes, send) -> None:
    try:
        send.send((True, parse(data)))
    except LoadError as exc:
        send.send((False, str(exc)))
    except Exception as exc:  # anything the parser raises on a hostile file is a reason, not a crash
        send.send((False, f"unreadable file: {type(exc).__name__}: {str(exc)[:200]}"))


def _docx(data: bytes) -> tuple[str, str]:
    import io

    import docx

    _check_zip(data)
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise LoadError(f"malformed .docx: {exc}") from None
    parts = [p.text for p in document.paragraphs if p.text.strip()]
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                parts.append(" | ".join(cells))
    return document.core_properties.title or "", "\n\n".join(parts)


def _html(markup: str) -> tuple[str, str]:
    """Visible text only: scripts, styles, templates and hidden elements are dropped before extraction, and so is a
    site's chrome where the page marks it (its main content when it has one; navigation, banner, footer and sidebars
    otherwise; permalink anchors)."""
    import lxml.html
    from lxml import etree

    try:
        tree = lxml.html.document_fromstring(markup)
    except (etree.ParserError, ValueError) as exc:
        raise LoadError(f"unparseable HTML: {exc}") from None
    title = (tree.findtext(".//title") or "").strip()
    drop = tree.xpath(
        "//script|//style|//template|//noscript|//head|//svg|//iframe|//object"
        "|//*[@hidden]|//*[@aria-hidden='true']|//input[@type='hidden']"
    )
    drop += [el for el in tree.xpath("//*[@style]") if _HIDDEN_STYLE.search(el.get("style", ""))]
    for el in drop:
        if el.getparent() is not None:
            el.drop_tree()
    mains = tree.xpath("//main|//*[@role='main']")
    if len(mains) == 1 and len(mains[0].text_content().strip()) >= 200:
        tree = mains[0]  # the page says where its content is: the rest is chrome repeated on every page
        chrome = tree.xpath(".//nav|.//*[@role='navigation']")  # inside it, asides are content (notes, footnotes)
    else:
        chrome = tree.xpath(
            "//nav|//header|//footer|//aside|//*[@role='navigation' or @role='banner' or @role='contentinfo'"
            " or @role='complementary' or @role='search']"
        )
    chrome += [a for a in tree.xpath(".//a") if a.text_content().strip() in ("¶", "#", "§")]  # permalink anchors
    for el in chrome:
        if el.getparent() is not None:
            el.drop_tree()
    blocks = {
        "p",
        "div",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "br",
        "section",
        "article",
        "blockquote",
        "pre",
        "table",
        "ul",
        "ol",
    }
    for el in tree.iter():
        if isinstance(el.tag, str) and el.tag in blocks:
            el.tail = "\n\n" + (el.tail or "")
    body = tree.find("body")
    text = (body if body is not None else tree).text_content()
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\n[ \t]+", "\n", text)
    return title, text
