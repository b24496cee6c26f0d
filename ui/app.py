"""The Gradio app: `respond` streams an answer and its sources; `build_app` lays out chat, sources and corpus."""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

import rag
from ui.render import CSS, inert, sources_html

log = logging.getLogger(__name__)

EXAMPLES = ["When was the Ottawa Convention signed?", "Which countries are leaving the convention, and why?"]
BACKENDS = ["local", "extractive", "openai"]
ERROR = "Sorry, something went wrong while answering. Please try again."


def respond(message: str, history: list[dict], k: int = 4, backend: str = "local", *, engine: rag.Engine) -> Iterator[tuple[str, str]]:
    """Stream (chat text, sources HTML): the evidence first, then the growing answer, then the checked answer."""
    try:
        params = rag.QueryParams(k=int(k), backend=backend if backend in BACKENDS else None)
        text = ""
        for event in engine.ask_stream(message, _pairs(history), params):
            if event.kind == "evidence":
                found = [_evidence_item(p) for p in event.data]
                yield "", sources_html(found, "Searching these passages…")
            elif event.kind == "token":
                text += event.data
                yield inert(text), sources_html(found, "Searching these passages…")
            else:
                final = event.data
                _remember(final)
                if final.refused:
                    yield inert(final.answer), sources_html([], "Sources")
                else:
                    yield inert(final.answer), sources_html([c.to_dict() for c in final.citations], "Sources")
    except rag.RagError as exc:
        yield inert(str(exc)), ""
    except Exception:  # never a stack trace in the chat
        log.exception("answer failed")
        yield ERROR, ""


def _pairs(history: list[dict]) -> list[tuple[str, str]]:
    """Gradio's message list as (user, assistant) turns."""
    pairs, user = [], None
    for msg in history or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, list):  # Gradio 6 may send content as typed parts
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            continue
        if msg.get("role") == "user":
            user = content
        elif msg.get("role") == "assistant" and user is not None:
            pairs.append((user, content))
            user = None
    return pairs


def _evidence_item(p: Any) -> dict:
    m = p.doc.metadata
    return {
        "n": p.n,
        "title": m.get("title", ""),
        "source": m.get("source", ""),
        "text": p.doc.page_content,
        "quote": p.excerpt.split(" … ")[0],
    }


# Recent answers by their displayed text, so a thumbs up/down can log the question and citations with it.
_ANSWERS: OrderedDict[str, dict] = OrderedDict()
_ANSWERS_LOCK = threading.Lock()


def _remember(answer: rag.Answer) -> None:
    with _ANSWERS_LOCK:
        _ANSWERS[inert(answer.answer)] = answer.to_dict()
        while len(_ANSWERS) > 500:
            _ANSWERS.popitem(last=False)


def record_feedback(path: Path, liked: bool, shown_answer: str) -> dict:
    """Append one thumbs up/down, with the question, answer and citations, to the JSONL feedback log."""
    with _ANSWERS_LOCK:
        known = _ANSWERS.get(shown_answer, {})
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "liked": liked,
        "question": known.get("question"),
        "answer": known.get("answer", shown_answer),
        "citations": [{k: c[k] for k in ("n", "chunk_id", "source", "quote", "start", "end")} for c in known.get("citations", [])],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with _ANSWERS_LOCK, open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
    return entry


