"""The page: a chat with its sources panel and settings, and the Corpus tab (`build_app`)."""

from __future__ import annotations

import gradio as gr

import rag
from ui.corpus import OPEN_ADMIN, corpus_tab, listed
from ui.feedback import Refused, record_feedback
from ui.history import History, owner
from ui.lanes import Lanes
from ui.render import plain, sources_html, unplain
from ui.viewer import document_viewer


def plain_user_turns(chatbot: gr.Chatbot) -> gr.Chatbot:
    """Show the user's own messages exactly as typed (plain text: an image, link or tag in a question is never fetched
    or run; the model's are made inert by `respond`), and get them back as typed. Set on this instance: a subclass of a
    Gradio component would make Gradio write a stub file beside this module at import."""
    preprocess, postprocess = chatbot.preprocess, chatbot.postprocess

    def from_page(payload):
        messages = preprocess(payload)
        for part in (p for m in messages if m["role"] == "user" for p in m["content"]):
            if part.get("type") == "text":
                part["text"] = unplain(part["text"])
        return messages

    def to_page(value):
        data = postprocess(value)
        for part in (p for m in data.root if m.role == "user" for p in m.content):
            if getattr(part, "type", None) == "text":
                part.text = plain(part.text)
        return data

    chatbot.preprocess, chatbot.postprocess = from_page, to_page
    return chatbot


def build_app(engine: rag.Engine, admin: bool | None = None, lanes: Lanes | None = None) -> gr.Blocks:
    """The Blocks app: chat with a sources panel, a settings accordion, and a corpus tab; answers take a lane of
    `lanes` when given (shared with the HTTP API)."""
    s = engine.settings
    admin = s.ui_admin if admin is None else admin
    docs = listed(engine)  # read once: listing reads every chunk's metadata
    # Uploaded files stay in Gradio's cache only until indexed: cleared hourly of anything older than an hour.
    with gr.Blocks(title="Ask the documents", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            f"# Ask the documents\n{_describe(docs)} "
            "Answers come only from these documents, with sources you can check." + _way(engine),
            elem_id="intro",
        )
        saved = History(engine, lanes)  # the saved conversations: a list in the sidebar, each answer saved
        sidebar_box = gr.Sidebar(label="Conversations", open=True, elem_id="sidebar")
        with gr.Tab("Chat"):
            _chat_tab(engine, docs, saved, sidebar_box, demo)
        with gr.Tab("Corpus"):
            corpus_tab(engine, docs, admin, warning=f"**Warning:** {OPEN_ADMIN}" if admin and s.login is None else "")
    return demo


def _chat_tab(engine: rag.Engine, docs: list[dict], saved: History, sidebar_box: gr.Sidebar, demo: gr.Blocks) -> None:
    """Lay out the Chat tab inside the current one: the chat beside its sources panel, and the sidebar's list."""
    sources = gr.HTML(sources_html([], "Sources"), elem_id="sources", render=False)
    settings = _settings(engine.settings, docs)  # placed in the chat's Settings accordion
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = _chatbot()
            chat = gr.ChatInterface(
                saved.answering(),
                chatbot=chatbot,
                additional_inputs=[*settings, saved.session],
                additional_inputs_accordion=gr.Accordion("Settings", open=False, render=False),
                additional_outputs=[sources, *saved.answer_outputs],
                examples=[[q] for q in _examples(docs)] or None,
                run_examples_on_click=False,
                api_name="respond",
                fill_height=False,
                show_progress="hidden",  # the answer streams into the chat; no timer over the sidebar's list
            )
        with gr.Column(scale=2):
            new_chat = gr.Button("New chat", size="sm", elem_id="new-chat")
            sources.render()
            document_viewer(engine)  # opens above the page when a source's button is pressed
    with sidebar_box:
        saved.render_sidebar(chatbot, chat.chatbot_state, sources, new_chat, demo)
    chatbot.clear(lambda: sources_html([], "Sources"), outputs=[sources], api_visibility="private")
    chatbot.like(_feedback(engine.settings), api_visibility="private")


def _settings(s: rag.Settings, docs: list[dict]) -> list[gr.Component]:
    """The per-question settings (passages, answering model, documents), made unrendered for the chat to place."""
    k = gr.Slider(1, 10, value=s.retrieve_k, step=1, label="Passages to use", render=False)
    backend = gr.Dropdown(
        list(rag.Settings.choices("llm_backend")), value=s.llm_backend, label="Answering model", render=False
    )
    only = gr.Dropdown(
        [(d["title"] or d["source"], d["source"]) for d in docs],
        value=[],
        multiselect=True,
        label="Only these documents (none chosen: all)",
        elem_id="only-docs",
        render=False,
    )
    depth = gr.Radio(
        list(rag.Settings.choices("depth")),
        value=s.depth,
        label="Context (retrieved passages): short answers sooner, thorough reads twice as much",
        render=False,
    )
    return [k, backend, only, depth]


def _chatbot() -> gr.Chatbot:
    return plain_user_turns(
        gr.Chatbot(
            height=480,
            sanitize_html=True,
            render_markdown=True,
            allow_tags=False,
            label="Chat",
            elem_id="chat",
            buttons=["copy", "copy_all"],  # no "share" (to Hugging Face: nothing here goes online)
        )
    )


def _feedback(s: rag.Settings):
    """The handler of a vote on an answer (named `on_like`: Gradio names the event after it)."""

    def on_like(data: gr.LikeData, request: gr.Request) -> None:
        """A vote counts only on an answer this session was shown; the voter is the login."""
        try:
            record_feedback(
                s.feedback_file,
                data.liked is True,
                data.value,
                session=request.session_hash,
                owner=owner(request),
                max_mb=s.feedback_max_mb,
            )
        except Refused as exc:
            raise gr.Error(str(exc), print_exception=False) from None

    return on_like


def _way(engine: rag.Engine) -> str:
    """How questions are answered, in one line: with the whole corpus in the model's view, or retrieved passages."""
    try:
        way = engine.way() if engine.has_index() else None
    except rag.RagError:
        return ""
    if way is None:
        return ""
    if way.whole:
        return f"\n\n*The model reads the whole corpus for each answer ({plain(way.why)}).*"
    return f"\n\n*Answers come from the passages retrieved for each question ({plain(way.why)}).*"


def _describe(docs: list[dict]) -> str:
    if not docs:
        return "No documents are indexed yet."
    titles = "; ".join(plain(d["title"]) for d in docs[:3]) + ("; …" if len(docs) > 3 else "")  # titles as text
    return f"{len(docs)} documents ({titles})."


def _examples(docs: list[dict]) -> list[str]:
    """Starter questions made from the corpus's own titles, so the page fits whatever documents are indexed."""
    return [f"What does “{d['title']}” say?" for d in docs[:2] if d["title"]]
