"""Run a suite against an Engine: one record per case with the answer, its citations, the retrieved chunks and every
per-case metric. Aggregation lives in evals/summary.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rag
from evals import metrics, scoring
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
    endpoint: rag.Client | None = None,
) -> list[dict]:
    """Ask every case with the engine's settings and score it; an error in one case is recorded and the run goes on.
    With `endpoint`, the answers come from that OpenAI-compatible chat endpoint instead (another deployment or
    product), scored the same way; retrieval figures are still the engine's own index."""
    from tqdm import tqdm

    k = k or engine.settings.retrieve_k
    _warm_up(engine)
    relevant = relevant_chunks(engine, cases)
    records = []
    with tqdm(
        total=len(cases), disable=not progress, unit="case", desc=label or "eval", leave=False, dynamic_ncols=True
    ) as bar:
        for case in cases:
            records.append(_run_case(engine, case, relevant[case.key], k, judge, endpoint))
            bar.update(1)
    return records


def relevant_chunks(engine: rag.Engine, cases: list[Case]) -> dict[str, list[set[str]]]:
    """For each case, one set per evidence item: the ids of the indexed chunks that contain its quote.

    A quote that no single chunk holds whole (it straddles a chunk boundary, e.g. with small chunks) counts every chunk
    of its document that overlaps it."""
    chunks = engine.docs.chunks()
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
                log.warning(
                    "case %s: quote not found in any indexed chunk of %s: %r", case.key, ev.source, ev.quote[:80]
                )
            groups.append(ids)
        out[case.key] = groups
    return out


def _run_case(
    engine: rag.Engine,
    case: Case,
    groups: list[set[str]],
    k: int,
    judge: Callable[..., dict] | None,
    endpoint: rag.Client | None = None,
) -> dict:
    record = _case_record(case)
    passages, final = [], None
    started = time.perf_counter()
    try:
        events = (
            endpoint.ask_stream(case.question, list(case.history))
            if endpoint
            else engine.ask_stream(case.question, list(case.history))
        )
        for event in events:
            if event.kind == "evidence":
                passages = event.data
            elif event.kind == "answer":
                final = event.data
    except Exception as exc:  # one failing case (a model timeout, a server error) must not end the run
        log.warning("case %s failed: %s", case.key, exc)
        record["error"] = f"{type(exc).__name__}: {exc}"
    if (
        final is None
    ):  # scored as a wrong answer; its time counts in the latency figures (a timeout is slow, not absent)
        record["error"] = record["error"] or "no answer event"
        final = rag.Answer(
            case.question,
            case.question,
            "",
            False,
            timings={"total_ms": round((time.perf_counter() - started) * 1000, 1)},
        )
    record.update(
        answer=final.answer,
        raw=final.raw,
        dropped=list(final.unsupported),
        refused=final.refused,
        standalone_question=final.standalone_question,
        kind=final.kind,
        citations=[{"n": c.n, "chunk_id": c.chunk_id, "source": c.source, "quote": c.quote} for c in final.citations],
        passages=[{"n": p.n, "chunk_id": p.chunk_id, "shown": _shown(p)} for p in passages],
        timings=dict(final.timings),
    )
    record.update(_retrieval(engine, case, groups, final.standalone_question, k))
    seen = _seen(engine, final, passages)
    record["seen"] = len(seen)
    record.update(_answer_metrics(engine, case, groups, final, seen, error=bool(record["error"])))
    record["judge"] = judge(case, final, seen) if judge is not None and not record["error"] else None
    return record


def _seen(engine: rag.Engine, final: rag.Answer, evidence: list[rag.Passage]) -> list[rag.Passage]:
    """The passages the model read: for an answer from the whole corpus every indexed passage (the sources panel's
    evidence is only the few closest to the question), else the retrieved evidence. Faithfulness and ALCE citation
    scores are judged against these."""
    if final.way != rag.Way.WHOLE:
        return evidence
    way = engine.way()
    return way.corpus.passages if way.whole else evidence


def _case_record(case: Case) -> dict[str, Any]:
    """What a case's record says before it is answered."""
    return {
        "key": case.key,
        "suite": case.suite,
        "id": case.id,
        "split": case.split,
        "category": case.category,
        "subsets": list(case.subsets),
        "question": case.question,
        "history": [list(t) for t in case.history],
        "answerable": case.answerable,
        "reference": case.reference,
        "error": None,
    }


def _shown(p: rag.Passage) -> list[str]:
    """The sentences of a passage the model was shown."""
    return [p.text[s:e] for s, e in sorted(p.highlights)]


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


