"""Which lexical index a shared deployment keeps, measured on the large corpus (the whole Python documentation that
Debian's python3.11-doc installs): our BM25, saved as one blob in PostgreSQL and reloaded by each replica when the
manifest's stamp changes, against PostgreSQL's own full-text search (a tsvector column under a GIN index, always
current). Lexical retrieval alone, for the questions of the pydocs suite: hit@1, hit@4, hit@20 and MRR of the chunks
holding their evidence, the latency of one query, and what keeping each current costs (build, blob size, reload).

    python -m evals.lexical_stores --db postgresql+psycopg://user@host:port/db [--out FILE]

Chunks are made exactly as ingestion makes them (`Engine.docs.preview`, the default settings); nothing is embedded.
The table it creates (`lexical_stores_probe`) is dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import rag
from evals import metrics
from evals.suite import load as load_suite

ROOT = Path("/usr/share/doc/python3.11/html")
SUITE = Path(__file__).parent / "suites" / "pydocs.jsonl"
TABLE = "lexical_stores_probe"
CANDIDATES = 20  # what each retriever hands to the fusion (RAG_RETRIEVE_CANDIDATES)


def corpus(root: Path) -> tuple[list[str], list[str], dict[str, list[tuple[str, int, int]]], dict[str, str]]:
    """ids and texts of every chunk ingestion would make of the HTML pages under `root` (sources relative to it, as the
    suite names them), each source's (id, start, end) chunks, and each source's text."""
    here = Path.cwd()
    os.chdir(root)
    try:
        engine = rag.Engine(rag.Settings())
        hits = engine.docs.preview(sorted(Path(".").rglob("*.html")))
        docs = {src: engine.docs.document_text(src) for src in dict.fromkeys(h.source for h in hits)}
    finally:
        os.chdir(here)
    spans: dict[str, list[tuple[str, int, int]]] = {}
    for h in hits:
        spans.setdefault(h.source, []).append((h.chunk_id, h.start, h.end))
    return [h.chunk_id for h in hits], [h.text for h in hits], spans, docs


def relevant(case, spans, docs, text_of) -> set[str]:
    """The chunks holding an evidence quote whole; for a quote that straddles chunks, those overlapping it."""
    out: set[str] = set()
    for ev in case.evidence:
        mine = spans.get(ev.source, [])
        whole = {i for i, _, _ in mine if ev.quote in text_of[i]}
        if not whole and ev.source in docs and (at := docs[ev.source].find(ev.quote)) >= 0:
            whole = {i for i, s, e in mine if s < at + len(ev.quote) and e > at}
        out |= whole
    return out


def scored(rankings: list[list[str]], wanted: list[set[str]]) -> dict[str, float]:
    return {
        "hit@1": statistics.mean(metrics.hit_at_k(r, w, 1) for r, w in zip(rankings, wanted, strict=True)),
        "hit@4": statistics.mean(metrics.hit_at_k(r, w, 4) for r, w in zip(rankings, wanted, strict=True)),
        "hit@20": statistics.mean(metrics.hit_at_k(r, w, 20) for r, w in zip(rankings, wanted, strict=True)),
        "mrr": statistics.mean(metrics.mrr(r, w) for r, w in zip(rankings, wanted, strict=True)),
    }


def timed(fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def latency(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "mean_ms": round(1000 * statistics.mean(ordered), 2),
        "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 2),
    }


def _bm25(conninfo: str, ids: list[str], texts: list[str], questions: list[str], wanted: list) -> dict:
    """BM25, as a shared index keeps it: built at ingestion, one blob in the database, reloaded by replicas."""
    import psycopg

    bm25, build_s = timed(rag.LexicalIndex.build, ids, texts, "probe")
    blob, pack_s = timed(bm25.to_bytes)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}_blob")
        conn.execute(f"CREATE TABLE {TABLE}_blob (id int PRIMARY KEY, data bytea)")
        _, store_s = timed(conn.execute, f"INSERT INTO {TABLE}_blob VALUES (1, %s)", (blob,))
        started = time.perf_counter()
        loaded = rag.LexicalIndex.from_bytes(conn.execute(f"SELECT data FROM {TABLE}_blob WHERE id = 1").fetchone()[0])
        reload_s = time.perf_counter() - started
        conn.execute(f"DROP TABLE {TABLE}_blob")
    assert loaded is not None and loaded.ids == bm25.ids
    runs = [timed(loaded.search, q, CANDIDATES) for q in questions]
    return {
        **scored([[i for i, _ in hits] for hits, _ in runs], wanted),
        **latency([t for _, t in runs]),
        "build_s": round(build_s, 2),
        "blob_mb": round(len(blob) / 1e6, 1),
        "save_s": round(pack_s + store_s, 2),
        "reload_s": round(reload_s, 2),
    }


def _full_text_search(
    conninfo: str, ids: list[str], texts: list[str], questions: list[str], wanted: list
) -> dict[str, dict]:
    """PostgreSQL full-text search: English stemming and stop words, any of the question's words, ranked (by ts_rank
    and by ts_rank_cd)."""
    import psycopg

    report: dict[str, dict] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(
            f"CREATE TABLE {TABLE} (id text PRIMARY KEY, body text, "
            "tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED)"
        )
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY {TABLE} (id, body) FROM STDIN") as copy:
            for row in zip(ids, texts, strict=True):
                copy.write_row((row[0], row[1].replace("\x00", "")))
        conn.execute(f"CREATE INDEX ON {TABLE} USING gin (tsv)")
        conn.execute(f"ANALYZE {TABLE}")
        fts_build_s = time.perf_counter() - started
        for name, rank in (("pg_ts_rank", "ts_rank(tsv, q)"), ("pg_ts_rank_cd", "ts_rank_cd(tsv, q)")):
            sql = (
                f"SELECT id FROM {TABLE}, "
                "(SELECT replace(plainto_tsquery('english', %s)::text, '&', '|')::tsquery AS q) AS query "
                f"WHERE tsv @@ q ORDER BY {rank} DESC, id LIMIT {CANDIDATES}"
            )
            conn.execute(sql, (questions[0],)).fetchall()  # warm
            runs = [timed(lambda q, s=sql: [r[0] for r in conn.execute(s, (q,)).fetchall()], q) for q in questions]
            report[name] = {
                **scored([r for r, _ in runs], wanted),
                **latency([t for _, t in runs]),
                "build_s": round(fts_build_s, 2),
            }
        conn.execute(f"DROP TABLE {TABLE}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.lexical_stores", description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="SQLAlchemy URL of a PostgreSQL database to measure in")
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON too")
    args = parser.parse_args(argv)

    (ids, texts, spans, docs), seconds = timed(corpus, args.root)
    text_of = dict(zip(ids, texts, strict=True))
    cases = [c for c in load_suite(SUITE) if c.answerable and c.evidence]
    wanted = [relevant(c, spans, docs, text_of) for c in cases]
    kept = [(c, w) for c, w in zip(cases, wanted, strict=True) if w]
    print(
        f"{len(docs)} pages, {len(ids)} chunks ({seconds:.0f} s to load and chunk); "
        f"{len(kept)} of {len(cases)} questions have evidence chunks"
    )
    questions, wanted = [c.question for c, _ in kept], [w for _, w in kept]
    report: dict = {"pages": len(docs), "chunks": len(ids), "questions": len(kept)}

    conninfo = args.db.replace("postgresql+psycopg://", "postgresql://")
    report["bm25"] = _bm25(conninfo, ids, texts, questions, wanted)
    report.update(_full_text_search(conninfo, ids, texts, questions, wanted))

    for name in ("bm25", "pg_ts_rank", "pg_ts_rank_cd"):
        print(f"{name:14} " + "  ".join(f"{k} {v}" for k, v in report[name].items()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
