"""The page: a chat with its sources panel and settings, and the Corpus tab (`build_app`)."""

from __future__ import annotations

import functools
import json

import gradio as gr

import rag
from ui.chat import respond
from ui.corpus import corpus_tab, listed
from ui.feedback import record_feedback
from ui.render import sources_html


def build_app(engine: rag.Engine, admin: bool | None = None) -> gr.Blocks:
    """The Blocks app: chat with a sources panel, a settings accordion, and a corpus tab."""
    s = engine.settings
    admin = s.ui_admin if admin is None else admin
    docs = listed(engine)  # read once: listing reads every chunk's metadata
    with gr.Blocks(title="Ask the documents", analytics_enabled=False) as demo:
        gr.Markdown(f"# Ask the documents\n{_describe(docs)} Answers come only from these documents, with sources you can check.")
        with gr.Tab("Chat"):
            sources = gr.HTML(sources_html([], "Sources"), elem_id="sources", render=False)
            k = gr.Slider(1, 10, value=s.retrieve_k, step=1, label="Passages to use", render=False)
            backend = gr.Dropdown(list(rag.Settings.choices("llm_backend")), value=s.llm_backend, label="Answering model", render=False)
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(
                        height=480, sanitize_html=True, render_markdown=True, allow_tags=False, label="Chat", elem_id="chat"
                    )
                    gr.ChatInterface(
                        functools.partial(respond, engine=engine),
                        chatbot=chatbot,
                        additional_inputs=[k, backend],
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
            corpus_tab(engine, docs, admin)
    return demo


def _describe(docs: list[dict]) -> str:
    if not docs:
        return "No documents are indexed yet."
    titles = "; ".join(d["title"] for d in docs[:3]) + ("; …" if len(docs) > 3 else "")
    return f"{len(docs)} documents ({titles})."


def _examples(docs: list[dict]) -> list[str]:
    """Starter questions made from the corpus's own titles, so the page fits whatever documents are indexed."""
    return [f"What does “{d['title']}” say?" for d in docs[:2] if d["title"]]
