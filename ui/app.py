"""The page: a chat with its sources panel and settings, and the Corpus tab (`build_app`)."""

from __future__ import annotations

import functools
import json

import gradio as gr

import rag
from ui.chat import respond
from ui.corpus import OPEN_ADMIN, corpus_tab, listed
from ui.feedback import record_feedback
from ui.lanes import Lanes
from ui.render import plain, sources_html, unplain


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
        gr.Markdown(f"# Ask the documents\n{_describe(docs)} Answers come only from these documents, with sources you can check.")
        with gr.Tab("Chat"):
            sources = gr.HTML(sources_html([], "Sources"), elem_id="sources", render=False)
            k = gr.Slider(1, 10, value=s.retrieve_k, step=1, label="Passages to use", render=False)
            backend = gr.Dropdown(list(rag.Settings.choices("llm_backend")), value=s.llm_backend, label="Answering model", render=False)
            only = gr.Dropdown(
                [(d["title"] or d["source"], d["source"]) for d in docs],
                value=[],
                multiselect=True,
                label="Only these documents (none chosen: all)",
                elem_id="only-docs",
                render=False,
            )
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = plain_user_turns(
                        gr.Chatbot(height=480, sanitize_html=True, render_markdown=True, allow_tags=False, label="Chat", elem_id="chat")
                    )
                    gr.ChatInterface(
                        functools.partial(respond, engine=engine, lanes=lanes),
                        chatbot=chatbot,
                        additional_inputs=[k, backend, only],
                        additional_inputs_accordion=gr.Accordion("Settings", open=False, render=False),
                        additional_outputs=[sources],
                        examples=[[q] for q in _examples(docs)] or None,
                        run_examples_on_click=False,
                        api_name="respond",
                        fill_height=False,
                    )
                with gr.Column(scale=2):
                    new_chat = gr.Button("New chat", size="sm", elem_id="new-chat")
                    sources.render()
            chatbot.clear(lambda: sources_html([], "Sources"), outputs=[sources], api_visibility="private")
            new_chat.click(lambda: ([], sources_html([], "Sources")), outputs=[chatbot, sources], api_visibility="private")

            def on_like(data: gr.LikeData) -> None:
                value = data.value if isinstance(data.value, str) else json.dumps(data.value)
                if isinstance(data.value, dict):
                    value = data.value.get("value") or data.value.get("content") or value
                record_feedback(s.feedback_file, bool(data.liked), value if isinstance(value, str) else str(value))

            chatbot.like(on_like, api_visibility="private")

        with gr.Tab("Corpus"):
            corpus_tab(engine, docs, admin, warning=f"**Warning:** {OPEN_ADMIN}" if admin and s.login is None else "")
    return demo


def _describe(docs: list[dict]) -> str:
    if not docs:
        return "No documents are indexed yet."
    titles = "; ".join(d["title"] for d in docs[:3]) + ("; …" if len(docs) > 3 else "")
    return f"{len(docs)} documents ({titles})."


def _examples(docs: list[dict]) -> list[str]:
    """Starter questions made from the corpus's own titles, so the page fits whatever documents are indexed."""
    return [f"What does “{d['title']}” say?" for d in docs[:2] if d["title"]]
