"""Eval corpora other than the working corpus: a JSON spec names a folder and files (e.g. the Python documentation that
Debian's python3.11-doc installs); they are indexed once into the cache and reused while they do not change."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import rag


class CorpusError(ValueError):
    """A corpus spec that cannot be used as it is; the message says what to do."""


def prepare(spec_path: Path, settings: rag.Settings, progress: bool = False) -> rag.Settings:
    """Settings whose corpus is the spec's files and whose index holds exactly them (built on first use)."""
    try:
        spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
        root, files = Path(spec["root"]), list(spec["files"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorpusError(f"cannot read corpus spec {spec_path}: {exc}") from None
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        how = (
            f"install Debian's {spec['package']} (apt-get install {spec['package']})"
            if spec.get("package")
            else "restore them"
        )
        raise CorpusError(
            f"{len(missing)} file(s) of {spec_path} are missing under {root} (first: {missing[0]}); {how}"
        )
    key = json.dumps(
        [str(root), sorted(files), settings.embed_model, settings.chunk_size, settings.chunk_overlap], sort_keys=True
    )
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rag" / "evals"
    index_dir = cache / f"{Path(spec_path).stem}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    prepared = settings.model_copy(
        update={"corpus_dir": root, "index_dir": index_dir, "chroma_url": None, "record_db_url": None}
    )
    report = rag.Engine(prepared).ingest([root / f for f in files], progress=progress)
    if not report.ok:
        raise CorpusError(f"indexing {spec_path} failed for: {', '.join(sorted(report.failed))}")
    return prepared
