"""Bad and hostile files: each is indexed correctly or reported with a reason; the run goes on; nothing bad is
stored."""

import io
import os
import zipfile

import pytest

import rag
from rag.errors import LoadError
from rag.load import load

from .files import make_docx, make_pdf

GOOD = "The clearance team removed forty mines from the northern field in April."


def _ingest(tmp_path, embedder, **overrides):
    settings = rag.Settings(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index", **overrides)
    engine = rag.Engine(settings, embedder=embedder)
    return engine, engine.ingest()


def _zip_bomb(path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", b"\x00" * (60 * 1024 * 1024))
    path.write_bytes(buf.getvalue())


def _looping_pdf(path):
    """A page tree whose /Kids points back at itself."""
    objs = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        "<< /Length 44 >>\nstream\nBT /F1 12 Tf 72 720 Td (Looping text) Tj ET\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{o}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode() + b"".join(
        f"{o:010d} 00000 n \n".encode() for o in offsets
    )
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))


def test_hostile_corpus_is_indexed_or_reported_and_nothing_bad_is_stored(tmp_path, embedder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    c = tmp_path / "corpus"
    (c / "sub").mkdir(parents=True)
    (c / "good.md").write_text(GOOD)
    (c / "invalid-utf8.txt").write_bytes(
        b"Mine fields \xff\xfe near the border are dangerous.\n" + b"More text here. " * 5
    )
    (c / "latin1.txt").write_bytes(
        "Les mines antipersonnel sont interdites depuis la Convention d'Ottawa, signée à Ottawa.".encode("latin-1")
    )
    (c / "utf16.txt").write_bytes("Landminen sind seit dem Vertrag von Ottawa verboten.".encode("utf-16"))
    (c / "empty.txt").write_bytes(b"")
    (c / "blank.txt").write_bytes(b" \n\t\n")
    (c / "binary.txt").write_bytes(os.urandom(4096))
    make_pdf(c / "UPPER.PDF", ["An upper-case PDF about demining budgets."])
    good_pdf = make_pdf(tmp_path / "full.pdf", ["A PDF that will be cut short."])
    (c / "truncated.pdf").write_bytes(good_pdf.read_bytes()[: len(good_pdf.read_bytes()) // 2])
    (c / "malformed.pdf").write_bytes(b"%PDF-1.7\n" + os.urandom(2000))
    _looping_pdf(c / "loop.pdf")
    (c / "nested.html").write_text(
        "<html><body>" + "<div>" * 20000 + "Deep text about mines." + "</div>" * 20000 + "</body></html>"
    )
    (c / "unclosed.html").write_text(
        "<html><body><p>Unclosed paragraph about mine risk education<div><span>still going"
    )
    _zip_bomb(c / "bomb.docx")
    make_docx(c / "ok.docx", ["A Word file about mine risk education."])
    (c / "huge.txt").write_bytes(b"word " * (300 * 1024))
    (c / ".hidden.md").write_text("hidden notes must not be indexed")
    (c / "sub" / ".secret").write_text("also hidden")
    outside = tmp_path / "outside.md"
    outside.write_text("secret outside the corpus")
    (c / "escape.md").symlink_to(outside)
    (c / "inside-link.md").symlink_to(c / "good.md")
    (c / "sub" / "loop").symlink_to(c / "sub")
    (c / "self.md").symlink_to(c / "self.md")
    (tmp_path / "corpus-sibling").mkdir()
    (tmp_path / "corpus-sibling" / "other.md").write_text("sibling directory text must not be touched")

    engine, report = _ingest(tmp_path, embedder, max_file_mb=1.0, parse_timeout_s=20)
    indexed = {d["source"] for d in engine.admin.documents()}
    assert {
        "corpus/good.md",
        "corpus/invalid-utf8.txt",
        "corpus/latin1.txt",
        "corpus/utf16.txt",
        "corpus/UPPER.PDF",
        "corpus/ok.docx",
    } <= indexed
    assert "corpus/inside-link.md" in report.duplicates  # same content as good.md: stored once
    expected_failures = {
        "corpus/empty.txt": "no text found",
        "corpus/blank.txt": "no text found",
        "corpus/binary.txt": "binary content",
        "corpus/malformed.pdf": "malformed PDF",
        "corpus/bomb.docx": "suspicious .docx",
        "corpus/huge.txt": "over the 1 MB limit",
        "corpus/escape.md": "symlink points outside",
        "corpus/self.md": "broken or looping symlink",
    }
    assert all(expected_failures.values()), "an empty fragment would match any reason"
    for src, reason in expected_failures.items():
        assert src in report.failed, (src, report.failed)
        assert reason in report.failed[src], (src, report.failed[src])
    for src in ("corpus/truncated.pdf", "corpus/loop.pdf", "corpus/nested.html", "corpus/unclosed.html"):
        assert src in indexed or src in report.failed, src
    assert "Unclosed paragraph" in " ".join(
        d.page_content for d in engine.store.get(where={"source": "corpus/unclosed.html"})
    )
    for doc in engine.store.get():
        assert doc.page_content.strip() and len(doc.page_content) >= 3
        assert "\x00" not in doc.page_content and "\ufffd" not in doc.page_content[:0] + doc.page_content.replace(
            "\ufffd", "", 0
        )
        assert not doc.metadata["source"].startswith(("corpus/.", "corpus/sub/.", "corpus-sibling", "outside"))
    assert not any("secret" in d.page_content or "sibling" in d.page_content for d in engine.store.get())

    # The sibling directory is not touched by a later run that deletes files under corpus/.
    (c / "good.md").unlink()
    report = engine.ingest()
    assert report.deleted == ["corpus/good.md"]
    assert (tmp_path / "corpus-sibling" / "other.md").exists()


def test_parse_time_limit_kills_a_hanging_parser(tmp_path, monkeypatch):
    import time

    import rag.load as load_mod

    def slow(data):
        time.sleep(30)

    monkeypatch.setattr(load_mod, "_pdf", slow)
    p = make_pdf(tmp_path / "slow.pdf", ["x"])
    started = time.monotonic()
    with pytest.raises(LoadError, match="longer than 1 s"):
        load(p, timeout=1.0)
    assert time.monotonic() - started < 10


def test_docx_with_too_many_entries_is_refused(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("word/document.xml", "<w:document/>")
        for i in range(2100):
            zf.writestr(f"x/{i}", "")
    p = tmp_path / "many.docx"
    p.write_bytes(buf.getvalue())
    with pytest.raises(LoadError, match="archive entries"):
        load(p)
