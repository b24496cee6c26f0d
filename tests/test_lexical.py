"""The BM25 index: scored with numpy from bm25s's own files, the same scores bm25s gives."""

import json
import random
import subprocess
import sys

import bm25s
import numpy as np
import pytest

from rag.lexical import LexicalIndex
from rag.text import tokenize

TEXTS = [
    "Finland shares a border of 800 miles with Russia.",
    "Poland, Lithuania, Latvia and Estonia said they would leave the Ottawa Convention on anti-personnel mines.",
    "The convention bans the use, stockpiling and production of mines; mines mines.",
    "Experts urge Britain to reconsider its position on landmines.",
    "",
    "A border, a border: the border again.",
]


def _queries(texts: list[str], n: int = 60) -> list[str]:
    words = sorted({w for t in texts for w in tokenize(t)}) + ["absent", "zzz"]
    rng = random.Random(7)
    return [" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(n)]


def test_scores_equal_bm25s_for_the_built_and_the_loaded_index(tmp_path):
    ids = [f"c{i}" for i in range(len(TEXTS))]
    built = LexicalIndex.build(ids, TEXTS, "s1")
    built.save(tmp_path / "lex")
    loaded = LexicalIndex.load(tmp_path / "lex")
    reference = bm25s.BM25.load(str(tmp_path / "lex"))  # what we wrote, read by bm25s itself
    for query in _queries(TEXTS):
        known = [t for t in tokenize(query) if t in reference.vocab_dict]
        expected = reference.get_scores(known) if known else np.zeros(len(ids))
        for index in (built, loaded):
            assert np.allclose(index.scores(query), expected, atol=1e-6), query
    assert loaded.ids == ids and loaded.stamp == "s1"


def test_ranking_best_first_with_ties_in_index_order_and_no_zero_scores():
    index = LexicalIndex.build(["a", "b", "c", "d"], ["mines border", "mines border", "border", "quartz"], "s")
    hits = index.search("mines border", 4)
    assert [i for i, _ in hits] == ["a", "b", "c"]  # "d" shares no term: left out, not ranked at 0
    assert hits[0][1] == hits[1][1] > hits[2][1] > 0
    assert index.search("mines border", 1) == hits[:1]
    assert index.search("nothing here", 4) == []


def test_an_index_bm25s_saved_is_read(tmp_path):
    """Indexes written before the numpy reader (by bm25s's own save) still load."""
    bm25 = bm25s.BM25()
    bm25.index([tokenize(t) or ["\u2205"] for t in TEXTS], show_progress=False)
    bm25.save(str(tmp_path / "lex"), show_progress=False)
    (tmp_path / "lex" / "ids.json").write_text(json.dumps({"stamp": "old", "ids": [str(i) for i in range(len(TEXTS))]}))
    index = LexicalIndex.load(tmp_path / "lex")
    assert index is not None and index.search("border", 2)[0][0] == "5"


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: (d / "vocab.index.json").write_text("{"),
        lambda d: (d / "indptr.csc.index.npy").unlink(),
        lambda d: (d / "ids.json").write_text(json.dumps({"stamp": "s", "ids": ["only-one"]})),
        lambda d: (d / "params.index.json").write_text(json.dumps({"method": "bm25+", "num_docs": 6})),
    ],
    ids=["broken vocabulary", "missing matrix", "ids disagree", "a variant not read here"],
)
def test_a_damaged_index_is_not_loaded(tmp_path, damage):
    LexicalIndex.build([str(i) for i in range(len(TEXTS))], TEXTS, "s").save(tmp_path / "lex")
    damage(tmp_path / "lex")
    assert LexicalIndex.load(tmp_path / "lex") is None  # the catalog then rebuilds it from the store


def test_an_empty_index_saves_loads_and_finds_nothing(tmp_path):
    LexicalIndex.build([], [], "e").save(tmp_path / "lex")
    index = LexicalIndex.load(tmp_path / "lex")
    assert index is not None and index.stamp == "e" and index.search("mines", 3) == []


def test_searching_a_saved_index_imports_neither_bm25s_nor_scipy(tmp_path):
    LexicalIndex.build(["a", "b"], ["mines border", "quartz"], "s").save(tmp_path / "lex")
    code = (
        "import sys; from pathlib import Path; from rag.lexical import LexicalIndex;"
        f"i = LexicalIndex.load(Path({str(tmp_path / 'lex')!r})); assert i.search('mines', 2)[0][0] == 'a';"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('bm25s', 'scipy')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
