"""Saved conversations: each question's checked answer (citations, timings, evidence label) kept per owner.

SQLite by default, any SQLAlchemy URL in the settings (`conversations_db_url`). Every read and write names its owner
(the logged-in user; "" without a login): another owner's conversation is "not found", never shown, changed or
deleted. Exports: Markdown (answers with numbered sources and quotes) and JSON (every stored field).
"""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from rag.answer import Answer
from rag.cite import Citation
from rag.errors import ConversationsUnavailableError, InputError

TITLE_MAX = 120
F = TypeVar("F", bound=Callable[..., Any])


class ConversationNotFound(InputError):
    """No such conversation for this owner (it may be another owner's: the two are not told apart)."""


@dataclass
class Summary:
    """A conversation as the list shows it."""

    id: str
    title: str
    created_at: float
    updated_at: float
    turns: int


@dataclass
class Conversation:
    id: str
    owner: str
    title: str
    created_at: float
    updated_at: float
    turns: list[Answer] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "owner"}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    def to_markdown(self) -> str:
        """The conversation for reading: each question, its checked answer, then its numbered sources with quotes."""
        lines = [
            f"# {_one_line(self.title)}",
            "",
            f"_Saved {_when(self.created_at)}; last answer {_when(self.updated_at)}._",
        ]
        for turn in self.turns:
            lines += ["", f"## {_one_line(turn.question)}", "", turn.answer.strip() or "_(no answer)_"]
            if turn.support and not turn.refused:
                lines += ["", f"_Evidence: {turn.support}._"]
            if turn.unsupported:
                lines += ["", "Removed (not supported by the documents):"] + [
                    f"- ~~{_one_line(s)}~~" for s in turn.unsupported
                ]
            if turn.citations and not turn.refused:
                lines += ["", "Sources:", ""]
                for c in turn.citations:
                    where = f"{c.source}, characters {c.start}-{c.end}"
                    lines.append(f"{c.n}. {_one_line(c.title or c.source)} ({where}): “{_one_line(c.quote)}”")
        return "\n".join(lines) + "\n"


