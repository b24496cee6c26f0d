"""Run a suite against an Engine: one record per case with the answer, its citations, the retrieved chunks and every
per-case metric. Aggregation lives in evals/summary.py."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rag
from evals import metrics
from evals.suite import Case

log = logging.getLogger(__name__)

LIST_K = 10  # results retrieved per question for MRR; the @k metrics use the first `k` of them


def run(
    engine: rag.Engine,
    cases: list[Case],
    k: int | None = None,
    progress: bool = False,
    judge: Callable[..., dict] | None = None,
    label: str = "",
) -> list[dict]:
    """Ask every case with the engine's settings and score it; an error in one case is recorded and the run goes on."""
    from tqdm import tqdm

    k = k or engine.settings.retrieve_k
    _warm_up(engine)
    relevant = relevant_chunks(engine, cases)
    records = []
    with tqdm(total=len(cases), disable=not progress, unit="case", desc=label or "eval", leave=False, dynamic_ncols=True) as bar:
        for case in cases:
            records.append(_run_case(engine, case, relevant[case.key], k, judge))
            bar.update(1)
    return records


def relevant_chunks(engine: rag.Engine, cases: list[Case]) -> dict[str, list[set[str]]]:
    """For each case, one set per evidence item: the ids of the indexed chunks that contain its quote.

    A quote that no single chunk holds whole (it straddles a chunk boundary, e.g. with small chunks) counts every chunk
    of its document that overlaps it."""
    chunks = engine.chunks()
    texts: dict[str, str | None] = {}
    out: dict[str, list[set[str]]] = {}
    for case in cases:
        groups = []
        for ev in case.evidence:
            mine = [h for h in chunks if _same_source(h.source, ev.source)]
            ids = {h.chunk_id for h in mine if ev.quote in h.text}
            if not ids and mine:
                ids = _straddling(engine, ev, mine, texts)
            if not ids:
                log.warning("case %s: quote not found in any indexed chunk of %s: %r", case.key, ev.source, ev.quote[:80])
            groups.append(ids)
        out[case.key] = groups
    return out


def _run_case(engine: rag.Engine, case: Case, groups: list[set[str]], k: int, judge: Callable[..., dict] | None) -> dict:
    record: dict[str, Any] = {
        "key": case.key,
        "suite": case.suite,
        "id": case.id,
        "category": case.category,
        "subsets": list(case.subsets),
        "question": case.question,
        "history": [list(t) for t in case.history],
        "answerable": case.answerable,
        "reference": case.reference,
        "error": None,
    }
    passages, final = [], None
    try:
        for event in engine.ask_stream(case.question, list(case.history), rag.QueryParams()):
            if event.kind == "evidence":
                passages = event.data
            elif event.kind == "answer":
                final = event.data
    except Exception as exc:  # one failing case (a model timeout, a server error) must not end the run
        log.warning("case %s failed: %s", case.key, exc)
        record["error"] = f"{type(exc).__name__}: {exc}"
    if final is None:
        record["error"] = record["error"] or "no answer event"
        record.update(answer="", refused=False, standalone_question=case.question, citations=[], passages=[], timings={})
        record.update(_retrieval(engine, case, groups, case.question, k))
        record.update(facts=[], key_facts=False if case.answerable else None, fact_recall=0.0 if case.answerable else None)
        record.update(similarity=0.0 if case.answerable else None, claims=[], faithfulness=None)
        record.update(citation_precision=None, citation_recall=None, passed=False, judge=None)
        return record

    record.update(
        answer=final.answer,
        refused=final.refused,
        standalone_question=final.standalone_question,
        citations=[{"n": c.n, "chunk_id": c.chunk_id, "source": c.source, "quote": c.quote} for c in final.citations],
        passages=[{"n": p.n, "chunk_id": p.chunk_id} for p in passages],
        timings=dict(final.timings),
    )
    record.update(_retrieval(engine, case, groups, final.standalone_question, k))
    record.update(_answer_metrics(engine, case, groups, final, passages))
    record["passed"] = (not final.refused and bool(record["key_facts"])) if case.answerable else final.refused
    record["judge"] = judge(case, final, passages) if judge is not None else None
    return record


