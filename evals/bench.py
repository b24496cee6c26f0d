"""`make bench` / `python -m evals.bench`: every stage timed against its limit and against a plain LangChain recipe.

Scales: the real corpus and generated corpora of about 1k, 10k (and, with --scales 100k, 100k) chunks, made
deterministically from a seed by recombining the corpus's sentences with varied vocabulary. Results go to
`bench/results/<timestamp>/bench.json` and `bench.md`; the Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from langchain_core.embeddings import Embeddings

from evals.metrics import percentile

ROOT = Path(__file__).resolve().parents[1]
SCALES = {"real": 0, "1k": 1_000, "10k": 10_000, "100k": 100_000}  # generated corpora of about that many chunks
DOCS = Path("/usr/share/doc/python3.11/html")  # Debian's python3.11-doc: real corpora where generated text stood
DOC_SCALES = (
    "docs",
    "docs-full",
)  # the evals' 24-page subset (about 1k chunks) and the whole documentation (about 16k)


def docs_corpus(name: str, out: Path) -> Path:
    """The HTML pages of the Python documentation as a corpus folder: the eval subset, or every page."""
    import shutil

    if not DOCS.is_dir():
        raise RuntimeError("the docs scales need Debian's python3.11-doc (apt-get install python3.11-doc)")
    if name == "docs":
        files = json.loads((ROOT / "evals" / "corpora" / "pydocs.json").read_text(encoding="utf-8"))["files"]
    else:
        files = sorted(
            p.relative_to(DOCS).as_posix()
            for p in DOCS.rglob("*.html")
            if not p.relative_to(DOCS).parts[0].startswith("_")
        )
    for f in files:
        (out / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DOCS / f, out / f)
    return out


def generate_corpus(target_chunks: int, out: Path, seed: int = 7) -> Path:
    """A corpus of about `target_chunks` chunks: corpus sentences recombined, with names and numbers varied."""
    sentences = []
    for path in sorted((ROOT / "corpus").glob("*.md")):
        text = path.read_text(encoding="utf-8").split("\n---\n", 1)[-1]  # the article without its front matter
        sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.strip()) > 40]
    rng = random.Random(seed)
    vocab = [w for s in sentences for w in re.findall(r"[A-Za-z]{5,}", s)]
    out.mkdir(parents=True, exist_ok=True)
    per_doc = 20
    for d in range(max(1, target_chunks // per_doc)):
        paras = []
        for _ in range(per_doc):
            picked = rng.sample(sentences, 6)
            para = " ".join(_vary(s, rng, vocab) for s in picked)
            paras.append(para)
        (out / f"gen-{d:05d}.md").write_text(f"# Generated report {d}\n\n" + "\n\n".join(paras) + "\n")
    return out


def _vary(sentence: str, rng: random.Random, vocab: list[str]) -> str:
    words = sentence.split(" ")
    for _ in range(max(1, len(words) // 8)):
        i = rng.randrange(len(words))
        if re.fullmatch(r"[a-z]{5,}", words[i]):
            words[i] = rng.choice(vocab).lower()
        elif re.fullmatch(r"\d+", words[i]):
            words[i] = str(rng.randint(2, 2000))
    return " ".join(words)


def pct(values: list[float], q: float) -> float:
    value = percentile(values, q)
    return float("nan") if value is None else value


def _child_json(code: str, env: dict | None = None) -> dict:
    """Run `code` in a fresh Python process and return the JSON it prints last, with its peak RSS in MiB."""
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=7200,
    )
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-2000:])
    out = json.loads(run.stdout.strip().splitlines()[-1])
    return out


_INGEST = """
import json, resource, sys, time
import rag
s = rag.Settings(corpus_dir=sys.argv[1] if len(sys.argv) > 1 else {corpus!r}, index_dir={index!r})
e = rag.Engine(s)
# Load and warm both paths first (small sets run on the ONNX copy, large ones on PyTorch): raw is measured warm too.
e.embedder.embed_query("warm up"); e.embedder.embed_documents(["warm up"] * (e.embedder.ONNX_MAX_TEXTS + 1))
t = time.perf_counter(); r = e.ingest(); first = time.perf_counter() - t
t = time.perf_counter(); again = e.ingest(); second = time.perf_counter() - t
texts = [h.text for h in e.docs.chunks()]
t = time.perf_counter(); e.embedder.embed_documents(texts); raw = time.perf_counter() - t
print(json.dumps({{"chunks": r.chunks_total, "ingest_s": first, "raw_embed_s": raw, "reingest_s": second,
  "reingest_embedded": again.texts_embedded, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""

_SERVE = """
import json, resource, time
import rag
e = rag.Engine(rag.Settings(corpus_dir={corpus!r}, index_dir={index!r}, llm_backend={backend!r}))
e.warm_up()
qs = {queries!r}
embed, search = [], []
for q in qs:
    t = time.perf_counter(); e.embedder.embed_query(q); embed.append((time.perf_counter() - t) * 1000)
r = e.retriever(k=4)
for q in qs:
    t = time.perf_counter(); r.invoke(q); search.append((time.perf_counter() - t) * 1000)
e.ask(qs[0])
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"embed_ms": embed, "search_ms": search, "rss_mib": rss}}))
"""


def bench_scale(name: str, work: Path, queries: list[str], backend: str) -> dict:
    if name in DOC_SCALES:
        corpus = docs_corpus(name, work / f"corpus-{name}")
    else:
        corpus = ROOT / "corpus" if SCALES[name] == 0 else generate_corpus(SCALES[name], work / f"corpus-{name}")
    index = work / f"index-{name}"
    ing = _child_json(_INGEST.format(corpus=str(corpus), index=str(index)))
    srv = _child_json(_SERVE.format(corpus=str(corpus), index=str(index), backend=backend, queries=queries))
    return {
        "scale": name,
        "chunks": ing["chunks"],
        "ingest_chunks_per_s": ing["chunks"] / ing["ingest_s"],
        "raw_embed_chunks_per_s": ing["chunks"] / ing["raw_embed_s"],
        "ingest_vs_raw": ing["raw_embed_s"] / ing["ingest_s"],
        "reingest_s": ing["reingest_s"],
        "reingest_embedded": ing["reingest_embedded"],
        "query_embed_p50_ms": pct(srv["embed_ms"], 50),
        "search_p50_ms": pct(srv["search_ms"], 50),
        "search_p95_ms": pct(srv["search_ms"], 95),
        "ingest_rss_mib": ing["rss_mib"],
        "serve_rss_mib": srv["rss_mib"],
    }


class RandomVectors(Embeddings):
    """Unit vectors drawn from each text's hash, in place of the embedding model: measures the store and search at a
    scale whose embedding would take this machine an hour. The index is written by the real ingestion path."""

    dimension = 384

    def __init__(self, seed: int = 7) -> None:
        self.seed = seed

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        import hashlib

        import numpy as np

        out = []
        for t in texts:
            rng = np.random.default_rng([self.seed, int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")])
            v = rng.normal(size=self.dimension)
            out.append((v / np.linalg.norm(v)).tolist())
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def synthetic_index(n: int, work: Path, seed: int = 7) -> tuple[Path, Path, int]:
    """An index of about `n` real chunks with random unit vectors (see RandomVectors)."""
    import rag

    corpus = generate_corpus(n, work / f"corpus-syn{n}", seed)
    settings = rag.Settings(corpus_dir=corpus, index_dir=work / f"index-syn{n}")
    report = rag.Engine(settings, embedder=RandomVectors(seed)).ingest()
    if not report.ok:
        raise RuntimeError(f"synthetic ingestion failed: {report.failed}")
    return corpus, settings.index_dir, report.chunks_total


def bench_synthetic(n: int, work: Path, queries: list[str]) -> dict:
    corpus, index_dir, chunks = synthetic_index(n, work)
    srv = _child_json(_SERVE.format(corpus=str(corpus), index=str(index_dir), backend="local", queries=queries))
    return {
        "scale": f"{n // 1000}k (random vectors)",
        "chunks": chunks,
        "query_embed_p50_ms": pct(srv["embed_ms"], 50),
        "search_p50_ms": pct(srv["search_ms"], 50),
        "search_p95_ms": pct(srv["search_ms"], 95),
        "serve_rss_mib": srv["rss_mib"],
    }


def bench_answers(questions: list, backend: str, work: Path) -> dict:
    """Time to first token and total time over suite questions, ours against the plain LangChain recipe."""
    import rag
    from evals.baseline import Baseline

    # The real corpus in the run's own index (already built when the real scale ran); never the user's index/.
    engine = rag.Engine(rag.Settings(corpus_dir=ROOT / "corpus", index_dir=work / "index-real", llm_backend=backend))
    engine.ingest()
    engine.warm_up()
    ours = {"first_token_ms": [], "total_ms": [], "evidence_ms": [], "correct": 0}
    for case in questions:
        started = time.perf_counter()
        final = None
        for event in engine.ask_stream(case.question, list(case.history)):
            if event.kind == "evidence":
                ours["evidence_ms"].append((time.perf_counter() - started) * 1000)
            elif event.kind == "answer":
                final = event.data
        ours["first_token_ms"].append(final.timings.get("first_token_ms", final.timings["total_ms"]))
        ours["total_ms"].append(final.timings["total_ms"])
        ours["correct"] += _correct(case, final.answer, final.refused)

    base = Baseline(engine.embedder, engine.llm())
    t = time.perf_counter()
    base.ingest([(d["source"], engine.docs.document_text(d["source"])) for d in engine.admin.documents()])
    base_ingest_s = time.perf_counter() - t
    theirs = {"first_token_ms": [], "total_ms": [], "retrieve_ms": [], "correct": 0}
    for case in questions:
        res = base.ask(case.question)
        for k in ("first_token_ms", "total_ms", "retrieve_ms"):
            theirs[k].append(res[k])
        theirs["correct"] += _correct(case, res["answer"], res["refused"])
    return {
        "questions": len(questions),
        "ours": _latency(ours, len(questions)),
        "baseline": {"ingest_s": base_ingest_s, **_latency(theirs, len(questions))},
    }


def bench_serving(questions: list[str], work: Path, mode: str = "auto") -> dict:
    """The embedded model served, answering the `mode` way (RAG_ANSWER_MODE: auto reads the whole corpus when it
    fits): the reading of the whole corpus (time, saved state size, restore time), cold `rag ask` (nothing saved, then
    the saved prompt prefix), `rag ask` through a running server, `rag search` cold, first token and total through the
    API and through the chat, and requests per minute through the API at concurrency 1 and 4 (one model: answers
    take turns)."""
    import shutil

    corpus, index, state = ROOT / "corpus", work / f"index-real-{mode}", work / f"llm-states-{mode}"
    env = {
        **os.environ,
        "RAG_CORPUS_DIR": str(corpus),
        "RAG_INDEX_DIR": str(index),
        "RAG_LLM_THREADS": "2",
        "RAG_ANSWER_MODE": mode,
    }
    run = subprocess.run(
        [sys.executable, "-m", "rag", "ingest"],
        env=env | {"RAG_LLM_STATE_DIR": str(state)},
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    q = questions[0]
    out: dict = {"question": q, "mode": mode}
    reading = _reading(run.stdout, env, state)
    if reading:
        out["reading"] = reading
    shutil.rmtree(state, ignore_errors=True)  # the cold rows start with nothing saved
    out["ask_cold_nothing_saved"] = _cold(env, "ask", "--local", "--json", q, state=state)
    out["ask_cold_saved_prefix"] = _cold(env, "ask", "--local", "--json", q, state=state)
    out["search_cold"] = _cold(env, "search", "--json", q)
    return out | _served(questions, env, state)


def _reading(ingested: str, env: dict, state: Path) -> dict | None:
    """The reading of the whole corpus that `rag ingest` reported (None when it answers from retrieved passages): its
    documents, tokens and time, the size of the saved state, and how long a fresh process takes to restore it."""
    read = re.search(r"read the (\d+) documents whole \(about ([\d,]+) tokens\) in ([\d.]+) s", ingested)
    if not read:
        return None
    saved = sorted(state.glob("prompt-*.bin"), key=lambda p: p.stat().st_mtime)
    restore = _child_json(
        "import json, rag; e = rag.Engine(rag.load_settings()); print(json.dumps(e.read_corpus()))",
        env | {"RAG_LLM_STATE_DIR": str(state)},
    )
    return {
        "documents": int(read.group(1)),
        "tokens": int(read.group(2).replace(",", "")),
        "read_s": float(read.group(3)),
        "state_mib": saved[-1].stat().st_size / 2**20 if saved else None,
        "restore_s": restore["seconds"] if restore.get("how") == "restored" else None,
    }


def _cold(env: dict, *args: str, state: Path | None = None) -> dict:
    """One `rag` command in a fresh process: its wall time and, for `ask --json`, its first token counted from the
    start of the process."""
    extra = {"RAG_LLM_STATE_DIR": str(state)} if state else {}
    t = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "rag", *args],
        env=env | extra,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    wall = (time.perf_counter() - t) * 1000
    out = json.loads(run.stdout) if "--json" in args and "ask" in args else {}
    timings = out.get("timings", {})
    # writing the rest, checking, exiting
    after_first = timings.get("total_ms", 0) - timings.get("first_token_ms", 0)
    return {
        "wall_ms": wall,
        "first_token_from_start_ms": wall - after_first,
        "prompt_tokens": timings.get("prompt_tokens"),
    }


def _served(questions: list[str], env: dict, state: Path) -> dict:
    """Against a running `rag serve`: `rag ask --server`, first token and total through the API and the chat, and
    requests per minute through the API."""
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "rag", "serve", "--port", str(port)],
        env=env | {"RAG_UI_QUEUE_SIZE": "16", "RAG_LLM_STATE_DIR": str(state)},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, server)
        out = {"ask_through_server": _cold(env, "ask", "--server", base, "--json", questions[0])}
        _api_ask(base, questions[0])  # warm: the prefix is held from here on
        api_t = [_api_ask(base, x) for x in questions]
        chat_t = [_chat_ask(base, x) for x in questions]
        for name, times in (("api", api_t), ("chat", chat_t)):
            out[name] = {
                "first_token_p50_ms": pct([a for a, _ in times], 50),
                "first_token_p95_ms": pct([a for a, _ in times], 95),
                "total_p50_ms": pct([b for _, b in times], 50),
            }
        return out | _requests_per_minute(base, questions)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_until_up(base: str, server: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/v1/models", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("rag serve did not come up")
        time.sleep(0.5)


def _api_ask(base: str, question: str) -> tuple[float, float]:
    """One question streamed through the OpenAI-compatible API: (first token, total) in ms."""
    import httpx

    body = {"model": "rag", "messages": [{"role": "user", "content": question}], "stream": True}
    t, first = time.perf_counter(), None
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=600) as r:
        for line in r.iter_lines():
            if first is None and '"content": "' in line and '"content": ""' not in line:
                first = time.perf_counter()
    end = time.perf_counter()
    return ((first or end) - t) * 1000, (end - t) * 1000


def _chat_ask(base: str, question: str) -> tuple[float, float]:
    """One question through the web chat's Gradio endpoint: (first token, total) in ms."""
    from gradio_client import Client

    # a new session: a new chat, not a follow-up of the last question
    client = Client(base + "/", verbose=False)
    t, first = time.perf_counter(), None
    job = client.submit(question, 4, "local", api_name="/respond")
    while not job.done():
        outputs = job.outputs()
        if first is None and outputs and outputs[-1][0]:
            first = time.perf_counter()
        time.sleep(0.02)
    end = time.perf_counter()
    return ((first or end) - t) * 1000, (end - t) * 1000


def _requests_per_minute(base: str, questions: list[str]) -> dict:
    """All the questions through the API at concurrency 1 and 4 (one model: answers take turns)."""
    import concurrent.futures as cf

    out = {}
    for workers in (1, 4):
        t = time.perf_counter()
        with cf.ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda x: _api_ask(base, x), questions))
        out[f"rpm_concurrency_{workers}"] = len(questions) / (time.perf_counter() - t) * 60
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _latency(figures: dict, n: int) -> dict:
    """p50/p95 of each timed stage that was recorded, and the share of correct answers."""
    out = {
        f"{stage}_p50_ms": pct(figures[f"{stage}_ms"], 50)
        for stage in ("evidence", "retrieve")
        if f"{stage}_ms" in figures
    }
    for stage in ("first_token", "total"):
        out[f"{stage}_p50_ms"] = pct(figures[f"{stage}_ms"], 50)
        out[f"{stage}_p95_ms"] = pct(figures[f"{stage}_ms"], 95)
    return {**out, "accuracy": figures["correct"] / n}


def _correct(case, answer: str, refused: bool) -> bool:
    """The eval's strict scorer, the same for both sides."""
    from evals.scoring import score

    return score(case, answer, refused).passed


def markdown(result: dict) -> str:
    lines = [
        f"Benchmark of {result['date']} on {result['machine']} (`{result['command']}`).",
        "",
        "| scale | chunks | ingest chunks/s | raw embed chunks/s | ingest / raw | re-ingest s (embedded) "
        "| query embed p50 ms | search p50 / p95 ms | ingest RSS MiB | serve RSS MiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["scales"]:
        if "ingest_chunks_per_s" not in r:
            lines.append(
                f"| {r['scale']} | {r['chunks']} | – | – | – | – | {r['query_embed_p50_ms']:.1f} | "
                f"{r['search_p50_ms']:.1f} / {r['search_p95_ms']:.1f} | – | {r['serve_rss_mib']:.0f} |"
            )
            continue
        lines.append(
            f"| {r['scale']} | {r['chunks']} | {r['ingest_chunks_per_s']:.0f} | {r['raw_embed_chunks_per_s']:.0f} | "
            f"{r['ingest_vs_raw']:.2f} | {r['reingest_s']:.2f} ({r['reingest_embedded']}) | "
            f"{r['query_embed_p50_ms']:.1f} | {r['search_p50_ms']:.1f} / {r['search_p95_ms']:.1f} | "
            f"{r['ingest_rss_mib']:.0f} | {r['serve_rss_mib']:.0f} |"
        )
    a = result.get("answers")
    if a:
        o, b = a["ours"], a["baseline"]
        lines += [
            "",
            f"Answering, {a['questions']} suite questions, embedded model, against the plain LangChain recipe "
            "(RecursiveCharacterTextSplitter 1000/200, Chroma.from_documents, k=4 similarity, stuff prompt, "
            "same model):",
            "",
            "| | ours | baseline | ours / baseline |",
            "| --- | ---: | ---: | ---: |",
            f"| evidence shown, p50 ms | {o['evidence_p50_ms']:.0f} | – | – |",
            f"| first token p50 / p95 ms | {o['first_token_p50_ms']:.0f} / {o['first_token_p95_ms']:.0f} "
            f"| {b['first_token_p50_ms']:.0f} / {b['first_token_p95_ms']:.0f} "
            f"| {o['first_token_p50_ms'] / b['first_token_p50_ms']:.2f} |",
            f"| total p50 / p95 ms | {o['total_p50_ms']:.0f} / {o['total_p95_ms']:.0f} "
            f"| {b['total_p50_ms']:.0f} / {b['total_p95_ms']:.0f} | {o['total_p50_ms'] / b['total_p50_ms']:.2f} |",
            f"| accuracy (key facts / refusals) | {o['accuracy']:.2f} | {b['accuracy']:.2f} "
            f"| {o['accuracy'] / max(b['accuracy'], 1e-9):.2f} |",
        ]
    for key in ("serving", "serving_retrieved"):
        lines += _serving_rows(result.get(key))
    return "\n".join(lines) + "\n"


def _serving_rows(v: dict | None) -> list[str]:
    lines: list[str] = []
    if v:
        way = "the whole corpus in view" if v.get("reading") else "retrieved passages"
        r = v.get("reading")
        lines += [
            "",
            f"Serving the embedded model, RAG_ANSWER_MODE={v.get('mode', 'auto')}, answering from {way} "
            f"({len(v.get('questions', [])) or 'suite'} questions; "
            "first token from process start = wall time less what follows the first token):",
            "",
        ]
        if r:
            restore = f"{r['restore_s']:.2f} s" if r.get("restore_s") is not None else "–"
            lines += [
                f"Reading the {r['documents']} documents (about {r['tokens']:,} tokens) once: {r['read_s']:.1f} s; "
                f"saved state {r['state_mib']:.0f} MiB; restored by a later process in {restore}.",
                "",
            ]
        lines += [
            "| | first token ms | total ms |",
            "| --- | ---: | ---: |",
            _ask_row("cold `rag ask`, nothing saved", v["ask_cold_nothing_saved"]),
            _ask_row("cold `rag ask`, saved prompt prefix", v["ask_cold_saved_prefix"]),
            _ask_row("`rag ask` through a running server", v["ask_through_server"]),
            f"| cold `rag search` | – | {v['search_cold']['wall_ms']:.0f} |",
            _served_row("API", v["api"]),
            _served_row("chat", v["chat"]),
            "",
            f"API requests per minute: {v['rpm_concurrency_1']:.1f} at concurrency 1, "
            f"{v['rpm_concurrency_4']:.1f} at concurrency 4 (one model, answers take turns).",
        ]
    return lines


def _ask_row(label: str, run: dict) -> str:
    return f"| {label} | {run['first_token_from_start_ms']:.0f} | {run['wall_ms']:.0f} |"


def _served_row(label: str, runs: dict) -> str:
    first = f"{runs['first_token_p50_ms']:.0f} ({runs['first_token_p95_ms']:.0f})"
    return f"| {label} p50 (p95 first token) | {first} | {runs['total_p50_ms']:.0f} |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m evals.bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--scales",
        default="real,docs,docs-full",
        help="comma-separated: real, docs (the Python docs subset, ~1k chunks), docs-full (all of it, ~16k), "
        "or generated 1k, 10k, 100k",
    )
    p.add_argument(
        "--synthetic",
        default="100000",
        help="chunk counts indexed with random vectors for serving memory and search (0 = skip)",
    )
    p.add_argument(
        "--answers", type=int, default=12, metavar="N", help="suite questions for the answering benchmark (0 = skip)"
    )
    p.add_argument("--backend", default="local", help="answering backend (default: the embedded model)")
    p.add_argument(
        "--serving",
        type=int,
        default=8,
        metavar="N",
        help="questions for the serving benchmark: cold and served rag ask, API, chat (0 = skip)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = p.parse_args(argv)
    from evals.suite import DEFAULT_SUITE, load

    cases = load(DEFAULT_SUITE)
    queries = [c.question for c in cases][:40]
    started = datetime.now(UTC)
    out = args.out / started.strftime("%Y%m%dT%H%M%SZ")
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    result = {
        "date": started.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cores, {memory_gib:.0f} GiB, no GPU",
        "command": "make bench"
        if argv is None and args.scales == "real,docs,docs-full" and args.synthetic == "100000"
        else "python -m evals.bench " + " ".join(argv or sys.argv[1:]),
        "scales": [],
    }
    with tempfile.TemporaryDirectory(prefix="rag-bench-") as tmp:
        for name in filter(None, args.scales.split(",")):
            print(f"scale {name}…", file=sys.stderr, flush=True)
            result["scales"].append(bench_scale(name.strip(), Path(tmp), queries, args.backend))
            save(result, out)
        for n in (int(x) for x in args.synthetic.split(",") if int(x)):
            print(f"synthetic {n}…", file=sys.stderr, flush=True)
            result["scales"].append(bench_synthetic(n, Path(tmp), queries))
            save(result, out)
        if args.answers:
            print("answering…", file=sys.stderr, flush=True)
            picked = [c for c in cases if not c.history]
            picked = picked[:: max(1, len(picked) // args.answers)][: args.answers]  # spread over every category
            result["answers"] = bench_answers(picked, args.backend, Path(tmp))
            save(result, out)
        if args.serving:
            print("serving…", file=sys.stderr, flush=True)
            picked = [c.question for c in cases if not c.history]
            picked = picked[1 :: max(1, len(picked) // args.serving)][: args.serving]
            result["serving"] = bench_serving(picked, Path(tmp)) | {"questions": picked}
            save(result, out)
            result["serving_retrieved"] = bench_serving(picked, Path(tmp), "retrieved") | {"questions": picked}
    print(save(result, out))
    print(f"written to {out}", file=sys.stderr)
    return 0


def save(result: dict, out: Path) -> str:
    """Write what has been measured so far, so a failure late in a long run keeps the earlier figures."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / "bench.md").write_text(table)
    return table


if __name__ == "__main__":
    raise SystemExit(main())
