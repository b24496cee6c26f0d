"""The README and docs/ stay true to the code: the settings table is what rag/config.py generates, every relative link
and anchor resolves, every docs page is linked from the README, and every RAG_* variable named is a setting."""

import importlib.util
import re
from pathlib import Path

import pytest

from rag.config import CONFIG_FILE_ENV, Settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<img\s[^>]*\bsrc=\"([^\"]+)\"")


def _generator():
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "docs" / "settings_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unfenced(text: str) -> str:
    return re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.S | re.M)


def _prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are code, not links."""
    return re.sub(r"`[^`\n]*`", "", _unfenced(text))


def _links(path: Path) -> list[str]:
    return [a or b for a, b in LINK.findall(_prose(path.read_text(encoding="utf-8")))]


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for line in _unfenced(path.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_settings_table_is_generated_from_config():
    gen = _generator()
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert gen.block(page) == gen.table(), "the settings changed: run `python docs/settings_table.py --write`"


def test_settings_table_names_every_setting_and_notes_only_real_ones():
    gen = _generator()
    table = gen.table()
    for name in Settings.model_fields:
        assert f"`RAG_{name.upper()}`" in table
    assert set(gen.NOTES) <= set(Settings.model_fields), "docs/settings_table.py NOTES names a setting that is gone"


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(path):
    broken = []
    for link in _links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", link):  # http:, https:, mailto:
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        if not file.exists():
            broken.append(link)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(link)
    assert not broken, f"{path.name}: links that lead nowhere: {broken}"


def test_readme_links_every_docs_page():
    linked = {(README.parent / link.partition("#")[0]).resolve() for link in _links(README)}
    assert PAGES, "docs/ has no pages"
    missing = [p.name for p in PAGES if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def test_every_variable_named_is_a_setting():
    known = {f"RAG_{name.upper()}" for name in Settings.model_fields} | {CONFIG_FILE_ENV}
    for path in [README, *PAGES]:
        named = set(re.findall(r"\bRAG_[A-Z][A-Z0-9_]*\b", path.read_text(encoding="utf-8")))
        assert named <= known, f"{path.name} names variables that are not settings: {sorted(named - known)}"
