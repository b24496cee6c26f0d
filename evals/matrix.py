"""Ablations: named configurations (settings changed from the base run) evaluated on the same cases, one engine each."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rag
from evals import run as run_mod
from evals.suite import Case

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Config:
    name: str
    description: str
    settings: dict[str, Any] = field(default_factory=dict)


CONFIGS = (
    Config("hybrid", "BM25 and dense candidates fused by reciprocal rank (the default)", {"retrieve_mode": "hybrid"}),
    Config("dense", "dense vectors only", {"retrieve_mode": "dense"}),
    Config("bm25", "BM25 only", {"retrieve_mode": "lexical"}),
    Config(
        "hybrid-mmr",
        "hybrid, re-ranked by maximal marginal relevance",
        {"retrieve_mode": "hybrid", "retrieve_mmr": True},
    ),
    Config(
        "no-condense", "follow-ups not rewritten by the model: the question plus the previous one", {"condense": False}
    ),
    Config(
        "chunk-100",
        "chunks of 100 tokens, 20 shared (a separate index of the same corpus)",
        {"chunk_size": 100, "chunk_overlap": 20},
    ),
    Config(
        "chunk-400",
        "chunks of 400 tokens, 80 shared (a separate index of the same corpus)",
        {"chunk_size": 400, "chunk_overlap": 80},
    ),
)
BY_NAME = {c.name: c for c in CONFIGS}
_INDEX_SHAPE = ("chunk_size", "chunk_overlap", "tokenizer", "embed_model", "embed_backend")


def pick(names: str | None) -> list[Config]:
    """The configurations named in a comma-separated list (`all` or None: every one)."""
    if not names or names == "all":
        return list(CONFIGS)
    chosen = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in BY_NAME:
            raise ValueError(f"unknown configuration {name!r}; valid: {', '.join(BY_NAME)}")
        chosen.append(BY_NAME[name])
    return chosen


def run_matrix(
    base: rag.Engine,
    cases: list[Case],
    configs: list[Config],
    progress: bool = False,
    on_done: Callable[[Config, list[dict]], None] | None = None,
) -> list[tuple[Config, list[dict]]]:
    """Every configuration over the same cases; configurations that change the chunking get a temporary index."""
    results = []
    with tempfile.TemporaryDirectory(prefix="rag-eval-matrix-") as tmp:
        for config in configs:
            engine = _engine_for(base, config, Path(tmp))
            log.debug("matrix: %s", config.name)
            records = run_mod.run(engine, cases, progress=progress, label=config.name)
            results.append((config, records))
            if on_done is not None:
                on_done(config, records)
    return results


def _engine_for(base: rag.Engine, config: Config, tmp: Path) -> rag.Engine:
    settings = base.settings.model_copy(update=config.settings)
    if any(getattr(settings, k) != getattr(base.settings, k) for k in _INDEX_SHAPE):
        # Another chunking needs its own index: built from the same corpus into a temp dir, embedded, never the
        # shared one.
        index_dir = tmp / f"index-{config.name}"
        settings = settings.model_copy(update={"index_dir": index_dir, "chroma_url": None, "record_db_url": None})
        engine = rag.Engine(settings, embedder=base.embedder)
        report = engine.ingest()
        if not report.ok:
            raise rag.RagError(f"matrix {config.name}: building the index failed: {report.summary()}")
        return engine
    return rag.Engine(settings, embedder=base.embedder)
