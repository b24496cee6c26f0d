"""One typed settings object: defaults, then an optional TOML file, then `RAG_*` environment variables."""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from rag.errors import ConfigError

log = logging.getLogger(__name__)

CONFIG_FILE_ENV = "RAG_CONFIG"
DEFAULT_CONFIG_FILE = "rag.toml"

# The names the registries are keyed by (rag.retrieve.MODES, rag.llm.BACKENDS, rag.embed.EMBEDDERS): each registry
# checks at import that it holds exactly these, so a name is valid here exactly when a registry can build it.
RetrieveMode = Literal["hybrid", "dense", "lexical"]
LLMBackend = Literal["local", "openai", "extractive"]
EmbedBackend = Literal["sentence-transformers"]
Depth = Literal["short", "normal", "thorough"]
# How much of the retrieved text a question shows the model (retrieved way only): the passages' token budgets times
# the factor, the margin below the best sentence widened by the step (a thorough answer takes less close sentences).
DEPTHS: dict[str, tuple[float, float]] = {"short": (0.5, 0.0), "normal": (1.0, 0.0), "thorough": (2.0, 0.2)}


class Settings(BaseSettings):
    """Everything that shapes the index and the answers; `rag config` prints the resolved values."""

    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", validate_default=True)

    corpus_dir: Path = Path("corpus")
    index_dir: Path = Path("index")
    chroma_url: str | None = Field(None, description="http://host:port of a Chroma server; unset = embedded")
    record_db_url: str | None = Field(
        None, description="SQLAlchemy URL of the record store; unset = SQLite in index_dir"
    )
    collection_prefix: str = "rag"

    embed_backend: EmbedBackend = "sentence-transformers"
    embed_model: str = Field("all-MiniLM-L6-v2", description="a name the backend knows, or a local model directory")
    embed_batch_size: int = Field(64, ge=1, le=4096)
    embed_device: str = "cpu"
    embed_query_backend: Literal["onnx", "torch"] = Field(
        "onnx",
        description=(
            "onnx: queries and small sets of texts (see SentenceTransformerEmbedder.ONNX_MAX_TEXTS) on an ONNX Runtime "
            "copy of the model (exported once, no PyTorch in serving); torch: PyTorch for all"
        ),
    )

    chunk_size: int = Field(200, ge=16, le=8192, description="tokens (tiktoken cl100k_base) per chunk at most")
    chunk_overlap: int = Field(40, ge=0, description="tokens shared by neighbouring chunks")
    tokenizer: str = "cl100k_base"

    retrieve_mode: RetrieveMode = "hybrid"
    retrieve_k: int = Field(4, ge=1, le=20, description="passages given to the model")
    retrieve_candidates: int = Field(20, ge=1, le=200, description="candidates from each retriever before fusion")
    rrf_k: int = Field(60, ge=1, description="reciprocal rank fusion constant")
    retrieve_mmr: bool = False

    context_tokens: int = Field(250, ge=50, le=6000, description="token budget of the passages shown to the model")
    context_margin: float = Field(
        0.25, ge=0.0, le=2.0, description="skip sentences scoring this far below the best one"
    )
    deep_retrieve_k: int = Field(
        6, ge=1, le=20, description="passages for a question asking why/how, for each source or in parts"
    )
    deep_context_tokens: int = Field(500, ge=50, le=6000, description="token budget for such a question")
    deep_context_margin: float = Field(
        0.4, ge=0.0, le=2.0, description="its margin: reasons match the question less closely"
    )
    depth: Depth = Field(
        "normal",
        description="retrieved way: short, normal or thorough context (half, once or twice the passage budgets)",
    )
    deep_max_tokens: int = Field(320, ge=16, le=4096, description="answer length limit for such a question")
    condense: bool = Field(True, description="rewrite follow-ups into standalone questions with the model")
    answer_mode: Literal["auto", "retrieved", "whole"] = Field(
        "retrieved",
        description=(
            "retrieved: passages retrieved for each question (default: the whole-corpus way passed fewer gold test "
            "cases, 0.37 vs 0.48, on 2026-12-02); auto: the whole corpus in the model's view when it fits its context "
            "(local model), else retrieved passages; whole: the whole corpus whenever it fits, on any model backend"
        ),
    )

    llm_backend: LLMBackend = "local"
    llm_model_path: str | None = Field(
        None, description="a GGUF file; unset = the packaged Qwen2.5-Coder-1.5B-Instruct"
    )
    llm_n_ctx: int = Field(
        8192, ge=512, description="the model's context in tokens: how large a corpus can be read whole"
    )
    llm_threads: int | None = Field(None, ge=1)
    llm_max_tokens: int = Field(200, ge=16, le=4096)
    llm_temperature: float = Field(0.0, ge=0.0, le=2.0)
    llm_timeout_s: float = Field(120.0, gt=0)
    llm_state_dir: Path | None = Field(
        None, description="where the embedded runtime keeps saved prompt states; unset = the user cache"
    )
    llm_states_max: int = Field(
        8, ge=1, le=1000, description="saved prompt states kept on disk; the least recently used go first"
    )
    llm_speculative: Literal["none", "ngram"] = Field(
        "none",
        description=(
            "embedded model: ngram = speculative decoding with drafts looked up in the prompt (answers copy its words)"
        ),
    )
    llm_cache_reuse: int = Field(
        0,
        ge=0,
        le=4096,
        description=(
            "embedded model: reuse cached runs of at least this many tokens that an earlier prompt had elsewhere "
            "(llama.cpp's cache reuse); 0 = only a common prefix"
        ),
    )
    llm_flash_attn: Literal["auto", "on", "off"] = Field(
        "auto",
        description=(
            "embedded model: llama.cpp's flash attention; auto = off where the whole corpus may be in view (a question "
            "then reads about a quarter faster against it), llama.cpp's choice (on) for the retrieved way"
        ),
    )
    passage_order: Literal["relevance", "document"] = Field(
        "relevance",
        description="retrieved way: passages in the order of how well they match, or by document and position",
    )
    openai_base_url: str | None = None
    openai_model: str = "default"
    openai_api_key: SecretStr | None = None

    max_question_chars: int = Field(2000, ge=10, le=100_000)
    max_history_turns: int = Field(
        20, ge=0, le=1000, description="earlier turns a question may come with; more is refused"
    )
    max_history_chars: int = Field(
        20_000, ge=0, description="characters of all earlier turns together; more is refused"
    )

    feedback_file: Path = Path("feedback/feedback.jsonl")
    feedback_max_mb: float = Field(
        50.0, gt=0, description="the feedback log's cap: past it, further votes are refused (and logged)"
    )
    conversations_db_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the saved chat conversations; unset = SQLite at conversations/conversations.sqlite"
        ),
    )
    ui_admin: bool = Field(False, description="turn on the Corpus tab's upload, re-index and remove actions")
    ui_auth: SecretStr | None = Field(
        None,
        description=(
            "user:password, or several comma-separated; the web chat asks for a login, each user sees their own chats"
        ),
    )
    ui_admins: str | None = Field(
        None,
        description=(
            "comma-separated logins of RAG_UI_AUTH that may use the Corpus tab's actions; with a login, nobody else may"
        ),
    )
    judge_api_key: SecretStr | None = Field(
        None, description="key of the OpenAI-compatible endpoint of `rag eval --judge`"
    )
    ui_queue_size: int = Field(16, ge=1, le=1000)
    ui_concurrency: int = Field(
        1, ge=1, le=16, description="answers generated at once (the local model runs one at a time)"
    )
    ui_max_body_kb: int = Field(
        1024, ge=1, le=65536, description="largest request body a chat route reads (uploads: max_file_mb)"
    )
    api_only: bool = Field(
        False, description="serve the HTTP API (/v1) alone: no web chat, its page, queue and file routes"
    )
    trusted_proxies: str | None = Field(
        None,
        description=(
            "comma-separated addresses or networks of reverse proxies whose X-Forwarded-For is believed; unset = none"
        ),
    )
    api_keys: SecretStr | None = Field(
        None, description="comma-separated bearer keys of the HTTP API; unset = the API answers on a loopback bind only"
    )
    server_url: str | None = Field(
        None,
        description="a running `rag serve` that `rag ask` uses; unset = the default address when one answers there",
    )
    server_key: SecretStr | None = Field(None, description="the API key `rag ask` sends to that server")
    api_model: str = Field(
        "rag", min_length=1, max_length=64, description="the model name the HTTP API lists and accepts"
    )
    api_max_body_kb: int = Field(256, ge=1, le=65536, description="largest request body the HTTP API reads")

    max_file_mb: float = Field(50.0, gt=0)
    max_file_chunks: int = Field(
        5000,
        ge=1,
        description="chunks one file may make; a file with more fails before any embedding (other files are indexed)",
    )
    parse_timeout_s: float = Field(60.0, gt=0, description="time limit for parsing one PDF or Word file")
    index_batch_size: int = Field(
        2048, ge=1, description="chunks embedded and written per step (whole documents); larger sorts lengths better"
    )
    lock_timeout_s: float = Field(0.0, ge=0, description="how long a writer waits for the index lock; 0 = fail fast")
    index_refresh_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="how often a serving process checks for changes other processes committed to the index",
    )

    @field_validator("ui_auth")
    @classmethod
    def _user_and_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            pairs = [p.partition(":") for p in value.get_secret_value().split(",")]
            if not all(user.strip() and password for user, _, password in pairs):
                raise ValueError("must be user:password (several: comma-separated)")
            if len({user.strip() for user, _, _ in pairs}) != len(pairs):
                raise ValueError("names a user twice")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str | None) -> str | None:
        for part in filter(None, (p.strip() for p in (value or "").split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(
                    f"{part!r} is not an IP address or network (such as 10.0.0.2 or 10.0.0.0/24)"
                ) from None
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self

    @classmethod
    def choices(cls, name: str) -> tuple[str, ...]:
        """The valid values of a setting that takes one of a few names (`llm_backend`, `retrieve_mode`, ...)."""
        return get_args(cls.model_fields[name].annotation)

    @property
    def login(self) -> dict[str, str] | None:
        """The web chat's logins, user -> password, or None when it has none."""
        if self.ui_auth is None:
            return None
        return {
            user.strip(): password
            for user, _, password in (p.partition(":") for p in self.ui_auth.get_secret_value().split(","))
        }

    @property
    def admins(self) -> tuple[str, ...]:
        """The logins allowed the Corpus tab's actions (`ui_admins`; with a login, nobody else has them)."""
        return tuple(dict.fromkeys(a.strip() for a in (self.ui_admins or "").split(",") if a.strip()))

    @property
    def keys(self) -> tuple[str, ...]:
        """The HTTP API's bearer keys (none: it answers on a loopback bind only)."""
        if self.api_keys is None:
            return ()
        return tuple(k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip())

    @property
    def proxies(self) -> tuple[str, ...]:
        """The reverse proxies whose X-Forwarded-For is believed (none: every request's own peer address counts)."""
        return tuple(p.strip() for p in (self.trusted_proxies or "").split(",") if p.strip())

    @property
    def conversations_url(self) -> str:
        return self.conversations_db_url or f"sqlite:///{Path('conversations/conversations.sqlite').resolve()}"

    @property
    def record_url(self) -> str:
        return self.record_db_url or f"sqlite:///{(self.index_dir / 'records.sqlite').resolve()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = os.environ.get(CONFIG_FILE_ENV) or DEFAULT_CONFIG_FILE
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=path))


