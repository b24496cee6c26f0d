import json

import pytest

from rag.errors import LoadError
from rag.load import load, normalize

from .files import make_docx, make_pdf


def test_text_with_front_matter_gives_title_and_provenance(tmp_path):
    p = tmp_path / "a.md"
    p.write_text('---\ntitle: "A Title"\nsource_url: https://example.org/a\n---\nBody text here.\n')
    doc = load(p)
    assert (doc.title, doc.text, doc.format) == ("A Title", "Body text here.", "markdown")
    assert doc.meta["source_url"] == "https://example.org/a"


def test_sidecar_metadata_applies_to_any_format(tmp_path):
    p = make_pdf(tmp_path / "r.pdf", ["Some report text."])
    (tmp_path / "r.pdf.meta.json").write_text(json.dumps({"title": "Report", "source_url": "https://example.org/r"}))
    doc = load(p)
    assert doc.title == "Report" and doc.meta["source_url"] == "https://example.org/r"


def test_plain_text_title_falls_back_to_first_line(tmp_path):
    p = tmp_path / "n.txt"
    p.write_text("Headline of the piece\nFirst paragraph.")
    assert load(p).title == "Headline of the piece"


@pytest.mark.parametrize("name", ["doc.pdf", "DOC.PDF", "misnamed.txt"])
def test_pdf_is_chosen_by_content(tmp_path, name):
    p = make_pdf(tmp_path / name, ["The treaty was signed in 1997.", "Second line."], title="Treaty")
    doc = load(p)
    assert doc.format == "pdf" and doc.title == "Treaty"
    assert "signed in 1997" in doc.text and "Second line." in doc.text


def test_docx_paragraphs_and_tables(tmp_path):
    p = make_docx(
        tmp_path / "d.docx",
        ["First para.", "Second para."],
        title="Word doc",
        table=[["Country", "Year"], ["Finland", "2025"]],
    )
    doc = load(p)
    assert doc.format == "docx" and doc.title == "Word doc"
    assert "First para." in doc.text and "Finland | 2025" in doc.text


def test_html_drops_scripts_styles_and_hidden_text(tmp_path):
    p = tmp_path / "page.html"
    p.write_text(
        "<html><head><title>Page</title><style>p{}</style><script>var x='SCRIPT';</script></head><body>"
        "<h1>Heading</h1><p>Visible paragraph.</p><p style='display: none'>HIDDEN1</p><div hidden>HIDDEN2</div>"
        "<span aria-hidden='true'>HIDDEN3</span><p>Second visible.</p></body></html>"
    )
    doc = load(p)
    assert doc.format == "html" and doc.title == "Page"
    assert "Visible paragraph." in doc.text and "Second visible." in doc.text
    for hidden in ("SCRIPT", "HIDDEN1", "HIDDEN2", "HIDDEN3", "p{}"):
        assert hidden not in doc.text


@pytest.mark.parametrize(
    "data,expected",
    [
        ("Café naïve".encode(), "Café naïve"),
        ("Café naïve et élève à Noël".encode("latin-1"), "Café naïve et élève à Noël"),
        ("Grüße aus Köln".encode("utf-16"), "Grüße aus Köln"),
        (b"\xef\xbb\xbfBOM text", "BOM text"),
    ],
)
def test_text_encodings(tmp_path, data, expected):
    p = tmp_path / "t.txt"
    p.write_bytes(data)
    assert load(p).text == expected


def test_normalisation_nfc_zero_width_and_controls():
    assert normalize("Cafe\u0301 in\u200bvisible\u00ad\x07 tag\U000e0041s\r\nline") == "Café invisible\u00ad tags\nline"


@pytest.mark.parametrize(
    "name,data,reason",
    [
        ("bin.txt", bytes(range(256)) * 4, "binary"),
        ("empty.txt", b"", "no text"),
        ("blank.md", b"  \n\t \n", "no text"),
        ("fake.pdf", b"not a pdf at all", "not a PDF"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", "PDF"),
        ("fake.docx", b"plain text", "not a Word"),
        ("image.png", b"\x89PNG\r\n\x1a\n", "unsupported"),
    ],
)
def test_bad_files_are_rejected_with_a_reason(tmp_path, name, data, reason):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(LoadError, match=reason):
        load(p)
