#!/usr/bin/env python
"""Flash attention on and off in the embedded runtime: the figures of docs/performance.md ("Flash attention").

One process per setting (llama.cpp fixes it when the model loads), the packaged model, 2 threads, one slot, prompt
cache on, greedy decoding. Three measurements, each the mean over five questions not in the eval suites:
- `prefix`: reading the articles in corpus/ once (the whole-corpus way's saved reading);
- `question`: then reading only a question against that cached prefix (what every whole-corpus answer pays);
- `passages`: a short cached instruction prefix, then about 270 new tokens of passages (what a retrieved answer pays);
and `answer`: 64 answer tokens generated against the long prefix. Run it alone on a quiet machine:
    .venv/bin/python docs/attention_bench.py --flash-attn on
    .venv/bin/python docs/attention_bench.py --flash-attn off
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "Which countries announced they would leave the convention, and when was that decided?",
    "Why did the Baltic states say they were withdrawing from the treaty on landmines?",
    "How many states have signed the Ottawa Convention according to the articles?",
    "What did human rights groups say about the decision to withdraw from the ban?",
    "Does Finland plan to produce anti-personnel mines itself after leaving?",
]
INSTRUCTIONS = "You answer questions from the passages below only. Cite each passage you use as [n]. "


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flash-attn", choices=("auto", "on", "off"), required=True)
    args = ap.parse_args()

    import xllamacpp as xlc

    from rag.llm.model_file import ensure_model

    text = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "corpus").glob("*.md")))
    params = xlc.CommonParams()
    params.model.path = str(ensure_model())
    params.n_ctx, params.n_parallel, params.cache_prompt, params.verbosity = 8192, 1, True, 1
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
    params.flash_attn_type = {"auto": -1, "on": 1, "off": 0}[args.flash_attn]
    params.hostnames = [str(Path(tempfile.mkdtemp()) / "llm.sock")]
    server = xlc.Server(params)

    def timings(system: str, user: str, max_tokens: int = 1) -> dict:
        out: dict = {}
        request = {
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "cache_prompt": True,
        }
        server.handle_chat_completions(request, lambda event: out.update(event.get("timings") or {}) or False)
        return out

    def per_token(runs: list[dict], ms: str, n: str) -> float:
        return round(sum(r[ms] for r in runs) / sum(r[n] for r in runs), 1)

    whole = "Answer from these documents.\n\n" + text
    prefix = timings(whole, "Hi")
    questions = [timings(whole, q) for q in QUESTIONS]
    answers = [timings(whole, q + " Explain in detail.", 64) for q in QUESTIONS[:3]]
    timings(INSTRUCTIONS * 6, "Hi")
    passages = [
        timings(INSTRUCTIONS * 6, f"Passages:\n{text[i * 1500 : i * 1500 + 1300]}\n\nQuestion: {q}")
        for i, q in enumerate(QUESTIONS)
    ]
    print(
        json.dumps(
            {
                "flash_attn": args.flash_attn,
                "prefix_tokens": prefix["prompt_n"],
                "prefix_s": round(prefix["prompt_ms"] / 1000, 1),
                "question_tokens_mean": sum(r["prompt_n"] for r in questions) / len(questions),
                "question_ms_per_token": per_token(questions, "prompt_ms", "prompt_n"),
                "passage_tokens_mean": sum(r["prompt_n"] for r in passages) / len(passages),
                "passage_ms_per_token": per_token(passages, "prompt_ms", "prompt_n"),
                "answer_ms_per_token": per_token(answers, "predicted_ms", "predicted_n"),
            }
        )
    )


if __name__ == "__main__":
    main()
