"""An ONNX Runtime copy of a sentence-transformers model, for queries and the small sets of sentences an answer checks.

PyTorch spends most of a 15-token query's ~13 ms on per-operator overhead; ONNX Runtime runs the same weights in
about 4 ms. The copy is exported once from the loaded model into the cache (about 2 s), with its tokenizer and the
vector it gave for a probe sentence after it was checked against PyTorch. Later processes open the cached copy and
check it against that vector, so a serving process never imports PyTorch (about 500 MB less memory). A model whose
pipeline is not plain transformer + mean pooling (+ normalise), or whose copy disagrees, keeps PyTorch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rag._offline import cache_dir

log = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROBE = "A short probe sentence, with punctuation and numbers like 42, checks that two encoders agree."
_AGREEMENT = 0.9999  # least cosine between the copy's probe vector and PyTorch's


class OnnxEncoder:
    """Texts -> mean-pooled (optionally normalised) vectors; batches sorted by length to keep padding small."""

    def __init__(self, session: Any, tokenizer: Any, normalize: bool, batch_size: int = 32) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.normalize = normalize
        self.batch_size = batch_size
        self.inputs = [i.name for i in session.get_inputs()]

    def encode(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            picked = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in picked)
            arrays = {name: np.zeros((len(picked), width), np.int64) for name in _INPUTS}
            for row, i in enumerate(picked):
                e = encodings[i]
                arrays["input_ids"][row, : len(e.ids)] = e.ids
                arrays["attention_mask"][row, : len(e.ids)] = e.attention_mask
                arrays["token_type_ids"][row, : len(e.ids)] = e.type_ids
            hidden = self.session.run(None, {k: arrays[k] for k in self.inputs})[0]
            mask = arrays["attention_mask"][..., None].astype(np.float32)
            vectors = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1.0)
            if self.normalize:
                vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            for row, i in enumerate(picked):
                out[i] = vectors[row]
        return np.stack(out)


def open_cached(model_dir: Path) -> OnnxEncoder | None:
    """The cached, checked copy of the model in `model_dir`, without PyTorch; None if there is none (or it fails)."""
    onnx_path = _cached_path(model_dir)
    meta_path = onnx_path.with_suffix(".json")
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        encoder = _open(
            onnx_path, onnx_path.with_suffix(".tokenizer.json").read_text(), meta["max_length"], meta["normalize"]
        )
        agreement = _cosine(encoder.encode([_PROBE])[0], np.asarray(meta["probe"], dtype=np.float32))
        problem = f"cosine {agreement:.6f} to the vector it gave when checked"
    except Exception as exc:
        agreement, problem = 0.0, str(exc).splitlines()[0][:200]
    if agreement < _AGREEMENT:  # a damaged cache entry: drop it, so it is made again from PyTorch
        log.warning("the cached ONNX copy of the embedding model is unusable (%s); re-exporting it", problem)
        for suffix in (".json", ".onnx", ".tokenizer.json"):
            onnx_path.with_suffix(suffix).unlink(missing_ok=True)
        return None
    return encoder


def is_cached(model_dir: Path) -> bool:
    """Whether a checked copy of the model in `model_dir` is cached (`open_cached` would not need PyTorch)."""
    return _cached_path(model_dir).with_suffix(".json").is_file()


def import_runtime() -> None:
    """Import what `open_cached` imports, so another thread can open a copy while this one imports other modules
    (two threads importing the same extension module at once crashed)."""
    import onnxruntime  # noqa: F401
    import tokenizers  # noqa: F401


def build(model: Any, model_dir: Path) -> OnnxEncoder | None:
    """Export the loaded SentenceTransformer (once), check the copy against it and cache it; None when it cannot
    stand in for PyTorch."""
    normalize = _plain_mean_pooling(model)
    if normalize is None:
        log.info("embeddings stay on PyTorch: the model's pipeline is not transformer + mean pooling")
        return None
    try:
        onnx_path = _exported(model, model_dir)
        tokenizer_json = model.tokenizer.backend_tokenizer.to_str()  # a fast (Rust) tokenizer is needed without PyTorch
        max_length = model.get_max_seq_length() or 512
        encoder = _open(onnx_path, tokenizer_json, max_length, normalize)
        reference = model.encode([_PROBE], normalize_embeddings=normalize, convert_to_numpy=True)[0]
        probe = encoder.encode([_PROBE])[0]
        agreement = _cosine(probe, reference)
    except Exception as exc:  # any failure to export or run only costs speed
        log.warning(
            "embeddings stay on PyTorch: the ONNX copy could not be made or run (%s)", str(exc).splitlines()[0][:200]
        )
        return None
    if agreement < _AGREEMENT:
        log.warning("embeddings stay on PyTorch: the ONNX copy disagrees (cosine %.6f)", agreement)
        return None
    _write(onnx_path.with_suffix(".tokenizer.json"), tokenizer_json)
    _write(  # last: its presence marks a checked copy
        onnx_path.with_suffix(".json"),
        json.dumps({"max_length": max_length, "normalize": normalize, "probe": probe.tolist()}),
    )
    return encoder


def _open(onnx_path: Path, tokenizer_json: str, max_length: int, normalize: bool) -> OnnxEncoder:
    import onnxruntime as ort  # its telemetry is off: ORT_DISABLE_TELEMETRY in rag._offline
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer_json)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    options = ort.SessionOptions()
    options.intra_op_num_threads = min(os.cpu_count() or 1, 4)
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    return OnnxEncoder(session, tokenizer, normalize)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def _plain_mean_pooling(model: Any) -> bool | None:
    """Whether the pipeline ends in Normalize, if it is exactly Transformer, mean Pooling[, Normalize]; else None."""
    kinds = [type(m).__name__ for m in model]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        return None
    if getattr(model[1], "pooling_mode", None) != "mean":
        return None
    return kinds[2:] == ["Normalize"]


def _cached_path(model_dir: Path) -> Path:
    """Where the copy of this model's weights lives (keyed by their files' names, sizes and times, PyTorch's version and
    the probe)."""
    stamp = "|".join(
        f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(model_dir.rglob("*")) if p.is_file()
    )
    key = hashlib.sha256(f"{model_dir.resolve()}|{stamp}|{metadata.version('torch')}|{_PROBE}".encode()).hexdigest()[
        :16
    ]
    return cache_dir() / "onnx" / f"{model_dir.name}-{key}.onnx"


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic: a concurrent process sees no file or a whole one
    finally:
        tmp.unlink(missing_ok=True)


def _exported(model: Any, model_dir: Path) -> Path:
    """The cached ONNX file for the model, exported if absent."""
    import torch

    path = _cached_path(model_dir)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    transformer = model[0].auto_model.eval()

    class Hidden(torch.nn.Module):  # keyword-only call: transformers 5 reordered forward()'s positional parameters
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = model.tokenizer(["an example query"], return_tensors="pt")
    sample.setdefault("token_type_ids", torch.zeros_like(sample["input_ids"]))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape-dependent Python code; the probe check catches harm
        torch.onnx.export(
            Hidden(),
            tuple(sample[k] for k in _INPUTS),
            str(tmp),
            dynamo=False,
            input_names=list(_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")},
            opset_version=17,
        )
    os.replace(tmp, path)
    log.info("exported the embedding model to %s", path)
    return path
