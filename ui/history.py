"""Saved conversations in the chat: the sidebar (resume, rename, delete, export) and the saving of each answer.

Every handler takes the owner from the request's login (Gradio's session, never a value the page sends), so a user
can reach only their own conversations, whatever id the page (or a crafted request) names. The page keeps the id of
the conversation it shows in the browser's storage, so a reload resumes it.
"""

import logging
import re
import shutil
import threading
from collections.abc import Callable, Iterator

import gradio as gr

import rag
from ui import exports
from ui.chat import cited, respond
from ui.feedback import remember
from ui.lanes import Lanes
from ui.render import checked_answer, sources_html

log = logging.getLogger(__name__)

EMPTY_SOURCES = sources_html([], "Sources")
UNSAVED = rag.ConversationsUnavailableError.told_user  # the library's words for it, said however saving failed


def said(exc: rag.RagError) -> str:
    """What the page says for a failure of the saved conversations: the error's own words when they are the user's
    (not found, no title), else the neutral `UNSAVED` (the database's address and driver text go to the log)."""
    if exc.for_user:
        return str(exc)
    log.warning("saved conversations unavailable: %s", exc)
    return UNSAVED


def owner(request: gr.Request | None) -> str:
    """Whose conversations: the logged-in user; "" when the chat has no login (one local user)."""
    return (getattr(request, "username", None) or "") if request is not None else ""


def choices(engine: rag.Engine, who: str) -> list[tuple[str, str]]:
    return [
        (f"{s.title} · {s.turns} {'question' if s.turns == 1 else 'questions'}", s.id)
        for s in engine.conversations.list(who)
    ]


def messages(conversation: rag.Conversation, session: str | None = None) -> list[dict]:
    """The conversation as the chat shows it: each question, then its checked answer (removed sentences struck);
    with the `session` it is shown to, a vote there on a resumed answer logs its question and citations too."""
    out: list[dict] = []
    for turn in conversation.turns:
        shown = checked_answer(turn.answer, turn.refused, turn.checked)
        if session is not None:
            remember(turn, shown, session, conversation.owner)
        out.append({"role": "user", "content": turn.question})
        out.append({"role": "assistant", "content": shown})
    return out


def last_sources(conversation: rag.Conversation) -> str:
    """The sources panel for the conversation's last answer."""
    if not conversation.turns:
        return EMPTY_SOURCES
    last = conversation.turns[-1]
    if last.refused:
        return EMPTY_SOURCES
    heading = f"Sources · {last.support}" if last.support else "Sources"
    return sources_html([cited(c) for c in last.citations], heading)