def _retrieval(engine: rag.Engine, case: Case, groups: list[set[str]], query: str, k: int) -> dict:
    if not case.answerable:
        return {"retrieved": [], "relevant": [], "retrieval": None}
    retrieved = [h.chunk_id for h in engine.search(query, k=max(LIST_K, k))]
    relevant = set().union(*groups) if groups else set()
    recall_groups = [relevant] if case.evidence_mode == "any" else groups
    scores = {
        "hit@1": metrics.hit_at_k(retrieved, relevant, 1),
        "hit@k": metrics.hit_at_k(retrieved, relevant, k),
        "recall@k": metrics.recall_at_k(retrieved, recall_groups, k),
        "mrr": metrics.mrr(retrieved, relevant),
        "ndcg@k": metrics.ndcg_at_k(retrieved, relevant, k),
    }
    return {"retrieved": retrieved, "relevant": [sorted(g) for g in groups], "retrieval": scores}


def _answer_metrics(engine: rag.Engine, case: Case, groups: list[set[str]], final: rag.Answer, passages: list[rag.Passage]) -> dict:
    clean = re.sub(r"\s+", " ", " ".join(text for text, _ in final.sentences())).strip()
    answered = not final.refused
    found = metrics.facts_found(clean, case.facts) if answered else [False] * len(case.facts)
    out: dict[str, Any] = {
        "facts": [{"variants": list(f), "found": ok} for f, ok in zip(case.facts, found, strict=True)],
        "key_facts": all(found) if case.answerable else None,
        "fact_recall": (sum(found) / len(found) if found else None) if case.answerable else None,
        "similarity": None,
        "claims": [],
        "faithfulness": None,
        "citation_precision": None,
        "citation_recall": None,
    }
    if case.answerable and not answered:
        out["similarity"] = 0.0  # a refusal conveys nothing of the reference
    if not answered:
        return out

    claims = [(text, markers) for text, markers in final.sentences() if metrics.is_claim(text)]
    cited = {c.n: c for c in final.citations}
    shown = {p.n: p for p in passages}
    chunk_sentences = {n: [shown[n].text[s:e] for s, e in shown[n].sentences] for n in cited}
    texts = [clean, case.reference] + [c for c, _ in claims] + [t for n in cited for t in chunk_sentences[n]]
    vectors = engine.embedder.embed_documents(texts)
    if case.answerable:
        out["similarity"] = round(metrics.cosine(vectors[0], vectors[1]), 4)
    claim_vecs = vectors[2 : 2 + len(claims)]
    offset, sent_vecs = 2 + len(claims), {}
    for n in cited:
        sent_vecs[n] = vectors[offset : offset + len(chunk_sentences[n])]
        offset += len(chunk_sentences[n])

    flags = []
    for (claim, markers), cv in zip(claims, claim_vecs, strict=True):
        row = []
        for n in markers:
            if n not in cited:
                row.append(False)
                continue
            best = max((metrics.cosine(cv, sv) for sv in sent_vecs[n]), default=0.0)
            row.append(metrics.supports(claim, cited[n].text, best))
        flags.append(row)
        out["claims"].append({"text": claim, "cited": markers, "supported": row})
    out["faithfulness"] = metrics.faithfulness(flags)
    out["citation_precision"] = metrics.citation_precision(flags)
    if case.answerable:
        out["citation_recall"] = metrics.citation_recall({c.chunk_id for c in final.citations}, groups, case.evidence_mode)
    return out


def _warm_up(engine: rag.Engine) -> None:
    """Load the embedder, the index and the model before the clock runs, so the first case's latency is not a load time."""
    engine.warm_up()
    engine.search("warm-up", k=1)


def _same_source(chunk_source: str, evidence_source: str) -> bool:
    """A chunk's source (the path it was indexed under) names the evidence document when its trailing parts match."""
    want = Path(evidence_source).parts
    return Path(chunk_source).parts[-len(want) :] == want


def _straddling(engine: rag.Engine, ev: Any, mine: list[rag.Hit], cache: dict[str, str | None]) -> set[str]:
    if ev.source not in cache:
        try:
            cache[ev.source] = engine.document_text(mine[0].source)
        except rag.RagError:
            cache[ev.source] = None
    text = cache[ev.source]
    at = text.find(ev.quote) if text else -1
    if at < 0:
        return set()
    end = at + len(ev.quote)
    return {h.chunk_id for h in mine if h.start < end and h.end > at}