def _answer_metrics(
    engine: rag.Engine,
    case: Case,
    groups: list[set[str]],
    final: rag.Answer,
    passages: list[rag.Passage],
    error: bool = False,
) -> dict:
    """The strict verdict on the shown answer, and how faithful the shown answer and the raw generation are to the
    sentences the model was shown (support judged by the heuristic in evals.metrics.supports). A case that errored
    is wrong, and not a refusal."""
    verdict = (
        scoring.Verdict(False, False, [False] * len(case.facts))
        if error
        else scoring.score(case, final.answer, final.refused)
    )
    answered = not verdict.refused and not error
    out = _verdict_record(case, final, verdict, error)
    shown = {p.n: _shown(p) for p in passages}
    context = [t for n in sorted(shown) for t in shown[n]]
    claims = [(t, m) for t, m in final.sentences() if metrics.is_claim(t)] if answered else []
    raw_claims = (
        [t for t, _ in rag.Answer("", "", final.raw, False).sentences() if metrics.is_claim(t)]
        if final.raw.strip()
        else []
    )
    texts = [scoring.clean(final.answer), case.reference, *(c for c, _ in claims), *raw_claims, *context]
    vectors = engine.embedder.embed_documents(texts) if context or answered else []
    if answered and case.answerable:
        out["similarity"] = round(metrics.cosine(vectors[0], vectors[1]), 4)
    if not context:
        return out
    claim_vecs = vectors[2 : 2 + len(claims)]
    raw_vecs = vectors[2 + len(claims) : 2 + len(claims) + len(raw_claims)]
    by_sentence = dict(zip(context, vectors[2 + len(claims) + len(raw_claims) :], strict=True))

    def supported(claim: str, vec: list[float], sentences: list[str]) -> bool:
        if not sentences:
            return False
        best = max(metrics.cosine(vec, by_sentence[t]) for t in sentences)
        return metrics.supports(claim, " ".join(sentences), best)

    if raw_claims:
        flags = [supported(c, v, context) for c, v in zip(raw_claims, raw_vecs, strict=True)]
        out["raw_claims"] = [{"text": c, "supported": f} for c, f in zip(raw_claims, flags, strict=True)]
        out["faithfulness_raw"] = sum(flags) / len(flags)
    if not claims:
        return out
    out.update(_alce(claims, claim_vecs, shown, context, supported))
    if case.answerable:
        out["evidence_recall"] = metrics.evidence_recall(
            {c.chunk_id for c in final.citations}, groups, case.evidence_mode
        )
    return out


def _verdict_record(case: Case, final: rag.Answer, verdict: scoring.Verdict, error: bool) -> dict[str, Any]:
    """The strict verdict's fields, and empty places for the support scores."""
    return {
        "refused": verdict.refused,
        "refused_flag": final.refused,
        "passed": verdict.passed,
        "reasons": ["error"] if error else verdict.reasons,
        "facts": [{"variants": list(f), "found": ok} for f, ok in zip(case.facts, verdict.facts, strict=True)],
        "must_not_stated": verdict.must_not,
        "key_facts": verdict.passed if case.answerable else None,
        "fact_recall": (sum(verdict.facts) / len(verdict.facts) if verdict.facts else 0.0) if case.answerable else None,
        "similarity": 0.0 if case.answerable else None,
        "claims": [],
        "raw_claims": [],
        "faithfulness": None,
        "faithfulness_raw": None,
        "citation_recall": None,
        "citation_precision": None,
        "evidence_recall": None,
    }


def _alce(
    claims: list[tuple[str, list[int]]],
    claim_vecs: list,
    shown: dict[int, list[str]],
    context: list[str],
    supported: Callable[[str, Any, list[str]], bool],
) -> dict[str, Any]:
    """ALCE citation recall and precision, and faithfulness, of the answer's claims against the passages shown."""
    out: dict[str, Any] = {"claims": []}
    recall_flags, precision_flags = [], []
    for (claim, cited), vec in zip(claims, claim_vecs, strict=True):
        cited = [n for n in cited if n in shown]
        together = [t for n in cited for t in shown[n]]
        entailed = supported(claim, vec, together)  # ALCE citation recall: the cited passages together support it
        precise = [
            supported(claim, vec, shown[n])
            or (entailed and not supported(claim, vec, [t for m in cited if m != n for t in shown[m]]))
            for n in cited
        ]  # ALCE citation precision: a citation counts if it supports alone, or the rest no longer does without it
        recall_flags.append(entailed)
        precision_flags.extend(precise)
        out["claims"].append(
            {
                "text": claim,
                "cited": cited,
                "entailed_by_citations": entailed,
                "precise": precise,
                "supported": supported(claim, vec, context),
            }
        )
    out["faithfulness"] = sum(c["supported"] for c in out["claims"]) / len(out["claims"])
    out["citation_recall"] = sum(recall_flags) / len(recall_flags)
    out["citation_precision"] = sum(precision_flags) / len(precision_flags) if precision_flags else 0.0
    return out


def _warm_up(engine: rag.Engine) -> None:
    """Load the embedder, the index and the model before the clock runs, so the first case's latency is not a load
    time."""
    engine.warm_up()
    engine.search("warm-up", k=1)


def _same_source(chunk_source: str, evidence_source: str) -> bool:
    """A chunk's source (the path it was indexed under) names the evidence document when its trailing parts match."""
    want = Path(evidence_source).parts
    return Path(chunk_source).parts[-len(want) :] == want


def _straddling(engine: rag.Engine, ev: Any, mine: list[rag.Hit], cache: dict[str, str | None]) -> set[str]:
    if ev.source not in cache:
        try:
            cache[ev.source] = engine.docs.document_text(mine[0].source)
        except rag.RagError:
            cache[ev.source] = None
    text = cache[ev.source]
    at = text.find(ev.quote) if text else -1
    if at < 0:
        return set()
    end = at + len(ev.quote)
    return {h.chunk_id for h in mine if h.start < end and h.end > at}