class History:
    """The saved-conversations part of the page. Its components are made unrendered, so the chat can name them as
    outputs before `render_sidebar` lays them out; `session` (server-side) is the conversation the chat adds to, and
    `kept` its copy in the browser's storage, read back on a reload."""

    def __init__(self, engine: rag.Engine, lanes: Lanes | None = None) -> None:
        self.engine, self.lanes = engine, lanes
        hidden = {"render": False}
        self.session = gr.State(None)
        self.kept = gr.BrowserState(None, storage_key="rag-conversation")
        self.picker = gr.Radio([], value=None, label="Saved conversations", elem_id="conversations", **hidden)
        self.title = gr.Textbox(
            label="Title of this conversation", max_length=200, elem_id="conversation-title", **hidden
        )
        self.rename = gr.Button("Rename", size="sm", elem_id="rename-conversation", **hidden)
        self.delete = gr.Button("Delete", size="sm", variant="stop", elem_id="delete-conversation", **hidden)
        self.as_md = gr.DownloadButton("Export Markdown", size="sm", interactive=False, elem_id="export-md", **hidden)
        self.as_json = gr.DownloadButton("Export JSON", size="sm", interactive=False, elem_id="export-json", **hidden)
        self.status = gr.Markdown("", elem_id="conversation-status", **hidden)

    @property
    def shown_outputs(self) -> list:
        """What follows the shown conversation (after the chat's own outputs)."""
        return [self.session, self.kept, self.picker, self.title, self.as_md, self.as_json]

    @property
    def answer_outputs(self) -> list:
        """What follows the chat's answer: `shown_outputs`, then the status line (says when saving failed)."""
        return [*self.shown_outputs, self.status]

    # -- what the handlers return ----------------------------------------------------------------------------------
    def _following(self, conversation: rag.Conversation | None, who: str) -> tuple:
        """Values for `shown_outputs`."""
        if conversation is None:
            off = gr.update(value=None, interactive=False)
            return None, None, gr.update(choices=choices(self.engine, who), value=None), "", off, off
        md, js = export_files(conversation)
        on = {"interactive": True}
        listed = gr.update(choices=choices(self.engine, who), value=conversation.id)
        return (
            conversation.id,
            conversation.id,
            listed,
            conversation.title,
            gr.update(value=md, **on),
            gr.update(value=js, **on),
        )

    def _page(
        self, conversation: rag.Conversation | None, who: str, message: str = "", session: str | None = None
    ) -> tuple:
        """Values for the chat, its history, the sources panel, `shown_outputs` and the status line; when the saved
        conversations do not answer, an empty chat (the list left as it was) and the status line says so."""
        chat = messages(conversation, session) if conversation else []
        panel = last_sources(conversation) if conversation else EMPTY_SOURCES
        try:
            following = self._following(conversation, who)
        except rag.RagError as exc:
            if exc.for_user:
                raise
            off = gr.update(value=None, interactive=False)
            chat, panel, following, message = [], EMPTY_SOURCES, (None, None, gr.skip(), "", off, off), said(exc)
        return (chat, chat, panel, *following, message)

    # -- the chat's function ---------------------------------------------------------------------------------------
    def answering(self) -> Callable[..., Iterator[tuple]]:
        """`respond`, saving each checked answer into the session's conversation (a new one on the first question);
        yields (chat text, sources HTML, *`answer_outputs`); an answer that could not be saved says so (a warning and
        the status line), and is still shown. A plain function with its `gr.Request` annotated (not a
        partial): Gradio finds the request to pass by the annotation."""
        engine, lanes = self.engine, self.lanes

        def answer_and_save(
            message: str,
            history: list[dict],
            k: int | None,
            backend: str | None,
            sources: list[str] | None,
            depth: str | None,
            session: str | None,
            request: gr.Request,
        ) -> Iterator[tuple]:
            who = owner(request)
            state: dict = {"id": session or None, "saved": False}

            def save(answer: rag.Answer, shown: str) -> None:
                remember(answer, shown, request.session_hash, who)  # this session may vote on it
                try:
                    if state["id"]:
                        try:
                            engine.conversations.add(who, state["id"], answer)
                            state["saved"] = True
                            return
                        except rag.RagError:  # deleted in another tab, or not this user's: start afresh
                            state["id"] = None
                    state["id"] = engine.conversations.start(who, answer.question)
                    engine.conversations.add(who, state["id"], answer)
                    state["saved"] = True
                except rag.RagError as exc:
                    log.warning("conversation not saved: %s", exc)
                    state["unsaved"] = UNSAVED
                except Exception:  # the answer is still shown; only its saving failed
                    log.exception("conversation not saved")
                    state["unsaved"] = UNSAVED

            unchanged = tuple(gr.skip() for _ in self.shown_outputs)
            for text, shown in respond(
                message, history, k, backend, sources, depth, engine=engine, lanes=lanes, on_answer=save
            ):
                if state["saved"]:
                    try:
                        following = self._following(engine.conversations.get(who, state["id"]), who)
                    except rag.RagError as exc:  # saved, but the list cannot be read back just now
                        log.warning("saved conversation not shown: %s", exc)
                        following = unchanged
                    yield text, shown, *following, ""
                elif note := state.pop("unsaved", None):
                    gr.Warning(note)
                    yield text, shown, *unchanged, note
                else:
                    yield text, shown, *unchanged, gr.skip()

        return answer_and_save

    # -- the sidebar -----------------------------------------------------------------------------------------------
    def render_sidebar(
        self, chatbot: gr.Chatbot, chat_state: gr.State, sources: gr.HTML, new_chat: gr.Button, page: gr.Blocks
    ) -> None:
        """Lay out the list and its actions inside the current Blocks, and wire them, "New chat" and the page's load."""
        engine = self.engine
        for part in (self.picker, self.title):
            part.render()
        with gr.Row():
            self.rename.render()
            self.delete.render()
        with gr.Row():
            self.as_md.render()
            self.as_json.render()
        self.status.render()
        outs = [chatbot, chat_state, sources, *self.shown_outputs, self.status]

        def open_conversation(cid: str | None, request: gr.Request) -> tuple:
            """On the page's load (the id the browser kept) and on choosing one in the list."""
            who = owner(request)
            if not cid:
                return self._page(None, who)
            try:
                return self._page(engine.conversations.get(who, cid), who, session=request.session_hash)
            except rag.RagError as exc:
                return self._page(None, who, said(exc))

        def new(request: gr.Request) -> tuple:
            return self._page(None, owner(request))

        def rename(cid: str | None, new_title: str, request: gr.Request) -> tuple:
            who = owner(request)
            if not cid:
                return (
                    *(gr.skip() for _ in self.shown_outputs),
                    "Ask a question first: there is no conversation to rename.",
                )
            try:
                engine.conversations.rename(who, cid, new_title)
                return (*self._following(engine.conversations.get(who, cid), who), "Renamed.")
            except rag.RagError as exc:
                return (*(gr.skip() for _ in self.shown_outputs), said(exc))

        def delete(cid: str | None, request: gr.Request) -> tuple:
            who = owner(request)
            if not cid:
                return self._page(None, who, "There is no conversation to delete.")
            try:
                engine.conversations.delete(who, cid)
            except rag.RagError as exc:
                return self._page(None, who, said(exc))
            return self._page(None, who, "Deleted.")

        private = {"api_visibility": "private", "show_progress": "hidden"}  # quick: no spinner over the page
        self.picker.input(open_conversation, inputs=[self.picker], outputs=outs, **private)
        page.load(open_conversation, inputs=[self.kept], outputs=outs, **private)
        new_chat.click(new, outputs=outs, **private)
        for trigger in (self.rename.click, self.title.submit):
            trigger(rename, inputs=[self.session, self.title], outputs=[*self.shown_outputs, self.status], **private)
        self.delete.click(delete, inputs=[self.session], outputs=outs, **private)


_EXPORTS_LOCK = threading.Lock()


def export_files(conversation: rag.Conversation) -> tuple[str, str]:
    """The conversation written as Markdown and JSON files (for the download buttons), in this process's export
    folder: one sub-folder per conversation, replaced each time, so it holds one pair of files per conversation shown
    (Gradio serves its own copy of each)."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", conversation.title).strip("-")[:60].lower() or "conversation"
    with _EXPORTS_LOCK:
        folder = exports.folder() / conversation.id
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        md, js = folder / f"{stem}.md", folder / f"{stem}.json"
        md.write_text(conversation.to_markdown(), encoding="utf-8")
        js.write_text(conversation.to_json(), encoding="utf-8")
    return str(md), str(js)
