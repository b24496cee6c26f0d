#!/usr/bin/env python
"""Prompt-reuse and depth benchmark for the retrieved way (embedded backend): the figures in docs/performance.md.

One process per configuration (the runtime's cache options are fixed when the model loads): a `rag.Engine` on the
index of this checkout, the embedded model, `answer_mode=retrieved`, and the first N questions of the gold suite's dev
split without their conversations, asked in file order in one process (related questions sit near each other, as in a
real session). The answers stop at 16 tokens: what is measured is the time to the first token and how many prompt
tokens the runtime had to read (the rest it found in its cache). Run it on a quiet machine, one configuration at a time:
    .venv/bin/python docs/cache_bench.py --order relevance
    .venv/bin/python docs/cache_bench.py --order document --cache-reuse 32
    .venv/bin/python docs/cache_bench.py --depth thorough
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--order", choices=("relevance", "document"), default="relevance")
    ap.add_argument("--cache-reuse", type=int, default=0, help="llama.cpp's n_cache_reuse (0: off)")
    ap.add_argument("--depth", choices=("short", "normal", "thorough"), default="normal")
    ap.add_argument("-n", type=int, default=30, help="questions asked")
    args = ap.parse_args()

    import rag
    from evals import suite

    settings = rag.load_settings(
        answer_mode="retrieved",
        passage_order=args.order,
        llm_cache_reuse=args.cache_reuse,
        depth=args.depth,
        llm_max_tokens=16,
        deep_max_tokens=16,
        llm_threads=2,
    )
    engine = rag.Engine(settings)
    cases = [c for c in suite.select(suite.load(suite.DEFAULT_SUITE), split="dev") if not c.history][: args.n]
    engine.ask(cases[0].question)  # warm: the model loaded, the fixed prefix restored; not counted
    rows = []
    for case in cases[1:]:
        a = engine.ask(case.question)
        t = a.timings
        rows.append(
            {
                "first_token_s": t.get("first_token_ms", 0) / 1000,
                "read": t.get("prompt_tokens", 0),
                "cached": t.get("cached_tokens", 0),
            }
        )
    firsts = sorted(r["first_token_s"] for r in rows)
    read = [r["read"] for r in rows]
    print(
        json.dumps(
            {
                "order": args.order,
                "cache_reuse": args.cache_reuse,
                "depth": args.depth,
                "questions": len(rows),
                "first_token_p50_s": round(statistics.median(firsts), 2),
                "first_token_p95_s": round(firsts[int(0.95 * (len(firsts) - 1))], 2),
                "prompt_tokens_read_p50": statistics.median(read),
                "prompt_tokens_read_total": sum(read),
                "cached_total": sum(r["cached"] for r in rows),
                "cpu": _cpu(),
            }
        )
    )


if __name__ == "__main__":
    main()
