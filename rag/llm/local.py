"""LangChain chat model over llama.cpp running in-process (xllamacpp), the model loaded once per process."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel, generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage, ChatMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import Field

from rag._offline import cache_dir
from rag.config import Settings
from rag.errors import ModelError, ModelTimeoutError
from rag.llm.model_file import ensure_model
from rag.llm.state import KeepsState

log = logging.getLogger(__name__)

_ROLES = {"system": "system", "human": "user", "ai": "assistant"}
_CACHE_RAM_MIB = 512  # host-RAM copies of earlier prompts' KV state (llama.cpp's default is 8 GiB)
_DONE = object()
_READ_TIMEOUT_S = 3600.0  # reading a prompt prefix once (`prime`): the whole corpus at 14-31 ms a token
_DEFAULTS = Settings.model_fields  # one place for the defaults the settings and a bare LocalChatModel share
_FLASH_ATTN = {None: -1, True: 1, False: 0}  # llama.cpp's flash_attn_type: auto (on, on a CPU), on, off


def _default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _Engine:
    """One loaded model behind llama.cpp's server, reached by direct calls; its HTTP side listens on a private unix
    socket only."""

    def __init__(
        self,
        model_path: Path,
        n_ctx: int,
        n_threads: int,
        states: Path,
        speculative: str = "none",
        cache_reuse: int = 0,
        flash_attn: bool | None = None,
    ) -> None:
        import xllamacpp as xlc

        self.name = model_path.name
        self.states = states
        self.states.mkdir(parents=True, exist_ok=True)
        _remove_partials(self.states)  # what a killed process left
        self.primed: set[str] = set()
        self.priming = threading.Lock()
        self._sock_dir = tempfile.TemporaryDirectory(prefix="rag-llm-")
        self.socket = str(Path(self._sock_dir.name) / "llm.sock")
        params = xlc.CommonParams()
        params.model.path = str(model_path)
        params.n_ctx = n_ctx
        params.n_parallel = 1  # one slot: the whole context per request, and its KV cache kept between requests
        params.cache_prompt = True
        params.cache_ram_mib = _CACHE_RAM_MIB
        params.cpuparams.n_threads = n_threads
        params.cpuparams_batch.n_threads = n_threads
        params.verbosity = 1  # llama.cpp writes to stderr itself: errors only
        params.hostnames = [self.socket]  # the server always listens; never on TCP
        params.endpoint_slots = True  # saving and restoring the slot's state (see LocalChatModel.prime)
        params.slot_save_path = f"{self.states}/"
        params.n_cache_reuse = cache_reuse  # reuse cached runs of at least this many tokens found later in a prompt
        params.flash_attn_type = _FLASH_ATTN[flash_attn]
        if speculative == "ngram":  # drafts from n-grams of the prompt: answers copy the documents' words
            params.speculative.types = [xlc.common_speculative_type.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE]
        started = time.monotonic()
        try:
            self.server = xlc.Server(params)
        except Exception as exc:
            self._sock_dir.cleanup()
            raise ModelError(
                f"could not load {model_path}: {exc}; check the file with `python -m rag.llm.model_file`"
            ) from exc
        log.info(
            "loaded %s (n_ctx=%d, n_threads=%d) in %.1f s",
            model_path.name,
            n_ctx,
            n_threads,
            time.monotonic() - started,
        )

    def slot(self, action: str, filename: str) -> dict[str, Any]:
        """Save or restore the one slot's state to/from `filename` in `states` (llama.cpp's /slots endpoint)."""
        import httpx

        with httpx.Client(transport=httpx.HTTPTransport(uds=self.socket), base_url="http://llm", timeout=60) as http:
            r = http.post(f"/slots/0?action={action}", json={"filename": filename})
        if r.status_code != 200:
            raise ModelError(f"llama.cpp could not {action} its state {filename}: {r.text[:200]}")
        return r.json()


def _identity(model_path: Path, n_ctx: int, flash_attn: bool | None = None) -> str:
    """What a saved state depends on: the model file, the context size and the runtime's own state format (flash
    attention keeps the attention values in another layout)."""
    fa = "" if flash_attn is None else f":fa-{'on' if flash_attn else 'off'}"
    return f"{model_path.name}:{model_path.stat().st_size}:{n_ctx}:xllamacpp-{metadata.version('xllamacpp')}{fa}"


_ENGINES: dict[tuple, _Engine] = {}  # by `_engine_key`
_ENGINES_LOCK = threading.Lock()


def _engine_key(model_path: Path, n_ctx: int, n_threads: int, states: Path, *runtime: Any) -> tuple:
    return (str(model_path.resolve()), n_ctx, n_threads, str(states.resolve()), *runtime)


def _engine(model_path: Path, n_ctx: int, n_threads: int, states: Path, *runtime: Any) -> _Engine:
    """The process's one engine for these parts (`runtime`: _Engine's speculative, cache_reuse and flash_attn)."""
    key = _engine_key(model_path, n_ctx, n_threads, states, *runtime)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = _Engine(model_path, n_ctx, n_threads, states, *runtime)
        return engine


def _to_openai(message: BaseMessage) -> dict[str, str]:
    role = message.role if isinstance(message, ChatMessage) else _ROLES.get(message.type)
    if role is None:
        raise ValueError(f"LocalChatModel cannot send a {message.type!r} message")
    return {"role": role, "content": message.text}


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return {
        "input_tokens": usage.get("prompt_tokens", 0),
        "output_tokens": usage.get("completion_tokens", 0),
        "total_tokens": usage.get("total_tokens", 0),
        "input_token_details": {"cache_read": cached},
    }


class LocalChatModel(BaseChatModel, KeepsState):
    """Qwen2.5-Coder-1.5B-Instruct (GGUF) on the CPU; greedy by default; prompt prefixes stay cached between calls."""

    model_path: str | None = None
    """GGUF file; None assembles/uses the packaged model (`rag.llm.model_file.ensure_model`)."""
    n_ctx: int = _DEFAULTS["llm_n_ctx"].default
    n_threads: int = Field(default_factory=_default_threads)
    temperature: float = _DEFAULTS["llm_temperature"].default
    max_tokens: int = _DEFAULTS["llm_max_tokens"].default
    seed: int | None = None
    state_dir: str | None = None
    """Where saved prompt states go (`prime`); None = `llm-states` in the user cache."""
    states_max: int = _DEFAULTS["llm_states_max"].default
    """Saved states kept in `state_dir`; the least recently used are removed past it."""
    speculative: str = _DEFAULTS["llm_speculative"].default
    """"ngram": speculative decoding with drafts looked up in the prompt; "none": plain decoding."""
    cache_reuse: int = _DEFAULTS["llm_cache_reuse"].default
    """Reuse cached runs of at least this many tokens that an earlier prompt had elsewhere (llama.cpp's KV shifting);
    0: only the common prefix."""
    flash_attn: bool | None = None
    """llama.cpp's flash attention: None = its own choice (on, on a CPU). Off, a question read against a long cached
    prefix (the whole corpus) reads faster and the prefix itself slower (docs/performance.md)."""
    timeout: float | None = _DEFAULTS["llm_timeout_s"].default
    """Seconds one request may take in all; then ModelTimeoutError, and llama.cpp stops at its next token."""

    @property
    def _llm_type(self) -> str:
        return "xllamacpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "n_ctx": self.n_ctx,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }

    def load(self) -> LocalChatModel:
        """Load the model now instead of on the first request."""
        self._engine()
        return self

    def _engine(self) -> _Engine:
        path, states = self._paths()
        return _engine(path, self.n_ctx, self.n_threads, states, *self._runtime())

    def _runtime(self) -> tuple[str, int, bool | None]:
        return self.speculative, self.cache_reuse, self.flash_attn

    def _paths(self) -> tuple[Path, Path]:
        path = Path(self.model_path) if self.model_path else ensure_model()
        if not path.is_file():
            raise ModelError(
                f"model file {path} not found; set model_path to a GGUF file, "
                "or leave it unset to use the packaged model"
            )
        return path, Path(self.state_dir) if self.state_dir else cache_dir() / "llm-states"

    def _key(self, messages: list[BaseMessage]) -> tuple[str, dict[str, Any]]:
        request = self._request(messages, None, max_tokens=1)
        path, _ = self._paths()
        return hashlib.sha256(
            json.dumps([_identity(path, self.n_ctx, self.flash_attn), request["messages"]]).encode()
        ).hexdigest()[:20], request

    def has_state(self, messages: list[BaseMessage]) -> bool:
        """Whether reading `messages` is held by this process or saved by an earlier one (then `prime` is quick);
        answered without loading the model."""
        key, _ = self._key(messages)
        path, states = self._paths()
        engine = _ENGINES.get(_engine_key(path, self.n_ctx, self.n_threads, states, *self._runtime()))
        return (engine is not None and key in engine.primed) or (states / f"prompt-{key}.bin").is_file()

    def prime(self, messages: list[BaseMessage], progress: Callable[[int, int], None] | None = None) -> str:
        """Make the runtime hold the state of reading `messages`, so later prompts that start the same way skip reading
        that part: restored from the file an earlier process saved (milliseconds), or read once and saved for the next
        process. Once per process; returns how: "primed" (already), "restored" or "read". `progress(done, total)` hears
        how many prompt tokens have been read while reading."""
        engine = self._engine()
        key, request = self._key(messages)
        name = f"prompt-{key}.bin"
        with engine.priming:
            if key in engine.primed:
                return "primed"
            how = "read"
            if (engine.states / name).is_file():
                try:
                    engine.slot("restore", name)
                    os.utime(engine.states / name)  # recently used: kept the longest
                    how = "restored"
                except ModelError as exc:
                    log.warning("%s; reading the prompt instead", exc)
                    (engine.states / name).unlink(missing_ok=True)
            if progress is not None:
                request["return_progress"] = True
            # Restored: reads only the last token or so. Read: a long prefix (the whole corpus) may take minutes.
            for event in _events(engine.server, request, max(self.timeout or 0, _READ_TIMEOUT_S)):
                step = event.get("prompt_progress")
                if progress is not None and step:
                    progress(int(step.get("processed", 0)), int(step.get("total", 0)))
            if how == "read":
                partial = f".{name}.{os.getpid()}"
                engine.slot("save", partial)
                os.replace(engine.states / partial, engine.states / name)  # whole or absent for another process
                _prune(engine.states, self.states_max)
            engine.primed.add(key)
            return how

    def _request(self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any) -> dict[str, Any]:
        request: dict[str, Any] = {
            "messages": [_to_openai(m) for m in messages],
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "temperature": kwargs.pop("temperature", self.temperature),
            "cache_prompt": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        seed = kwargs.pop("seed", self.seed)
        if seed is not None:
            request["seed"] = seed
        if stop:
            request["stop"] = stop
        request.update({k: v for k, v in kwargs.items() if k not in ("stream", "stream_options")})
        return request

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        engine = self._engine()
        request = self._request(messages, stop, **kwargs)
        finish: dict[str, Any] = {"model_name": engine.name}
        usage = None
        for event in _events(engine.server, request, self.timeout):
            if "error" in event:
                error = event["error"]
                raise ModelError(
                    "local LLM refused the request: "
                    f"{error.get('message', error) if isinstance(error, dict) else error}"
                )
            usage = event.get("usage") or usage
            if event.get("timings"):
                finish["timings"] = event["timings"]
                finish["prompt_read_ms"] = event["timings"].get(
                    "prompt_ms"
                )  # how long reading the uncached prompt took
            for choice in event.get("choices") or []:
                if choice.get("finish_reason"):
                    finish["finish_reason"] = choice["finish_reason"]
                text = (choice.get("delta") or {}).get("content")
                if text:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                    if run_manager:
                        run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk
        if "finish_reason" not in finish:
            raise ModelError("local LLM stream ended without a finish reason; see llama.cpp's messages on stderr")
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                response_metadata=finish,
                usage_metadata=_usage(usage) if usage else None,
                chunk_position="last",
            ),
            generation_info={"finish_reason": finish["finish_reason"]},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))


def _prune(states: Path, keep: int) -> None:
    """Keep the `keep` most recently used saved states."""
    saved = sorted(states.glob("prompt-*.bin"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in saved[keep:]:
        old.unlink(missing_ok=True)
        log.info("removed the least recently used saved prompt state %s", old.name)


def _remove_partials(states: Path) -> None:
    """Remove the partial state files of processes that are gone (killed while saving)."""
    for partial in states.glob(".prompt-*.bin.*"):
        pid = partial.suffix.lstrip(".")
        if pid.isdigit() and not _alive(int(pid)):
            partial.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _events(server: Any, request: dict[str, Any], timeout: float | None) -> Iterator[dict[str, Any]]:
    """Run one streaming request on a worker thread and yield its parsed SSE events as they arrive."""
    events: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    def on_event(event: dict[str, Any]) -> bool:
        events.put(event)
        return stop.is_set()  # True tells llama.cpp to stop generating and cancel the task

    def run() -> None:
        try:
            server.handle_chat_completions(request, on_event)
        except Exception as exc:  # handed to the consumer
            events.put(exc)
        finally:
            events.put(_DONE)

    threading.Thread(target=run, name="rag-llm-request", daemon=True).start()
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            wait = None if deadline is None else deadline - time.monotonic()
            try:
                if wait is not None and wait <= 0:
                    raise queue.Empty
                item = events.get(timeout=wait)
            except queue.Empty:
                raise ModelTimeoutError(
                    f"local LLM did not finish within {timeout:g} s; raise the timeout or lower max_tokens"
                ) from None
            if item is _DONE:
                return
            if isinstance(item, Exception):
                raise ModelError(f"local LLM request failed: {item}") from item
            yield item
    finally:
        stop.set()