def _reaching(method: F) -> F:
    """Turn "the database does not answer" into ConversationsUnavailableError, naming it (for the log)."""

    @functools.wraps(method)
    def call(self: Conversations, *args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import InterfaceError, OperationalError

        try:
            return method(self, *args, **kwargs)
        except (OperationalError, InterfaceError) as exc:
            from sqlalchemy.engine import make_url

            reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
            where = make_url(self.url).render_as_string(hide_password=True)
            raise ConversationsUnavailableError(
                f"the conversations database {where} does not answer ({reason}); "
                "start it or check RAG_CONVERSATIONS_DB_URL"
            ) from None

    return call  # type: ignore[return-value]


class Conversations:
    """The conversation store over one SQLAlchemy URL; safe to share between threads. A database that does not
    answer raises ConversationsUnavailableError."""

    @_reaching
    def __init__(self, url: str) -> None:
        from sqlalchemy import Column, Float, ForeignKey, Integer, MetaData, String, Table, Text, create_engine, event

        self.url = url
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url)
        if url.startswith("sqlite"):

            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record) -> None:  # write-ahead log: readers never block the one writer; FKs enforced
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=5000")
                cur.close()

        meta = MetaData()
        self.conversations = Table(
            "conversations",
            meta,
            Column("id", String(32), primary_key=True),
            Column("owner", String(200), nullable=False, index=True),
            Column("title", String(TITLE_MAX), nullable=False),
            Column("created_at", Float, nullable=False),
            Column("updated_at", Float, nullable=False),
        )
        self.turns = Table(
            "conversation_turns",
            meta,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column(
                "conversation_id",
                String(32),
                ForeignKey("conversations.id", ondelete="CASCADE"),
                nullable=False,
                index=True,
            ),
            Column("position", Integer, nullable=False),
            Column("question", Text, nullable=False),
            Column("record", Text, nullable=False),
            Column("created_at", Float, nullable=False),
        )
        self._lock = threading.Lock()  # turn positions are read then written
        meta.create_all(self.engine)

    # -- writing -------------------------------------------------------------------------------------------------------
    @_reaching
    def start(self, owner: str, title: str) -> str:
        """A new, empty conversation of `owner`; its id."""
        now = time.time()
        cid = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                self.conversations.insert().values(
                    id=cid, owner=owner, title=_title(title), created_at=now, updated_at=now
                )
            )
        return cid

    @_reaching
    def add(self, owner: str, conversation_id: str, answer: Answer) -> None:
        """Append one answered question to `owner`'s conversation."""
        from sqlalchemy import func, select

        now = time.time()
        with self._lock, self.engine.begin() as conn:
            self._owned(conn, owner, conversation_id)
            position = conn.execute(
                select(func.count()).where(self.turns.c.conversation_id == conversation_id)
            ).scalar_one()
            record = json.dumps(answer.to_dict(), ensure_ascii=False)
            conn.execute(
                self.turns.insert().values(
                    conversation_id=conversation_id,
                    position=position,
                    question=answer.question,
                    record=record,
                    created_at=now,
                )
            )
            conn.execute(
                self.conversations.update().where(self.conversations.c.id == conversation_id).values(updated_at=now)
            )

    @_reaching
    def rename(self, owner: str, conversation_id: str, title: str) -> None:
        with self.engine.begin() as conn:
            self._owned(conn, owner, conversation_id)
            conn.execute(
                self.conversations.update()
                .where(self.conversations.c.id == conversation_id)
                .values(title=_title(title))
            )

    @_reaching
    def delete(self, owner: str, conversation_id: str) -> None:
        with self.engine.begin() as conn:
            self._owned(conn, owner, conversation_id)
            conn.execute(self.turns.delete().where(self.turns.c.conversation_id == conversation_id))
            conn.execute(self.conversations.delete().where(self.conversations.c.id == conversation_id))

    # -- reading -------------------------------------------------------------------------------------------------------
    @_reaching
    def list(self, owner: str) -> list[Summary]:
        """`owner`'s conversations, the most recently answered first."""
        from sqlalchemy import func, select

        count = select(func.count()).where(self.turns.c.conversation_id == self.conversations.c.id).scalar_subquery()
        c = self.conversations.c
        query = (
            select(c.id, c.title, c.created_at, c.updated_at, count)
            .where(c.owner == owner)
            .order_by(c.updated_at.desc())
        )
        with self.engine.connect() as conn:
            return [Summary(*row) for row in conn.execute(query)]

    @_reaching
    def get(self, owner: str, conversation_id: str) -> Conversation:
        from sqlalchemy import select

        with self.engine.connect() as conn:
            row = self._owned(conn, owner, conversation_id)
            records = conn.execute(
                select(self.turns.c.record)
                .where(self.turns.c.conversation_id == conversation_id)
                .order_by(self.turns.c.position)
            )
            turns = [answer_from_dict(json.loads(r[0])) for r in records]
        return Conversation(row.id, row.owner, row.title, row.created_at, row.updated_at, turns)

    def _owned(self, conn, owner: str, conversation_id: str):
        from sqlalchemy import select

        c = self.conversations.c
        row = conn.execute(
            select(self.conversations).where(c.id == str(conversation_id or ""), c.owner == owner)
        ).first()
        if row is None:
            raise ConversationNotFound("no such conversation (it was deleted, or it is not yours); start a new chat")
        return row

    def close(self) -> None:
        self.engine.dispose()


def answer_from_dict(data: dict[str, Any]) -> Answer:
    """An Answer back from `Answer.to_dict()` (fields a later version added or dropped are tolerated)."""
    known = {f.name for f in fields(Answer)}
    cited = {f.name for f in fields(Citation)}
    values = {k: v for k, v in data.items() if k in known}
    values["citations"] = [Citation(**{k: v for k, v in c.items() if k in cited}) for c in data.get("citations", [])]
    values["checked"] = [(str(t), bool(ok)) for t, ok in data.get("checked", [])]
    return Answer(**values)


def _title(title: str) -> str:
    title = _one_line(title or "")
    if not title:
        raise InputError("a conversation needs a title: type one")
    return title if len(title) <= TITLE_MAX else title[: TITLE_MAX - 1].rstrip() + "…"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stamp))