def build_app(engine: rag.Engine, admin: bool | None = None):
    """The Blocks app: chat with a sources panel, a settings accordion, and a corpus tab."""
    admin = os.environ.get("RAG_UI_ADMIN") == "1" if admin is None else admin
    s = engine.settings
    listed = _listed(engine)  # read once: listing reads every chunk's metadata
    with gr.Blocks(title="Ask the documents", analytics_enabled=False) as demo:
        gr.Markdown(f"# Ask the documents\n{_describe(listed)} Answers come only from these documents, with sources you can check.")
        with gr.Tab("Chat"):
            sources = gr.HTML(sources_html([], "Sources"), elem_id="sources", render=False)
            k = gr.Slider(1, 10, value=s.retrieve_k, step=1, label="Passages to use", render=False)
            backend = gr.Dropdown(BACKENDS, value=s.llm_backend, label="Answering model", render=False)
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
                        examples=[[q] for q in EXAMPLES],
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
            docs = gr.Dataframe(
                _doc_rows(listed), headers=["title", "source", "chunks", "indexed"], interactive=False, label="Indexed documents"
            )
            status = gr.Markdown("" if admin else "Managing the corpus is turned off (start with `RAG_UI_ADMIN=1` to turn it on).")
            with gr.Row(visible=admin):
                upload = gr.File(label="Add documents", file_count="multiple", file_types=list(engine.supported_types), interactive=admin)
                with gr.Column():
                    reindex = gr.Button("Re-index the corpus", interactive=admin)
                    remove_choice = gr.Dropdown([d["source"] for d in listed], label="Document")
                    remove = gr.Button("Remove document", variant="stop", interactive=admin)

            def refreshed(message: str):
                now = _listed(engine)
                return message, _doc_rows(now), gr.update(choices=[d["source"] for d in now], value=None)

            def do_upload(files, progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
                _require(admin)
                reports = []
                for f in progress.tqdm(files or [], desc="indexing"):
                    path = Path(f if isinstance(f, str) else f.name)
                    reports.append(engine.add_file(path.name, path.read_bytes()).summary())
                return refreshed("Indexed: " + "; ".join(reports))

            def do_reindex(progress=gr.Progress()):  # noqa: B008 (Gradio injects it)
                _require(admin)
                progress(0, desc="indexing")
                return refreshed("Re-indexed: " + engine.ingest().summary())

            def do_remove(source):
                _require(admin)
                if not source:
                    return refreshed("Choose a document first.")
                return refreshed(f"Removed {source}: " + engine.remove_document(source).summary())

            outs = [status, docs, remove_choice]
            upload.upload(_guard(do_upload), inputs=[upload], outputs=outs, api_visibility="private")
            reindex.click(_guard(do_reindex), outputs=outs, api_visibility="private")
            remove.click(_guard(do_remove), inputs=[remove_choice], outputs=outs, api_visibility="private")
    return demo


def _require(admin: bool) -> None:
    if not admin:
        raise rag.RagError("managing the corpus is turned off on this server")


def _guard(fn):
    """Admin actions show a one-line message on failure, never a stack trace."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except rag.RagError as exc:
            raise gr.Error(str(exc)) from None
        except Exception:
            log.exception("corpus action failed")
            raise gr.Error("The corpus action failed; see the server log.") from None

    return wrapper


def _listed(engine: rag.Engine) -> list[dict]:
    return engine.documents() if engine.has_index() else []


def _doc_rows(docs: list[dict]) -> list[list]:
    return [[d["title"], d["source"], d["chunks"], d["indexed_at"]] for d in docs]


def _describe(docs: list[dict]) -> str:
    if not docs:
        return "No documents are indexed yet."
    titles = "; ".join(d["title"] for d in docs[:3]) + ("; …" if len(docs) > 3 else "")
    return f"{len(docs)} documents ({titles})."


def launch(engine: rag.Engine, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Serve with safe defaults: loopback, bounded queue, queue-skipping REST closed, private paths blocked."""
    s = engine.settings
    engine.hold_for_serving()
    _SERVED.append(engine)
    demo = build_app(engine)
    demo.queue(max_size=s.ui_queue_size, default_concurrency_limit=s.ui_concurrency, api_open=False)
    auth = None
    if os.environ.get("RAG_UI_AUTH"):
        user, _, password = os.environ["RAG_UI_AUTH"].partition(":")
        if not user or not password:
            raise rag.RagError("RAG_UI_AUTH must be user:password")
        auth = ThrottledLogin(user, password)
    blocked = [str(s.index_dir.resolve()), str(Path(".env").resolve()), str(s.feedback_file.resolve())]
    if s.record_url.startswith("sqlite:///"):
        blocked.append(s.record_url.removeprefix("sqlite:///"))
    return demo.launch(
        server_name=host,
        server_port=port,
        auth=auth,
        max_file_size=f"{int(s.max_file_mb)}mb",
        blocked_paths=blocked,
        show_error=False,
        prevent_thread_lock=not block,
        quiet=True,
        footer_links=[],
        css=CSS,
        ssr_mode=False,
        mcp_server=False,
    )


class ThrottledLogin:
    """Checks the one configured login; after `limit` failures in `window` seconds every attempt is refused
    (right password included) until the window has passed, so passwords cannot be guessed quickly."""

    def __init__(self, user: str, password: str, limit: int = 5, window: float = 60.0) -> None:
        self._user, self._password = user, password
        self.limit, self.window = limit, window
        self._failures: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, user: str, password: str) -> bool:
        import hmac

        now = time.monotonic()
        with self._lock:
            self._failures = [t for t in self._failures if now - t < self.window]
            if len(self._failures) >= self.limit:
                log.warning("login refused: too many failed attempts")
                return False
            ok = hmac.compare_digest(user.encode(), self._user.encode()) & hmac.compare_digest(password.encode(), self._password.encode())
            if not ok:
                self._failures.append(now)
            return bool(ok)


_SERVED: list[rag.Engine] = []


def close_all() -> None:
    """Stop every app this process serves and release their indexes (tests, and a clean shutdown)."""
    gr.close_all()
    while _SERVED:
        _SERVED.pop().release_serving()
