"""An ONNX Runtime copy of a sentence-transformers model, for embedding one query at a time.

PyTorch spends most of a 15-token query's ~13 ms on per-operator overhead; ONNX Runtime runs the same weights in
about 4 ms. The copy is exported once from the loaded model into the cache (about 2 s) and checked against it:
a model whose pipeline is not plain transformer + mean pooling (+ normalise), or whose export disagrees, keeps
PyTorch. Documents are always embedded by PyTorch (batches are where it is efficient).
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from rag._offline import cache_dir

log = logging.getLogger(__name__)

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROBE = "How many countries have joined the convention, and when did it enter into force?"


class OnnxQueryEncoder:
    def __init__(self, session: Any, tokenizer: Any, max_length: int, normalize: bool) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.normalize = normalize
        self.inputs = [i.name for i in session.get_inputs()]

    def encode(self, text: str) -> np.ndarray:
        batch = self.tokenizer([text], return_tensors="np", truncation=True, max_length=self.max_length)
        hidden = self.session.run(None, {k: batch[k].astype(np.int64) for k in self.inputs})[0]
        mask = batch["attention_mask"][..., None].astype(np.float32)
        vector = (hidden * mask).sum(1)[0] / max(float(mask.sum()), 1.0)
        return vector / max(float(np.linalg.norm(vector)), 1e-12) if self.normalize else vector


def build(model: Any, model_dir: Path) -> OnnxQueryEncoder | None:
    """The ONNX encoder for a loaded SentenceTransformer, exported on first use; None when it cannot stand in for it."""
    normalize = _plain_mean_pooling(model)
    if normalize is None:
        log.info("query embeddings stay on PyTorch: the model's pipeline is not transformer + mean pooling")
        return None
    try:
        import onnxruntime as ort  # its telemetry is off: ORT_DISABLE_TELEMETRY in rag._offline

        path = _exported(model, model_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = min(os.cpu_count() or 1, 4)
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        encoder = OnnxQueryEncoder(session, model.tokenizer, model.get_max_seq_length() or 512, normalize)
        reference = model.encode([_PROBE], normalize_embeddings=normalize, convert_to_numpy=True)[0]
        got = encoder.encode(_PROBE)
        agreement = float(got @ reference / (np.linalg.norm(got) * np.linalg.norm(reference)))
    except Exception as exc:  # any failure to export or run only costs speed
        log.warning("query embeddings stay on PyTorch: the ONNX copy could not be made or run (%s)", str(exc).splitlines()[0][:200])
        return None
    if agreement < 0.9999:
        log.warning("query embeddings stay on PyTorch: the ONNX copy disagrees (cosine %.6f)", agreement)
        return None
    return encoder


def _plain_mean_pooling(model: Any) -> bool | None:
    """Whether the pipeline ends in Normalize, if it is exactly Transformer, mean Pooling[, Normalize]; else None."""
    kinds = [type(m).__name__ for m in model]
    if kinds[:2] != ["Transformer", "Pooling"] or kinds[2:] not in ([], ["Normalize"]):
        return None
    if getattr(model[1], "pooling_mode", None) != "mean":
        return None
    return kinds[2:] == ["Normalize"]


def _exported(model: Any, model_dir: Path) -> Path:
    """The cached ONNX file for this model's weights (keyed by their files' names, sizes and times), exporting if absent."""
    import torch

    stamp = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(model_dir.rglob("*")) if p.is_file())
    key = hashlib.sha256(f"{model_dir.resolve()}|{stamp}|{torch.__version__}".encode()).hexdigest()[:16]
    path = cache_dir() / "onnx" / f"{model_dir.name}-{key}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    transformer = model[0].auto_model.eval()

    class Hidden(torch.nn.Module):  # keyword-only call: transformers 5 reordered forward()'s positional parameters
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    sample = model.tokenizer(["an example query"], return_tensors="pt")
    sample.setdefault("token_type_ids", torch.zeros_like(sample["input_ids"]))
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape-dependent Python code; the probe check below catches harm
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
    os.replace(tmp, path)  # atomic: a concurrent process sees no file or a whole one
    log.info("exported the query encoder to %s", path)
    return path