class QueryParams(BaseModel):
    """Per-question knobs, bounded so a chat user cannot ask for unbounded work."""

    k: int | None = Field(None, ge=1, le=10)
    backend: LLMBackend | None = None
    mode: RetrieveMode | None = None
    sources: tuple[str, ...] | None = Field(None, max_length=100, description="answer only from these documents")
    depth: Depth | None = None


def at_depth(settings: Settings, depth: Depth | None) -> Settings:
    """`settings` with the passages' budgets of `depth` (None: the settings' own depth)."""
    factor, wider = DEPTHS[depth or settings.depth]
    if factor == 1.0 and not wider:
        return settings
    return settings.model_copy(
        update={
            "context_tokens": max(50, round(settings.context_tokens * factor)),
            "deep_context_tokens": max(50, round(settings.deep_context_tokens * factor)),
            "context_margin": settings.context_margin + wider,
            "deep_context_margin": settings.deep_context_margin + wider,
        }
    )


def load_settings(**overrides: Any) -> Settings:
    """Resolve the settings, or raise ConfigError naming the bad value."""
    path = os.environ.get(CONFIG_FILE_ENV)
    if path and not Path(path).is_file():
        raise ConfigError(f"{CONFIG_FILE_ENV}={path} does not exist; point it at a TOML file or unset it")
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(
            f"invalid setting {where}: {first['msg']} (check RAG_* variables and {DEFAULT_CONFIG_FILE})"
        ) from None
    log.debug("resolved settings: %s", settings.model_dump())
    return settings
